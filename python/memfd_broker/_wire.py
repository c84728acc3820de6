"""The memfd-broker wire protocol in pure Python (standard library only).

Written from the protocol's description (PROTOCOL.md in the source tree)
alone, to prove that the protocol can be spoken without the C library. This
is the low level under the memfd_broker package: one request, one reply,
region info as dicts. The project's tests drive the broker through it too.

Errors from the broker raise BrokerError, an OSError whose errno attribute is
the positive errno value and whose strerror is the broker's message. Each
one is also an instance of the built-in OSError subclass for its errno
(FileNotFoundError for ENOENT, FileExistsError for EEXIST, PermissionError
for EACCES and EPERM, TimeoutError for ETIMEDOUT, ...), so that
`except FileNotFoundError` catches a region that does not exist.
"""

import collections
import fcntl
import mmap
import os
import select
import socket
import stat as _stat
import struct
import termios

VERSION = 2
RECORD_MAX = 65536
NAME_MAX = 255
LIST_ENTRIES_MAX = 128
LIST_SCAN_MAX = 256
REQUESTS_IN_FLIGHT_MAX = 64

HELLO, CREATE, OPEN, SEAL, STAT, LIST, RELEASE, REMOVE, SET, WAIT, LIMITS, CREATE_BATCH, NOTIFIER, NOTIFY_WATCH, \
    NOTIFY = range(1, 16)
USAGE, ALLOCATED = 0x10, 0x11
USAGE_ROWS_MAX = 16  # rows in one USAGE reply, whose size is fixed: rows after count are zero
ALLOCATED_ENTRIES_MAX = 128  # entries in one ALLOCATED reply, whose size is fixed too
CREATE_BATCH_MAX = 253  # regions in one CREATE_BATCH: the fds one record carries
REPLY = 0x8000

CAP_SEAL_FUTURE_WRITE = 0x1
CAP_NOEXEC_SEAL = 0x2
CAP_HUGETLB = 0x4
CAP_QUIET = 0x8
CAP_CREATE_BATCH = 0x10
CAP_NOTIFY = 0x20
CAP_TRANSIENT = 0x40  # CREATE accepts CREATE_TRANSIENT

FLAG_QUIET = 0x1  # request header flag: answer only a failure (RELEASE and REMOVE)

CREATE_HUGETLB = 0x1
CREATE_TRANSIENT = 0x2  # a named region whose name lives only while some connection holds the region

NOTIFY_ADVANCE = 0x1  # NOTIFY flag: the broker advances seq and wakes the futex waiters itself
NOTIFY_PAGE_SIZE = 4096

SET_MODE = 0x1
SET_UID = 0x2
SET_GID = 0x4

WAIT_FOREVER = 0xFFFFFFFFFFFFFFFF

ACCESS_READ = 0x1
ACCESS_WRITE = 0x2

F_SEAL_SEAL = 0x1
F_SEAL_SHRINK = 0x2
F_SEAL_GROW = 0x4
F_SEAL_WRITE = 0x8
F_SEAL_FUTURE_WRITE = 0x10
F_GET_SEALS = 1034  # F_LINUX_SPECIFIC_BASE + 10

STATE_REMOVED = 0x1
STATE_HUGETLB = 0x2
STATE_TRANSIENT = 0x4  # created with CREATE_TRANSIENT: its name goes with its last holder

# LIMITS resources, in the order of the reply's entries.
RESOURCES = ("regions", "bytes", "fds", "connections", "queued_bytes", "waiters", "kept_regions", "holds")
LIMIT_NONE = 0xFFFFFFFFFFFFFFFF  # no limit; in broker_used, not told

