#!/usr/bin/env bash
# The producer/consumer ring of docs/NOTIFICATIONS.md and README.md: the
# program runs against a broker of its own and its two consumers account for
# every frame, and the docs show the very code that ran. NOTIFICATIONS.md
# quotes tests/example-ring.c whole, after a line "<!-- tests/example-ring.c -->";
# README.md quotes parts of it, after "<!-- from tests/example-ring.c -->".
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/lib.sh"
: "${MFB_BUILDDIR:?}" "${MFB_SRCDIR:?}"
export MEMFD_BROKER_SOCKET="$dir/broker.sock"

# shellcheck disable=SC2086 # the wrapper is a list of words
run_broker "$MEMFD_BROKER_SOCKET" ${MFB_BROKER_WRAPPER:-} "$MFB_BROKERD" --log-level warning

status=0
timeout "$TIMEOUT" "$MFB_BUILDDIR/tests/example-ring" >"$dir/out" 2>"$dir/err" || status=$?
[ "$status" -eq 0 ] || fail "example-ring exited $status: $(cat "$dir/err")"
[ ! -s "$dir/err" ] || fail "example-ring complained: $(cat "$dir/err")"
# Each consumer read or missed every one of the 200 frames, and read some.
python3 - "$dir/out" <<'PY' || fail "example-ring printed: $(cat "$dir/out")"
import re, sys
lines = sorted(open(sys.argv[1]).read().splitlines())
assert len(lines) == 2, lines
for i, line in enumerate(lines, 1):
    m = re.fullmatch(r"consumer %d: (\d+) frames read, (\d+) missed" % i, line)
    assert m and int(m[1]) + int(m[2]) == 200 and int(m[1]) > 0, line
PY
# It removed its region: nothing left behind.
[ -z "$(brokerctl list --json | python3 -c 'import json,sys; print(" ".join(e["name"] for e in json.load(sys.stdin)))')" ] \
    || fail "example-ring left regions behind"
stop_broker

# The docs quote what ran.
python3 - "$MFB_SRCDIR" <<'PY'
import re, sys
src = sys.argv[1]
code = open(src + "/tests/example-ring.c").read()

def quoted(doc, marker):
    """The ```c blocks that follow a line that is marker, in doc."""
    text = open(src + "/" + doc).read()
    blocks = re.findall(r"^" + re.escape(marker) + r"\n```c\n(.*?)^```$", text, re.S | re.M)
    assert blocks, "%s quotes nothing after %s" % (doc, marker)
    return blocks

whole = quoted("docs/NOTIFICATIONS.md", "<!-- tests/example-ring.c -->")
assert whole == [code], "docs/NOTIFICATIONS.md does not quote tests/example-ring.c as it is"
for block in quoted("README.md", "<!-- from tests/example-ring.c -->"):
    # Whole lines of the file, in its order.
    assert ("\n" + code).find("\n" + block) >= 0, "README.md quotes lines that tests/example-ring.c lacks:\n" + block
PY
echo "example-ring: all checks passed"
