#!/usr/bin/env bash
# memfd-brokerctl end to end against a broker of its own: a 64 MiB round trip
# through create, write, seal and cat, then stat, list and rm, and the errors
# a user meets.
set -euo pipefail

: "${MFB_BROKERD:?}" "${MFB_BROKERCTL:?}"
dir=$(mktemp -d "${TMPDIR:-/tmp}/mfb-ctl.XXXXXX")
broker_pid=
cleanup() {
    if [ -n "$broker_pid" ]; then
        kill "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
export MEMFD_BROKER_SOCKET="$dir/broker.sock"

# shellcheck disable=SC2086 # the wrapper is a list of words
${MFB_BROKER_WRAPPER:-} "$MFB_BROKERD" --log-level warning &
broker_pid=$!
for _ in $(seq 1 2000); do
    "$MFB_BROKERCTL" list >/dev/null 2>&1 && break
    kill -0 "$broker_pid" 2>/dev/null || fail "broker exited at startup"
    sleep 0.01
done
"$MFB_BROKERCTL" list >/dev/null || fail "broker does not answer"

ctl() { "$MFB_BROKERCTL" "$@"; }

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
    err=$("$MFB_BROKERCTL" "$@" 2>&1 >/dev/null) || status=$?
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

kill "$broker_pid"
wait "$broker_pid" || fail "broker exited with status $?"
broker_pid=
[ ! -e "$MEMFD_BROKER_SOCKET" ] || fail "broker left its socket behind"
echo "memfd-brokerctl: all checks passed"
