"""The memfd_broker package (python/) against a real broker: the drop-in SharedMemory with programs written for
multiprocessing.shared_memory and with the C client, the lifetime of blocks (transient ones under SIGKILL,
attachers that exit), numpy arrays on .buf without copies, and the Client API with its errors.

Runs under `make check` (tests/test-python.sh) with MFB_BROKERD and MFB_BROKERCTL naming the built programs.
Each test gets a broker of its own on a socket in a temporary folder, named by MEMFD_BROKER_SOCKET as a user
would, so that the package finds it by default.
"""

import errno
import inspect
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import PACKAGE_PARENT, TIMEOUT  # noqa: E402

import memfd_broker  # noqa: E402
from memfd_broker import _shared_memory, _wire  # noqa: E402

try:
    import numpy
except ImportError:
    numpy = None

# A program written for the standard library's shared memory: it makes a block, fills it and keeps it until
# told to go (produce), or attaches to one, prints it and answers in it (consume). Only its first line
# changes to run it on the broker.
STDLIB_PROGRAM = textwrap.dedent("""\
    from multiprocessing.shared_memory import SharedMemory
    import sys

    role, name = sys.argv[1], sys.argv[2]
    if role == "produce":
        payload = sys.stdin.buffer.readline().rstrip(b"\\n")
        shm = SharedMemory(name=name, create=True, size=len(payload) + 100)
        shm.buf[:len(payload)] = payload
        print(shm.name, shm.size, flush=True)
        sys.stdin.readline()  # until told to go
        shm.close()
        shm.unlink()
    else:
        shm = SharedMemory(name)
        data = bytes(shm.buf)
        sys.stdout.buffer.write(data.rstrip(b"\\0"))
        shm.buf[:len(data)] = data[::-1]  # the answer, in place
        print(flush=True)
        shm.close()
    """)
BROKER_PROGRAM = STDLIB_PROGRAM.replace("from multiprocessing.shared_memory import SharedMemory",
                                        "from memfd_broker import SharedMemory", 1)

# Holds a block until killed: creates a transient one (hold create NAME SIZE) or attaches (hold attach NAME),
# prints its pid, and waits for stdin to close.
HOLDER_PROGRAM = textwrap.dedent("""\
    import os, sys
    from memfd_broker import SharedMemory
    if sys.argv[1] == "create":
        shm = SharedMemory(sys.argv[2], create=True, size=int(sys.argv[3]), transient=True)
    else:
        shm = SharedMemory(sys.argv[2])
    shm.buf[0] = 1
    print(os.getpid(), flush=True)
    sys.stdin.read()
    """)


def wait_until(condition, what):
    """Polls condition() until it holds; fails after TIMEOUT seconds."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting until " + what)
        time.sleep(0.001)


def dev_shm():
    """The names in /dev/shm, where shm_open() puts its files."""
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


class PackageTest(unittest.TestCase):
    """A test with a broker of its own, which the package reaches through MEMFD_BROKER_SOCKET; self.client is a
    Client of it."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="mfb-pkg.")
        self.addCleanup(self.dir.cleanup)
        self.path = os.path.join(self.dir.name, "broker.sock")
        wrapper = shlex.split(os.environ.get("MFB_BROKER_WRAPPER", ""))
        self.broker = subprocess.Popen(
            wrapper + [os.environ["MFB_BROKERD"], "--socket", self.path, "--log-level", "warning"])
        self.addCleanup(self._stop_broker)
        saved = os.environ.get("MEMFD_BROKER_SOCKET")
        os.environ["MEMFD_BROKER_SOCKET"] = self.path
        self.addCleanup(self._restore_socket, saved)
        self.addCleanup(self._forget_default_client)
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                self.client = memfd_broker.Client(timeout=TIMEOUT)
                break
            except memfd_broker.BrokerUnavailableError:
                self.assertIsNone(self.broker.poll(), "broker exited at startup")
                self.assertLess(time.monotonic(), deadline, "broker did not start")
                time.sleep(0.005)
        self.addCleanup(self.client.close)
        self.env = dict(os.environ, PYTHONPATH=PACKAGE_PARENT, PYTHONDONTWRITEBYTECODE="1")

    def _stop_broker(self):
        if self.broker.poll() is None:
            self.broker.terminate()
            self.assertEqual(self.broker.wait(TIMEOUT), 0)

    @staticmethod
    def _restore_socket(saved):
        if saved is None:
            os.environ.pop("MEMFD_BROKER_SOCKET", None)
        else:
            os.environ["MEMFD_BROKER_SOCKET"] = saved

    @staticmethod
    def _forget_default_client():
        """SharedMemory's connection is per process; each test's broker is another, so the next test makes its own."""
        if _shared_memory._default is not None:
            _shared_memory._default[1].close()
            _shared_memory._default = None

    def ctl(self, *args, data=None):
        """memfd-brokerctl, the C client, on this test's broker: its output."""
        return subprocess.run([os.environ["MFB_BROKERCTL"], "--socket", self.path, *args], input=data,
                              capture_output=True, check=True, timeout=TIMEOUT).stdout

    def python(self, program, *args, **kwargs):
        """A Python child running program with args, which finds the package and this broker."""
        return subprocess.Popen([sys.executable, "-c", program, *args], env=self.env, **kwargs)

    def regions_used(self):
        """Regions the broker holds, for everyone."""
        return self.client.limits()["resources"]["regions"]["broker_used"]


