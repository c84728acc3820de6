#!/usr/bin/env bash
# The broker's log lines carry sd-daemon(3) priority prefixes ("<6>") only
# when its stderr is the journal's stream, that is when $JOURNAL_STREAM holds
# the device and inode of that very stderr, as systemd sets it; in a terminal
# or a file they are plain text. The journal is simulated by a file whose
# device and inode go into $JOURNAL_STREAM.
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/lib.sh"

# The log file exists before each broker: run_broker truncates it, which
# keeps its device and inode.
: >"$dir/log"
stream=$(stat -c '%d:%i' "$dir/log")
dev=${stream%:*}
ino=${stream#*:}

# start_and_stop JOURNAL_STREAM...: a broker at info level with that
# environment (none without an argument), started and stopped, its stderr in
# $dir/log.
start_and_stop() {
    local env=(env -u JOURNAL_STREAM)
    [ $# -eq 0 ] || env=(env "JOURNAL_STREAM=$1")
    # shellcheck disable=SC2086 # the wrapper is a list of words
    run_broker "$dir/s" "${env[@]}" ${MFB_BROKER_WRAPPER:-} "$MFB_BROKERD" --socket "$dir/s" --log-level info
    stop_broker
}

# The broker's lines in $dir/log: not those of valgrind (MFB_BROKER_WRAPPER),
# which start with "==PID==".
broker_lines() { grep -Ev '^==[0-9]+==' "$dir/log" || true; }

# The lines of a start and a stop.
expect_lines() {
    grep -q "listening on $dir/s\$" "$dir/log" || fail "no start line: $(cat "$dir/log")"
    grep -q 'memfd-brokerd stopped$' "$dir/log" || fail "no stop line: $(cat "$dir/log")"
}

# stderr is the journal stream: every line has a prefix, a notice is <5>.
start_and_stop "$stream"
expect_lines
if broker_lines | grep -v '^<[0-7]>' | grep -q .; then
    fail "a line without a priority prefix while stderr is the journal stream: $(cat "$dir/log")"
fi
grep -q "^<5>memfd-brokerd .* listening on $dir/s\$" "$dir/log" || fail "the start line, a notice, is not at <5>: $(cat "$dir/log")"
grep -q "^<6>memfd-brokerd stopped\$" "$dir/log" || fail "the stop line, info, is not at <6>: $(cat "$dir/log")"

# An error is <3>: the broker refuses an unknown option and exits.
status=0
env "JOURNAL_STREAM=$stream" "$MFB_BROKERD" --no-such-option 2>"$dir/log" || status=$?
[ "$status" -ne 0 ] || fail "the broker accepted an unknown option"
grep -q '^<3>Unknown option --no-such-option' "$dir/log" || fail "the refusal is not at <3>: $(cat "$dir/log")"

# Not the journal: no JOURNAL_STREAM, or one naming another file (as a
# service's child that writes elsewhere inherits it), or one that does not
# parse. Each line is plain text.
for value in "" "$dev:$((ino + 1))" "$((dev + 1)):$ino" "$stream:0" "$stream " ":$ino" "$dev:" "-$dev:$ino" garbage; do
    if [ -z "$value" ]; then
        start_and_stop
    else
        start_and_stop "$value"
    fi
    expect_lines
    if broker_lines | grep -q '^<[0-7]>'; then
        fail "a priority prefix with JOURNAL_STREAM='$value', stderr $stream: $(cat "$dir/log")"
    fi
    grep -q "^memfd-brokerd .* listening on $dir/s\$" "$dir/log" || fail "the start line is not plain: $(cat "$dir/log")"
done

echo "log prefixes: all checks passed"
