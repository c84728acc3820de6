#!/usr/bin/env bash
# memfd-brokerctl end to end against a broker of its own: a 64 MiB round trip
# through create, write, seal and cat, then stat, list, limits and rm, and the
# errors a user meets. Run as root, it also runs limits as uid 65534.
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/lib.sh"
export MEMFD_BROKER_SOCKET="$dir/broker.sock"

# shellcheck disable=SC2086 # the wrapper is a list of words
run_broker "$MEMFD_BROKER_SOCKET" ${MFB_BROKER_WRAPPER:-} "$MFB_BROKERD" --log-level warning

ctl() { brokerctl "$@"; }

# as_other COMMAND...: runs COMMAND as uid and gid 65534 without other groups,
# under the deadline; fails when this cannot be done (see can_switch).
as_other() {
    if command -v setpriv >/dev/null; then
        timeout "$TIMEOUT" setpriv --reuid=65534 --regid=65534 --clear-groups "$@"
    else
        timeout "$TIMEOUT" runuser -u "$(getent passwd 65534 | cut -d: -f1)" -- "$@"
    fi
}
# Whether as_other can run memfd-brokerctl: as root, with setpriv or runuser
# and a user 65534, from a build tree that uid can reach (a private folder on
# its path, such as one made by mktemp -d, keeps it out).
can_switch() {
    [ "$(id -u)" -eq 0 ] && { command -v setpriv || { command -v runuser && getent passwd 65534; }; } >/dev/null &&
        as_other test -x "$MFB_BROKERCTL"
}

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

# limits: a line per resource, one word per cell; JSON with the exact numbers.
resources="regions bytes fds connections queued_bytes waiters kept_regions holds"
check_limits_table() {
    local table=$1 uid_max=$2 broker_used=$3
    [ "$(head -1 <<<"$table" | tr -s ' ')" = "RESOURCE BROKER-MAX BROKER-USED UID-MAX UID-USED AVAILABLE" ] \
        || fail "limits has another header: $table"
    [ "$(tail -n +2 <<<"$table" | awk '{print $1}' | xargs)" = "$resources" ] \
        || fail "limits does not list the resources in order: $table"
    tail -n +2 <<<"$table" | awk -v uid_max="$uid_max" -v broker_used="$broker_used" '
        NF != 6 { exit 1 }
        uid_max == "-" && $4 != "-" { exit 1 }
        broker_used == "-" && $3 != "-" { exit 1 }
        broker_used != "-" && $3 == "-" { exit 1 }
        $1 == "bytes" && $2 !~ /^[0-9.]+(B|[KMGTPE]iB)$/ { exit 1 }' \
        || fail "limits has a wrong cell: $table"
}
check_limits_json() {
    python3 -c '
import json, sys
want_uid, exempt = int(sys.argv[1]), sys.argv[2] == "exempt"
limits = json.load(sys.stdin)
assert limits["uid"] == want_uid, limits
assert list(limits["resources"]) == sys.argv[3].split(), limits
for name, e in limits["resources"].items():
    assert e["unit"] == ("bytes" if name.endswith("bytes") else "count"), (name, e)
    # Limits per uid: on regions, bytes and connections, for all but root.
    if exempt or name in ("fds", "queued_bytes", "waiters", "holds"):
        assert e["uid_max"] is None, (name, e)
    elif name != "kept_regions":
        assert e["uid_max"] is not None, (name, e)
    assert (e["broker_used"] is None) != exempt, (name, e)
    assert e["uid_available"] is not None and e["uid_available"] <= e["broker_max"], (name, e)
    if not exempt and e["uid_max"] is not None:
        assert e["uid_used"] + e["uid_available"] <= e["uid_max"], (name, e)
if exempt:
    demo = limits["resources"]["bytes"]
    assert demo["broker_used"] >= 64 << 20, demo  # the region demo at least
else:
    assert limits["resources"]["connections"]["uid_used"] == 1, limits  # its own
' "$@"
}
# The broker runs as this script's user, which is exempt as root is: no limit of
# its own ("-"), and it is told what everyone holds.
check_limits_table "$(ctl limits)" - used
ctl limits --json | check_limits_json "$(id -u)" exempt "$resources" || fail "limits --json is wrong"
if can_switch; then
    chmod 755 "$dir"  # so that uid 65534 reaches the socket
    table=$(as_other "$MFB_BROKERCTL" limits) || fail "limits as uid 65534 failed: $table"
    check_limits_table "$table" any -
    [ "$(awk '$1 == "regions" {print $4}' <<<"$table")" != - ] || fail "uid 65534 has no limit on regions: $table"
    as_other "$MFB_BROKERCTL" limits --json | check_limits_json 65534 limited "$resources" \
        || fail "limits --json as uid 65534 is wrong"