class DropInTest(PackageTest):
    """A program for multiprocessing.shared_memory runs on the broker by its import alone."""

    def test_only_the_import_differs(self):
        differ = [(a, b) for a, b in zip(STDLIB_PROGRAM.splitlines(), BROKER_PROGRAM.splitlines()) if a != b]
        self.assertEqual(differ, [("from multiprocessing.shared_memory import SharedMemory",
                                   "from memfd_broker import SharedMemory")])

    def test_python_to_c(self):
        """The program makes and fills a block; memfd-brokerctl, the C client, reads it."""
        payload = b"from Python to C " * 10
        before = dev_shm()
        producer = self.python(BROKER_PROGRAM, "produce", "py2c", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.addCleanup(producer.kill)
        producer.stdin.write(payload + b"\n")
        producer.stdin.flush()
        name, size = producer.stdout.readline().split()
        self.assertEqual((name, int(size)), (b"py2c", len(payload) + 100))  # exactly the size asked for
        self.assertEqual(self.ctl("cat", "py2c"), payload + bytes(100))
        self.assertEqual(dev_shm(), before, "the block has a file in /dev/shm")
        producer.stdin.close()  # told to go: it closes and unlinks
        self.assertEqual(producer.wait(TIMEOUT), 0)
        producer.stdout.close()
        with self.assertRaises(FileNotFoundError):
            self.client.stat("py2c")

    def test_c_to_python(self):
        """memfd-brokerctl makes and fills a block; the program attaches, reads it and answers in it, and its
        exit leaves the block as it was: only an unlink() removes it."""
        payload = b"from C to Python"
        self.ctl("create", "c2py", "64")
        self.ctl("write", "c2py", data=payload)
        consumer = self.python(BROKER_PROGRAM, "consume", "c2py", stdout=subprocess.PIPE)
        out, _ = consumer.communicate(timeout=TIMEOUT)
        self.assertEqual(consumer.returncode, 0)
        self.assertEqual(out, payload + b"\n")
        # The answer, written through the program's mapping, is what C reads now.
        self.assertEqual(self.ctl("cat", "c2py"), (payload + bytes(64 - len(payload)))[::-1])
        self.assertEqual(self.client.stat("c2py").nattch, 0)  # alive with no holder: nobody removed it
        self.ctl("rm", "c2py")

    def test_arguments_as_the_standard_library(self):
        with self.assertRaises(ValueError):
            memfd_broker.SharedMemory()  # no name and not create
        with self.assertRaises(ValueError):
            memfd_broker.SharedMemory("x", create=True, size=0)
        with self.assertRaises(ValueError):
            memfd_broker.SharedMemory("x", size=-1)
        with self.assertRaises(FileNotFoundError) as e:
            memfd_broker.SharedMemory("absent")
        self.assertEqual((e.exception.errno, e.exception.filename), (errno.ENOENT, "absent"))
        shm = memfd_broker.SharedMemory(create=True, size=10)
        self.addCleanup(shm.unlink)
        self.addCleanup(shm.close)
        self.assertTrue(shm.name.startswith("psm_"))
        self.assertEqual((shm.size, len(shm.buf), repr(shm)), (10, 10, "SharedMemory(%r, size=10)" % shm.name))
        with self.assertRaises(FileExistsError):
            memfd_broker.SharedMemory(shm.name, create=True, size=10)
        again = memfd_broker.SharedMemory(shm.name, size=999)  # size is the block's when attaching
        self.assertEqual(again.size, 10)
        again.buf[3] = 7
        self.assertEqual(shm.buf[3], 7)
        view = again.buf[2:4]  # something still using buf: close() refuses, as the standard library's does
        with self.assertRaises(BufferError):
            again.close()
        view.release()
        again.close()
        self.assertIsNone(again.buf)
        again.close()  # twice is fine

    def test_pickles_by_name(self):
        import pickle
        shm = memfd_broker.SharedMemory(create=True, size=32)
        self.addCleanup(shm.unlink)
        self.addCleanup(shm.close)
        shm.buf[:4] = b"pick"
        other = pickle.loads(pickle.dumps(shm))
        self.addCleanup(other.close)
        self.assertEqual((other.name, other.size, bytes(other.buf[:4])), (shm.name, 32, b"pick"))


class LifetimeTest(PackageTest):
    """Blocks live as long as they should, and not longer; none has a file in /dev/shm."""

    def test_attacher_exit_removes_nothing(self):
        """A process that only attached, then exits (without close()), leaves the block to its creator, who
        can unlink it afterwards."""
        shm = memfd_broker.SharedMemory(create=True, size=4096)
        self.addCleanup(shm.close)
        attacher = self.python("import sys\nfrom memfd_broker import SharedMemory\n"
                               "shm = SharedMemory(sys.argv[1])\nshm.buf[0] = 42\n", shm.name)
        self.assertEqual(attacher.wait(TIMEOUT), 0)
        self.assertEqual(shm.buf[0], 42)
        self.assertEqual(self.client.stat(shm.name).name, shm.name)
        shm.close()
        shm.unlink()
        with self.assertRaises(FileNotFoundError):
            self.client.stat(shm.name)

    def test_transient_needs_the_capability(self):
        """Against a broker without transient regions (this one, its capability hidden), a clear error."""
        self.client._wire.capabilities &= ~memfd_broker.CAP_TRANSIENT
        self.assertFalse(self.client.supports_transient)
        with self.assertRaises(OSError) as e:
            memfd_broker.SharedMemory("t", create=True, size=10, transient=True, client=self.client)
        self.assertEqual(e.exception.errno, errno.EOPNOTSUPP)
        self.assertIn("transient", e.exception.strerror)
        with self.assertRaises(FileNotFoundError):
            self.client.stat("t")  # nothing was made

    def test_transient_killed_holders_leave_nothing(self):
        """A transient block whose holders are all SIGKILLed, as a process group: its name is free and the
        broker holds no more regions than before, and /dev/shm never changed."""
        if not self.client.supports_transient:
            self.skipTest("the broker lacks transient regions (HELLO capability 0x40)")
        baseline, shm_before = self.regions_used(), dev_shm()
        holders = []
        for role in (["create", "doomed", "8192"], ["attach", "doomed"], ["attach", "doomed"]):
            # One process group: the creator leads it, the others join.
            group = holders[0].pid if holders else 0
            p = self.python(HOLDER_PROGRAM, *role, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            preexec_fn=lambda g=group: os.setpgid(0, g))
            self.addCleanup(p.wait)
            self.addCleanup(p.kill)
            self.assertEqual(int(p.stdout.readline()), p.pid)
            holders.append(p)
        info = self.client.stat("doomed")
        self.assertEqual((info.nattch, info.transient, self.regions_used()), (3, True, baseline + 1))
        self.assertEqual(dev_shm(), shm_before, "a transient block has a file in /dev/shm")
        for p in holders:  # what each maps is a memfd, nothing under /dev/shm
            with open("/proc/%d/maps" % p.pid) as f:
                maps = f.read()
            self.assertIn("/memfd:", maps)
            self.assertNotIn("/dev/shm/", maps)
        os.killpg(holders[0].pid, signal.SIGKILL)
        for p in holders:
            self.assertEqual(p.wait(TIMEOUT), -signal.SIGKILL)
            p.stdin.close()
            p.stdout.close()

        def gone():
            try:
                self.client.stat("doomed")
                return False
            except FileNotFoundError:
                return self.regions_used() == baseline
        wait_until(gone, "the transient block is gone")
        self.assertEqual(dev_shm(), shm_before)
        memfd_broker.SharedMemory("doomed", create=True, size=10, transient=True).close()  # the name is free

    def test_transient_lives_while_held(self):
        """An attacher's exit leaves a transient block to its creator; its last close() takes the name."""
        if not self.client.supports_transient:
            self.skipTest("the broker lacks transient regions (HELLO capability 0x40)")
        shm = memfd_broker.SharedMemory(create=True, size=100, transient=True)
        self.addCleanup(shm.close)
        attacher = self.python("import sys\nfrom memfd_broker import SharedMemory\n"
                               "shm = SharedMemory(sys.argv[1])\nshm.buf[1] = 9\nshm.close()\n", shm.name)
        self.assertEqual(attacher.wait(TIMEOUT), 0)
        self.assertEqual((shm.buf[1], self.client.stat(shm.name).nattch), (9, 1))
        shm.close()
        with self.assertRaises(FileNotFoundError):
            self.client.stat(shm.name)


def page_frame(address):
    """The physical page frame behind a virtual address of this process, from /proc/self/pagemap; 0 when the
    kernel does not tell (it tells only with CAP_SYS_ADMIN) or the page is not present."""
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(address // os.sysconf("SC_PAGE_SIZE") * 8)
        entry = int.from_bytes(f.read(8), sys.byteorder)
    return entry & ((1 << 55) - 1) if entry >> 63 else 0


# Attaches to the block named by its argument, makes an array on its buf, and shows what it sees in it.
NUMPY_READER = textwrap.dedent("""\
    import os
    import sys
    import numpy as np
    from memfd_broker import SharedMemory
    """) + inspect.getsource(page_frame) + textwrap.dedent("""\

    shm = SharedMemory(sys.argv[1])
    a = np.ndarray((1024,), dtype=np.int64, buffer=shm.buf)
    assert not a.flags.owndata  # a view on the mapping, not a copy of it
    int(a[0])  # a read maps the page here: its frame is known from then on
    print(a.ctypes.data, page_frame(a.ctypes.data), flush=True)
    sys.stdin.readline()  # the parent wrote
    print(int(a.sum()), flush=True)
    a *= 2  # in place, through this process's mapping
    print("doubled", flush=True)
    sys.stdin.readline()
    del a
    shm.close()
    """)


@unittest.skipIf(numpy is None, "numpy is not installed for %s (Debian: python3-numpy)" % sys.executable)
class NumpyTest(PackageTest):
    def test_array_on_buf_shares_pages(self):
        """An array on .buf in this process and one on .buf in another are the same memory: what one writes
        the other reads, with no copy and no re-reading, and (where the kernel tells) the same physical page."""
        shm = memfd_broker.SharedMemory(create=True, size=1024 * 8)
        self.addCleanup(shm.unlink)
        self.addCleanup(shm.close)
        a = numpy.ndarray((1024,), dtype=numpy.int64, buffer=shm.buf)
        self.assertFalse(a.flags.owndata)
        a[:] = 0  # touch the page, so that it is present here too
        reader = self.python(NUMPY_READER, shm.name, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.addCleanup(reader.kill)
        _, theirs = map(int, reader.stdout.readline().split())
        ours = page_frame(a.ctypes.data)
        if ours and theirs:
            self.assertEqual(ours, theirs, "the arrays are on different physical pages")
        a[:] = numpy.arange(1024)
        reader.stdin.write("written\n")
        reader.stdin.flush()
        self.assertEqual(int(reader.stdout.readline()), 1023 * 1024 // 2)
        self.assertEqual(reader.stdout.readline(), "doubled\n")
        self.assertTrue((a == 2 * numpy.arange(1024)).all())  # the same array object, never read again
        reader.stdin.close()
        self.assertEqual(reader.wait(TIMEOUT), 0)
        reader.stdout.close()
        del a  # it exports buf: close() would refuse while it lives


class ClientTest(PackageTest):
    """The Client API: regions as context managers, errors as the OSError subclasses."""

    def test_create_wait_seal(self):
        waiter = memfd_broker.Client(timeout=TIMEOUT)
        self.addCleanup(waiter.close)
        with self.client.create(4096, "frame", mode=0o640) as r:
            self.assertEqual((r.name, r.size, r.writable), ("frame", 4096, True))
            r.buf[:5] = b"hello"
            with self.assertRaises(TimeoutError):
                waiter.wait("frame", timeout=0.01)  # not published yet
            info = r.seal()
            self.assertTrue(info.sealed)
            self.assertTrue(r.buf.readonly)
            with waiter.wait("frame", timeout=TIMEOUT) as seen:
                self.assertEqual(bytes(seen.buf[:5]), b"hello")
                self.assertFalse(seen.writable)
            with self.assertRaises(PermissionError):
                self.client.open("frame", write=True)  # sealed
        info = self.client.stat("frame")
        self.assertEqual((info.mode, info.nattch), (0o640, 0))
        self.assertEqual(self.client.chmod("frame", 0o600).mode, 0o600)
        self.assertEqual(self.client.chown("frame", gid=os.getgid()).gid, os.getgid())
        self.assertEqual([i.name for i in self.client.list()], ["frame"])
        self.client.remove("frame")
        with self.assertRaises(FileNotFoundError) as e:
            self.client.remove("frame")
        self.assertEqual(e.exception.filename, "frame")
        self.assertIsInstance(e.exception, memfd_broker.BrokerError)
        self.assertTrue(e.exception.strerror)

    def test_errors(self):
        with self.assertRaises(FileExistsError):
            with self.client.create(10, "dup"):
                self.client.create(10, "dup")
        with self.assertRaises(FileNotFoundError):
            self.client.open("nothing")
        with self.assertRaises(ValueError):
            self.client.create(0)
        with self.assertRaises(OSError) as e:
            self.client.create(self.client.region_size_max + 1)
        self.assertEqual(e.exception.errno, errno.EFBIG)
        with self.assertRaises(memfd_broker.BrokerUnavailableError):
            memfd_broker.Client(os.path.join(self.dir.name, "no.sock"))

    def test_default_socket(self):
        env = {k: v for k, v in os.environ.items() if k not in ("MEMFD_BROKER_SOCKET", "XDG_RUNTIME_DIR")}
        saved = dict(os.environ)
        self.addCleanup(lambda: (os.environ.clear(), os.environ.update(saved)))
        os.environ.clear()
        os.environ.update(env, MEMFD_BROKER_SOCKET="/a")
        self.assertEqual(memfd_broker.default_socket_path(), "/a")
        os.environ.pop("MEMFD_BROKER_SOCKET")
        os.environ["XDG_RUNTIME_DIR"] = "/r"
        self.assertEqual(memfd_broker.default_socket_path(),
                         "/run/memfd-broker.sock" if os.geteuid() == 0 else "/r/memfd-broker.sock")
        os.environ.pop("XDG_RUNTIME_DIR")
        self.assertEqual(memfd_broker.default_socket_path(), "/run/memfd-broker.sock")

    def test_batch_and_notifications(self):
        regions = self.client.create_batch(100, 300)
        self.assertEqual(len({r.handle for r in regions}), 300)
        self.assertEqual(self.regions_used(), 300)
        for r in regions:
            r.close()
        self.assertEqual(self.regions_used(), 0)  # anonymous: gone with their last holder
        if not self.client.capabilities & memfd_broker.CAP_NOTIFY:
            self.skipTest("the broker lacks notifications")
        with self.client.create(64) as r, r.watch() as w, r.notifier() as n:
            first = n.seq()
            self.assertEqual(r.notify(), first + 1)
            self.assertEqual(w.wait(TIMEOUT), 1)
            self.assertEqual(n.seq(), first + 1)

    def count_records(self):
        """Counts the records self.client reads from now on: returns a function that tells how many so far."""
        wire, count = self.client._wire, [0]
        recv = wire._recv

        def counting():
            count[0] += 1
            return recv()
        wire._recv = counting
        self.addCleanup(setattr, wire, "_recv", recv)
        return lambda: count[0]

    def drop_regions_and_ask(self, n):
        """Makes n regions and drops them without close(); returns the regions the broker holds afterwards, as
        the Client's next request tells, and the records read since the drop."""
        baseline = self.regions_used()
        regions = [self.client.create(4096) for _ in range(n)]
        self.assertEqual(self.regions_used(), baseline + n)
        records = self.count_records()
        del regions  # their finalizers run now, each leaving its handle for the next request
        return self.regions_used() - baseline, records()

    def test_dropped_regions_go_back_quiet(self):
        """Regions dropped without close() are given back before the Client's next request, without an answer
        to wait for each: the only record read is that request's answer."""
        self.assertTrue(self.client.capabilities & _wire.CAP_QUIET)
        self.assertEqual(self.drop_regions_and_ask(20), (0, 1))

    def test_dropped_regions_without_quiet_requests(self):
        """Against a broker without quiet requests (this one, its capability hidden), each release is a
        request answered in turn, and they are given back all the same."""
        self.client._wire.capabilities &= ~_wire.CAP_QUIET
        self.assertEqual(self.drop_regions_and_ask(3), (0, 4))

    def test_refused_quiet_release_is_dropped(self):
        """A quiet RELEASE the broker refuses (of a handle this connection does not hold) is answered, and that
        answer is read and dropped ahead of the next request's, which is not mistaken for it."""
        with self.client.create(4096) as r:
            records = self.count_records()
            self.client._wire.release_quiet(r.handle + 1000)
            self.assertEqual(r.stat().nattch, 1)
            self.assertEqual(records(), 2)  # the refusal, then STAT's answer
            self.assertEqual(self.regions_used(), 1)
        self.assertEqual(self.regions_used(), 0)


if __name__ == "__main__":
    unittest.main()
