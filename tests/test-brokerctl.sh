#!/usr/bin/env bash
# memfd-brokerctl end to end against a broker of its own: a 64 MiB round trip
# through create, write, seal and cat, then stat, list and rm, and the errors
# a user meets.
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/lib.sh"
export MEMFD_BROKER_SOCKET="$dir/broker.sock"

# shellcheck disable=SC2086 # the wrapper is a list of words
run_broker "$MEMFD_BROKER_SOCKET" ${MFB_BROKER_WRAPPER:-} "$MFB_BROKERD" --log-level warning

ctl() { brokerctl "$@"; }

# The round trip.
head -c 64M /dev/urandom > "$dir/data"
handle=$(ctl create demo 64M)
[[ $handle =~ ^[0-9]+$ ]] || fail "create printed '$handle', not a handle"
ctl write demo "$dir/data"
ctl seal demo
ctl cat demo > "$dir/back"
cmp "$dir/data" "$dir/back" || fail "cat gave back other bytes"

stat=$(ctl stat demo)
grep -q 'demo' <<<"$stat" || fail "stat lacks the name: $stat"
grep -q '67108864' <<<"$stat" || fail "stat lacks the size: $stat"
grep -qi 'write' <<<"$stat" || fail "stat lacks the write seal: $stat"
json=$(ctl stat demo --json)
python3 - "$json" "$handle" <<'PY' || fail "stat --json is wrong: $json"
import json, sys
s = json.loads(sys.argv[1])
assert s["name"] == "demo" and s["size"] == 64 << 20 and s["handle"] == int(sys.argv[2]), s
assert s["nattch"] == 0, s  # the tool's own connections are gone
assert "write" in json.dumps(s["seals"]), s
PY
ctl list | grep -q 'demo' || fail "list lacks demo"
ctl list --json | python3 -c 'import json,sys; l=json.load(sys.stdin); assert [e["name"] for e in l] == ["demo"], l' \
    || fail "list --json is wrong"

# Errors: one line on stderr naming the operation and the region, status 1.
expect_error() {
    local want=$1; shift
    local err status=0
    err=$(brokerctl "$@" 2>&1 >/dev/null) || status=$?
    [ "$status" -eq 1 ] || fail "'$*' exited $status, not 1"
    [ "$(wc -l <<<"$err")" -eq 1 ] || fail "'$*' printed more than one line: $err"
    grep -q -- "$want" <<<"$err" || fail "'$*' said '$err', expected it to mention '$want'"
}
expect_error demo write demo "$dir/data"
expect_error demo create demo 1K
expect_error nosuch cat nosuch
head -c 5000 /dev/zero > "$dir/big"
ctl create small 4K >/dev/null
expect_error small write small "$dir/big"
printf 'hello' | ctl write small
[ "$(ctl cat small | head -c 5)" = hello ] || fail "write from stdin"

# Sealing again is not an error; a sealed region cannot be written.
ctl seal demo || fail "sealing a sealed region failed"
ctl seal demo --future-write || fail "a write seal does not cover the future-write one"
expect_error demo write demo "$dir/data"

# chmod, chown, create --mode: stat shows what was set.
field() { ctl stat "$1" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"; }
ctl create moded 4K --mode 0640 >/dev/null
[ "$(field moded mode)" = $((8#640)) ] || fail "create --mode 0640 gave mode $(field moded mode)"
ctl chmod 604 moded
[ "$(field moded mode)" = $((8#604)) ] || fail "chmod 604 gave mode $(field moded mode)"
ctl chown 65534:65534 moded
[ "$(field moded uid)" = 65534 ] && [ "$(field moded gid)" = 65534 ] || fail "chown did not take"
ctl chown :0 moded
[ "$(field moded uid)" = 65534 ] && [ "$(field moded gid)" = 0 ] || fail "chown :GROUP changed more than the group"
status=0; ctl chmod 1777 moded >/dev/null 2>&1 || status=$?
[ "$status" -eq 2 ] || fail "chmod with more than permission bits exited $status"

# wait: a sealed region is there at once; one that never comes times out.
[ "$(ctl wait demo --timeout 5)" = "$handle" ] || fail "wait on a sealed region did not print its handle"
start=$(date +%s%N)
expect_error never wait never --timeout 0.2
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$elapsed_ms" -ge 200 ] || fail "wait gave up after $elapsed_ms ms, before its 0.2 s timeout"
expect_error moded wait moded --timeout 0

# stat and rm by handle.
moded_handle=$(field moded handle)
[ "$(ctl stat --handle "$moded_handle" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["name"])')" = moded ] \
    || fail "stat --handle found another region"
ctl rm --handle "$moded_handle"
expect_error moded stat moded

# rm: gone from list, name reusable.
ctl rm demo
ctl rm small
ctl list | grep -q 'demo' && fail "list still shows demo"
expect_error demo rm demo
ctl create demo 1K >/dev/null
ctl rm demo

# Usage errors are status 2.
status=0; ctl frobnicate >/dev/null 2>&1 || status=$?
[ "$status" -eq 2 ] || fail "unknown command exited $status"
status=0; ctl create x 12Q >/dev/null 2>&1 || status=$?
[ "$status" -eq 2 ] || fail "bad size exited $status"

stop_broker
[ ! -e "$MEMFD_BROKER_SOCKET" ] || fail "broker left its socket behind"
echo "memfd-brokerctl: all checks passed"
