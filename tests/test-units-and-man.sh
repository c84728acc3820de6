#!/usr/bin/env bash
# The unit files pass systemd-analyze verify, the sysusers.d file creates
# the user the system service runs as, and the man pages render without
# warnings.
set -euo pipefail
: "${MFB_BUILDDIR:?}" "${MFB_SRCDIR:?}"

# The seconds any one tool may take: a hang fails the test.
TIMEOUT=60

dir=$(mktemp -d "${TMPDIR:-/tmp}/mfb-units.XXXXXX")
trap 'rm -rf "$dir"' EXIT

# verify wants ExecStart= to exist: point the units at the built daemon.
for unit in memfd-broker.socket memfd-broker.service; do
    sed "s|@bindir@|$MFB_BUILDDIR/daemon|g" "$MFB_SRCDIR/systemd/$unit.in" > "$dir/$unit"
    mkdir -p "$dir/user"
    sed "s|@bindir@|$MFB_BUILDDIR/daemon|g" "$MFB_SRCDIR/systemd/user/$unit.in" > "$dir/user/$unit"
done
# --man=no: the pages are not installed yet; they are checked below.
out=$(timeout "$TIMEOUT" systemd-analyze verify --man=no "$dir/memfd-broker.socket" "$dir/memfd-broker.service" 2>&1)
[ -z "$out" ] || { echo "system units: $out" >&2; exit 1; }
out=$(XDG_RUNTIME_DIR=$dir timeout "$TIMEOUT" systemd-analyze --user verify --man=no "$dir/user/memfd-broker.socket" "$dir/user/memfd-broker.service" 2>&1)
[ -z "$out" ] || { echo "user units: $out" >&2; exit 1; }

# systemd-sysusers, in a root of its own, makes a system user with no login
# under the name the service's User= asks for.
mkdir -p "$dir/root/etc" "$dir/root/usr/lib/sysusers.d"
cp "$MFB_SRCDIR/systemd/sysusers.d/memfd-broker.conf" "$dir/root/usr/lib/sysusers.d/"
timeout "$TIMEOUT" systemd-sysusers --root="$dir/root" >/dev/null
user=$(sed -n 's/^User=//p' "$dir/memfd-broker.service")
entry=$(grep "^$user:" "$dir/root/etc/passwd") || { echo "sysusers made no user '$user'" >&2; exit 1; }
IFS=: read -r _ _ uid _ _ _ shell <<<"$entry"
[ "$uid" -gt 0 ] && [ "$uid" -lt 1000 ] || { echo "'$user' is not a system user: $entry" >&2; exit 1; }
[[ $shell == */nologin ]] || { echo "'$user' can log in: $entry" >&2; exit 1; }

for page in "$MFB_SRCDIR"/man/*.[0-9]; do
    out=$(LC_ALL=C.UTF-8 MANWIDTH=80 timeout "$TIMEOUT" man --warnings -l "$page" 2>&1 >/dev/null)
    [ -z "$out" ] || { echo "$page: $out" >&2; exit 1; }
done
echo "units and man pages: all checks passed"
