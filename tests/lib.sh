# shellcheck shell=bash
# Sourced by the test scripts that run brokers: strict mode, fail, a
# temporary folder $dir that goes away at exit together with a broker still
# running, and the start and stop of that broker. Nothing waits without a
# deadline: a broker that never answers fails the test, it does not hang it.
set -euo pipefail
: "${MFB_BROKERD:?}" "${MFB_BROKERCTL:?}"

# The seconds any one command or wait may take.
TIMEOUT=20

fail() { echo "FAIL: $*" >&2; exit 1; }

# brokerctl ARGS...: memfd-brokerctl, killed after $TIMEOUT s (status 124).
brokerctl() { timeout "$TIMEOUT" "$MFB_BROKERCTL" "$@"; }

# reap PID: waits up to $TIMEOUT s for PID, a child of this shell, to exit,
# and returns its exit status; kills it and returns 124 if it does not exit.
# Call it where a failure does not end the script (reap PID || status=$?).
reap() {
    local pid=$1 deadline=$((SECONDS + TIMEOUT))

    while kill -0 "$pid" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "process $pid did not exit within $TIMEOUT s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
            return 124
        fi
        sleep 0.01
    done
    wait "$pid"
}

dir=$(mktemp -d "${TMPDIR:-/tmp}/mfb-test.XXXXXX")
broker_pid=
cleanup() {
    if [ -n "$broker_pid" ]; then
        kill "$broker_pid" 2>/dev/null || true
        reap "$broker_pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT

# reachable_brokerctl UID: points $MFB_BROKERCTL at a memfd-brokerctl that
# UID can run. A build tree private to root (a checkout under a 0700 folder)
# keeps other uids from running it: they run a copy in $dir then, the
# program and its library, which go with $dir. libtool builds
# tools/memfd-brokerctl as a script that runs tools/.libs/memfd-brokerctl.
# Needs root and setpriv; $dir must be reachable by UID.
reachable_brokerctl() {
    local uid=$1 top
    setpriv --reuid="$uid" --regid="$uid" --clear-groups test -x "$MFB_BROKERCTL" && return 0
    top=$(cd "$(dirname "$MFB_BROKERD")/.." && pwd)
    [ -x "$top/tools/.libs/memfd-brokerctl" ] || return 0
    mkdir -p -m 755 "$dir/bin"
    cp "$top/tools/.libs/memfd-brokerctl" "$dir/bin/memfd-brokerctl.bin"
    cp -P "$top"/client-lib/.libs/libmemfd-broker.so* "$dir/bin/"
    printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$dir/bin" "$dir/bin/memfd-brokerctl.bin" \
        >"$dir/bin/memfd-brokerctl"
    chmod -R a+rX "$dir/bin"
    chmod 755 "$dir/bin/memfd-brokerctl"
    MFB_BROKERCTL=$dir/bin/memfd-brokerctl
}

# run_broker SOCKET COMMAND...: runs COMMAND in the background as
# $broker_pid, its stderr in $dir/log, and returns once a client gets an
# answer on SOCKET. COMMAND is the broker, or something that runs it (a
# wrapper, the socket activator).
run_broker() {
    local socket=$1 deadline=$((SECONDS + TIMEOUT)); shift
    "$@" 2>"$dir/log" &
    broker_pid=$!
    until brokerctl --socket "$socket" list >/dev/null 2>&1; do
        kill -0 "$broker_pid" 2>/dev/null || fail "broker exited at startup: $(cat "$dir/log")"
        [ "$SECONDS" -lt "$deadline" ] || fail "broker does not answer on $socket: $(cat "$dir/log")"
        sleep 0.01
    done
}

# stop_broker: SIGTERM, and fails unless the broker exits with status 0
# within $TIMEOUT s (under valgrind, a status of its own reports errors, in
# $dir/log).
stop_broker() {
    local status=0

    kill "$broker_pid" 2>/dev/null || fail "broker was no longer running: $(cat "$dir/log")"
    reap "$broker_pid" || status=$?
    broker_pid=
    [ "$status" -eq 0 ] || fail "broker exited with status $status: $(cat "$dir/log")"
}
