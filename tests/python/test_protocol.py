"""The Python protocol client against a real broker, and sharing with C.

Runs under `make check` (tests/test-python.sh) with MFB_BROKERD and
MFB_BROKERCTL naming the built programs. Each test gets a broker of its own
on a socket in a temporary folder.

memfd-brokerctl is the C client. Where a test needs a WAIT held by the
broker before it publishes, it waits for exactly that: the waiter's
unread bytes (SIOCOUTQ) dropping to 0 once the broker has read the WAIT. For
a waiting memfd-brokerctl it sees that through a Relay between the tool and
the broker.
"""

import errno
import grp
import json
import mmap
import os
import pwd
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mfb  # noqa: E402
from testlib import TIMEOUT, as_user, brokerctl_for_others, needs_root  # noqa: E402

MS = 1000 * 1000  # nanoseconds
OTHER_ID = 65534  # the other user of the tests that need two: nobody/nogroup


def wait_until(condition, what):
    """Polls condition() until it holds; fails after TIMEOUT seconds."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting until " + what)
        time.sleep(0.001)


def stop(process):
    """Kills process unless it has exited, and reaps it."""
    process.kill()
    process.wait(TIMEOUT)


class Relay:
    """Passes one client's records to the broker and back, one at a time, so that
    a test knows when the broker has read each of the client's requests."""

    def __init__(self, folder, broker_path):
        self.path = os.path.join(folder, "relay.sock")
        self.broker_path = broker_path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(self.path)
        self.listener.listen(1)
        self.listener.settimeout(TIMEOUT)
        self.client = self.broker = None
        self.flags = 0  # of the last request passed on

    def accept(self):
        self.client, _ = self.listener.accept()
        self.client.settimeout(TIMEOUT)
        self.broker = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.broker.settimeout(TIMEOUT)
        self.broker.connect(self.broker_path)

    def request(self):
        """Passes the client's next request on and returns its opcode once the broker has read it."""
        data, fds, _ = mfb.recv_record(self.client)
        assert data and not fds, "the client closed, or sent fds"
        self.broker.sendmsg([data])
        wait_until(lambda: mfb.unread(self.broker) == 0, "the broker read the request")
        _, opcode, self.flags, _, _, _, _ = mfb.HEADER.unpack_from(data)
        return opcode

    def reply(self):
        """Passes the broker's next reply (and its fd) back; returns its opcode and status."""
        data, fds, _ = mfb.recv_record(self.broker)
        try:
            socket.send_fds(self.client, [data], fds)
        finally:
            for fd in fds:
                os.close(fd)
        _, opcode, _, _, status, _, _ = mfb.HEADER.unpack_from(data)
        return opcode & ~mfb.REPLY, status

    def close(self):
        for s in (self.client, self.broker, self.listener):
            if s:
                s.close()


def reply_record(opcode, cookie, body=b"", status=0):
    """A reply as a broker sends it."""
    return mfb.HEADER.pack(mfb.HEADER.size + len(body), opcode | mfb.REPLY, 0, cookie, status, 0, 0) + body


class FakeBroker:
    """A socket that answers as no good broker would, to see what clients make of it: a thread accepts
    connections one after another and hands each to serve(connection), until close()."""

    def __init__(self, folder, serve, connections=1):
        self.path = os.path.join(folder, "fake.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(self.path)
        self.listener.listen(connections)
        self.listener.settimeout(TIMEOUT)
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(serve, connections))
        self.thread.start()

    def _run(self, serve, connections):
        try:
            for _ in range(connections):
                conn, _ = self.listener.accept()
                with conn:
                    conn.settimeout(TIMEOUT)
                    serve(conn)
        except BaseException as e:
            self.error = e

    def close(self):
        """Waits for the thread, and raises what went wrong in it."""
        self.thread.join(TIMEOUT)
        self.listener.close()
        if self.thread.is_alive():
            raise AssertionError("the fake broker's thread did not finish")
        if self.error:
            raise self.error


def fake_hello(conn):
    """Reads a client's HELLO and answers it as a broker of this version would."""
    data = conn.recv(mfb.RECORD_MAX)
    _, opcode, _, cookie, _, _, _ = mfb.HEADER.unpack_from(data)
    assert opcode == mfb.HELLO, opcode
    conn.sendmsg([reply_record(mfb.HELLO, cookie, mfb.HELLO_REPLY.pack(
        mfb.VERSION, 0, 0, 1 << 30, mfb.RECORD_MAX, mfb.NAME_MAX, 1, 64, mfb.LIST_ENTRIES_MAX, 0))])


class BrokerTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="mfb-py.")
        self.path = os.path.join(self.dir.name, "broker.sock")
        self.broker = self.start_broker(self.path)
        self.client = self.connect()

    def start_broker(self, path, *args):
        """A broker of this test on path, with args; returns once it accepts connections."""
        wrapper = shlex.split(os.environ.get("MFB_BROKER_WRAPPER", ""))
        broker = subprocess.Popen(
            wrapper + [os.environ["MFB_BROKERD"], "--socket", path, "--log-level", "warning", *args])
        self.addCleanup(stop, broker)  # a broker that did not start, or did not stop in tearDown
        deadline = time.monotonic() + TIMEOUT
        while True:  # until it accepts connections
            try:
                mfb.Client(path, timeout=TIMEOUT).close()
                return broker
            except (FileNotFoundError, ConnectionRefusedError):
                self.assertIsNone(broker.poll(), "broker exited at startup")
                self.assertLess(time.monotonic(), deadline, "broker did not start")
                time.sleep(0.005)

    def tearDown(self):
        self.client.close()
        self.broker.terminate()
        self.assertEqual(self.broker.wait(TIMEOUT), 0)
        self.assertFalse(os.path.exists(self.path))
        self.dir.cleanup()

    def connect(self):
        """A client of this test's broker, whose every wait on the broker fails after TIMEOUT seconds."""
        return mfb.Client(self.path, timeout=TIMEOUT)

    def ctl(self, *args, data=None):
        return subprocess.run([os.environ["MFB_BROKERCTL"], "--socket", self.path, *args],
                              input=data, capture_output=True, check=True, timeout=TIMEOUT).stdout

    def ctl_json(self, *args):
        return json.loads(self.ctl(*args, "--json"))

    def ctl_fails(self, *args, data=None):
        """Runs a command that must fail with one line on stderr; returns that line."""
        p = subprocess.run([os.environ["MFB_BROKERCTL"], "--socket", self.path, *args],
                           input=data, capture_output=True, timeout=TIMEOUT)
        self.assertEqual(p.returncode, 1, p.stderr)
        lines = p.stderr.decode().splitlines()
        self.assertEqual(len(lines), 1, lines)
        return lines[0]

    def consumed(self, client):
        """Returns once the broker has read every request sent on client (such as a WAIT it now holds)."""
        wait_until(lambda: client.unread() == 0, "the broker read the request")

    def ctl_wait_through_relay(self, name):
        """Starts `memfd-brokerctl wait name` and returns once the broker holds its WAIT."""
        relay = Relay(self.dir.name, self.path)
        self.addCleanup(relay.close)
        tool = subprocess.Popen([os.environ["MFB_BROKERCTL"], "--socket", relay.path, "wait", name,
                                 "--timeout", str(TIMEOUT)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(stop, tool)
        relay.accept()
        self.assertEqual(relay.request(), mfb.HELLO)
        self.assertEqual(relay.reply(), (mfb.HELLO, 0))
        self.assertEqual(relay.request(), mfb.WAIT)
        self.assertIsNone(tool.poll())
        return relay, tool

    def fill(self, region, payload):
        m = region.map()
        m[:len(payload)] = payload
        m.close()

    def test_create_open_seal_stat(self):
        with self.client.create(8192, name="py") as r:
            m = r.map()
            m[:5] = b"hello"
            info = self.client.stat(name="py")
            self.assertEqual((info["name"], info["size"], info["nattch"]), ("py", 8192, 1))
            self.assertEqual(info["mode"], 0o600)
            self.assertEqual(info["creator_pid"], os.getpid())
            with self.connect() as other, other.open(name="py") as ro:
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

    def test_create_batch(self):
        self.assertTrue(self.client.capabilities & mfb.CAP_CREATE_BATCH)
        for pipelined in (False, True):
            # More than one CREATE_BATCH holds, and more than the 64 CREATEs kept unanswered.
            regions = self.client.create_batch(8192, 300, pipelined=pipelined)
            self.assertEqual(len({r.handle for r in regions}), 300)
            for r in regions:
                self.assertEqual((r.size, r.access), (8192, mfb.ACCESS_READ | mfb.ACCESS_WRITE))
                self.fill(r, b"batch")
            self.assertEqual([e["handle"] for e in self.client.list()], [r.handle for r in regions])
            for r in regions:
                r.close()
            self.assertEqual(self.client.list(), [])
        self.assertEqual(self.client.create_batch(4096, 0), [])

    def test_create_batch_that_fails_halfway_leaves_nothing(self):
        path = os.path.join(self.dir.name, "limited.sock")
        limited = self.start_broker(path, "--max-regions", "300")
        with mfb.Client(path, timeout=TIMEOUT) as c, c.create(4096, name="before"):
            for pipelined in (False, True):
                fds = len(os.listdir("/proc/self/fd"))
                with self.assertRaises(mfb.BrokerError) as e:
                    c.create_batch(4096, 800, pipelined=pipelined)
                # The broker's limit (for root), or this uid's share of it first.
                self.assertIn(e.exception.errno, (errno.ENOSPC, errno.EDQUOT))
                self.assertEqual(len(os.listdir("/proc/self/fd")), fds)
                self.assertEqual([(e["name"], e["nattch"]) for e in c.list()], [("before", 1)])
                self.assertEqual(c.limits()["resources"]["regions"]["uid_used"], 1)
            # The room is all there again.
            room = c.limits()["resources"]["regions"]["uid_available"]
            self.assertTrue(0 < room < 300, room)
            for r in c.create_batch(4096, room):
                r.close()
        limited.terminate()
        self.assertEqual(limited.wait(TIMEOUT), 0)

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


    def test_python_waits_for_a_c_producer(self):
        payload = os.urandom(70000)
        cookie = self.client.wait_start("c-later", 10 * TIMEOUT * 1000 * MS)
        self.consumed(self.client)
        self.ctl("create", "c-later", "96K", "--mode", "0644")
        self.ctl("write", "c-later", data=payload)
        self.ctl("seal", "c-later")
        with self.client.wait_finish(cookie) as r:
            self.assertEqual(r.access, mfb.ACCESS_READ)
            self.assertEqual(r.info["name"], "c-later")
            self.assertTrue(r.seals() & mfb.F_SEAL_WRITE)
            self.assertEqual(r.map()[:len(payload)], payload)
            self.assertEqual(self.ctl_json("stat", "c-later")["nattch"], 1)
        # Ready already: answered at once, even without waiting.
        with self.client.wait("c-later", 0) as r:
            self.assertEqual(r.map()[:len(payload)], payload)

    def test_c_waits_for_a_python_producer(self):
        payload = os.urandom(30000)
        with self.client.create(len(payload), name="py-later") as r:
            self.fill(r, payload)
            relay, tool = self.ctl_wait_through_relay("py-later")
            self.client.seal(r.handle)
            self.assertEqual(relay.reply(), (mfb.WAIT, 0))
            # The tool lets go as it exits, without waiting for an answer: quiet, none comes for success.
            self.assertEqual(relay.request(), mfb.RELEASE)
            self.assertEqual(relay.flags, mfb.FLAG_QUIET)
            # Then one request more, whose answer tells the release was done before the tool exits.
            self.assertEqual(relay.request(), mfb.LIMITS)
            self.assertEqual(relay.reply(), (mfb.LIMITS, 0))
            out, err = tool.communicate(timeout=TIMEOUT)
            self.assertEqual((tool.returncode, err), (0, b""))
            self.assertEqual(int(out), r.handle)
        self.assertEqual(self.ctl("cat", "py-later"), payload)

    def test_c_wait_ends_when_python_removes(self):
        with self.client.create(4096, name="doomed"):
            relay, tool = self.ctl_wait_through_relay("doomed")
            self.client.remove(name="doomed")
            self.assertEqual(relay.reply(), (mfb.WAIT, -errno.EIDRM))
            out, err = tool.communicate(timeout=TIMEOUT)
        self.assertEqual((tool.returncode, out), (1, b""))
        self.assertRegex(err.decode(), r"^memfd-brokerctl: wait doomed: .*removed.*\n$")

    def test_python_wait_ends_when_c_removes(self):
        self.ctl("create", "doomed", "4K")
        cookie = self.client.wait_start("doomed")
        self.consumed(self.client)
        self.ctl("rm", "doomed")
        with self.assertRaises(mfb.BrokerError) as e:
            self.client.wait_finish(cookie)
        self.assertEqual(e.exception.errno, errno.EIDRM)

    def test_wait_timeouts(self):
        for timeout_ns in (0, 30 * MS):
            with self.assertRaises(mfb.BrokerError) as e:
                self.client.wait("absent", timeout_ns)
            self.assertEqual(e.exception.errno, errno.ETIMEDOUT)
        start = time.monotonic()
        line = self.ctl_fails("wait", "absent", "--timeout", "0.05")
        self.assertGreaterEqual(time.monotonic() - start, 0.05)
        self.assertEqual(line, "memfd-brokerctl: wait absent: no sealed region named absent appeared within 0.05 s")
        # Unsealed is not ready.
        self.ctl("create", "absent", "4K")
        self.ctl_fails("wait", "absent", "--timeout", "0")

    def test_future_write_seal_from_python(self):
        if not self.client.capabilities & mfb.CAP_SEAL_FUTURE_WRITE:
            self.skipTest("the broker's kernel lacks F_SEAL_FUTURE_WRITE")
        with self.client.create(4096, name="live") as r:
            m = r.map()
            m[:3] = b"v1\0"
            info = self.client.seal(r.handle, mfb.F_SEAL_FUTURE_WRITE)
            self.assertTrue(info["seals"] & mfb.F_SEAL_FUTURE_WRITE)
            self.assertFalse(info["seals"] & mfb.F_SEAL_WRITE)
            self.assertEqual(self.ctl("cat", "live")[:3], b"v1\0")
            m[:3] = b"v2\0"  # the producer's mapping goes on writing
            self.assertEqual(self.ctl("cat", "live")[:3], b"v2\0")
            self.assertIn("region is sealed", self.ctl_fails("write", "live", data=b"x"))
            stat = self.ctl_json("stat", "live")
            self.assertIn("future-write", stat["seals"])
            self.assertEqual(stat["state"], ["future-write-sealed"])
            self.assertEqual(int(self.ctl("wait", "live", "--timeout", "0")), r.handle)  # published
            with self.assertRaises(mfb.BrokerError) as e:
                self.client.open(name="live", write=True)
            self.assertEqual(e.exception.errno, errno.EPERM)
            m.close()

    def test_future_write_seal_from_c_wakes_python(self):
        if not self.client.capabilities & mfb.CAP_SEAL_FUTURE_WRITE:
            self.skipTest("the broker's kernel lacks F_SEAL_FUTURE_WRITE")
        self.ctl("create", "stream", "4K")
        with self.connect() as producer, producer.open(name="stream", write=True) as w:
            m = w.map()
            cookie = self.client.wait_start("stream")
            self.consumed(self.client)
            self.ctl("seal", "stream", "--future-write")
            with self.client.wait_finish(cookie) as r:
                self.assertTrue(r.seals() & mfb.F_SEAL_FUTURE_WRITE)
                view = r.map()
                m[:5] = b"after"  # written after the seal, through the earlier mapping
                self.assertEqual(view[:5], b"after")
                view.close()
            m.close()

    def test_modes_and_owners_across_clients(self):
        me, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
        self.ctl("create", "perm", "4K", "--mode", "640")
        info = self.client.stat(name="perm")
        self.assertEqual((info["mode"], info["uid"], info["gid"]), (0o640, os.getuid(), os.getgid()))
        self.client.chmod(0o604, name="perm")
        self.assertEqual(self.ctl_json("stat", "perm")["mode"], 0o604)
        self.ctl("chmod", "600", "perm")
        self.assertEqual(self.client.stat(name="perm")["mode"], 0o600)

        if os.geteuid() != 0:
            # Only root gives a region away, or sets a group the caller is not in.
            foreign_gid = next(g for g in (0, OTHER_ID, 4242) if g != os.getgid() and g not in os.getgroups())
            for uid, gid in ((0, None), (None, foreign_gid)):
                with self.assertRaises(mfb.BrokerError) as e:
                    self.client.chown(uid=uid, gid=gid, name="perm")
                self.assertEqual(e.exception.errno, errno.EPERM)
            self.assertEqual(self.client.chown(uid=os.getuid(), name="perm")["uid"], os.getuid())
            return

        # Given away, then taken back by root, who may.
        self.client.chmod(0o644, name="perm")
        info = self.client.chown(uid=65534, gid=65534, name="perm")
        self.assertEqual((info["uid"], info["gid"], info["creator_uid"]), (65534, 65534, os.getuid()))
        self.ctl("chown", "%d:%d" % (os.getuid(), os.getgid()), "perm")
        self.assertEqual(self.client.stat(name="perm")["uid"], os.getuid())
        self.ctl("chown", ":65534", "perm")  # the group alone
        info = self.client.stat(name="perm")
        self.assertEqual((info["uid"], info["gid"]), (os.getuid(), 65534))
        self.ctl("chown", "%s:%s" % (me, group), "perm")
        info = self.ctl_json("stat", "perm")
        self.assertEqual((info["uid"], info["gid"]), (os.getuid(), os.getgid()))
        handle = self.client.chown(gid=65534, name="perm")["handle"]
        self.assertEqual(self.ctl_json("stat", "--handle", str(handle))["gid"], 65534)

        with self.client.create(4096, name="py-perm", mode=0o640) as r:
            self.assertEqual(r.info["mode"], 0o640)
            self.assertEqual(self.ctl_json("stat", "py-perm")["mode"], 0o640)
            self.assertEqual(self.ctl_json("stat", "--handle", str(r.handle))["name"], "py-perm")
            self.ctl("rm", "--handle", str(r.handle))
            self.assertEqual(self.client.stat(handle=r.handle)["state"], mfb.STATE_REMOVED)
        with self.assertRaises(mfb.BrokerError) as e:
            self.client.chmod(0o1000, name="perm")
        self.assertEqual(e.exception.errno, errno.EINVAL)
        self.assertIn("chmod", self.ctl_fails("chmod", "600", "missing"))

    @needs_root(OTHER_ID)
    def test_list_pages_past_regions_the_caller_may_not_see(self):
        total = 2 * mfb.LIST_SCAN_MAX + 100
        room = self.client.limits()["resources"]["regions"]["uid_available"]
        if room < total:
            self.skipTest("the broker may hold %d more regions, not %d (its limit on open files)" % (room, total))
        os.chmod(self.dir.name, 0o755)  # so that the other user reaches the socket
        # Readable by others: two regions, none among the first LIST_SCAN_MAX.
        readable = [mfb.LIST_SCAN_MAX + 10, total - 1]
        handles = []
        for i in range(total):
            with self.client.create(4096, name="r%d" % i, mode=0o604 if i in readable else 0o600) as r:
                handles.append(r.handle)
        self.assertEqual([e["handle"] for e in self.client.list()], handles)  # root sees all, 128 at a time

        def pages():
            with self.connect() as c:
                result, after, more = [], 0, True
                while more:
                    entries, more, after = c.list_page(after)
                    result.append(([e["handle"] for e in entries], more, after))
            return result

        result = as_user(OTHER_ID, pages)
        self.assertEqual([h for page, _, _ in result for h in page], [handles[i] for i in readable])
        # The first request examined no more than LIST_SCAN_MAX regions, none it may see, and says where to go on.
        first_page, more, after = result[0]
        self.assertEqual((first_page, more), ([], True))
        self.assertTrue(0 < after <= handles[mfb.LIST_SCAN_MAX - 1], after)
        self.assertGreaterEqual(len(result), -(-total // mfb.LIST_SCAN_MAX))
        self.assertFalse(result[-1][1])

        # The C library follows the cursor through the same pages.
        ctl = brokerctl_for_others(self.dir.name)

        def ctl_list():
            out = subprocess.run([ctl, "--socket", self.path, "list", "--json"], capture_output=True, check=True,
                                 timeout=TIMEOUT).stdout
            return [e["handle"] for e in json.loads(out)]

        self.assertEqual(as_user(OTHER_ID, ctl_list), [handles[i] for i in readable])

    def test_limits(self):
        limits = self.client.limits()
        self.assertEqual(limits["uid"], os.getuid())
        before = limits["resources"]
        self.assertEqual(list(before), list(mfb.RESOURCES))
        self.client.create(1 << 20, name="counted").close()  # its name keeps it
        held = self.client.limits()["resources"]
        # A region: 1 region, its bytes and 1 fd.
        for name, more in (("regions", 1), ("bytes", 1 << 20), ("fds", 1)):
            self.assertEqual(held[name]["broker_used"], before[name]["broker_used"] + more, name)
        # This test's uid runs the broker, so it is exempt as root is: no limit of its own, and all that is
        # left is its to take.
        for name, entry in held.items():
            self.assertEqual(entry["uid_max"], mfb.LIMIT_NONE, name)
            self.assertEqual(entry["uid_available"], max(entry["broker_max"] - entry["broker_used"], 0), name)

        tool = self.ctl_json("limits")
        self.assertEqual(tool["uid"], os.getuid())
        self.assertEqual(list(tool["resources"]), list(mfb.RESOURCES))
        for name, entry in tool["resources"].items():
            self.assertEqual(entry["unit"], "bytes" if name.endswith("bytes") else "count")
            self.assertEqual(entry["broker_max"], held[name]["broker_max"], name)
            self.assertIsNone(entry["uid_max"], name)

        if os.geteuid() != 0:
            self.skipTest("needs root to ask as uid %d, which is not exempt" % OTHER_ID)
        # Another uid, alone among those not exempt, may take half of what is left, within its own limit.
        os.chmod(self.dir.name, 0o755)  # so that the other user reaches the socket

        def other_limits():
            with self.connect() as c:
                first = c.limits()
                with c.create(1 << 20):
                    return first, c.limits()

        first, then = as_user(OTHER_ID, other_limits)
        for limits in (first, then):
            self.assertEqual(limits["uid"], OTHER_ID)
            for name, entry in limits["resources"].items():
                self.assertEqual(entry["broker_used"], mfb.LIMIT_NONE, name)
                self.assertEqual(entry["broker_max"], held[name]["broker_max"], name)
            self.assertEqual(limits["resources"]["connections"]["uid_used"], 1)
        first, then = first["resources"], then["resources"]
        for name, size in (("regions", 1), ("bytes", 1 << 20)):
            self.assertNotEqual(first[name]["uid_max"], mfb.LIMIT_NONE, name)
            self.assertEqual((first[name]["uid_used"], then[name]["uid_used"]), (0, size), name)
            left = held[name]["broker_max"] - held[name]["broker_used"]
            self.assertEqual(first[name]["uid_available"], min(first[name]["uid_max"], left // 2), name)
            # 2 * (held + charge) - held <= left: what it took comes off what it may take.
            self.assertEqual(then[name]["uid_available"], first[name]["uid_available"] - size, name)
        self.assertEqual(then["fds"]["uid_used"], first["fds"]["uid_used"] + 1)

    def test_c_client_refuses_a_list_cursor_that_does_not_move(self):
        afters = []

        def serve(conn):
            fake_hello(conn)
            while len(afters) < 10:  # a client that goes on asking does not stop by itself
                data = conn.recv(mfb.RECORD_MAX)
                if not data:
                    return
                _, opcode, _, cookie, _, _, _ = mfb.HEADER.unpack_from(data)
                (after,) = mfb.LIST_REQUEST.unpack_from(data, mfb.HEADER.size)
                afters.append(after)
                # Valid from 0, then stuck at 5.
                conn.sendmsg([reply_record(mfb.LIST, cookie, mfb.LIST_REPLY_HEAD.pack(0, 1, 5))])

        fake = FakeBroker(self.dir.name, serve, connections=2)
        try:
            p = subprocess.run([os.environ["MFB_BROKERCTL"], "--socket", fake.path, "list"],
                               capture_output=True, timeout=TIMEOUT)
            self.assertEqual((p.returncode, p.stdout), (1, b""), p.stderr)
            self.assertRegex(p.stderr.decode(), r"^memfd-brokerctl: list: .*\n$")
            self.assertEqual(afters, [0, 5])
            del afters[:]
            with mfb.Client(fake.path, timeout=TIMEOUT) as c, self.assertRaises(mfb.ProtocolError):
                c.list()
            self.assertEqual(afters, [0, 5])
        finally:
            fake.close()

    def test_clients_report_a_broker_out_of_fds(self):
        message = b"the broker is out of file descriptors"

        def serve(conn):
            # What a broker out of fds does: one error under cookie 0, then it closes.
            conn.sendmsg([reply_record(mfb.HELLO, 0, message, -errno.ENOSPC)])

        fake = FakeBroker(self.dir.name, serve, connections=2)
        try:
            p = subprocess.run([os.environ["MFB_BROKERCTL"], "--socket", fake.path, "list"],
                               capture_output=True, timeout=TIMEOUT)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertEqual(p.stderr.decode(), "memfd-brokerctl: list: cannot connect to %s: %s\n"
                             % (fake.path, message.decode()))
            with self.assertRaises(mfb.BrokerError) as e:
                mfb.Client(fake.path, timeout=TIMEOUT)
            self.assertEqual((e.exception.errno, e.exception.strerror), (errno.ENOSPC, message.decode()))
        finally:
            fake.close()

    def test_hugetlb(self):
        page, free = hugepages()
        if not self.client.capabilities & mfb.CAP_HUGETLB or free < 2:
            self.skipTest("needs hugetlb memfds and 2 free huge pages (vm.nr_hugepages)")
        with self.client.create(page, name="huge-py", flags=mfb.CREATE_HUGETLB) as r:
            self.assertEqual(r.info["state"], mfb.STATE_HUGETLB)
            self.fill(r, b"huge")
            self.assertIn("hugetlb", self.ctl_json("stat", "huge-py")["state"])
        self.ctl("create", "huge-c", str(page), "--hugetlb", "--reserve")
        self.assertEqual(self.client.stat(name="huge-c")["state"], mfb.STATE_HUGETLB)
        self.assertIn("huge page", self.ctl_fails("create", "odd", str(page + 4096), "--hugetlb"))

    def test_notify_advances_seq_and_signals_watchers(self):
        self.assertTrue(self.client.capabilities & mfb.CAP_NOTIFY)
        with self.client.create(4096, name="bell") as w, self.connect() as other, other.open(name="bell") as r, \
                other.notifier(r.handle) as page, other.notify_watch(r.handle) as watch:
            self.assertEqual(page.access, mfb.ACCESS_READ)
            self.assertEqual((page.first_seq, watch.seq, page.seq()), (0, 0, 0))
            self.assertEqual(page.watchers(), 1)
            self.assertEqual(watch.consume(), 0)  # nothing signalled yet
            # Python has no atomics: the broker advances seq (NOTIFY_ADVANCE) and writes to the pipe.
            self.assertEqual(self.client.notify(w.handle), 1)
            self.assertGreaterEqual(watch.wait(TIMEOUT), 1)
            self.assertEqual(page.seq(), 1)
            # Several at once: seq counts every notification, the pipe only that there were some.
            for i in range(2, 12):
                self.assertEqual(self.client.notify(w.handle), i)
            self.assertEqual(page.seq(), 11)
            self.assertGreaterEqual(watch.wait(TIMEOUT), 1)
            # Without NOTIFY_ADVANCE (a C client advanced seq itself) the broker only signals.
            self.assertEqual(self.client.notify(w.handle, advance=False), 11)
            self.assertGreaterEqual(watch.wait(TIMEOUT), 1)
            self.assertEqual(page.seq(), 11)
            # The writer's page is read-write, and the same memory.
            with self.client.notifier(w.handle) as wpage:
                self.assertEqual((wpage.access, wpage.first_seq, wpage.seq()),
                                 (mfb.ACCESS_READ | mfb.ACCESS_WRITE, 11, 11))

    def test_one_watch_per_connection_and_region(self):
        with self.client.create(4096, name="bell") as w, self.client.notifier(w.handle) as page:
            with self.connect() as other, other.open(name="bell") as r:
                with other.notify_watch(r.handle) as first, other.notify_watch(r.handle) as second:
                    self.assertEqual(page.watchers(), 1)
                    # Copies of the same read end: what is read through one is gone for the other.
                    self.assertEqual(os.fstat(first.fd).st_ino, os.fstat(second.fd).st_ino)
                    self.client.notify(w.handle)
                    self.assertGreaterEqual(first.wait(TIMEOUT), 1)
                    self.assertEqual(second.consume(), 0)
                    with self.connect() as third, third.open(name="bell") as r3, third.notify_watch(r3.handle):
                        self.assertEqual(page.watchers(), 2)
                    # The third connection closed: the broker ended its watch.
                    wait_until(lambda: page.watchers() == 1, "the closed connection's watch ended")
                # Letting go of the region ends the watch, even with the read ends still open here.
                watch = other.notify_watch(r.handle)
                self.addCleanup(watch.close)
            wait_until(lambda: page.watchers() == 0, "the released region's watch ended")
            self.client.notify(w.handle)
            # The broker closed its write end: end of file at once, and no byte for the notification after.
            self.assertEqual(watch.wait(TIMEOUT), 0)
            self.assertTrue(watch.ended)

    def test_notify_needs_a_writable_hold(self):
        with self.client.create(4096, name="bell") as w, self.connect() as other:
            with other.open(name="bell") as r, other.notifier(r.handle) as page:
                for advance in (True, False):
                    with self.assertRaises(mfb.BrokerError) as e:
                        other.notify(r.handle, advance=advance)
                    self.assertEqual(e.exception.errno, errno.EPERM)
                self.assertEqual(page.seq(), 0)
                # The kernel keeps a read-only holder from writing seq itself: its page fd is read-only.
                with self.assertRaises(PermissionError):
                    mmap.mmap(page.fd, mfb.NOTIFY_PAGE_SIZE, flags=mmap.MAP_SHARED)
                with self.assertRaises(OSError) as e:
                    os.pwrite(page.fd, b"\1", 0)
                self.assertEqual(e.exception.errno, errno.EBADF)
            # Nothing of a region the connection does not hold, however it knows the handle.
            for call in (other.notifier, other.notify_watch, other.notify):
                with self.assertRaises(mfb.BrokerError) as e:
                    call(w.handle)
                self.assertEqual(e.exception.errno, errno.ENOENT)
            self.assertEqual(self.client.notify(w.handle), 1)

    def test_python_notify_wakes_a_c_waiter(self):
        with self.client.create(4096, name="bell", mode=0o644) as w:
            # From seq 0 on: the tool cannot miss a notification made before it looked.
            tool = subprocess.Popen([os.environ["MFB_BROKERCTL"], "--socket", self.path, "watch", "bell",
                                     "--after", "0", "--count", "3", "--timeout", str(TIMEOUT)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.addCleanup(stop, tool)
            # It waits in FUTEX_WAIT, not on the broker: NOTIFY_ADVANCE's FUTEX_WAKE is what wakes it.
            self.assertEqual(self.client.notify(w.handle), 1)
            line = tool.stdout.readline()
            self.assertEqual(line, b"1\n")
            self.client.notify(w.handle)
            self.client.notify(w.handle)
            out, err = tool.communicate(timeout=TIMEOUT)
            self.assertEqual((tool.returncode, err), (0, b""))
            # Each line a sequence it saw, up to the third notification; two may show as one.
            self.assertIn(out, (b"2\n3\n", b"3\n"))

    def test_c_notify_signals_a_python_watcher(self):
        with self.client.create(4096, name="bell", mode=0o644) as w, self.connect() as other, \
                other.open(name="bell") as r, other.notifier(r.handle) as page, \
                other.notify_watch(r.handle) as watch:
            # The tool advances seq itself, wakes futex waiters, and asks the broker to signal: a watcher exists.
            self.ctl("notify", "bell")
            self.assertGreaterEqual(watch.wait(TIMEOUT), 1)
            self.assertEqual(page.seq(), 1)
            self.ctl("notify", "bell")
            self.assertGreaterEqual(watch.wait(TIMEOUT), 1)
            self.assertEqual(page.seq(), 2)
            self.assertTrue(self.ctl_fails("notify", "nothing").startswith("memfd-brokerctl: notify nothing: "))

    @needs_root(OTHER_ID)
    def test_usage_pages_through_every_uid_for_root_only(self):
        # Regions given to more uids than one page holds, with sizes that tell the rows apart.
        uids = [1000 + 7 * i for i in range(2 * mfb.USAGE_ROWS_MAX + 3)]
        for i, uid in enumerate(uids):
            with self.client.create(4096 * (i + 1), name="u%d" % i) as r:
                self.client.chown(uid=uid, handle=r.handle)
        rows = self.client.usage()
        by_uid = {row["uid"]: row["resources"] for row in rows}
        self.assertEqual(sorted(by_uid), [row["uid"] for row in rows])
        self.assertTrue(set(uids) | {os.getuid()} <= set(by_uid), sorted(by_uid))
        # The figures are the region list's, uid by uid; this connection is the only one of root's.
        listed = self.client.list()
        for uid in {e["uid"] for e in listed}:
            owned = [e for e in listed if e["uid"] == uid]
            self.assertEqual(by_uid[uid]["regions"]["uid_used"], len(owned), uid)
            self.assertEqual(by_uid[uid]["bytes"]["uid_used"], sum(e["size"] for e in owned), uid)
        self.assertEqual(by_uid[os.getuid()]["connections"]["uid_used"], 1)
        # Each row is what LIMITS tells that uid, but broker_used, which root is told in every row.
        mine = self.client.limits()["resources"]
        for uid, resources in by_uid.items():
            for name in ("regions", "bytes"):
                self.assertEqual(resources[name]["broker_used"], mine[name]["broker_used"], (uid, name))
                self.assertEqual(resources[name]["broker_max"], mine[name]["broker_max"], (uid, name))
        self.assertEqual(by_uid[os.getuid()], mine)
        given = by_uid[uids[0]]["regions"]
        self.assertNotEqual(given["uid_max"], mfb.LIMIT_NONE)  # not exempt
        self.assertEqual(given["uid_used"], 1)

        # Pages: full ones say where to go on; a first_uid in the middle starts there.
        page, more, next_uid = self.client.usage_page(0)
        self.assertEqual((len(page), more, next_uid), (mfb.USAGE_ROWS_MAX, True, page[-1]["uid"] + 1))
        page, _, _ = self.client.usage_page(uids[5])
        self.assertEqual([row["uid"] for row in page],
                         [uid for uid in sorted(by_uid) if uid >= uids[5]][:mfb.USAGE_ROWS_MAX])
        # A uid that holds nothing any more has no row.
        self.client.remove(name="u0")
        self.assertNotIn(uids[0], [row["uid"] for row in self.client.usage()])
        with self.assertRaises(mfb.BrokerError) as e:
            self.client.usage_page(0, reserved=1)
        self.assertEqual(e.exception.errno, errno.EINVAL)

        # Another uid sees its own row and nothing of the others, whatever it asks.
        os.chmod(self.dir.name, 0o755)  # so that the other user reaches the socket

        def other():
            with self.connect() as c:
                with c.create(8192, name="other"):
                    return c.usage(), c.usage_page(OTHER_ID + 1), c.usage_page(0), c.limits()

        rows, after, first, limits = as_user(OTHER_ID, other)
        self.assertEqual(rows, [limits])
        self.assertEqual(first, [[limits], False, 0])
        self.assertEqual(after, [[], False, 0])
        self.assertEqual(limits["resources"]["bytes"]["uid_used"], 8192)
        for name, entry in limits["resources"].items():
            self.assertEqual(entry["broker_used"], mfb.LIMIT_NONE, name)
        # Root sees that row too, and what was given to uids[1] is still there.
        by_uid = {row["uid"]: row["resources"] for row in self.client.usage()}
        self.assertEqual(by_uid[OTHER_ID]["regions"]["uid_used"], 1)  # its named region stays
        self.assertEqual(by_uid[uids[1]]["bytes"]["uid_used"], 2 * 4096)

    def test_allocated_counts_the_pages_written(self):
        size = 4 << 20  # whole huge pages, so that shmem's transparent huge pages change nothing
        with self.client.create(size, name="half") as r, self.client.create(size) as untouched:
            self.fill(r, b"x" * (size // 2))
            self.assertEqual(self.client.allocated(), {r.handle: size // 2, untouched.handle: 0})
            # One region: from its handle - 1, one entry.
            self.assertEqual(self.client.allocated_page(r.handle - 1, 1), ([(r.handle, size // 2)], True, r.handle))
            self.assertEqual(self.ctl_json("stat", "half")["allocated"], size // 2)
            self.assertEqual({e["name"]: e["allocated"] for e in self.ctl_json("list")},
                             {"half": size // 2, None: 0})
            for max_count, reserved in ((mfb.ALLOCATED_ENTRIES_MAX + 1, 0), (0, 1)):
                with self.assertRaises(mfb.BrokerError) as e:
                    self.client.allocated_page(0, max_count, reserved)
                self.assertEqual(e.exception.errno, errno.EINVAL)
            # The largest page is asked for as much as with 0: all there is, here.
            self.assertEqual(self.client.allocated_page(0, mfb.ALLOCATED_ENTRIES_MAX)[:2],
                             (sorted([(r.handle, size // 2), (untouched.handle, 0)]), False))

    def test_allocated_pages_hold_at_most_the_largest_count(self):
        regions = [self.client.create(4096) for _ in range(mfb.ALLOCATED_ENTRIES_MAX + 1)]
        try:
            handles = sorted(r.handle for r in regions)
            for max_count in (0, mfb.ALLOCATED_ENTRIES_MAX):
                entries, more, after = self.client.allocated_page(0, max_count)
                self.assertEqual([h for h, _ in entries], handles[:-1])
                self.assertTrue(more)
                self.assertEqual(self.client.allocated_page(after, max_count)[:2], ([(handles[-1], 0)], False))
        finally:
            for r in regions:
                r.close()

    @needs_root(OTHER_ID)
    def test_allocated_reports_only_what_the_caller_may_see(self):
        total = mfb.LIST_SCAN_MAX + 40
        shown = {10, total - 1}
        handles = []
        for i in range(total):
            with self.client.create(4096, name="a%d" % i, mode=0o604 if i in shown else 0o600) as r:
                if i in shown:
                    self.fill(r, b"y")
                handles.append(r.handle)
        self.assertEqual(sorted(self.client.allocated()), handles)  # root: all of them
        os.chmod(self.dir.name, 0o755)  # so that the other user reaches the socket

        def other():
            with self.connect() as c:
                pages, after, more = [], 0, True
                while more:
                    entries, more, after = c.allocated_page(after)
                    pages.append([h for h, _ in entries])
                return pages, [e["handle"] for e in c.list()], c.allocated_page(handles[0] - 1, 1)

        pages, listed, one = as_user(OTHER_ID, other)
        self.assertEqual([h for page in pages for h in page], [handles[i] for i in sorted(shown)])
        self.assertEqual(listed, [handles[i] for i in sorted(shown)])
        # LIST's pages: the first request covered LIST_SCAN_MAX handles, of which the caller sees one.
        self.assertEqual(pages[0], [handles[10]])
        self.assertGreaterEqual(len(pages), 2)
        # A region it may not see is not there, as with STAT: the first it sees comes instead, or nothing.
        self.assertNotIn(handles[0], [h for h, _ in one[0]])


def hugepages():
    """The default huge page size in bytes and how many are free, from /proc/meminfo."""
    fields = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, value = line.split(":")
            fields[key] = int(value.split()[0])
    return fields["Hugepagesize"] * 1024, fields["HugePages_Free"]


if __name__ == "__main__":
    unittest.main()
