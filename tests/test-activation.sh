#!/usr/bin/env bash
# Socket activation: the broker serves on the listening socket that
# systemd-socket-activate passes (as systemd does), instead of binding its own.
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/lib.sh"

# The activator listens at once and starts the broker (in its own process) on
# the first connection, which then waits in the backlog until it is accepted.
# shellcheck disable=SC2086 # the wrapper is a list of words
run_broker "$dir/s" systemd-socket-activate --seqpacket -l "$dir/s" ${MFB_BROKER_WRAPPER:-} "$MFB_BROKERD" \
    --log-level notice
ctl() { brokerctl --socket "$dir/s" "$@"; }

ctl create activated 4K >/dev/null || fail "create through the activated socket"
printf 'via activation' | ctl write activated
[ "$(ctl cat activated | head -c 14)" = "via activation" ] || fail "cat through the activated socket"
grep -q 'passed by the service manager' "$dir/log" || fail "the broker did not use the passed socket: $(cat "$dir/log")"

stop_broker

# A passed socket of the wrong type (a stream socket here) is refused with a
# clear error, and the broker does not start. A stream connection makes the
# activator start it.
systemd-socket-activate -l "$dir/stream" "$MFB_BROKERD" --log-level notice 2>"$dir/log" &
broker_pid=$!
for _ in $(seq 1 2000); do [ -S "$dir/stream" ] && break; sleep 0.01; done
[ -S "$dir/stream" ] || fail "systemd-socket-activate did not create its stream socket"
timeout "$TIMEOUT" python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect(sys.argv[1])' "$dir/stream"
status=0
reap "$broker_pid" || status=$?
broker_pid=
[ "$status" -ne 124 ] || fail "the broker neither served nor refused the stream socket"
[ "$status" -ne 0 ] || fail "the broker accepted a stream socket"
grep -q 'not a listening AF_UNIX SOCK_SEQPACKET socket' "$dir/log" || fail "no clear error for a stream socket: $(cat "$dir/log")"

echo "socket activation: all checks passed"
