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
# its path, such as one made by mktemp -d, keeps it out: with setpriv, uid
# 65534 runs a copy then).
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
    chmod 755 "$dir"
    reachable_brokerctl 65534
fi
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

# The memory a region really uses: written halfway, half its pages, in list (ALLOC), list --json and stat.
ctl create halfway 4M >/dev/null
head -c 2M /dev/zero | ctl write halfway
ctl list --json | python3 -c '
import json, sys
l = {e["name"]: e for e in json.load(sys.stdin)}
assert l["halfway"]["size"] == 4 << 20 and l["halfway"]["allocated"] == 2 << 20, l["halfway"]
assert l["demo"]["allocated"] == 64 << 20, l["demo"]' || fail "list --json has wrong allocated bytes"
line=$(ctl list | awk '$2 == "halfway"')
[ "$(awk '{print $5, $6}' <<<"$line")" = "4194304 2097152" ] || fail "list's SIZE and ALLOC of halfway: $line"
[ "$(ctl list | head -1 | awk '{print $5, $6}')" = "SIZE ALLOC" ] || fail "list has another header: $(ctl list | head -1)"
line=$(ctl list --human | awk '$2 == "halfway"')
[ "$(awk '{print $5, $6}' <<<"$line")" = "4MiB 2MiB" ] || fail "list --human of halfway: $line"
[ "$(ctl list --human | awk '$2 == "demo" {print $5, $6}')" = "64MiB 64MiB" ] || fail "list --human of demo"
ctl stat halfway | grep -qx 'allocated: 2097152 (2 MiB)' || fail "stat lacks the allocated bytes: $(ctl stat halfway)"
[ "$(ctl stat halfway --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["allocated"])')" = 2097152 ] \
    || fail "stat --json lacks the allocated bytes"

# Filters: --name GLOB (named regions only), --owner USER (a name or a uid).
names() { ctl list --json "$@" | python3 -c 'import json,sys; print(" ".join(e["name"] or "-" for e in json.load(sys.stdin)))'; }
[ "$(names --name 'half*')" = halfway ] || fail "list --name 'half*' gave '$(names --name 'half*')'"
[ "$(names --name '[dh]*')" = "demo halfway" ] || fail "list --name '[dh]*' gave '$(names --name '[dh]*')'"
[ "$(names --name nothing)" = "" ] || fail "list --name nothing listed regions"
[ "$(names --owner "$(id -un)")" = "demo halfway" ] || fail "list --owner $(id -un) gave '$(names --owner "$(id -un)")'"
[ "$(names --owner "$(id -u)" --name 'd*')" = demo ] || fail "list --owner with --name"
[ "$(names --owner 4242)" = "" ] || fail "list --owner 4242 listed regions it does not own"
[ "$(ctl list --owner 4242 | wc -l)" -eq 1 ] || fail "list with nothing to show lacks its header, or has more"
for args in "--human --json" "--owner no-such-user-here" "--name" "--human extra"; do
    # shellcheck disable=SC2086 # the words of each case
    status=0; ctl list $args >/dev/null 2>&1 || status=$?
    [ "$status" -eq 2 ] || fail "list $args exited $status, not 2"
done
ctl rm halfway

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
# hold COMMAND...: runs COMMAND, a create --hold, in the background as $holder,
# its standard input the fifo held open on fd 3, and waits for the handle it prints.
hold() {
    "$@" <"$dir/hold-transient" >"$dir/held-transient" &
    holder=$!
    exec 3>"$dir/hold-transient"
    local deadline=$((SECONDS + TIMEOUT))
    until [ "$(wc -l <"$dir/held-transient")" -eq 1 ]; do
        [ "$SECONDS" -lt "$deadline" ] || fail "$* printed '$(cat "$dir/held-transient")'"
        sleep 0.01
    done
}
hold brokerctl create fleeting 4K --transient --hold --mode 0644
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
# A holder killed with SIGKILL lets go as surely: the name comes free. (Not
# through brokerctl's timeout, whose kill would not reach it.)
hold "$MFB_BROKERCTL" create fleeting 4K --transient --hold
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

