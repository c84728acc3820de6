"""The Python protocol client against a real broker, and sharing with C.

Runs under `make check` (tests/test-python.sh) with MFB_BROKERD and
MFB_BROKERCTL naming the built programs. Each test gets a broker of its own
on a socket in a temporary folder.
"""

import errno
import os
import shlex
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mfb  # noqa: E402

TIMEOUT = 20


class BrokerTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="mfb-py.")
        self.path = os.path.join(self.dir.name, "broker.sock")
        wrapper = shlex.split(os.environ.get("MFB_BROKER_WRAPPER", ""))
        self.broker = subprocess.Popen(
            wrapper + [os.environ["MFB_BROKERD"], "--socket", self.path, "--log-level", "warning"])
        deadline = time.monotonic() + TIMEOUT
        while True:  # until it accepts connections
            try:
                mfb.Client(self.path).close()
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.assertIsNone(self.broker.poll(), "broker exited at startup")
                self.assertLess(time.monotonic(), deadline, "broker did not start")
                time.sleep(0.005)
        self.client = mfb.Client(self.path)

    def tearDown(self):
        self.client.close()
        self.broker.terminate()
        self.assertEqual(self.broker.wait(TIMEOUT), 0)
        self.assertFalse(os.path.exists(self.path))
        self.dir.cleanup()

    def ctl(self, *args, data=None):
        return subprocess.run([os.environ["MFB_BROKERCTL"], "--socket", self.path, *args],
                              input=data, capture_output=True, check=True, timeout=TIMEOUT).stdout

    def test_create_open_seal_stat(self):
        with self.client.create(8192, name="py") as r:
            m = r.map()
            m[:5] = b"hello"
            info = self.client.stat(name="py")
            self.assertEqual((info["name"], info["size"], info["nattch"]), ("py", 8192, 1))
            self.assertEqual(info["mode"], 0o600)
            self.assertEqual(info["creator_pid"], os.getpid())
            with mfb.Client(self.path) as other, other.open(name="py") as ro:
                self.assertEqual(ro.map()[:5], b"hello")
                self.assertEqual(other.stat(handle=r.handle)["nattch"], 2)
            m.close()
            info = self.client.seal(r.handle)
            self.assertTrue(info["seals"] & mfb.F_SEAL_WRITE)
            with self.assertRaises(mfb.BrokerError) as e:
                self.client.open(name="py", write=True)
            self.assertEqual(e.exception.errno, errno.EPERM)
        self.client.remove(name="py")
        self.assertEqual(self.client.list(), [])

    def test_errors_carry_errno_and_message(self):
        with self.assertRaises(mfb.BrokerError) as e:
            self.client.stat(name="missing")
        self.assertEqual(e.exception.errno, errno.ENOENT)
        with self.assertRaises(mfb.BrokerError) as e:
            self.client.create(0)
        self.assertEqual(e.exception.errno, errno.EINVAL)
        self.assertTrue(e.exception.strerror)

    def test_list_pages(self):
        regions = [self.client.create(4096) for _ in range(200)]
        self.assertEqual([e["handle"] for e in self.client.list()], [r.handle for r in regions])
        for r in regions:
            r.close()

    def test_c_writes_python_reads(self):
        payload = os.urandom(100000)
        self.ctl("create", "from-c", "128K")
        self.ctl("write", "from-c", data=payload)
        self.ctl("seal", "from-c")
        with self.client.open(name="from-c") as r:
            self.assertTrue(r.seals() & mfb.F_SEAL_WRITE)
            self.assertEqual(r.map()[:len(payload)], payload)

    def test_python_writes_c_reads(self):
        payload = os.urandom(50000)
        with self.client.create(len(payload), name="from-py") as r:
            m = r.map()
            m[:] = payload
            m.close()
            self.client.seal(r.handle)
        self.assertEqual(self.ctl("cat", "from-py"), payload)


if __name__ == "__main__":
    unittest.main()
