#!/bin/sh
# The broker under a service manager (sd_notify, the fd store, restarts),
# with tests/python/fake_systemd.py playing systemd, under make check.
exec python3 "$(dirname "$0")/python/test_systemd.py" -v
