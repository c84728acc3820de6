"""The high-level client: a Client is one connection to the broker, a Region one region it holds, mapped.

Everything here goes through _wire, the protocol client; what this module adds is what a program wants
and the protocol does not say: mappings as memoryviews, regions as context managers, one lock per
connection so that threads may share it, seconds rather than nanoseconds, and errors that name the region.
"""

import collections
import errno
import os
import socket
import threading

from . import _wire

__all__ = ["BrokerError", "BrokerUnavailableError", "Client", "ProtocolError", "Region", "RegionInfo",
           "default_socket_path"]

BrokerError = _wire.BrokerError
ProtocolError = _wire.ProtocolError
default_socket_path = _wire.default_socket_path


class BrokerUnavailableError(ConnectionError):
    """No broker answers on the socket (none runs there, or the socket is not there). A ConnectionError, not
    a FileNotFoundError, so that `except FileNotFoundError` around an open means "no such region" only."""


class RegionInfo(collections.namedtuple("RegionInfo", _wire.INFO_FIELDS)):
    """What the broker tells of a region (STAT, SEAL, SET, LIST): handle, size in bytes, owner uid and gid,
    creator_uid, creator_gid, mode (permission bits), creator_pid, last_pid, nattch (connections holding
    it), seals (F_SEAL_* bits), state (STATE_* bits), the times in nanoseconds since the epoch
    (create_time, attach_time, detach_time, change_time; 0 for never) and name ("" when anonymous or
    removed)."""

    __slots__ = ()

    @property
    def removed(self):
        """Whether the region's name was removed: it lives on only while someone holds it."""
        return bool(self.state & _wire.STATE_REMOVED)

    @property
    def transient(self):
        """Whether the region is transient: its name goes with its last holder."""
        return bool(self.state & _wire.STATE_TRANSIENT)

    @property
    def sealed(self):
        """Whether the region is sealed against writing (F_SEAL_WRITE or F_SEAL_FUTURE_WRITE): published."""
        return bool(self.seals & (_wire.F_SEAL_WRITE | _wire.F_SEAL_FUTURE_WRITE))


def _region_info(info):
    return RegionInfo(**info)


def _lookup(target, handle):
    """(name, handle) for a request that looks a region up: target is a name, a Region (by its handle) or
    None with handle given."""
    if isinstance(target, Region):
        return None, target.handle
    if target is not None and handle:
        raise ValueError("give a name or a handle, not both")
    if target is None and not handle:
        raise ValueError("give a name or a handle")
    return target, handle


