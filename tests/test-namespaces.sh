#!/usr/bin/env bash
# Clients in other namespaces, as in containers given the broker's socket by a
# bind mount (docs/containers.md). The broker knows a client only by what
# SO_PEERCRED and SO_PEERGROUPS tell it, translated into its own namespaces:
#  - a client in new pid and mount namespaces, through a bind mount of the
#    socket, shares regions both ways with one outside, and the broker sees
#    its pid as the broker's pid namespace numbers it, not as 1;
#  - root of a user namespace is, to the broker, the uid its namespace maps it
#    to, and gets what that uid may have, no more;
#  - to a broker in a user namespace of its own, a client whose uid has no
#    mapping there is the overflow uid, and gets what "others" may have; in a
#    pid namespace of its own, it sees the pids of clients outside as 0.
# Needs root, unshare (util-linux) and setpriv; the user namespace parts also
# need unprivileged user namespaces.
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root, to run clients as other uids and in new namespaces"; exit 77; }
for tool in unshare setpriv; do
    command -v "$tool" >/dev/null || { echo "SKIP: needs $tool (util-linux)"; exit 77; }
done
timeout -k 1 "$TIMEOUT" unshare --pid --mount --fork --kill-child true 2>/dev/null ||
    { echo "SKIP: unshare --pid --mount is not permitted here (in a container without CAP_SYS_ADMIN?)"; exit 77; }

# Two uids without other names or groups; the regions of one are not the other's.
uid_a=40001
uid_b=40002
overflow_uid=$(cat /proc/sys/kernel/overflowuid)
overflow_gid=$(cat /proc/sys/kernel/overflowgid)

# What lib.sh's cleanup does not know of: the unshare that holds a region in
# part 1, killed with its child (--kill-child), and the broker of part 3.
holder=
ns_broker=
trap '[ -z "$holder" ] || kill -KILL "$holder" 2>/dev/null; [ -z "$ns_broker" ] || kill "$ns_broker" 2>/dev/null; cleanup' EXIT

sock="$dir/broker.sock"
chmod 755 "$dir"    # so that uids other than root reach the socket

# The test's other uids run memfd-brokerctl, a copy of it if the build tree is private.
reachable_brokerctl "$uid_a"

