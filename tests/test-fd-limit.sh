#!/usr/bin/env bash
# Running out of file descriptors: a broker whose limit on open files is
# below what --max-regions needs says so at start, refuses the CREATE that
# would take the last descriptor of the users' budget with ENOSPC and a
# clear message, and goes on serving; freeing a region makes room again.
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/lib.sh"

# Few enough that the loop below is quick, enough for the broker's own fds.
fd_limit=128

ctl() { brokerctl --socket "$dir/s" "$@"; }

# Starts the broker with a hard limit on open files of $fd_limit and a soft
# one of half that, which the broker raises. No wrapper: valgrind needs
# descriptors of its own.
start_broker() {
    run_broker "$dir/s" prlimit --nofile=$((fd_limit / 2)):"$fd_limit" -- \
        "$MFB_BROKERD" --socket "$dir/s" --log-level notice "$@"
}

# A region limit the descriptors cannot reach: a notice at start, of the
# raised limit.
start_broker --max-regions 1000
grep -q "limit on open files, $fd_limit, is below" "$dir/log" || fail "no notice of the short limit: $(cat "$dir/log")"

created=0
err=
for i in $(seq 1 "$fd_limit"); do
    if ! err=$(ctl create "r$i" 4K 2>&1 >/dev/null); then
        break
    fi
    created=$i
done
[ "$created" -gt 0 ] || fail "no region could be created: $err"
[ "$created" -lt "$fd_limit" ] || fail "$fd_limit regions fit in $fd_limit descriptors"
grep -q "limit of [0-9]* file descriptors is reached" <<<"$err" || fail "the failed create said '$err'"

# Still serving: every region is listed, and freeing one makes room for another.
[ "$(ctl list --json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')" -eq "$created" ] \
    || fail "list does not show the $created regions"
ctl rm r1
ctl create again 4K >/dev/null || fail "create after rm still fails"
stop_broker

# A region limit that fits: no notice.
start_broker --max-regions 32
! grep -q "limit on open files" "$dir/log" || fail "a notice although the limit suffices: $(cat "$dir/log")"
stop_broker

echo "fd limit: all checks passed"