class Client(_wire.Closing):
    """A connection to memfd-brokerd.

    Client() connects to the default socket, as the C library does: $MEMFD_BROKER_SOCKET if set, else
    $XDG_RUNTIME_DIR/memfd-broker.sock for a user other than root, else /run/memfd-broker.sock. path
    names another. timeout (seconds, None for none) bounds connecting and each request but WAIT, which
    has a timeout of its own.

    The regions a Client creates or opens are held by its connection: closing the Client (or the process
    ending) releases them all; an anonymous region, or a transient one, goes away when no connection holds
    it any more. Threads may share a Client; each request waits for the one before it. A Client is of no
    use in a child process after fork(): make a new one there.
    """

    def __init__(self, path=None, timeout=None):
        self.path = path or _wire.default_socket_path()
        self.timeout = timeout
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._releases = []  # handles of Regions dropped unclosed, RELEASEd (quiet) before the next request
        try:
            self._wire = _wire.Client(self.path, timeout)
        except (FileNotFoundError, ConnectionRefusedError, socket.timeout) as e:
            raise BrokerUnavailableError(e.errno or errno.ETIMEDOUT,
                                         "no memfd-broker answers on %s: %s" % (self.path, e.strerror or e)) from e

    @property
    def capabilities(self):
        """The broker's capability bits from HELLO (memfd_broker.CAP_*)."""
        return self._wire.capabilities

    @property
    def region_size_max(self):
        """The largest region the broker creates, in bytes."""
        return self._wire.region_size_max

    @property
    def supports_transient(self):
        """Whether the broker creates transient regions (create(..., transient=True))."""
        return bool(self._wire.capabilities & _wire.CAP_TRANSIENT)

    @property
    def closed(self):
        """Whether close() was called."""
        return self._wire is None

    def close(self):
        """Closes the connection: the broker releases every region it held. Mappings stay valid."""
        w, self._wire = self._wire, None
        if w is not None:
            w.close()

    def __repr__(self):
        return "<%s %s%s>" % (type(self).__name__, self.path, " closed" if self.closed else "")

    def _call(self, label, fn, /, *args, **kwargs):
        """Runs fn(*args, **kwargs), a request on the connection, under the lock; a BrokerError comes out
        naming the region label (its name, if not None) as its filename."""
        if self._wire is None:
            raise ValueError("the Client is closed")
        if os.getpid() != self._pid:
            raise RuntimeError("a Client made before fork() cannot be used in the child: make a new one")
        with self._lock:
            # Quiet where the broker offers it: no answer to wait for, and a refusal is dropped.
            while self._releases:
                handle = self._releases.pop()
                try:
                    self._wire.release_quiet(handle)
                except BrokerError:
                    pass  # given back already, with its connection's end or a REMOVE: nothing to do
            try:
                return fn(*args, **kwargs)
            except BrokerError as e:
                if label is None or e.filename is not None:
                    raise
                raise BrokerError.of(e.errno, e.strerror, label) from None

    def create(self, size, name=None, mode=0o600, *, transient=False, hugetlb=False):
        """Creates a region of size bytes (zero-filled), read-write, and returns it as a Region.

        name: None for an anonymous region, which lives while someone holds it; a named region lives until
        remove() and after that while someone holds it, unless transient. transient=True: the name lives
        only while some connection holds the region, and both go away with the last holder, however it
        ends (needs a broker with the capability; OSError EOPNOTSUPP otherwise). mode: permission bits for
        other users (owner, group, others, as for files). hugetlb: back it with huge pages (size a multiple
        of their size). FileExistsError when the name is taken."""
        if not isinstance(size, int) or size <= 0:
            raise ValueError("a region's size is a positive number of bytes: %r" % (size,))
        flags = _wire.CREATE_HUGETLB if hugetlb else 0
        if transient:
            if not name:
                raise ValueError("a transient region needs a name: an anonymous one is transient anyway")
            if not self.supports_transient:
                raise BrokerError.of(errno.EOPNOTSUPP,
                                     "this broker does not offer transient regions (capability 0x%x): "
                                     "it is older than this client" % _wire.CAP_TRANSIENT, name)
            flags |= _wire.CREATE_TRANSIENT
        return Region(self, self._call(name, self._wire.create, size, name=name, mode=mode, flags=flags))

    def create_batch(self, size, count):
        """count anonymous regions of size bytes each, as a list of Regions: all of them or none. A broker
        with CREATE_BATCH makes up to 253 in one request."""
        return [Region(self, r) for r in self._call(None, self._wire.create_batch, size, count)]

    def open(self, name=None, *, handle=0, write=False):
        """Opens a region by name (or by handle) read-only, or read-write with write=True, as a Region.
        FileNotFoundError when there is no such region (or the caller may not see it), PermissionError when
        its mode does not allow the access, or (write) it is sealed."""
        name, handle = _lookup(name, handle)
        return Region(self, self._call(name, self._wire.open, name=name, handle=handle, write=write))

    def wait(self, name, timeout=None):
        """Waits until a region called name exists and is sealed (published), then returns it opened
        read-only. timeout: seconds, None for no limit; TimeoutError when it passes first. The connection
        serves nothing else while it waits: give waits a Client of their own."""
        timeout_ns = _wire.WAIT_FOREVER if timeout is None else max(0, int(timeout * 1e9))

        def wait():
            sock = self._wire.sock
            saved = sock.gettimeout()
            # The socket's own timeout must not end the WAIT before the broker does.
            sock.settimeout(None if timeout is None else timeout + (self.timeout or 0) + 1)
            try:
                return self._wire.wait(name, timeout_ns)
            finally:
                sock.settimeout(saved)
        return Region(self, self._call(name, wait))

    def seal(self, region, future_write=False):
        """Seals a region this connection holds read-write (a Region or a handle) against writing, which
        publishes it (see wait()); returns its RegionInfo. F_SEAL_WRITE needs every writable mapping gone:
        a Region's own is dropped first (Region.seal() does this). future_write=True: F_SEAL_FUTURE_WRITE,
        under which writable mappings that exist go on working."""
        if isinstance(region, Region):
            return region.seal(future_write)
        seals = _wire.F_SEAL_FUTURE_WRITE if future_write else _wire.F_SEAL_WRITE
        return _region_info(self._call(None, self._wire.seal, region, seals))

    def remove(self, name=None, *, handle=0):
        """Removes a region's name (by name, Region or handle): the name is free at once, nobody can open the
        region any more, and it goes away when its last holder lets go. Only its owner, creator or root may."""
        name, handle = _lookup(name, handle)
        self._call(name, self._wire.remove, name=name, handle=handle)

    def stat(self, name=None, *, handle=0):
        """The RegionInfo of a region, by name, Region or handle."""
        name, handle = _lookup(name, handle)
        return _region_info(self._call(name, self._wire.stat, name=name, handle=handle))

    def list(self):
        """The RegionInfo of every region the caller may see, in handle order."""
        return [_region_info(i) for i in self._call(None, self._wire.list)]

    def chmod(self, name, mode, *, handle=0):
        """Sets a region's permission bits (by name, Region, or name None and handle); returns its RegionInfo."""
        name, handle = _lookup(name, handle)
        return _region_info(self._call(name, self._wire.chmod, mode, name=name, handle=handle))

    def chown(self, name, uid=None, gid=None, *, handle=0):
        """Sets a region's owner uid (root only) and/or gid; None leaves one as it is. Returns its RegionInfo."""
        if uid is None and gid is None:
            raise ValueError("give a uid or a gid")
        name, handle = _lookup(name, handle)
        return _region_info(self._call(name, self._wire.chown, uid=uid, gid=gid, name=name, handle=handle))

    def limits(self):
        """The broker's limits and what the caller uses: {"uid": uid, "resources": {resource: {broker_max,
        broker_used, uid_max, uid_used, uid_available}}}, LIMIT_NONE standing for none."""
        return self._call(None, self._wire.limits)

    def _release(self, handle):
        """RELEASE for Region.close(): nothing to do when the connection is gone (it let go of everything)
        or belongs to the parent of a fork()."""
        if self._wire is not None and os.getpid() == self._pid:
            try:
                self._call(None, self._wire.release, handle)
            except BrokerError as e:
                if e.errno != errno.ENOENT:
                    raise
            except (BrokenPipeError, ConnectionResetError):
                pass  # the broker is gone, and has let go of everything

    def _release_later(self, handle):
        """A RELEASE from a finalizer, which may run in the middle of another request: sent before the next,
        quiet (Client._call())."""
        if self._wire is not None and os.getpid() == self._pid:
            self._releases.append(handle)


