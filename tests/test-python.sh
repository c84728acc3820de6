#!/bin/sh
# The pure-Python protocol client's tests (tests/python/), and the attack on
# the named-region budget under a stand-in service manager, under make check.
dir=$(dirname "$0")/python
status=0
python3 "$dir/test_protocol.py" -v || status=1
python3 "$dir/test_attack.py" -v || status=1
exit $status
