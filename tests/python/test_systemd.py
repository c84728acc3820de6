"""The broker under a service manager: sd_notify, and restarts that keep regions.

Runs under `make check` (tests/test-systemd.sh) with MFB_BROKERD naming the
built broker and MFB_BROKER_WRAPPER (such as valgrind) put in front of it.
fake_systemd.FakeSystemd plays systemd: each test gets one, with its notify
socket, listening socket and fd store in a temporary folder.
"""

import errno
import fcntl
import os
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mfb  # noqa: E402
from testlib import TIMEOUT, FakeSystemdTest  # noqa: E402

F_ADD_SEALS = 1033  # F_LINUX_SPECIFIC_BASE + 9
# The saved state's header: magic, then the format version (daemon/state.c).
STATE_VERSION_OFFSET = 8

# What a restart must keep of a region (nattch, attach and detach times may change).
KEPT = ("handle", "size", "uid", "gid", "creator_uid", "creator_gid", "mode", "creator_pid", "seals", "state",
        "create_time", "change_time", "name")


class SystemdTest(FakeSystemdTest):
    def setUp(self):
        super().setUp()
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()

    def client(self):
        c = mfb.Client(self.systemd.socket_path, timeout=TIMEOUT)
        self.clients.append(c)
        return c

    def stop_cleanly(self):
        self.assertEqual(self.systemd.stop(), 0)


class NotifyTest(SystemdTest):
    def test_ready_status_watchdog_stopping(self):
        pid = self.systemd.start(watchdog_usec=200000)
        ready = self.systemd.wait_message("READY", "1")
        self.assertIn("regions: 0", ready.fields["STATUS"])

        # Two keep-alives: the watchdog timer repeats.
        self.systemd.wait_for(lambda: len(self.systemd.messages_from(pid, "WATCHDOG", "1")) >= 2, "two WATCHDOG=1")

        c = self.client()
        start = time.monotonic()
        for _ in range(100):
            c.create(4096).close()
        with c.create(65536, name="status") as r:
            self.systemd.wait_for(lambda: any("regions: 1 (named: 1)" in m.fields["STATUS"]
                                              for m in self.systemd.messages_from(pid, "STATUS")),
                                  "a STATUS= with the new region")
            # Coalesced: at most one line per interval (and the first), not one per request.
            elapsed = time.monotonic() - start
            updates = len(self.systemd.messages_from(pid, "STATUS")) - 1
            self.assertLessEqual(updates, elapsed / 0.1 + 2)
            self.assertLess(updates, 50)

        self.stop_cleanly()
        self.systemd.wait_message("STOPPING", "1", pid=pid)
        self.assertEqual(len(self.systemd.messages_from(pid, "STOPPING", "1")), 1)

    def test_no_watchdog_unless_asked(self):
        pid = self.systemd.start()
        self.client().create(4096).close()
        self.stop_cleanly()
        self.assertEqual(self.systemd.messages_from(pid, "WATCHDOG"), [])