else
    echo "SKIP: limits as uid 65534: needs root, setpriv or runuser, and a build tree uid 65534 can reach"
fi

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
if [ "$(id -u)" -eq 0 ]; then
    ctl chown 65534:65534 moded
    [ "$(field moded uid)" = 65534 ] && [ "$(field moded gid)" = 65534 ] || fail "chown did not take"
    ctl chown :0 moded
    [ "$(field moded uid)" = 65534 ] && [ "$(field moded gid)" = 0 ] || fail "chown :GROUP changed more than the group"
else
    # Only root gives a region to another user.
    expect_error moded chown 0 moded
fi
status=0; ctl chmod 1777 moded >/dev/null 2>&1 || status=$?
[ "$status" -eq 2 ] || fail "chmod with more than permission bits exited $status"

# wait: a sealed region is there at once; one that never comes times out.
[ "$(ctl wait demo --timeout 5)" = "$handle" ] || fail "wait on a sealed region did not print its handle"
start=$(date +%s%N)
expect_error never wait never --timeout 0.2
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$elapsed_ms" -ge 200 ] || fail "wait gave up after $elapsed_ms ms, before its 0.2 s timeout"
expect_error moded wait moded --timeout 0

# notify and watch. From --after 0, a watch started before, during or after the
# notifications sees them all: here two, printed as they come, the last line 2.
ctl create bell 4K >/dev/null
brokerctl watch bell --after 0 --count 2 --timeout "$TIMEOUT" >"$dir/watched" 2>"$dir/watch-err" &
watcher=$!
ctl notify bell
ctl notify bell
status=0; reap "$watcher" || status=$?
[ "$status" -eq 0 ] || fail "watch --count 2 exited $status: $(cat "$dir/watch-err")"
[ ! -s "$dir/watch-err" ] || fail "watch complained: $(cat "$dir/watch-err")"
watched=$(cat "$dir/watched")
[ "$watched" = $'1\n2' ] || [ "$watched" = 2 ] || fail "watch printed '$watched', not the sequences 1 and 2 as they came"
# Without --after it counts from the sequence it finds: the two before do not end it, the time does.
start=$(date +%s%N)
expect_error "no notification within 0.2 s" watch bell --timeout 0.2
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$elapsed_ms" -ge 200 ] || fail "watch gave up after $elapsed_ms ms, before its 0.2 s timeout"
# A sequence moved on already is printed at once.
[ "$(ctl watch bell --after 1 --count 1 --timeout 0)" = 2 ] || fail "watch --after 1 did not print 2 at once"
expect_error nosuch notify nosuch
expect_error nosuch watch nosuch
expect_error demo notify demo    # sealed: nobody may open it for writing, so nobody notifies
for args in "watch bell --count 0" "watch bell --count x" "watch bell --after -1" "notify bell extra" "notify" \
    "notify bell --count 1" "watch bell --timeout x"; do
    # shellcheck disable=SC2086 # the words of each case
    status=0; ctl $args >/dev/null 2>&1 || status=$?
    [ "$status" -eq 2 ] || fail "$args exited $status, not 2"
done
ctl rm bell

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

# create --count: anonymous regions in one batch, a handle a line. They go with the command, which
# waits for the broker to have its releases before it exits; with --hold, once its input ends.
handles=$(ctl create --count 5 4K)
[ "$(grep -cE '^[0-9]+$' <<<"$handles")" -eq 5 ] && [ "$(sort -u <<<"$handles" | wc -l)" -eq 5 ] \
    || fail "create --count 5 printed '$handles'"
