#!/usr/bin/env bash
# The dependency step of ./quickstart (./quickstart deps) waits for another
# apt or dpkg, as unattended-upgrades often is on a fresh machine, instead of
# failing at once: while a process holds dpkg's frontend lock, the step says
# that it waits, and succeeds once the lock is released.
#
# It takes the real lock of this machine, so it runs only where that is
# harmless: as root, on a Debian-like system where every package quickstart
# wants is installed (the step's apt-get install is then a no-op), and the
# lock is held for a few seconds by a process that lets go by itself, which
# the exit trap also kills.
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/lib.sh"

quickstart=$MFB_SRCDIR/quickstart
lock=/var/lib/dpkg/lock-frontend
# How long the lock is held after the step started.
hold=3

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "not root"
{ command -v apt-get && command -v dpkg-query; } >/dev/null || skip "no apt-get or dpkg-query"
[ -e "$lock" ] || skip "no $lock"
command -v python3 >/dev/null || skip "no python3"
timeout "$TIMEOUT" "$quickstart" deps --check 2>/dev/null || skip "not every package quickstart installs is installed"

holder_pid=
stop_holder() {
    if [ -n "$holder_pid" ]; then
        kill "$holder_pid" 2>/dev/null || true
        reap "$holder_pid" 2>/dev/null || true
        holder_pid=
    fi
}
trap 'stop_holder; cleanup' EXIT

# The holder locks the whole file with fcntl(F_SETLK), as dpkg and apt do
# (flock(2) locks would not conflict with theirs), says so by creating
# $dir/locked, waits for $dir/started, holds the lock $hold s more, creates
# $dir/released and exits, which releases the lock. It gives up, exiting, if
# the start does not come within $TIMEOUT s. Exit status 3: the lock was held
# by someone else.
python3 - "$lock" "$dir" "$hold" "$TIMEOUT" <<'EOF' &
import errno, fcntl, os, sys, time
lock, d, hold, limit = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
fd = os.open(lock, os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError as e:
    if e.errno in (errno.EACCES, errno.EAGAIN):
        sys.exit(3)
    raise
open(os.path.join(d, "locked"), "w").close()
deadline = time.monotonic() + limit
while not os.path.exists(os.path.join(d, "started")):
    if time.monotonic() > deadline:
        sys.exit(1)
    time.sleep(0.01)
time.sleep(hold)
open(os.path.join(d, "released"), "w").close()
os.close(fd)
EOF
holder_pid=$!

deadline=$((SECONDS + TIMEOUT))
until [ -e "$dir/locked" ]; do
    if ! kill -0 "$holder_pid" 2>/dev/null; then
        status=0
        reap "$holder_pid" || status=$?
        holder_pid=
        [ "$status" -ne 3 ] || skip "another apt or dpkg holds $lock"
        fail "the lock holder exited with status $status"
    fi
    [ "$SECONDS" -lt "$deadline" ] || fail "the lock holder did not take $lock"
    sleep 0.01
done

touch "$dir/started"
status=0
timeout $((TIMEOUT + hold)) "$quickstart" deps >"$dir/out" 2>&1 || status=$?
# Checked at once: a step that had not waited would be done long before the
# holder lets go.
[ -e "$dir/released" ] || fail "the step finished while $lock was still held (status $status): $(cat "$dir/out")"
[ "$status" -eq 0 ] || fail "the step failed (status $status) instead of waiting for $lock: $(cat "$dir/out")"
grep -q "$lock is held by process $holder_pid (python3).*waiting up to [0-9]* s" "$dir/out" ||
    fail "the step did not say that it waits for $lock, held by $holder_pid: $(cat "$dir/out")"
stop_holder

echo "quickstart deps: all checks passed"
