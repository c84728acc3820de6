#!/bin/sh
# check-include-graph.sh on small made-up trees, so that it is known to
# fail where it must before it guards the real one: a clean tree passes
# (with includes that resolve only the way the build resolves them), a tree
# with cycles fails and names them, a tree with includes against the layers
# fails and names each.
set -eu

graph=$(dirname "$0")/check-include-graph.sh
dir=$(mktemp -d "${TMPDIR:-/tmp}/mfb-graph.XXXXXX")
trap 'rm -rf "$dir"' EXIT
trap 'exit 1' HUP INT TERM

fail() { echo "FAIL: $*" >&2; exit 1; }

# put TREE PATH LINE...: writes PATH of TREE, one LINE a line.
put() {
    path=$dir/$1/$2
    shift 2
    mkdir -p "$(dirname "$path")"
    printf '%s\n' "$@" >"$path"
}

# add TREE PATH LINE...: appends to PATH of TREE.
add() {
    path=$dir/$1/$2
    shift 2
    printf '%s\n' "$@" >>"$path"
}

# check TREE: $status and $out of check-include-graph.sh on TREE.
check() {
    status=0
    out=$("$graph" --root "$dir/$1" 2>&1) || status=$?
    printf '== %s (exit status %s)\n%s\n' "$1" "$status" "$out"
}

# expect LINE...: each LINE is a whole line of $out.
expect() {
    for line in "$@"; do
        printf '%s\n' "$out" | grep -qxF -- "$line" || fail "no line '$line' in the output above"
    done
}

# The clean tree. "region.h" is both daemon/region.h and client-lib/region.h:
# the daemon gets its own (same folder first), tools get the library's
# (-I client-lib); "config.h" is the generated one of autoconf everywhere.
put clean configure.ac 'AC_CONFIG_HEADERS([config.h])'
put clean Makefile.am \
    '# config.h first everywhere.' \
    'AM_CPPFLAGS = -include $(top_builddir)/config.h -I$(top_srcdir)/proto \' \
    '	-I$(top_srcdir)/client-lib' \
    'include daemon/include.am' \
    'include tools/include.am'
put clean proto/wire.h '#include <stdint.h>'
put clean proto/codec.h '#include "wire.h"'
put clean proto/codec.c '#include "config.h"' '#include "codec.h"'
put clean daemon/include.am \
    'noinst_LTLIBRARIES += daemon/libd.la' \
    'daemon_libd_la_SOURCES = daemon/a.c daemon/a.h daemon/b.c daemon/b.h \' \
    '	daemon/region.c daemon/region.h'
put clean daemon/a.h '#include "wire.h"'
put clean daemon/a.c '#include "a.h"' '#include "b.h"' '#include "region.h"'
put clean daemon/b.h '#include <stddef.h>'
put clean daemon/b.c '#include "b.h"' '#include "codec.h"'
put clean daemon/region.h '#include "wire.h"'
put clean daemon/region.c '#include "region.h"'
put clean client-lib/api.h '#include <stddef.h>'
put clean client-lib/region.h '#include "api.h"'
put clean client-lib/region.c '#include "region.h"' '#include "codec.h"'
put clean tools/include.am \
    'bin_PROGRAMS += tools/tool' \
    'tools_tool_SOURCES = tools/tool.c'
put clean tools/tool.c '#include <config.h>' '#include <stdio.h>' '#include "region.h"' '#include "wire.h"'

check clean
[ "$status" -eq 0 ] || fail "a clean tree: exit status $status"
expect \
    '  daemon/a: daemon/b daemon/region proto/wire' \
    '  daemon/b: proto/codec' \
    '  tools/tool: client-lib/region proto/wire' \
    'The config header of autoconf, included by: proto/codec.c tools/tool.c' \
    '13 files, 8 modules, 10 includes between modules; 0 cycle(s), 0 include(s) against the layers'

# Cycles: between a .c and the header of another module and back, and
# between two header-only modules.
cp -R "$dir/clean" "$dir/cycles"
add cycles daemon/b.h '#include "a.h"'
put cycles proto/x.h '#include "y.h"'
put cycles proto/y.h '#include "x.h"'

check cycles
[ "$status" -eq 1 ] || fail "a tree with cycles: exit status $status"
expect \
    'FAIL: 2 cycle(s) among modules:' \
    '  daemon: a -> b -> a' \
    '      daemon/a.c:2: #include "b.h" -> daemon/b.h' \
    '      daemon/b.h:2: #include "a.h" -> daemon/a.h' \
    '  proto: x -> y -> x' \
    '15 files, 10 modules, 13 includes between modules; 2 cycle(s), 0 include(s) against the layers'

# Against the layers: proto including the library, a tool including the
# daemon by its path from the top, and by a folder its target adds with -I.
cp -R "$dir/clean" "$dir/layers"
add layers proto/codec.c '#include "api.h"'
add layers tools/tool.c '#include "daemon/a.h"' '#include "b.h"'
add layers tools/include.am 'tools_tool_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/daemon'

check layers
[ "$status" -eq 1 ] || fail "a tree with includes against the layers: exit status $status"
expect \
    'FAIL: 3 include(s) against the layers daemon -> proto <- client-lib <- tools:' \
    '  proto/codec.c:3: #include "api.h" -> client-lib/api.h (proto may include only proto)' \
    '  tools/tool.c:5: #include "daemon/a.h" -> daemon/a.h (tools may include only tools, client-lib, proto)' \
    '  tools/tool.c:6: #include "b.h" -> daemon/b.h (tools may include only tools, client-lib, proto)' \
    '13 files, 8 modules, 13 includes between modules; 0 cycle(s), 3 include(s) against the layers'

# Without its -I, the tool's "b.h" is no file of the tree: not an include
# of the daemon.
cp -R "$dir/clean" "$dir/no-flag"
add no-flag tools/tool.c '#include "b.h"'
check no-flag
[ "$status" -eq 0 ] || fail "an include found nowhere in the tree: exit status $status"

# No tree: the check cannot run, which is not a pass.
check nothing-here
[ "$status" -eq 2 ] || fail "no tree: exit status $status"