class Region(_wire.Closing):
    """A region held by a Client's connection, with a shared mapping of it as buf (a memoryview).

    The mapping is made on first use of buf: writable when the region was created or opened read-write
    and is not sealed, read-only otherwise (a write then raises TypeError). close() (or the end of a with
    block) releases buf, unmaps, and gives the connection's hold back; close() raises BufferError while
    something still exports buf (a numpy array made on it, say), as multiprocessing.shared_memory does.
    """

    def __init__(self, client, wire_region):
        self._client = client
        self._region = wire_region
        self._mmap = None
        self._buf = None

    @property
    def handle(self):
        """The region's handle: never 0, never reused while the broker runs."""
        return self._region.handle

    @property
    def name(self):
        """The region's name as it was when opened; "" for an anonymous region."""
        return self._region.info.get("name", "")

    @property
    def size(self):
        """The region's size in bytes."""
        return self._region.size

    @property
    def writable(self):
        """Whether this hold may write: created, or opened with write=True. A seal may still forbid it."""
        return bool(self._region.access & _wire.ACCESS_WRITE)

    @property
    def closed(self):
        """Whether close() was called."""
        return self._region.fd < 0

    def fileno(self):
        """The region's memfd (valid until close()): for os.pread, mmap with an offset, or passing on."""
        self._check_open()
        return self._region.fd

    @property
    def buf(self):
        """A memoryview over a shared mapping of the whole region: what one process writes in it, every
        other mapping of the region sees at once, with no copy."""
        if self._buf is None:
            self._check_open()
            self._mmap = self._region.map()
            self._buf = memoryview(self._mmap)
        return self._buf

    def _check_open(self):
        if self._region.fd < 0:
            raise ValueError("the region is closed")

    def _unmap(self):
        """Releases buf and unmaps (BufferError, and nothing done, while buf is exported)."""
        if self._buf is not None:
            self._buf.release()
            self._buf = None
        if self._mmap is not None:
            self._mmap.close()
            self._mmap = None

    def stat(self):
        """The region's RegionInfo now."""
        self._check_open()
        return self._client.stat(handle=self.handle)

    def seal(self, future_write=False):
        """Seals the region against writing, which publishes it (see Client.wait()); returns its RegionInfo.

        F_SEAL_WRITE (the default) needs every writable mapping of the region gone, so this region's own is
        released first (BufferError while something exports buf); buf maps again read-only afterwards.
        future_write=True seals with F_SEAL_FUTURE_WRITE instead: buf stays writable here, while every
        mapping and fd made from now on is read-only."""
        self._check_open()
        if future_write:
            seals = _wire.F_SEAL_FUTURE_WRITE
        else:
            seals = _wire.F_SEAL_WRITE
            if self._mmap is not None and self.writable:
                self._unmap()
        return _region_info(self._client._call(self.name or None, self._client._wire.seal, self.handle, seals))

    def notifier(self):
        """The region's control page (NOTIFIER), as a _wire.Notifier: seq() and watchers() read it."""
        self._check_open()
        return self._client._call(self.name or None, self._client._wire.notifier, self.handle)

    def watch(self):
        """A _wire.Watch on the region's notifications (NOTIFY_WATCH): a pipe that turns readable after each
        notify(), for select() or Watch.wait(timeout); it ends when this connection lets go of the region."""
        self._check_open()
        return self._client._call(self.name or None, self._client._wire.notify_watch, self.handle)

    def notify(self, advance=True):
        """Notifies the region's watchers and futex waiters (NOTIFY; the hold must be writable). advance:
        the broker adds 1 to the control page's sequence first. Returns the sequence after it."""
        self._check_open()
        return self._client._call(self.name or None, self._client._wire.notify, self.handle, advance)

    def close(self):
        """Releases buf, unmaps, closes the fd and gives the hold back. BufferError while buf is exported
        (nothing is closed then); closing again does nothing."""
        if self._region.fd < 0:
            return
        self._unmap()
        os.close(self._region.fd)
        self._region.fd = -1
        self._client._release(self.handle)

    def __del__(self):
        # A Region dropped without close(): unmap (if nothing exports buf) and give the hold back later, as
        # this may run in the middle of another request on the same connection.
        region = getattr(self, "_region", None)
        if region is None or region.fd < 0:
            return
        try:
            self._unmap()
        except BufferError:
            pass
        try:
            os.close(region.fd)
        except OSError:
            pass
        region.fd = -1
        self._client._release_later(region.handle)

    def __repr__(self):
        state = "closed" if self.closed else ("read-write" if self.writable else "read-only")
        return "<%s %s handle=%d size=%d %s>" % (type(self).__name__, repr(self.name) if self.name else "anonymous",
                                                 self.handle, self.size, state)