# limits as the broker was configured, and usage that matches the region list, also after a refusal.
set_limits="--max-regions 300 --max-bytes 64M --max-connections 50 --max-queued-bytes 1M --max-waiters 20
    --max-holds 900 --max-regions-per-uid 3 --max-bytes-per-uid 16M --max-connections-per-uid 10"
# shellcheck disable=SC2086 # the wrapper and the limits are lists of words
run_broker "$limited" ${MFB_BROKER_WRAPPER:-} "$MFB_BROKERD" --socket "$limited" --log-level warning $set_limits
export MEMFD_BROKER_SOCKET="$limited"
check_configured() {
    python3 -c '
import json, sys
exempt = sys.argv[1] == "exempt"
r = json.load(sys.stdin)["resources"]
want = {"regions": 300, "bytes": 64 << 20, "connections": 50, "queued_bytes": 1 << 20, "waiters": 20, "holds": 900,
        "kept_regions": 0}
for name, value in want.items():
    assert r[name]["broker_max"] == value, (name, r[name])
per_uid = {"regions": 3, "bytes": 16 << 20, "connections": 10}
for name, value in per_uid.items():
    assert r[name]["uid_max"] == (None if exempt else value), (name, r[name])' "$@"
}
ctl limits --json | check_configured exempt || fail "limits --json is not what the broker was given"
table=$(ctl limits)
[ "$(awk '$1 == "regions" {print $2} $1 == "bytes" {print $2} $1 == "connections" {print $2}' <<<"$table" | xargs)" \
    = "300 64MiB 50" ] || fail "limits table is not what the broker was given: $table"

# usage --json against list --json: every owner's regions and bytes, and this tool's own connection.
check_usage() {
    local usage list
    usage=$(ctl usage --json) && list=$(ctl list --json) || fail "usage or list failed"
    python3 -c '
import json, os, sys
usage, listed = json.loads(sys.argv[1]), json.loads(sys.argv[2])
rows = {u["uid"]: u["resources"] for u in usage["users"]}
assert [u["uid"] for u in usage["users"]] == sorted(rows), usage["users"]
for uid in {e["uid"] for e in listed} | set(rows):
    owned = [e for e in listed if e["uid"] == uid]
    assert rows[uid]["regions"]["uid_used"] == len(owned), (uid, rows[uid]["regions"], owned)
    assert rows[uid]["bytes"]["uid_used"] == sum(e["size"] for e in owned), (uid, rows[uid]["bytes"])
assert rows[os.getuid()]["connections"]["uid_used"] == 1, rows[os.getuid()]
totals = usage["totals"]
assert totals["regions"]["broker_used"] == len(listed) and totals["regions"]["broker_max"] == 300, totals
assert totals["bytes"]["broker_used"] == sum(e["size"] for e in listed), totals
for extra in sys.argv[3:]:
    uid, regions, size = map(int, extra.split(":"))
    assert rows[uid]["regions"]["uid_used"] == regions and rows[uid]["bytes"]["uid_used"] == size, rows[uid]
    assert rows[uid]["regions"]["uid_max"] == 3 and rows[uid]["bytes"]["uid_max"] == 16 << 20, rows[uid]
' "$usage" "$list" "$@" || fail "usage does not match the region list: $usage"
}
ctl create mine 12K >/dev/null
check_usage
table=$(ctl usage)
[ "$(head -1 <<<"$table" | xargs)" = \
    "USER UID REGIONS BYTES FDS CONNECTIONS QUEUED_BYTES WAITERS KEPT_REGIONS HOLDS" ] || fail "usage header: $table"
[ "$(awk -v uid="$(id -u)" '$2 == uid {print $3, $4}' <<<"$table")" = "1/- 12KiB/-" ] \
    || fail "usage has a wrong line for this user: $table"
[ "$(awk '$1 == "(all)" {print $3, $4, $6}' <<<"$table")" = "1/300 12KiB/64MiB 1/50" ] \
    || fail "usage has wrong totals: $table"