class RestartTest(SystemdTest):
    def region_names(self):
        return sorted(n for n in self.systemd.store_names() if n != "state")

    def test_named_regions_survive(self):
        self.systemd.start()
        c = self.client()
        alpha = c.create(8192, name="alpha", mode=0o640)
        old_map = alpha.map()
        old_map[:5] = b"hello"
        beta = c.create(4096, name="beta")
        m = beta.map()
        m[:7] = b"sealed!"
        m.close()
        c.seal(beta.handle)
        # Only root may give a region away; anyone else keeps its own, which the restart must keep too.
        owner = (4242, 4343) if os.geteuid() == 0 else (os.getuid(), os.getgid())
        if os.geteuid() == 0:
            c.chown(uid=owner[0], gid=owner[1], name="beta")
        anonymous = c.create(4096)
        removed = c.create(4096, name="removed")
        c.remove(name="removed")
        before = {name: c.stat(name=name) for name in ("alpha", "beta")}
        highest = max(alpha.handle, beta.handle, anonymous.handle, removed.handle)
        # Each name was stored before its CREATE was answered; the removed one is gone again.
        self.systemd.wait_for(lambda: self.region_names() == sorted([str(alpha.handle), str(beta.handle)]),
                              "the named regions in the store")

        # A crash: nothing gets tidied up.
        self.systemd.kill()
        self.systemd.start()
        c2 = self.client()
        after = {e["name"]: e for e in c2.list()}
        self.assertEqual(sorted(after), ["alpha", "beta"])
        for name in after:
            self.assertEqual({k: after[name][k] for k in KEPT}, {k: before[name][k] for k in KEPT})
            self.assertEqual(after[name]["nattch"], 0)
        self.assertEqual((after["beta"]["uid"], after["beta"]["gid"]), owner)
        self.assertTrue(after["beta"]["seals"] & mfb.F_SEAL_WRITE)
        with self.assertRaises(mfb.BrokerError) as e:
            c2.open(name="beta", write=True)
        self.assertEqual(e.exception.errno, errno.EPERM)
        with c2.open(name="beta") as r:
            self.assertEqual(r.map()[:7], b"sealed!")

        # The same memory: a writer through the new broker, a reader mapped through the old one.
        with c2.open(name="alpha", write=True) as r:
            m = r.map()
            self.assertEqual(m[:5], b"hello")
            m[:5] = b"world"
            self.assertEqual(old_map[:5], b"world")
            m.close()

        for handle in (anonymous.handle, removed.handle):
            with self.assertRaises(mfb.BrokerError) as e:
                c2.stat(handle=handle)
            self.assertEqual(e.exception.errno, errno.ENOENT)
        with c2.create(4096) as new:
            self.assertGreater(new.handle, highest)

        # A clean restart (SIGTERM) keeps them too, with the time of the last open, saved in passing.
        opened = c2.stat(name="alpha")["attach_time"]
        self.assertGreater(opened, before["alpha"]["attach_time"])
        self.stop_cleanly()
        self.systemd.start()
        after = {e["name"]: e for e in self.client().list()}
        self.assertEqual(sorted(after), ["alpha", "beta"])
        self.assertEqual(after["alpha"]["attach_time"], opened)
        self.assertGreaterEqual(after["alpha"]["detach_time"], opened)
        self.stop_cleanly()
        old_map.close()
        for r in (alpha, beta, anonymous, removed):
            os.close(r.fd)

    def test_remove_forgets(self):
        self.systemd.start()
        c = self.client()
        c.create(4096, name="doomed").close()
        kept = c.create(4096, name="kept")
        kept.close()
        c.remove(name="doomed")
        self.systemd.wait_for(lambda: self.region_names() == [str(kept.handle)], "the removed region's fd removed")
        self.systemd.kill()
        self.systemd.start()
        self.assertEqual([e["name"] for e in self.client().list()], ["kept"])
        self.stop_cleanly()

    def start_with_broken_state(self, write_at, data):
        self.systemd.start()
        c = self.client()
        r = c.create(4096, name="alpha")
        r.close()
        c.close()
        self.clients.remove(c)
        self.systemd.kill()
        os.pwrite(self.systemd.store_fd("state"), data, write_at)
        self.systemd.start()
        self.assertEqual(self.client().list(), [])
        # Nothing is left of the old broker's but a new state.
        self.assertEqual(self.systemd.store_names(), ["state"])
        with self.client().create(4096, name="after") as new:
            self.assertGreater(new.handle, r.handle)
        self.stop_cleanly()

    def test_corrupt_state_starts_clean(self):
        self.start_with_broken_state(0, bytes(range(256)) * 4)
        self.assertIn("saved state is corrupt", self.systemd.log())

    def test_newer_state_starts_clean(self):
        self.start_with_broken_state(STATE_VERSION_OFFSET, struct.pack("=I", 1000))
        self.assertIn("newer format", self.systemd.log())

    def test_bad_region_fds_are_dropped(self):
        self.systemd.start()
        c = self.client()
        good = c.create(4096, name="good")
        m = good.map()
        m[:4] = b"good"
        m.close()
        unsealed = c.create(4096, name="unsealed")
        resized = c.create(4096, name="resized")
        for r in (good, unsealed, resized):
            r.close()
        self.systemd.kill()

        # Same size but not sealed; sealed but of another size; not ours at all; a memfd with no saved state.
        fd = os.memfd_create("unsealed", os.MFD_CLOEXEC)
        os.ftruncate(fd, 4096)
        self.systemd.replace_stored(str(unsealed.handle), fd)
        fd = os.memfd_create("resized", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.ftruncate(fd, 8192)
        fcntl.fcntl(fd, F_ADD_SEALS, mfb.F_SEAL_SHRINK | mfb.F_SEAL_GROW)
        self.systemd.replace_stored(str(resized.handle), fd)
        self.systemd.replace_stored("bogus", os.memfd_create("bogus", os.MFD_CLOEXEC))
        self.systemd.replace_stored("999999", os.memfd_create("stray", os.MFD_CLOEXEC))

        self.systemd.start()
        c2 = self.client()
        self.assertEqual([e["name"] for e in c2.list()], ["good"])
        with c2.open(name="good") as r:
            self.assertEqual(r.map()[:4], b"good")
        self.systemd.wait_for(lambda: self.systemd.store_names() == sorted(["state", str(good.handle)]),
                              "the bad fds removed from the store")
        log = self.systemd.log()
        self.assertIn("is not sealed against shrinking and growing", log)
        self.assertIn("has 8192 bytes, not 4096", log)
        self.stop_cleanly()


if __name__ == "__main__":
    unittest.main()
