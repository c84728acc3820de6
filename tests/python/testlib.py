"""What the Python tests share: their deadline, running a function as another user, and a test case with a
broker service of its own under fake_systemd.FakeSystemd. Standard library only, besides fake_systemd.
"""

import glob
import json
import os
import shutil
import select
import signal
import sys
import tempfile
import time
import traceback
import unittest

import fake_systemd

# The memfd_broker package, from the source tree: python/ beside tests/, wherever the build is (make distcheck
# builds outside the sources). The package is sources only, so nothing of it is in the build tree.
PACKAGE_PARENT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                              "python")
if PACKAGE_PARENT not in sys.path:
    sys.path.insert(0, PACKAGE_PARENT)

# How long any wait of a test may take before the test fails.
TIMEOUT = 30


def needs_root(*uids):
    """Skips the test or class it decorates unless run as root, which it needs to switch to uids."""
    if len(uids) == 1:
        who = "uid %d" % uids[0]
    else:
        who = "uids " + " and ".join("%d" % uid for uid in uids)
    return unittest.skipUnless(os.geteuid() == 0, "needs root to switch to " + who)


def brokerctl_for_others(folder):
    """A memfd-brokerctl that uids other than the test's can run: in a build tree private to root (a checkout in a
    0700 folder) they cannot run the built one, so its program and library are copied into folder/bin (folder must
    be one those uids reach; the copy goes with it). libtool builds tools/memfd-brokerctl as a script that runs
    tools/.libs/memfd-brokerctl. The built one itself where there is no such program (an installed tree)."""
    top = os.path.dirname(os.path.dirname(os.path.abspath(os.environ["MFB_BROKERD"])))
    program = os.path.join(top, "tools", ".libs", "memfd-brokerctl")
    if not os.path.exists(program):
        return os.environ["MFB_BROKERCTL"]
    bindir = os.path.join(folder, "bin")
    os.makedirs(bindir, exist_ok=True)
    shutil.copy(program, os.path.join(bindir, "memfd-brokerctl.bin"))
    for lib in glob.glob(os.path.join(top, "client-lib", ".libs", "libmemfd-broker.so*")):
        shutil.copy(lib, bindir, follow_symlinks=False)
    wrapper = os.path.join(bindir, "memfd-brokerctl")
    with open(wrapper, "w") as f:
        f.write('#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' % (bindir, os.path.join(bindir, "memfd-brokerctl.bin")))
    for name in os.listdir(bindir):
        if not os.path.islink(os.path.join(bindir, name)):
            os.chmod(os.path.join(bindir, name), 0o755)
    os.chmod(bindir, 0o755)
    return wrapper


def as_user(uid, fn, *args):
    """Runs fn(*args) in a child of uid (its gid the same, no supplementary groups) and returns its result, which
    must be JSON. An exception in the child fails the test with the child's traceback; a child that does not
    finish within TIMEOUT seconds is killed and fails the test."""
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the child reports through the pipe and never returns
        status = 1
        try:
            os.close(r)
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            out = json.dumps({"result": fn(*args)})
            status = 0
        except BaseException:
            out = json.dumps({"error": traceback.format_exc()})
        try:
            data = out.encode()
            while data:
                data = data[os.write(w, data):]
        finally:
            os._exit(status)
    os.close(w)
    chunks, deadline = [], time.monotonic() + TIMEOUT
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError("uid %d's child did not finish within %d s" % (uid, TIMEOUT))
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        os.waitpid(pid, 0)  # it closed the pipe by exiting, or was killed
    report = json.loads(b"".join(chunks) or b"{}")
    if "result" not in report:
        raise AssertionError("as uid %d: %s" % (uid, report.get("error", "the child died")))
    return report["result"]


class FakeSystemdTest(unittest.TestCase):
    """A test with a broker service of its own: self.systemd plays systemd in the temporary folder self.dir,
    and the broker's log goes to stderr at the end."""

    prefix = "mfb-systemd."  # the temporary folder's name begins with it

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix=self.prefix)
        self.addCleanup(self.dir.cleanup)
        self.systemd = fake_systemd.FakeSystemd(self.dir.name)
        self.addCleanup(self._close_systemd)

    def _close_systemd(self):
        self.systemd.close()
        sys.stderr.write(self.systemd.log())