for h in $handles; do expect_error "handle $h" stat --handle "$h"; done
mkfifo "$dir/hold"
brokerctl create --count 3 4K --hold <"$dir/hold" >"$dir/held" &
holder=$!
exec 3>"$dir/hold"
deadline=$((SECONDS + TIMEOUT))
until [ "$(wc -l <"$dir/held")" -eq 3 ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "create --count 3 --hold printed '$(cat "$dir/held")'"
    sleep 0.01
done
while read -r h; do
    [ "$(ctl stat --handle "$h" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["nattch"])')" = 1 ] \
        || fail "held region $h is not held once"
done <"$dir/held"
exec 3>&-
reap "$holder" || fail "create --count --hold exited $?"
while read -r h; do expect_error "handle $h" stat --handle "$h"; done <"$dir/held"

# create --transient --hold: a named region that lasts while someone holds it, and goes with its
# last holder. Without --hold the command's own exit would end it at once: a usage error.
mkfifo "$dir/hold-transient"
brokerctl create fleeting 4K --transient --hold --mode 0644 <"$dir/hold-transient" >"$dir/held-transient" &
holder=$!
exec 3>"$dir/hold-transient"
deadline=$((SECONDS + TIMEOUT))
until [ "$(wc -l <"$dir/held-transient")" -eq 1 ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "create --transient --hold printed '$(cat "$dir/held-transient")'"
    sleep 0.01
done
handle=$(cat "$dir/held-transient")
ctl stat fleeting --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
assert s["handle"] == int(sys.argv[1]) and s["nattch"] == 1 and s["mode"] == 0o644, s
assert s["state"] == ["writable", "transient"], s' "$handle" || fail "stat --json of a transient region is wrong"
ctl stat fleeting | grep -q '^state: *writable,transient$' || fail "stat does not say transient: $(ctl stat fleeting)"
ctl list | grep -q "^ *$handle fleeting .* writable,transient$" || fail "list does not say transient: $(ctl list)"
# Other commands open and release it meanwhile; it stays while the holder holds it.
printf 'hello' | ctl write fleeting
[ "$(ctl cat fleeting | head -c 5)" = hello ] || fail "write to a held transient region"
expect_error fleeting create fleeting 4K
exec 3>&-
reap "$holder" || fail "create --transient --hold exited $?"
expect_error fleeting stat fleeting
expect_error "handle $handle" stat --handle "$handle"
# A holder killed with SIGKILL lets go as surely: the name comes free.
"$MFB_BROKERCTL" create fleeting 4K --transient --hold <"$dir/hold-transient" >"$dir/held-transient" &
holder=$!
exec 3>"$dir/hold-transient"
deadline=$((SECONDS + TIMEOUT))
until [ "$(wc -l <"$dir/held-transient")" -eq 1 ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "create --transient --hold printed '$(cat "$dir/held-transient")'"
    sleep 0.01
done
kill -KILL "$holder"
# Quiet: bash would report the kill this test made on purpose.
status=0; reap "$holder" 2>/dev/null || status=$?
[ "$status" -eq $((128 + 9)) ] || fail "the killed holder exited $status"
exec 3>&-
# The broker sees the hang-up in its own time.
deadline=$((SECONDS + TIMEOUT))
while ctl stat fleeting >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "a transient region outlived its killed holder: $(ctl stat fleeting)"
    sleep 0.01
done
ctl create fleeting 4K >/dev/null || fail "the name of an ended transient region is not free"
[ "$(field fleeting state)" = "['writable']" ] || fail "a plain region is transient: $(field fleeting state)"
ctl rm fleeting

for args in "--count 2 4K --mode 0644" "--count 2 x 4K" "--count 0 4K" "4K --hold" "t 4K --hold" "t 4K --transient" \
    "--count 2 4K --transient" "--count 2 4K --transient --hold"; do
    # shellcheck disable=SC2086 # the words of each case
    status=0; ctl create $args >/dev/null 2>&1 || status=$?
    [ "$status" -eq 2 ] || fail "create $args exited $status, not 2"
done

# Usage errors are status 2.
status=0; ctl frobnicate >/dev/null 2>&1 || status=$?
[ "$status" -eq 2 ] || fail "unknown command exited $status"
status=0; ctl create x 12Q >/dev/null 2>&1 || status=$?
[ "$status" -eq 2 ] || fail "bad size exited $status"

stop_broker
[ ! -e "$MEMFD_BROKER_SOCKET" ] || fail "broker left its socket behind"

# A batch the broker refuses partway leaves nothing: one line of error, and the regions held before.
limited="$dir/limited.sock"
# shellcheck disable=SC2086 # the wrapper is a list of words
run_broker "$limited" ${MFB_BROKER_WRAPPER:-} "$MFB_BROKERD" --socket "$limited" --log-level warning --max-regions 300
ctl --socket "$limited" create kept 4K >/dev/null
expect_error regions --socket "$limited" create --count 800 4K  # more than one CREATE_BATCH holds
ctl --socket "$limited" list --json | python3 -c '
import json, sys
l = json.load(sys.stdin)
assert [(e["name"], e["nattch"]) for e in l] == [("kept", 0)], l' || fail "a failed batch left regions behind"
room=$(ctl --socket "$limited" limits --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["resources"]["regions"]["uid_available"])')
[ "$room" -gt 0 ] && [ "$(ctl --socket "$limited" create --count "$room" 4K | wc -l)" -eq "$room" ] \
    || fail "the room a failed batch had is not back"
stop_broker
echo "memfd-brokerctl: all checks passed"