if can_switch; then
    chmod 755 "$dir"
    other_creates() {
        local err status=0
        err=$(as_other "$MFB_BROKERCTL" create "$1" "$2" 2>&1 >/dev/null) || status=$?
        [ "$status" -eq "$3" ] || fail "create $1 as uid 65534 exited $status, not $3: $err"
        [ "$3" -eq 0 ] || grep -q "regions" <<<"$err" || fail "the refusal does not name the resource: $err"
    }
    other_creates o1 4K 0
    other_creates o2 8K 0
    other_creates o3 12K 0
    other_creates o4 4K 1   # its fourth region: over --max-regions-per-uid
    check_usage 65534:3:24576
    [ "$(ctl usage | awk '$2 == 65534 {print $3, $4}')" = "3/3 24KiB/16MiB" ] || fail "usage line of uid 65534: $(ctl usage)"
    # A uid that is not exempt sees its own line, against its own limits, and no totals.
    as_other "$MFB_BROKERCTL" limits --json | check_configured limited || fail "limits as uid 65534"
    table=$(as_other "$MFB_BROKERCTL" usage) || fail "usage as uid 65534 failed: $table"
    [ "$(wc -l <<<"$table")" -eq 2 ] && [ "$(awk 'NR == 2 {print $2, $3, $4, $6}' <<<"$table")" = "65534 3/3 24KiB/16MiB 1/10" ] \
        || fail "usage as uid 65534 shows more than its own line: $table"
    as_other "$MFB_BROKERCTL" usage --json | python3 -c '
import json, sys
u = json.load(sys.stdin)
assert u["totals"] is None and [row["uid"] for row in u["users"]] == [65534], u
assert u["users"][0]["resources"]["regions"] == {"unit": "count", "uid_max": 3, "uid_used": 3, "uid_available": 0}, u
' || fail "usage --json as uid 65534 tells more than its own row"
    # What it may not see, its list leaves out, and its allocated bytes with it.
    [ "$(as_other "$MFB_BROKERCTL" list --json | python3 -c 'import json,sys; print(" ".join(e["name"] for e in json.load(sys.stdin)))')" \
        = "o1 o2 o3" ] || fail "uid 65534 lists regions it may not see"
    for r in o1 o2 o3; do ctl rm "$r"; done
    check_usage
else
    echo "SKIP: usage after a refusal, and as uid 65534: needs root, setpriv or runuser, and a build tree uid 65534 can reach"
fi

# Bash completion: commands, options, and region names from the broker on the line's --socket. The
# helpers of bash-completion it uses are stood in for, so that this runs without it too.
completion=${MFB_SRCDIR:-$(dirname "$0")/..}/tools/bash-completion/memfd-brokerctl
complete_line() {
    PATH="$(dirname "$MFB_BROKERCTL"):$PATH" bash -c '
_init_completion() { words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD; cur=${words[cword]}; prev=${words[cword - 1]}; }
_filedir() { COMPREPLY=(FILES); }
. "$1"; shift
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
_memfd_brokerctl
printf "%s\n" "${COMPREPLY[@]}" | sort | xargs' bash "$completion" "$@"
}
[ "$(complete_line memfd-brokerctl li)" = "limits list" ] || fail "completes 'li' as '$(complete_line memfd-brokerctl li)'"
[ "$(complete_line memfd-brokerctl us)" = "usage" ] || fail "does not complete usage"
[ "$(complete_line memfd-brokerctl list --h)" = "--human" ] || fail "does not complete list's --human"
[ "$(complete_line memfd-brokerctl usage --)" = "--json" ] || fail "completes usage's options wrongly"
ctl create completed 4K >/dev/null
[ "$(complete_line memfd-brokerctl --socket "$limited" stat com)" = "completed" ] \
    || fail "does not complete region names: '$(complete_line memfd-brokerctl --socket "$limited" stat com)'"
[ "$(complete_line memfd-brokerctl --socket "$limited" chmod 600 "")" = "completed mine" ] \
    || fail "does not complete chmod's NAME"
[ "$(complete_line memfd-brokerctl --socket "$limited" write completed "")" = "FILES" ] \
    || fail "does not complete write's FILE"
[ "$(complete_line memfd-brokerctl --socket "$dir/none.sock" cat "")" = "" ] || fail "completes names of no broker"
stop_broker
echo "memfd-brokerctl: all checks passed"
