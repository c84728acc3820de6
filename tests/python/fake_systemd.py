"""A stand-in for systemd, for testing the broker's service-manager support.

It plays the parts of the service manager that the broker talks to: it owns
the notify socket and records every sd_notify(3) message with its sender's
pid; it keeps a file-descriptor store, as FDSTORE=1 and FDSTOREREMOVE=1 ask;
and it starts the broker as a socket-activated service would be, with the
listening socket and the stored fds at fd 3, 4, ... in $LISTEN_FDS and
$LISTEN_FDNAMES, $LISTEN_PID set to the broker's pid, and optionally a
watchdog ($WATCHDOG_USEC, $WATCHDOG_PID). Standard library only.
"""

import array
import fcntl
import os
import select
import shlex
import signal
import socket
import struct
import threading
import time

TIMEOUT = 30
# What systemd takes in one notify message (NOTIFY_FD_MAX).
FDS_PER_MESSAGE_MAX = 768
SOCKET_FDNAME = "memfd-broker.socket"
QUIT = b"X-FAKE-SYSTEMD-QUIT=1"
SYNC = "X-FAKE-SYSTEMD-SYNC"

# The buckets the broker parks memfds in (daemon/park.h).
PARK_PREFIX = "park."
PARK_MAGIC = 0x5042464D
PARK_FDS_PER_MESSAGE = 253
SO_PEEK_OFF = 42


def bucket_messages(fd):
    """What the bucket fd (a stored receiving end) holds, read as the broker reads it, without taking anything:
    a list of (data, fds), the fds new ones the caller owns."""
    sock = socket.socket(fileno=os.dup(fd))
    messages = []
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, 0)
        while True:
            try:
                data, ancdata, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(4 * 256),
                                                   socket.MSG_PEEK | socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC)
            except BlockingIOError:
                return messages
            fds = array.array("i")
            for level, kind, cdata in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(cdata[:len(cdata) - len(cdata) % 4])
            messages.append((data, list(fds)))
    finally:
        sock.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, -1)
        sock.close()


def park_message(handles):
    """The bytes of a bucket message for handles."""
    return struct.pack("=II", PARK_MAGIC, len(handles)) + struct.pack("=%dQ" % len(handles), *handles)


def make_bucket(messages):
    """A bucket as a broker leaves one: messages are (data, fds), the fds borrowed. Returns the receiving end."""
    sender, queue = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for data, fds in messages:
        sender.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else [])
    sender.close()
    return queue.detach()


def _parse(data):
    fields = {}
    for line in data.decode("utf-8", "replace").split("\n"):
        key, sep, value = line.partition("=")
        if sep:
            fields[key] = value
    return fields


class Message:
    def __init__(self, pid, fields, nfds):
        self.pid, self.fields, self.nfds = pid, fields, nfds

    def __repr__(self):
        return "Message(pid=%d, %r, nfds=%d)" % (self.pid, self.fields, self.nfds)


