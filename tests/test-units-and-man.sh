#!/usr/bin/env bash
# The unit files pass systemd-analyze verify, and the man pages render
# without warnings.
set -euo pipefail
: "${MFB_BUILDDIR:?}" "${MFB_SRCDIR:?}"

dir=$(mktemp -d "${TMPDIR:-/tmp}/mfb-units.XXXXXX")
trap 'rm -rf "$dir"' EXIT

# verify wants ExecStart= to exist: point the units at the built daemon.
for unit in memfd-broker.socket memfd-broker.service; do
    sed "s|@bindir@|$MFB_BUILDDIR/daemon|g" "$MFB_SRCDIR/systemd/$unit.in" > "$dir/$unit"
    mkdir -p "$dir/user"
    sed "s|@bindir@|$MFB_BUILDDIR/daemon|g" "$MFB_SRCDIR/systemd/user/$unit.in" > "$dir/user/$unit"
done
# --man=no: the pages are not installed yet; they are checked below.
out=$(systemd-analyze verify --man=no "$dir/memfd-broker.socket" "$dir/memfd-broker.service" 2>&1)
[ -z "$out" ] || { echo "system units: $out" >&2; exit 1; }
out=$(XDG_RUNTIME_DIR=$dir systemd-analyze --user verify --man=no "$dir/user/memfd-broker.socket" "$dir/user/memfd-broker.service" 2>&1)
[ -z "$out" ] || { echo "user units: $out" >&2; exit 1; }

for page in "$MFB_SRCDIR"/man/*.[0-9]; do
    out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
    [ -z "$out" ] || { echo "$page: $out" >&2; exit 1; }
done
echo "units and man pages: all checks passed"
