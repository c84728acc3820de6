#!/bin/sh
# The pure-Python protocol client's tests (tests/python/), under make check.
exec python3 "$(dirname "$0")/python/test_protocol.py" -v
