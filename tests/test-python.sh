#!/bin/sh
# The Python package memfd_broker (python/) and the pure-Python protocol
# client under it, its wire module, which the tests of tests/python/ use;
# and the attack on the named-region budget under a stand-in service
# manager, under make check.
dir=$(dirname "$0")/python
# The package from the source tree, beside tests/ (make distcheck builds
# elsewhere), for the tests and the programs they start; no bytecode written
# into the sources.
PYTHONPATH=$(cd "$(dirname "$0")/../python" && pwd)${PYTHONPATH:+:$PYTHONPATH}
PYTHONDONTWRITEBYTECODE=1
export PYTHONPATH PYTHONDONTWRITEBYTECODE
# The interpreter configure found (what the package is installed for), else python3.
python=${MFB_PYTHON:-python3}
[ "$python" = : ] && python=python3
status=0
"$python" "$dir/test_protocol.py" -v || status=1
"$python" "$dir/test_attack.py" -v || status=1
"$python" "$dir/test_package.py" -v || status=1
exit $status
