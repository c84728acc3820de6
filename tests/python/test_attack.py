"""The named-region budget under a service manager, attacked as in issue 9.

Under systemd the broker keeps every named region in the service manager's
fd store, whose size is a budget for the whole broker (--max-kept-regions).
One uid must not be able to use it up: it gets only a share of what is left,
and another uid can still create named regions. The users are uid 65534
(the attacker) and 65533 (the victim), in forked children that drop to
them; fake_systemd.FakeSystemd plays systemd. Run as anyone but root, the
test cannot switch users and is skipped.
"""

import errno
import json
import os
import select
import sys
import tempfile
import time
import traceback
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_systemd  # noqa: E402
import mfb  # noqa: E402

ATTACKER, VICTIM = 65534, 65533
KEPT_MAX = 20
TIMEOUT = 30


def as_user(uid, fn, *args):
    """Runs fn(*args) in a child of uid (its gid the same, no supplementary groups) and returns its result,
    which must be JSON; an exception in the child fails the test with the child's traceback."""
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(r)
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            data = json.dumps({"result": fn(*args)})
            status = 0
        except BaseException:
            data = json.dumps({"error": traceback.format_exc()})
        finally:
            try:
                os.write(w, data.encode())
            finally:
                os._exit(status)
    os.close(w)
    try:
        chunks = []
        while True:
            ready, _, _ = select.select([r], [], [], TIMEOUT)
            if not ready:
                os.kill(pid, 9)
                raise AssertionError("uid %d's child did not finish within %d s" % (uid, TIMEOUT))
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    answer = json.loads(b"".join(chunks) or b'{"error": "the child said nothing"}')
    if "error" in answer:
        raise AssertionError("as uid %d: %s" % (uid, answer["error"]))
    return answer["result"]


def create_named_until_refused(path, prefix):
    """Creates named regions (closing their fds: the names keep them) until the broker refuses one.
    Returns how many it made, the refusal's errno and message, and what LIMITS says was kept."""
    with mfb.Client(path, timeout=TIMEOUT) as c:
        for i in range(KEPT_MAX + 1):
            try:
                c.create(4096, name="%s%d" % (prefix, i)).close()
            except mfb.BrokerError as e:
                return {"made": i, "errno": e.errno, "message": str(e),
                        "kept": c.limits()["resources"]["kept_regions"]["uid_used"]}
        return {"made": KEPT_MAX + 1, "errno": 0, "message": "", "kept": None}


def create_and_open(path):
    """The victim's create and open of an anonymous region: the same service as ever."""
    with mfb.Client(path, timeout=TIMEOUT) as c:
        with c.create(4096) as r:
            c.open(handle=r.handle, write=True).close()
    return True


def remove_named(path, prefix, n):
    with mfb.Client(path, timeout=TIMEOUT) as c:
        for i in range(n):
            c.remove(name="%s%d" % (prefix, i))
        return c.limits()["resources"]["kept_regions"]["uid_used"]


def broker_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def broker_fds_at_rest(pid, path):
    """The broker's fds with no client connected. An sd_notify() holds a socket for a moment (the broker
    sends one after READY, and after a connection comes or goes): the fewest seen over a few milliseconds,
    after a round trip that proves the broker back in its loop, is the count at rest."""
    with mfb.Client(path, timeout=TIMEOUT) as c:
        c.limits()
        seen = []
        for _ in range(20):
            seen.append(broker_fds(pid) - 1)
            time.sleep(0.001)
    return min(seen)


@unittest.skipUnless(os.geteuid() == 0, "needs root to switch to uids %d and %d" % (ATTACKER, VICTIM))
class KeptRegionsTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="mfb-attack.")
        # The other users reach the socket inside.
        os.chmod(self.dir.name, 0o755)
        self.systemd = fake_systemd.FakeSystemd(self.dir.name)
        os.chmod(self.systemd.socket_path, 0o666)

    def tearDown(self):
        self.systemd.close()
        sys.stderr.write(self.systemd.log())
        self.dir.cleanup()

    def test_one_uid_cannot_use_up_the_kept_regions(self):
        path = self.systemd.socket_path
        pid = self.systemd.start("--max-kept-regions", str(KEPT_MAX))
        stored = self.systemd.store_names()
        fds = broker_fds_at_rest(pid, path)

        # Alone, the attacker gets at most half of what is left: the victim finds the other half.
        attack = as_user(ATTACKER, create_named_until_refused, path, "a")
        self.assertEqual(attack["errno"], errno.EDQUOT, attack["message"])
        self.assertIn("named regions kept across restarts", attack["message"])
        self.assertGreater(attack["made"], 0)
        self.assertLessEqual(attack["made"], KEPT_MAX // 2)
        self.assertEqual(attack["kept"], attack["made"])
        self.assertTrue(as_user(VICTIM, create_and_open, path))

        victim = as_user(VICTIM, create_named_until_refused, path, "v")
        self.assertGreater(victim["made"], 0)
        self.assertEqual(victim["errno"], errno.EDQUOT, victim["message"])
        self.assertTrue(as_user(VICTIM, create_and_open, path))

        # Root is exempt from shares: refused only when nothing is left.
        with mfb.Client(path, timeout=TIMEOUT) as root:
            root.create(4096, name="root").close()
            root.remove(name="root")

        # Removed, their names leave the store and the charges go.
        self.assertEqual(as_user(ATTACKER, remove_named, path, "a", attack["made"]), 0)
        self.assertEqual(as_user(VICTIM, remove_named, path, "v", victim["made"]), 0)
        self.systemd.wait_for(lambda: self.systemd.store_names() == stored and broker_fds(pid) == fds,
                              "the store and the broker's fds as they were before the attack")
        self.assertEqual(self.systemd.stop(), 0)


if __name__ == "__main__":
    unittest.main()
