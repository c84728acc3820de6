"""What the Python tests share: their deadline, running a function as another user, and a test case with a
broker service of its own under fake_systemd.FakeSystemd. Standard library only, besides fake_systemd.
"""

import json
import os
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
