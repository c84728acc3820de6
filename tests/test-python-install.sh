#!/usr/bin/env bash
# make install puts the memfd_broker package where Python finds it: into a
# temporary DESTDIR, whose copy of the site directory (pythondir) then
# serves `import memfd_broker` alone, as the installed version. And
# python/pyproject.toml installs the same with pip, where pip is there.
set -euo pipefail
[ "${MFB_PYTHON:-:}" != : ] || { echo "SKIP: no Python 3.9 or later at configure time"; exit 77; }
: "${MFB_BUILDDIR:?}" "${MFB_SRCDIR:?}" "${MFB_PYTHONDIR:?}" "${MFB_VERSION:?}"

fail() { echo "FAIL: $*" >&2; exit 1; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/mfb-install.XXXXXX")
trap 'rm -rf "$dir"' EXIT

# Not the make running this test's jobs: a make of its own.
env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -s -C "$MFB_BUILDDIR" install DESTDIR="$dir/root" >"$dir/log" 2>&1 ||
    fail "make install: $(cat "$dir/log")"
site=$dir/root$MFB_PYTHONDIR
[ -f "$site/memfd_broker/__init__.py" ] || fail "no memfd_broker/__init__.py in $site"

# From anywhere but the sources, with nothing else on the path: the installed copy.
version=$(cd "$dir" && env -u PYTHONPATH PYTHONPATH="$site" PYTHONDONTWRITEBYTECODE=1 "$MFB_PYTHON" -c '
import memfd_broker, sys
assert memfd_broker.__file__.startswith(sys.argv[1]), memfd_broker.__file__
assert memfd_broker.SharedMemory and memfd_broker.Client
print(memfd_broker.__version__)' "$site") || fail "the installed package does not import"
[ "$version" = "$MFB_VERSION" ] || fail "memfd_broker.__version__ is $version, configure.ac says $MFB_VERSION"

# pip, offline, from a copy of python/ (it builds in the folder it is given).
# It needs pip, setuptools and a bdist_wheel (setuptools' own from 70.1 on, else the wheel package's); each
# is checked alone, since importing pip first trips up Debian's setuptools.
has() { "$MFB_PYTHON" -c "import importlib.util, sys; sys.exit(not importlib.util.find_spec('$1'))" 2>/dev/null; }
if has pip && has setuptools && { has wheel || has setuptools.command.bdist_wheel; }; then
    cp -R "$MFB_SRCDIR/python" "$dir/src"
    chmod -R u+w "$dir/src"
    (cd "$dir/src" && TMPDIR=$dir PIP_DISABLE_PIP_VERSION_CHECK=1 "$MFB_PYTHON" -m pip install --quiet --no-build-isolation \
        --no-index --no-deps --target "$dir/pip" . >"$dir/log" 2>&1) || fail "pip install: $(cat "$dir/log")"
    [ -f "$dir/pip/memfd_broker/_wire.py" ] || fail "pip installed no memfd_broker/_wire.py"
    (cd "$dir" && env PYTHONPATH="$dir/pip" PYTHONDONTWRITEBYTECODE=1 "$MFB_PYTHON" -c '
import memfd_broker, sys
assert memfd_broker.__file__.startswith(sys.argv[1]), memfd_broker.__file__' "$dir/pip") ||
        fail "the package pip installed does not import"
else
    echo "pip, setuptools or wheel missing for $MFB_PYTHON: pip install not tried"
fi
echo "memfd_broker $version installed into $MFB_PYTHONDIR"