ctl() { brokerctl --socket "$sock" "$@"; }
# as UID COMMAND...: COMMAND as uid and gid UID without other groups. unshare
# with --fork blocks SIGTERM while it waits, hence the SIGKILL after it.
as() {
    local uid=$1; shift
    timeout -k 1 "$TIMEOUT" setpriv --reuid="$uid" --regid="$uid" --clear-groups "$@"
}
# field SOCKET NAME FIELD: FIELD of the region's STAT, as root sees it.
field() {
    brokerctl --socket "$1" stat "$2" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['$3'])"
}
# refused WANT COMMAND...: COMMAND, a memfd-brokerctl, fails with status 1 and
# a message that mentions WANT.
refused() {
    local want=$1; shift
    local err status=0
    err=$("$@" 2>&1 >/dev/null) || status=$?
    [ "$status" -eq 1 ] || fail "'$*' exited $status, not 1: $err"
    grep -q -- "$want" <<<"$err" || fail "'$*' said '$err', expected it to mention '$want'"
}
# child_of PID: the pid of PID's only child.
child_of() {
    local p stat ppid
    for p in /proc/[0-9]*; do
        stat=$(cat "$p/stat" 2>/dev/null) || continue
        stat=${stat##*) }    # past the command name, which may hold spaces and parentheses
        read -r _ ppid _ <<<"$stat"
        [ "$ppid" = "$1" ] && { echo "${p#/proc/}"; return 0; }
    done
    return 1
}

# shellcheck disable=SC2086 # the wrapper is a list of words
run_broker "$sock" ${MFB_BROKER_WRAPPER:-} "$MFB_BROKERD" --socket "$sock" --log-level warning

# 1. New pid and mount namespaces, the socket bind-mounted to another path, as
# a container has it: `contained ARGS...` runs memfd-brokerctl ARGS there, as
# pid 1 of its pid namespace. Without mount(8), the socket's own path serves.
inner_sock=$sock
if command -v mount >/dev/null; then
    inner_sock="$dir/inner.sock"
    : >"$inner_sock"    # a bind mount needs something to cover
fi
contained() {
    # shellcheck disable=SC2016 # expanded by the inner shell
    timeout -k 1 "$TIMEOUT" unshare --pid --mount --fork --kill-child -- sh -c '
        [ "$1" = "$2" ] || mount --bind "$2" "$1" || exit 125
        shift 2
        exec "$@"' sh "$inner_sock" "$sock" "$MFB_BROKERCTL" --socket "$inner_sock" "$@"
}
head -c 4096 /dev/urandom >"$dir/in"
head -c 4096 /dev/urandom >"$dir/out"
contained create inward 4K >/dev/null || fail "create in new pid and mount namespaces failed"
contained write inward "$dir/in" || fail "write in new pid and mount namespaces failed"
ctl cat inward >"$dir/in-back"
cmp -s "$dir/in" "$dir/in-back" || fail "outside, cat of a region written inside gave other bytes"
ctl create outward 4K >/dev/null
ctl write outward "$dir/out"
contained cat outward >"$dir/out-back" || fail "cat in new pid and mount namespaces failed"
cmp -s "$dir/out" "$dir/out-back" || fail "inside, cat of a region written outside gave other bytes"
# The broker sees a pid of its own namespace: that of the holder outside, not 1.
mkfifo "$dir/hold"
unshare --pid --mount --fork --kill-child -- \
    "$MFB_BROKERCTL" --socket "$sock" create --count 1 4K --hold <"$dir/hold" >"$dir/held" &
holder=$!
exec 3>"$dir/hold"
deadline=$((SECONDS + TIMEOUT))
until [ -s "$dir/held" ]; do
    kill -0 "$holder" 2>/dev/null || fail "create --count 1 --hold in a new pid namespace exited"
    [ "$SECONDS" -lt "$deadline" ] || fail "create --count 1 --hold in a new pid namespace printed nothing"
    sleep 0.01
done
outer_pid=$(child_of "$holder") || fail "no child of unshare, pid $holder"
seen_pid=$(ctl stat --handle "$(cat "$dir/held")" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["creator_pid"])')
exec 3>&-
status=0; reap "$holder" || status=$?
holder=
[ "$status" -eq 0 ] || fail "create --count 1 --hold in a new pid namespace exited $status"
[ "$seen_pid" = "$outer_pid" ] || fail "the broker saw pid $seen_pid, not $outer_pid, for pid 1 of a new pid namespace"

# 2. Root of a user namespace that maps it to uid_a is uid_a to the broker.
# shellcheck disable=SC2317 # called below
userns_root() { as "$uid_a" unshare --user --map-root-user -- "$@"; }
if ! userns_root true 2>/dev/null; then
    echo "SKIP: a user namespace mapping root to uid $uid_a: unprivileged user namespaces are not permitted"
elif ! as "$uid_a" test -x "$MFB_BROKERCTL"; then
    echo "SKIP: a user namespace mapping root to uid $uid_a: uid $uid_a cannot reach the build tree"
else
    [ "$(userns_root id -u)" = 0 ] || fail "unshare --map-root-user did not make uid $uid_a root inside"
    mapped() { userns_root "$MFB_BROKERCTL" --socket "$sock" "$@"; }
    # What a client can ask to learn how the broker sees it.
    seen=$(mapped limits --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["uid"])')
    [ "$seen" = "$uid_a" ] || fail "limits tells root mapped to uid $uid_a that it is uid $seen"
    ctl create mine 4K --mode 0600 >/dev/null && ctl chown "$uid_a:$uid_a" mine
    ctl create theirs 4K --mode 0600 >/dev/null && ctl chown "$uid_b:$uid_b" theirs
    ctl create public 4K --mode 0644 >/dev/null && ctl chown "$uid_b:$uid_b" public
    ctl create team 4K --mode 0640 >/dev/null && ctl chown "$uid_b:$uid_a" team
    printf 'mapped' | mapped write mine || fail "root mapped to uid $uid_a cannot write its uid's region"
    [ "$(mapped cat mine | head -c 6)" = mapped ] || fail "root mapped to uid $uid_a cannot read its uid's region"
    mapped cat public >/dev/null || fail "root mapped to uid $uid_a cannot read a region of mode 0644"
    mapped cat team >/dev/null || fail "root mapped to uid $uid_a cannot read a region of its group, mode 0640"
    refused theirs mapped cat theirs
    refused public mapped write public "$dir/in"
    refused team mapped write team "$dir/in"
    refused mine mapped chown 0 mine        # root in its namespace, not to the broker
    mapped list | grep -q theirs && fail "root mapped to uid $uid_a is shown a region of mode 0600 of uid $uid_b"
    mapped create made-inside 4K >/dev/null
    for f in creator_uid uid gid; do
        [ "$(field "$sock" made-inside "$f")" = "$uid_a" ] ||
            fail "a region created by root mapped to uid $uid_a has $f $(field "$sock" made-inside "$f")"
    done
fi
stop_broker

# 3. A broker in user and pid namespaces of its own, as a container's own
# broker is, its root mapped to root outside and no other uid. unshare --fork
# stays as the broker's parent and blocks SIGTERM: the broker is stopped, and
# cleaned up, by its pid.
if ! timeout -k 1 "$TIMEOUT" unshare --user --map-root-user --pid --fork --kill-child true 2>/dev/null; then
    echo "SKIP: a broker in a user namespace: user namespaces are not permitted"
    exit 0
fi
# shellcheck disable=SC2086 # the wrapper is a list of words
run_broker "$sock" unshare --user --map-root-user --pid --fork --kill-child -- \
    ${MFB_BROKER_WRAPPER:-} "$MFB_BROKERD" --socket "$sock" --log-level warning
ns_broker=$(child_of "$broker_pid") || fail "no broker under unshare, pid $broker_pid"

# Root outside is mapped; its pid is not visible in the broker's pid namespace.
ctl create by-root 4K >/dev/null
[ "$(field "$sock" by-root creator_uid)" = 0 ] || fail "the broker in a user namespace does not see root as 0"
[ "$(field "$sock" by-root creator_pid)" = 0 ] || fail "the broker in a pid namespace sees pid $(field "$sock" by-root creator_pid) for a client outside, not 0"
if ! as "$uid_a" test -x "$MFB_BROKERCTL"; then
    echo "SKIP: unmapped uids: uid $uid_a cannot reach the build tree"
else
    # uid_a has no mapping in the broker's namespace: the overflow uid and gid, whatever the region says.
    as "$uid_a" "$MFB_BROKERCTL" --socket "$sock" create probe 4K --mode 0600 >/dev/null
    [ "$(field "$sock" probe creator_uid)" = "$overflow_uid" ] ||
        fail "uid $uid_a, unmapped, is uid $(field "$sock" probe creator_uid), not the overflow uid $overflow_uid"
    [ "$(field "$sock" probe creator_gid)" = "$overflow_gid" ] ||
        fail "gid $uid_a, unmapped, is gid $(field "$sock" probe creator_gid), not the overflow gid $overflow_gid"
    ctl create own 4K --mode 0600 >/dev/null && ctl chown "$uid_a:$uid_a" own
    ctl create group 4K --mode 0640 >/dev/null && ctl chown "$uid_b:$uid_a" group
    ctl create world 4K --mode 0604 >/dev/null && ctl chown "$uid_a:$uid_a" world
    unmapped() { local uid=$1; shift; as "$uid" "$MFB_BROKERCTL" --socket "$sock" "$@"; }
    seen=$(unmapped "$uid_a" limits --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["uid"])')
    [ "$seen" = "$overflow_uid" ] || fail "limits tells uid $uid_a, unmapped, that it is uid $seen"
    refused own unmapped "$uid_a" cat own          # owner bits: not for the overflow uid
    refused group unmapped "$uid_a" cat group      # group bits: not for the overflow gid
    unmapped "$uid_a" cat world >/dev/null || fail "uid $uid_a, unmapped, cannot read a region others may read"
    refused world unmapped "$uid_a" write world "$dir/in"
    # Every unmapped uid is the same one: what one creates, another owns.
    printf 'other' | unmapped "$uid_b" write probe || fail "uid $uid_b, unmapped, cannot write what unmapped uid $uid_a made"
    unmapped "$uid_b" rm probe || fail "uid $uid_b, unmapped, cannot remove what unmapped uid $uid_a made"
fi

kill "$ns_broker"
status=0; reap "$broker_pid" || status=$?
broker_pid=
ns_broker=
[ "$status" -eq 0 ] || fail "the broker in user and pid namespaces exited with status $status: $(cat "$dir/log")"
echo "namespaces: all checks passed"