HEADER = struct.Struct("=IHHQiHH")  # size, opcode, flags, cookie, status, nfds, reserved
NAME = "256s"
HELLO_REQUEST = struct.Struct("=II")
HELLO_REPLY = struct.Struct("=IIQQIIIIII")
REGION_INFO = struct.Struct("=QQIIIIIIIIIIQQQQ" + NAME)
CREATE_REQUEST = struct.Struct("=QII" + NAME)
OPEN_REQUEST = struct.Struct("=QII" + NAME)
REGION_REPLY_HEAD = struct.Struct("=II")
SEAL_REQUEST = struct.Struct("=QII")
LOOKUP_REQUEST = struct.Struct("=Q" + NAME)
LIST_REQUEST = struct.Struct("=Q")
LIST_REPLY_HEAD = struct.Struct("=IIQ")  # count, more, next_after
RELEASE_REQUEST = struct.Struct("=Q")
SET_REQUEST = struct.Struct("=QIIII" + NAME)
WAIT_REQUEST = struct.Struct("=QII" + NAME)
CREATE_BATCH_REQUEST = struct.Struct("=QIIII")  # size, count, flags, mode, reserved
CREATE_BATCH_REPLY_HEAD = struct.Struct("=IIQ")  # count, access, size; then count u64 handles
LIMITS_REPLY_HEAD = struct.Struct("=II")  # uid, count
LIMIT = struct.Struct("=QQQQQ")
LIMIT_FIELDS = "broker_max broker_used uid_max uid_used uid_available".split()
USAGE_REQUEST = struct.Struct("=II")  # first_uid, reserved
USAGE_REPLY_HEAD = struct.Struct("=IIII")  # count, more, next_uid, reserved; then USAGE_ROWS_MAX limits replies
ALLOCATED_REQUEST = struct.Struct("=QII")  # after_handle, max_count, reserved
ALLOCATED_REPLY_HEAD = struct.Struct("=IIQ")  # count, more, next_after; then ALLOCATED_ENTRIES_MAX entries
ALLOCATED_ENTRY = struct.Struct("=QQ")  # handle, allocated
NOTIFY_REQUEST = struct.Struct("=QII")  # handle, flags, reserved
NOTIFIER_REPLY = struct.Struct("=IIQ")  # access, reserved, seq
NOTIFY_REPLY = struct.Struct("=Q")  # seq
NOTIFY_PAGE = struct.Struct("=QII")  # seq, watchers, reserved: the start of the control page

INFO_FIELDS = (
    "handle size uid gid creator_uid creator_gid mode creator_pid last_pid "
    "nattch seals state create_time attach_time detach_time change_time name"
).split()


class BrokerError(OSError):
    """The broker refused a request: errno and the broker's message (strerror).

    Raise it through BrokerError.of(), which picks the subclass that is also the built-in OSError subclass
    of the errno, so that both `except BrokerError` and `except FileNotFoundError` catch a refusal ENOENT."""

    _classes = {}

    @classmethod
    def of(cls, err, message=None, filename=None):
        """A BrokerError for the positive errno err, with the broker's message (else the system's text for
        err) and the region name if known: an instance of the built-in subclass of OSError for err too."""
        builtin = type(OSError(err, ""))
        kind = cls
        if builtin is not OSError:
            kind = cls._classes.get(builtin)
            if kind is None:
                kind = type("Broker" + builtin.__name__, (cls, builtin),
                            {"__doc__": "A BrokerError that is a %s." % builtin.__name__,
                             "__module__": cls.__module__})
                cls._classes[builtin] = kind
        if filename is None:
            return kind(err, message or os.strerror(err))
        return kind(err, message or os.strerror(err), filename)


class ProtocolError(Exception):
    """The broker sent something that does not follow the protocol."""


def default_socket_path():
    """The socket a client connects to when given none, as the C library chooses it: $MEMFD_BROKER_SOCKET if
    set, else $XDG_RUNTIME_DIR/memfd-broker.sock for a user other than root (the per-user broker), else
    /run/memfd-broker.sock (the system's)."""
    path = os.environ.get("MEMFD_BROKER_SOCKET")
    if path:
        return path
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if os.geteuid() != 0 and runtime:
        return os.path.join(runtime, "memfd-broker.sock")
    return "/run/memfd-broker.sock"


def _name_field(name):
    """The bytes of a name field (struct pads them with zeros); None or "" for none. The broker checks the
    rest: printable ASCII without spaces."""
    try:
        raw = (name or "").encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("a region name is ASCII: %r" % name) from None
    if len(raw) > NAME_MAX:
        raise ValueError("name longer than %d bytes" % NAME_MAX)
    return raw  # struct pads with zero bytes


def _info(raw):
    """Region info (344 bytes) as a dict keyed by INFO_FIELDS, the name a str."""
    values = REGION_INFO.unpack(raw)
    info = dict(zip(INFO_FIELDS, values))
    info["name"] = info["name"].rstrip(b"\0").decode("ascii")
    return info


