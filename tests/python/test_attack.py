"""The named-region budget under a service manager, attacked as in issue 9.

Under systemd the broker keeps every named region across restarts, its memfd
parked in a socket the service manager's fd store holds, and the number it
keeps is a budget for the whole broker (--max-kept-regions).
One uid must not be able to use it up: it gets only a share of what is left,
and another uid can still create named regions. The users are uid 65534
(the attacker) and 65533 (the victim), in forked children that drop to
them; fake_systemd.FakeSystemd plays systemd. Run as anyone but root, the
test cannot switch users and is skipped.
"""

import errno
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mfb  # noqa: E402
from testlib import TIMEOUT, FakeSystemdTest, as_user, needs_root  # noqa: E402

ATTACKER, VICTIM = 65534, 65533
KEPT_MAX = 20


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


@needs_root(ATTACKER, VICTIM)
class KeptRegionsTest(FakeSystemdTest):
    prefix = "mfb-attack."

    def setUp(self):
        super().setUp()
        # The other users reach the socket inside.
        os.chmod(self.dir.name, 0o755)
        os.chmod(self.systemd.socket_path, 0o666)

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

    def test_the_kept_regions_stop_at_the_limit(self):
        path = self.systemd.socket_path
        self.systemd.start("--max-kept-regions", str(KEPT_MAX))
        stored = self.systemd.store_names()

        # Root, exempt from shares, keeps exactly the limit; the next named region is refused, nothing else.
        full = create_named_until_refused(path, "k")
        self.assertEqual((full["made"], full["errno"]), (KEPT_MAX, errno.ENOSPC), full["message"])
        self.assertIn("named regions kept across restarts", full["message"])
        self.assertEqual(full["kept"], KEPT_MAX)
        self.assertTrue(as_user(VICTIM, create_and_open, path))

        # One removed makes room for exactly one.
        with mfb.Client(path, timeout=TIMEOUT) as c:
            c.remove(name="k0")
            c.create(4096, name="again").close()
            with self.assertRaises(mfb.BrokerError) as e:
                c.create(4096, name="one-more").close()
            self.assertEqual(e.exception.errno, errno.ENOSPC)
            c.remove(name="again")
        with mfb.Client(path, timeout=TIMEOUT) as c:
            for i in range(1, KEPT_MAX):
                c.remove(name="k%d" % i)
            self.assertEqual(c.limits()["resources"]["kept_regions"]["uid_used"], 0)
        self.systemd.wait_for(lambda: self.systemd.store_names() == stored, "the store as it was before")
        self.assertEqual(self.systemd.stop(), 0)


if __name__ == "__main__":
    unittest.main()
