# shellcheck shell=bash
# Sourced by the test scripts that run brokers: strict mode, fail, a
# temporary folder $dir that goes away at exit together with a broker still
# running, and the start and stop of that broker.
set -euo pipefail
: "${MFB_BROKERD:?}" "${MFB_BROKERCTL:?}"

fail() { echo "FAIL: $*" >&2; exit 1; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/mfb-test.XXXXXX")
broker_pid=
cleanup() {
    if [ -n "$broker_pid" ]; then
        kill "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT

# run_broker SOCKET COMMAND...: runs COMMAND in the background as
# $broker_pid, its stderr in $dir/log, and returns once a client gets an
# answer on SOCKET. COMMAND is the broker, or something that runs it (a
# wrapper, the socket activator).
run_broker() {
    local socket=$1; shift
    "$@" 2>"$dir/log" &
    broker_pid=$!
    for _ in $(seq 1 2000); do
        "$MFB_BROKERCTL" --socket "$socket" list >/dev/null 2>&1 && return 0
        kill -0 "$broker_pid" 2>/dev/null || fail "broker exited at startup: $(cat "$dir/log")"
        sleep 0.01
    done
    fail "broker does not answer on $socket: $(cat "$dir/log")"
}

# stop_broker: SIGTERM, and fails unless the broker exits with status 0
# (under valgrind, a status of its own reports errors, in $dir/log).
stop_broker() {
    local status=0

    kill "$broker_pid" 2>/dev/null || fail "broker was no longer running: $(cat "$dir/log")"
    wait "$broker_pid" || status=$?
    broker_pid=
    [ "$status" -eq 0 ] || fail "broker exited with status $status: $(cat "$dir/log")"
}