class Closing:
    """A context manager that closes what it made: `with x:` calls x.close() at the end."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Region(Closing):
    """An fd the broker gave us, verified, with its info; close() releases it."""

    def __init__(self, client, fd, access, info):
        self.client = client
        self.fd = fd
        self.access = access
        self.info = info
        self.handle = info["handle"]
        self.size = info["size"]

    def map(self):
        """A shared mmap of the whole region: writable when the fd is and no write seal forbids it."""
        writable = self.access & ACCESS_WRITE and not (self.seals() & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE))
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        return mmap.mmap(self.fd, self.size, flags=mmap.MAP_SHARED, prot=prot)

    def seals(self):
        """The memfd's seals now (F_GET_SEALS): F_SEAL_* bits."""
        return fcntl.fcntl(self.fd, F_GET_SEALS)

    def close(self):
        """Closes the fd and RELEASEs the connection's reference; mappings made with map() stay valid."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self.client.release(self.handle)


class Notifier(Closing):
    """A region's control page from NOTIFIER: its fd, the access granted, and a read-only shared mapping through
    which seq and watchers are read. Python has no atomic add on shared memory, so this client never writes the
    page: it notifies with NOTIFY and NOTIFY_ADVANCE (Client.notify), and waits through a Watch."""

    def __init__(self, fd, access, seq):
        self.fd = fd
        self.access = access
        self.first_seq = seq  # the sequence when the broker answered
        self.map = mmap.mmap(fd, NOTIFY_PAGE_SIZE, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)

    def seq(self):
        """The sequence now. Copying 8 bytes out of the mapping is not one atomic load: read until two agree, so
        that a copy torn by a concurrent advance is not taken for a sequence."""
        now = NOTIFY_PAGE.unpack_from(self.map)[0]
        while True:
            again = NOTIFY_PAGE.unpack_from(self.map)[0]
            if again == now:
                return now
            now = again

    def watchers(self):
        """How many watchers the control page counts."""
        return NOTIFY_PAGE.unpack_from(self.map)[1]

    def close(self):
        """Unmaps the control page and closes its fd."""
        if self.fd >= 0:
            self.map.close()
            os.close(self.fd)
            self.fd = -1


class Watch(Closing):
    """The pipe's read end of NOTIFY_WATCH: readable after notifications of the region. The broker ends it when
    the connection lets go of the region, or closes: the pipe is at end of file then (ended). close() closes only
    this process's fd."""

    def __init__(self, fd, seq):
        self.fd = fd
        self.seq = seq  # the sequence when the broker answered
        self.ended = False  # end of file seen: the broker closed its write end

    def fileno(self):
        """The pipe's fd, for select() and selectors."""
        return self.fd

    def wait(self, timeout=None):
        """Waits until the pipe is readable and consumes what it holds; returns how many bytes that was (one per
        pass of the broker's loop that signalled it), or 0 if timeout seconds passed first (None: no limit) or
        the pipe is at end of file (ended is set then)."""
        if not select.select([self.fd], [], [], timeout)[0]:
            return 0
        return self.consume()

    def consume(self):
        """Reads the pipe empty without blocking; returns how many bytes it held: 0 when nothing was signalled
        (EAGAIN). Sets ended at end of file."""
        count = 0
        while True:
            try:
                data = os.read(self.fd, 4096)
            except BlockingIOError:
                return count
            if not data:
                self.ended = True
                return count
            count += len(data)

    def close(self):
        """Closes the read end of the pipe."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Client(Closing):
    """One connection to the broker, after HELLO. Not thread-safe: one request at a time, replies matched by
    cookie in order. version, capabilities (CAP_* bits) and region_size_max come from HELLO."""

    def __init__(self, path=None, timeout=None):
        """Connects and says HELLO. timeout: the seconds that connecting and each send or receive
        (such as the answer to a WAIT) may take before they raise TimeoutError; None waits forever."""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.settimeout(timeout)
        self.cookie = 0
        self.last_quiet = 0  # cookie of the newest quiet request, answered only if it fails
        self.last_answered = 0  # cookie of the newest request whose reply was read
        try:
            self.sock.connect(path or default_socket_path())
            try:
                cookie = self._send(HELLO, HELLO_REQUEST.pack(VERSION, VERSION))
            except (BrokenPipeError, ConnectionResetError):
                # A broker turning us away may have closed before our HELLO got there; its reason waits to be read.
                cookie = None
            try:
                body = self._receive(HELLO, cookie)
            except ConnectionResetError:
                # Or it closed with our HELLO unread: the kernel says so once, ahead of the reason it sent.
                body = self._receive(HELLO, cookie)
            hello = HELLO_REPLY.unpack(body)
            self.version, self.capabilities, self.region_size_max = hello[0], hello[2], hello[3]
            if self.version != VERSION:
                raise ProtocolError("broker chose version %d" % self.version)
        except BaseException:
            self.sock.close()
            raise

    def close(self):
        """Closes the connection: the broker releases everything it held."""
        self.sock.close()

    def _call(self, opcode, body, want_fds=0):
        """Sends one request and returns the reply's body (and fds if want_fds)."""
        return self._receive(opcode, self._send(opcode, body), want_fds)

    def _send(self, opcode, body, flags=0):
        """Sends one request and returns its cookie."""
        self.cookie += 1
        self.sock.sendmsg([HEADER.pack(HEADER.size + len(body), opcode, flags, self.cookie, 0, 0, 0) + body])
        return self.cookie

    def _receive(self, opcode, cookie, want_fds=0):
        """The reply to the request sent with cookie, the next one to arrive but for the failures of quiet
        requests sent before it, which are dropped: its body (and fds if want_fds)."""
        data, fds, flags = self._recv()
        while self._quiet_failure(data, cookie):
            for fd in fds:
                os.close(fd)
            data, fds, flags = self._recv()
        self.last_answered = cookie
        try:
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                raise ProtocolError("truncated reply")
            if not data:
                raise ConnectionResetError("the broker closed the connection")
            size, rop, rflags, rcookie, status, nfds, reserved = HEADER.unpack_from(data)
            # A broker out of fds turns a connection away with one error under cookie 0 in place of HELLO's reply.
            turned_away = opcode == HELLO and rcookie == 0 and status < 0
            if size != len(data) or rop != opcode | REPLY or (rcookie != cookie and not turned_away) \
                    or nfds != len(fds):
                raise ProtocolError("reply does not match the request")
            if status < 0:
                message = data[HEADER.size:].decode("utf-8", "replace")
                raise BrokerError.of(-status, message)
            if len(fds) != want_fds:
                raise ProtocolError("expected %d fds, got %d" % (want_fds, len(fds)))
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        body = data[HEADER.size:]
        return (body, fds) if want_fds else body

    def _recv(self):
        """One record from the socket (a hook for tests that break records on purpose)."""
        return recv_record(self.sock)

    def _quiet_failure(self, data, cookie):
        """Whether data is the failure of a quiet RELEASE (release_quiet()) sent after the last reply read and
        before cookie's: the only reply a quiet request gets, which nobody waits for."""
        if len(data) < HEADER.size:
            return False
        _, rop, _, rcookie, status, _, _ = HEADER.unpack_from(data)
        return rop == RELEASE | REPLY and status < 0 and rcookie != cookie and \
            self.last_answered < rcookie <= self.last_quiet

    def unread(self):
        """Bytes sent on this connection that the broker has not read yet: 0 once it holds a WAIT."""
        return unread(self.sock)

    def _region(self, opcode, body, asked):
        """Sends a request answered by a region reply and one fd; returns the verified Region."""
        return self._region_reply(asked, *self._call(opcode, body, want_fds=1))

    def _region_reply(self, asked, reply, fds, info=None):
        """A Region from a region reply and its fd, which must grant the access asked for (info: what the
        reply does not carry, for a region of CREATE_BATCH)."""
        access, _ = REGION_REPLY_HEAD.unpack_from(reply)
        info = info or _info(reply[REGION_REPLY_HEAD.size:])
        fd = fds[0]
        try:
            if access != asked:
                raise ProtocolError("granted access 0x%x, not the 0x%x asked for" % (access, asked))
            _verify(fd, info["size"], access)
        except BaseException:
            os.close(fd)
            self.release(info["handle"])
            raise
        return Region(self, fd, access, info)

    def create(self, size, name=None, mode=0, flags=0):
        """A new region, read-write; mode 0 means 0600, flags are CREATE_* bits (CREATE_TRANSIENT: a named
        region whose name the broker drops once no connection holds it; needs CAP_TRANSIENT)."""
        return self._region(CREATE, CREATE_REQUEST.pack(size, flags, mode, _name_field(name)),
                            ACCESS_READ | ACCESS_WRITE)

    def create_batch(self, size, n, pipelined=None):
        """n anonymous regions of size bytes, read-write, in a list. All or nothing: after a refusal it asks
        for no more, and once the requests already sent are answered, it releases every region made and
        raises the first refusal's BrokerError. With a broker that serves CREATE_BATCH (unless pipelined),
        up to 253 regions come in one request; else the CREATEs are pipelined, at most 64 unanswered (the
        broker stops reading a connection whose replies pile up), reading as it goes."""
        if pipelined is None:
            pipelined = not self.capabilities & CAP_CREATE_BATCH
        if pipelined:
            body = CREATE_REQUEST.pack(size, 0, 0, _name_field(None))
            requests = [(CREATE, body, 1)] * n
            window = REQUESTS_IN_FLIGHT_MAX
        else:
            requests = [(CREATE_BATCH, CREATE_BATCH_REQUEST.pack(size, k, 0, 0, 0), k)
                        for k in [CREATE_BATCH_MAX] * (n // CREATE_BATCH_MAX) + [n % CREATE_BATCH_MAX] if k]
            window = 2  # the broker makes the next while this process checks the fds of one
        pending = collections.deque()
        regions, refused, sent = [], None, 0
        try:
            while sent < len(requests) or pending:
                while refused is None and sent < len(requests) and len(pending) < window:
                    opcode, body, count = requests[sent]
                    pending.append((opcode, self._send(opcode, body), count))
                    sent += 1
                if not pending:
                    break
                opcode, cookie, count = pending.popleft()
                try:
                    reply, fds = self._receive(opcode, cookie, want_fds=count)
                except BrokerError as e:
                    refused = refused or e
                    continue
                if opcode == CREATE:
                    regions.append(self._region_reply(ACCESS_READ | ACCESS_WRITE, reply, fds))
                else:
                    regions.extend(self._batch_reply(size, count, reply, fds))
        except BaseException:
            for r in regions:
                os.close(r.fd)  # the connection is of no more use: closing it releases them
            raise
        if refused:
            for r in regions:
                r.close()
            raise refused
        return regions

    def _batch_reply(self, size, count, reply, fds):
        """The Regions of a CREATE_BATCH reply: count handles, count read-write fds in the same order."""
        got, access, got_size = CREATE_BATCH_REPLY_HEAD.unpack_from(reply)
        handles = struct.unpack_from("=%dQ" % count, reply, CREATE_BATCH_REPLY_HEAD.size)
        if (got, access, got_size) != (count, ACCESS_READ | ACCESS_WRITE, size) or 0 in handles:
            for fd in fds:
                os.close(fd)
            raise ProtocolError("CREATE_BATCH reply for %d regions of %d bytes says %d of %d, access 0x%x"
                                % (count, size, got, got_size, access))
        regions = []
        for handle, fd in zip(handles, fds):
            info = {"handle": handle, "size": size, "name": ""}
            regions.append(self._region_reply(ACCESS_READ | ACCESS_WRITE, REGION_REPLY_HEAD.pack(access, 0), [fd],
                                              info))
        return regions

    def open(self, name=None, handle=0, write=False):
        """OPEN by name or by handle, read-only or (write) read-write: a Region."""
        access = ACCESS_READ | (ACCESS_WRITE if write else 0)
        return self._region(OPEN, OPEN_REQUEST.pack(handle, access, 0, _name_field(name)), access)

    def seal(self, handle, seals=F_SEAL_WRITE):
        """Adds F_SEAL_WRITE, or F_SEAL_FUTURE_WRITE (which leaves existing writable mappings working)."""
        return _info(self._call(SEAL, SEAL_REQUEST.pack(handle, seals, 0)))

    def _set(self, name, handle, fields, mode=0, uid=0, gid=0):
        return _info(self._call(SET, SET_REQUEST.pack(handle, fields, mode, uid, gid, _name_field(name))))

    def chmod(self, mode, name=None, handle=0):
        """SET of the mode bits; returns the region info after the change."""
        return self._set(name, handle, SET_MODE, mode=mode)

    def chown(self, uid=None, gid=None, name=None, handle=0):
        """SET of the owner uid and/or gid (None leaves one unchanged); returns the region info."""
        fields = (SET_UID if uid is not None else 0) | (SET_GID if gid is not None else 0)
        return self._set(name, handle, fields, uid=uid or 0, gid=gid or 0)

    def wait(self, name, timeout_ns=WAIT_FOREVER):
        """Blocks until a region called name is sealed, then returns it opened read-only."""
        return self.wait_finish(self.wait_start(name, timeout_ns))

    def wait_start(self, name, timeout_ns=WAIT_FOREVER):
        """Sends WAIT and returns its cookie for wait_finish(); send nothing else on this client in between."""
        return self._send(WAIT, WAIT_REQUEST.pack(timeout_ns, ACCESS_READ, 0, _name_field(name)))

    def wait_finish(self, cookie):
        """The answer to wait_start(): the region read-only, or BrokerError (ETIMEDOUT, EIDRM, EACCES)."""
        return self._region_reply(ACCESS_READ, *self._receive(WAIT, cookie, want_fds=1))

    def stat(self, name=None, handle=0):
        """STAT by name or by handle: the region info as a dict."""
        return _info(self._call(STAT, LOOKUP_REQUEST.pack(handle, _name_field(name))))

    def list_page(self, after=0):
        """One LIST request: its entries, whether more remain, and the after_handle to go on from."""
        body = self._call(LIST, LIST_REQUEST.pack(after))
        count, more, next_after = LIST_REPLY_HEAD.unpack_from(body)
        if count > LIST_ENTRIES_MAX or more > 1 or len(body) != LIST_REPLY_HEAD.size + count * REGION_INFO.size:
            raise ProtocolError("LIST reply of %d bytes with count %d, more %d" % (len(body), count, more))
        entries = [_info(body[off:off + REGION_INFO.size])
                   for off in range(LIST_REPLY_HEAD.size, len(body), REGION_INFO.size)]
        handles = [after] + [e["handle"] for e in entries]
        if any(a >= b for a, b in zip(handles, handles[1:])):
            raise ProtocolError("LIST entries not ascending above %d" % after)
        # A cursor that does not move on would have us ask forever; one behind the last entry, list it twice.
        if more and (next_after <= after or next_after < handles[-1]):
            raise ProtocolError("LIST after %d says go on from %d" % (after, next_after))
        return entries, bool(more), next_after

    def list(self):
        """Every region the caller may see, following the cursor: a page may hold no entry and still have more."""
        entries, after, more = [], 0, True
        while more:
            page, more, after = self.list_page(after)
            entries.extend(page)
        return entries

    def limits(self):
        """{"uid": the caller's uid, "resources": {name: {broker_max, broker_used, uid_max, uid_used,
        uid_available}}}, LIMIT_NONE standing for no limit (and in broker_used for not told)."""
        body = self._call(LIMITS, b"")
        uid, count = LIMITS_REPLY_HEAD.unpack_from(body)
        if count != len(RESOURCES) or len(body) != LIMITS_REPLY_HEAD.size + count * LIMIT.size:
            raise ProtocolError("LIMITS reply of %d bytes with count %d" % (len(body), count))
        resources = {}
        for i, name in enumerate(RESOURCES):
            values = LIMIT.unpack_from(body, LIMITS_REPLY_HEAD.size + i * LIMIT.size)
            resources[name] = dict(zip(LIMIT_FIELDS, values))
        return {"uid": uid, "resources": resources}

    @staticmethod
    def _limits_row(body, offset):
        """One LIMITS reply's layout at offset of body: its uid and {resource: {field: value}}."""
        uid, count = LIMITS_REPLY_HEAD.unpack_from(body, offset)
        if count != len(RESOURCES):
            raise ProtocolError("a limits row with count %d" % count)
        resources = {}
        for i, name in enumerate(RESOURCES):
            values = LIMIT.unpack_from(body, offset + LIMITS_REPLY_HEAD.size + i * LIMIT.size)
            resources[name] = dict(zip(LIMIT_FIELDS, values))
        return {"uid": uid, "resources": resources}

    def usage_page(self, first_uid=0, reserved=0):
        """One USAGE request: its rows (as limits() returns its one), whether more remain, and the first_uid to
        go on from."""
        body = self._call(USAGE, USAGE_REQUEST.pack(first_uid, reserved))
        row_size = LIMITS_REPLY_HEAD.size + len(RESOURCES) * LIMIT.size
        count, more, next_uid, reserved = USAGE_REPLY_HEAD.unpack_from(body)
        if len(body) != USAGE_REPLY_HEAD.size + USAGE_ROWS_MAX * row_size or count > USAGE_ROWS_MAX or more > 1 \
                or reserved != 0:
            raise ProtocolError("USAGE reply of %d bytes with count %d, more %d" % (len(body), count, more))
        rows = [self._limits_row(body, USAGE_REPLY_HEAD.size + i * row_size) for i in range(count)]
        if any(b != 0 for b in body[USAGE_REPLY_HEAD.size + count * row_size:]):
            raise ProtocolError("USAGE rows after count %d are not zero" % count)
        uids = [row["uid"] for row in rows]
        if uids != sorted(set(uids)) or (uids and uids[0] < first_uid):
            raise ProtocolError("USAGE rows not ascending from uid %d: %s" % (first_uid, uids))
        if more and (next_uid <= first_uid or (uids and next_uid <= uids[-1])):
            raise ProtocolError("USAGE from uid %d says go on from %d" % (first_uid, next_uid))
        return rows, bool(more), next_uid

    def usage(self):
        """Every row USAGE gives the caller, following the cursor."""
        rows, first, more = [], 0, True
        while more:
            page, more, first = self.usage_page(first)
            rows.extend(page)
        return rows

    def allocated_page(self, after=0, max_count=0, reserved=0):
        """One ALLOCATED request: its [(handle, allocated bytes)], whether more remain, and the after_handle to go
        on from."""
        body = self._call(ALLOCATED, ALLOCATED_REQUEST.pack(after, max_count, reserved))
        count, more, next_after = ALLOCATED_REPLY_HEAD.unpack_from(body)
        if len(body) != ALLOCATED_REPLY_HEAD.size + ALLOCATED_ENTRIES_MAX * ALLOCATED_ENTRY.size or \
                count > ALLOCATED_ENTRIES_MAX or more > 1:
            raise ProtocolError("ALLOCATED reply of %d bytes with count %d, more %d" % (len(body), count, more))
        entries = [ALLOCATED_ENTRY.unpack_from(body, ALLOCATED_REPLY_HEAD.size + i * ALLOCATED_ENTRY.size)
                   for i in range(count)]
        if any(b != 0 for b in body[ALLOCATED_REPLY_HEAD.size + count * ALLOCATED_ENTRY.size:]):
            raise ProtocolError("ALLOCATED entries after count %d are not zero" % count)
        handles = [after] + [h for h, _ in entries]
        if any(a >= b for a, b in zip(handles, handles[1:])):
            raise ProtocolError("ALLOCATED entries not ascending above %d" % after)
        if more and (next_after <= after or next_after < handles[-1]):
            raise ProtocolError("ALLOCATED after %d says go on from %d" % (after, next_after))
        return entries, bool(more), next_after

    def allocated(self):
        """{handle: allocated bytes} of every region the caller may see, following the cursor."""
        result, after, more = {}, 0, True
        while more:
            page, more, after = self.allocated_page(after)
            result.update(page)
        return result

    def release(self, handle):
        """RELEASE one reference this connection holds to the region."""
        self._call(RELEASE, RELEASE_REQUEST.pack(handle))

    def release_quiet(self, handle):
        """RELEASE without waiting for the answer, where the broker answers a quiet one only if it fails
        (CAP_QUIET): the broker has it before the reply to the next request, and a refusal is dropped ahead
        of that reply. Without the capability, as release()."""
        if not self.capabilities & CAP_QUIET:
            return self.release(handle)
        self.last_quiet = self._send(RELEASE, RELEASE_REQUEST.pack(handle), FLAG_QUIET)
        return None

    def notifier(self, handle):
        """NOTIFIER: the control page of a region this connection holds, as a Notifier; read-write if the hold is
        writable, else read-only."""
        reply, fds = self._call(NOTIFIER, NOTIFY_REQUEST.pack(handle, 0, 0), want_fds=1)
        access, _, seq = NOTIFIER_REPLY.unpack(reply)
        fd = fds[0]
        try:
            if access not in (ACCESS_READ, ACCESS_READ | ACCESS_WRITE):
                raise ProtocolError("NOTIFIER granted access 0x%x" % access)
            _verify_page(fd, access)
            return Notifier(fd, access, seq)
        except BaseException:
            os.close(fd)
            raise

    def notify_watch(self, handle):
        """NOTIFY_WATCH: a Watch on the pipe the broker writes to after notifications of the region."""
        reply, fds = self._call(NOTIFY_WATCH, NOTIFY_REQUEST.pack(handle, 0, 0), want_fds=1)
        fd = fds[0]
        try:
            if len(reply) != NOTIFY_REPLY.size:
                raise ProtocolError("NOTIFY_WATCH reply of %d bytes" % len(reply))
            # A pipe's read end, non-blocking (PROTOCOL.md): reading it away never blocks.
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            if not _stat.S_ISFIFO(os.fstat(fd).st_mode) or flags & os.O_ACCMODE != os.O_RDONLY:
                raise ProtocolError("NOTIFY_WATCH gave no pipe's read end")
            if not flags & os.O_NONBLOCK:
                raise ProtocolError("NOTIFY_WATCH gave a blocking fd")
        except BaseException:
            os.close(fd)
            raise
        return Watch(fd, NOTIFY_REPLY.unpack(reply)[0])

    def notify(self, handle, advance=True):
        """NOTIFY: with advance, the broker adds 1 to seq, wakes the futex waiters and signals the watchers (what
        this client, without atomics, must ask for); without it, it only signals the watchers. Returns seq after
        it. Needs a writable hold: EPERM otherwise."""
        reply = self._call(NOTIFY, NOTIFY_REQUEST.pack(handle, NOTIFY_ADVANCE if advance else 0, 0))
        if len(reply) != NOTIFY_REPLY.size:
            raise ProtocolError("NOTIFY reply of %d bytes" % len(reply))
        return NOTIFY_REPLY.unpack(reply)[0]

    def remove(self, name=None, handle=0):
        """REMOVE: the name is free at once; the region lives on while anyone holds it."""
        self._call(REMOVE, LOOKUP_REQUEST.pack(handle, _name_field(name)))


def recv_record(sock):
    """One record, its fds (close-on-exec) and recvmsg flags (socket.recv_fds drops its flags argument)."""
    fd_size = struct.calcsize("i")
    data, ancdata, flags, _ = sock.recvmsg(RECORD_MAX, socket.CMSG_SPACE(fd_size * CREATE_BATCH_MAX),
                                           socket.MSG_CMSG_CLOEXEC)
    fds = []
    for level, kind, cdata in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(cdata) - len(cdata) % fd_size
            fds.extend(struct.unpack("%di" % (usable // fd_size), cdata[:usable]))
    return data, fds, flags


def unread(sock):
    """Bytes sent on a Unix socket that its peer has not read yet (SIOCOUTQ, which is TIOCOUTQ)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]


def _verify(fd, size, access):
    """What PROTOCOL.md asks of a client before it maps a received fd."""
    st = os.fstat(fd)
    if not _stat.S_ISREG(st.st_mode) or st.st_size < size:
        raise ProtocolError("received fd is not a regular file of %d bytes" % size)
    seals = fcntl.fcntl(fd, F_GET_SEALS)
    if seals & (F_SEAL_SHRINK | F_SEAL_GROW) != F_SEAL_SHRINK | F_SEAL_GROW:
        raise ProtocolError("received fd is not sealed against resizing")
    mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    if mode != (os.O_RDWR if access & ACCESS_WRITE else os.O_RDONLY):
        raise ProtocolError("received fd has another access mode than granted")


def _verify_page(fd, access):
    """A control page as PROTOCOL.md describes it: a regular file of NOTIFY_PAGE_SIZE bytes, sealed against
    resizing and further seals, opened with the access granted."""
    st = os.fstat(fd)
    if not _stat.S_ISREG(st.st_mode) or st.st_size != NOTIFY_PAGE_SIZE:
        raise ProtocolError("control page is not a regular file of %d bytes" % NOTIFY_PAGE_SIZE)
    want = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL
    if fcntl.fcntl(fd, F_GET_SEALS) & want != want:
        raise ProtocolError("control page is not sealed against resizing and sealing")
    mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    if mode != (os.O_RDWR if access & ACCESS_WRITE else os.O_RDONLY):
        raise ProtocolError("control page has another access mode than granted")