class FakeSystemd:
    """The service manager of one broker service, in a folder of its own."""

    def __init__(self, folder):
        self.folder = folder
        self.notify_path = os.path.join(folder, "notify")
        self.socket_path = os.path.join(folder, "broker.sock")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.notify.bind(self.notify_path)
        self.notify.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.listener.bind(self.socket_path)
        self.listener.listen(64)
        self.store = []         # [name, fd] in the order stored, as systemd passes them back
        self.messages = []      # every Message received
        self.pid = None         # the broker's, while it runs
        self.syncs = 0
        self.exit_status = None
        self.log_path = os.path.join(folder, "broker.log")
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    # The notify socket -------------------------------------------------

    def _read(self):
        fd_size = struct.calcsize("i")
        cred_size = struct.calcsize("iII")
        anc_size = socket.CMSG_SPACE(FDS_PER_MESSAGE_MAX * fd_size) + socket.CMSG_SPACE(cred_size)
        while True:
            data, ancdata, _, _ = self.notify.recvmsg(4096, anc_size, socket.MSG_CMSG_CLOEXEC)
            fds, pid = array.array("i"), 0
            for level, kind, cdata in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(cdata[:len(cdata) - len(cdata) % fd_size])
                elif level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", cdata[:cred_size])[0]
            if data == QUIT:
                return
            fields = _parse(data)
            with self.cond:
                if fields.get("FDSTORE") == "1":
                    name = fields.get("FDNAME", "stored")
                    self.store.extend([name, fd] for fd in fds)
                else:
                    for fd in fds:
                        os.close(fd)
                if fields.get("FDSTOREREMOVE") == "1":
                    name = fields.get("FDNAME")
                    for entry in [e for e in self.store if e[0] == name]:
                        os.close(entry[1])
                        self.store.remove(entry)
                self.messages.append(Message(pid, fields, len(fds)))
                self.cond.notify_all()

    def wait_for(self, predicate, what):
        """Waits until predicate() holds, called with the lock held; fails if the broker dies first."""
        deadline = time.monotonic() + TIMEOUT
        with self.cond:
            while not predicate():
                if self.pid is not None and self._reap(os.WNOHANG):
                    raise AssertionError("the broker exited (status %r) while waiting for %s"
                                         % (self.exit_status, what))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("timed out waiting for %s; messages: %r" % (what, self.messages))
                # Woken by every message; the broker's exit is noticed within this.
                self.cond.wait(min(remaining, 0.1))

    def messages_from(self, pid, key, value=None):
        """The messages of pid that set key (to value, if given)."""
        with self.cond:
            return [m for m in self.messages
                    if m.pid == pid and key in m.fields and (value is None or m.fields[key] == value)]

    def wait_message(self, key, value=None, pid=None):
        """Waits for a message from the broker (or pid) that sets key, and returns the first."""
        pid = pid or self.pid
        self.wait_for(lambda: any(m.pid == pid and key in m.fields and (value is None or m.fields[key] == value)
                                  for m in self.messages), "%s=%s" % (key, value or "..."))
        return self.messages_from(pid, key, value)[0]

    def store_names(self):
        with self.cond:
            return sorted(name for name, _ in self.store)

    def store_fd(self, name):
        with self.cond:
            matches = [fd for n, fd in self.store if n == name]
        if len(matches) != 1:
            raise AssertionError("%d fds named %s in the store" % (len(matches), name))
        return matches[0]

    def buckets(self):
        """The names of the stored buckets."""
        return [name for name in self.store_names() if name.startswith(PARK_PREFIX)]

    def parked(self):
        """The handles parked in the stored buckets, in the order found, each as often as it is parked; the
        number of fds each message carries must match its handles."""
        with self.cond:
            fds = [fd for name, fd in self.store if name.startswith(PARK_PREFIX)]
            handles = []
            for fd in fds:
                for data, passed in bucket_messages(fd):
                    for f in passed:
                        os.close(f)
                    magic, count = struct.unpack_from("=II", data)
                    assert magic == PARK_MAGIC and len(passed) == count <= PARK_FDS_PER_MESSAGE, (magic, count)
                    handles += struct.unpack_from("=%dQ" % count, data, 8)
            return handles

    def remove_stored(self, name):
        """Closes and forgets what the store holds under name."""
        with self.cond:
            for entry in [e for e in self.store if e[0] == name]:
                os.close(entry[1])
                self.store.remove(entry)

    def replace_stored(self, name, fd):
        """Puts fd (taken) in the store under name, in place of what was there."""
        with self.cond:
            for entry in self.store:
                if entry[0] == name:
                    os.close(entry[1])
                    entry[1] = fd
                    return
            self.store.append([name, fd])

    # The broker --------------------------------------------------------

    def start(self, *args, watchdog_usec=None):
        """Starts the broker with the listening socket and the store, as systemd starts the service."""
        assert self.pid is None
        wrapper = shlex.split(os.environ.get("MFB_BROKER_WRAPPER", ""))
        argv = wrapper + [os.environ["MFB_BROKERD"], "--log-level", "info", *args]
        with self.cond:
            passed = [(SOCKET_FDNAME, self.listener.fileno())] + [(name, fd) for name, fd in self.store]
        # TMPDIR: what a wrapper leaves behind when the broker is killed (valgrind's vgdb FIFOs) goes with the folder.
        env = dict(os.environ, NOTIFY_SOCKET=self.notify_path, LISTEN_FDS=str(len(passed)),
                   LISTEN_FDNAMES=":".join(name for name, _ in passed), TMPDIR=self.folder)
        for key in ("LISTEN_PID", "WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(key, None)
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self.exit_status = None
        pid = os.fork()
        if pid == 0:
            # Only async-signal-safe work between fork() and exec(): the reader thread is gone here.
            try:
                env["LISTEN_PID"] = str(os.getpid())
                if watchdog_usec:
                    env["WATCHDOG_PID"] = str(os.getpid())
                # Out of the way first, lest placing one at 3 + i overwrite another still to be placed.
                high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3 + len(passed)) for _, fd in passed]
                os.dup2(log, 2)
                for i, fd in enumerate(high):
                    os.dup2(fd, 3 + i)
                os.closerange(3 + len(passed), 1 << 20)
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        os.close(log)
        self.pid = pid
        self.wait_message("READY", "1")
        return pid

    def _reap(self, flags=0):
        """Collects the broker's exit status. Returns whether it exited; call with the broker started."""
        pid, status = os.waitpid(self.pid, flags)
        if pid == 0:
            return False
        self.exit_status = status
        self.pid = None
        return True

    def _reap_within(self, timeout):
        """Waits up to timeout seconds for the broker to exit and collects its status; returns whether it did."""
        pidfd = os.pidfd_open(self.pid)
        try:
            exited, _, _ = select.select([pidfd], [], [], timeout)
        finally:
            os.close(pidfd)
        return bool(exited) and self._reap()

    def _sync(self):
        """Waits until every message sent so far is handled: as systemd handles a dead service's last ones."""
        self.syncs += 1
        token = str(self.syncs)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.settimeout(TIMEOUT)
            s.sendto(("%s=%s" % (SYNC, token)).encode(), self.notify_path)
        self.wait_for(lambda: any(m.fields.get(SYNC) == token for m in self.messages), "the messages sent so far")

    def kill(self):
        """SIGKILL, as a crash or the watchdog would: the broker gets no chance to tidy up."""
        os.kill(self.pid, signal.SIGKILL)
        if not self._reap_within(TIMEOUT):
            raise AssertionError("the broker did not die of SIGKILL")
        self._sync()
        return self.exit_status

    def stop(self):
        """SIGTERM, as systemctl stop or restart does. Returns the exit status."""
        os.kill(self.pid, signal.SIGTERM)
        if not self._reap_within(TIMEOUT):
            self.kill()
            raise AssertionError("the broker did not exit on SIGTERM")
        self._sync()
        return self.exit_status

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def close(self):
        """Kills a broker still running, stops reading and closes every stored fd."""
        if self.pid is not None:
            self.kill()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.settimeout(TIMEOUT)
            s.sendto(QUIT, self.notify_path)
        self.reader.join(TIMEOUT)
        for _, fd in self.store:
            os.close(fd)
        self.store = []
        self.notify.close()
        self.listener.close()
