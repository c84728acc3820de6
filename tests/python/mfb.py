"""A memfd-broker protocol client in pure Python (standard library only).

Written from proto/PROTOCOL.md alone, to prove that the protocol can be spoken
without the C library. Errors from the broker raise BrokerError, whose errno
attribute is the positive errno value.
"""

import fcntl
import mmap
import os
import socket
import stat as _stat
import struct

VERSION = 1
RECORD_MAX = 65536
NAME_MAX = 255

HELLO, CREATE, OPEN, SEAL, STAT, LIST, RELEASE, REMOVE = range(1, 9)
REPLY = 0x8000

ACCESS_READ = 0x1
ACCESS_WRITE = 0x2

F_SEAL_SEAL = 0x1
F_SEAL_SHRINK = 0x2
F_SEAL_GROW = 0x4
F_SEAL_WRITE = 0x8
F_SEAL_FUTURE_WRITE = 0x10
F_GET_SEALS = 1034  # F_LINUX_SPECIFIC_BASE + 10

STATE_REMOVED = 0x1

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
LIST_REPLY_HEAD = struct.Struct("=II")
RELEASE_REQUEST = struct.Struct("=Q")

INFO_FIELDS = (
    "handle size uid gid creator_uid creator_gid mode creator_pid last_pid "
    "nattch seals state create_time attach_time detach_time change_time name"
).split()


class BrokerError(OSError):
    """The broker refused a request: errno and the broker's message."""


class ProtocolError(Exception):
    """The broker sent something that does not follow the protocol."""


def default_socket_path():
    path = os.environ.get("MEMFD_BROKER_SOCKET")
    if path:
        return path
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if os.geteuid() != 0 and runtime:
        return os.path.join(runtime, "memfd-broker.sock")
    return "/run/memfd-broker.sock"


def _name_field(name):
    raw = (name or "").encode("ascii")
    if len(raw) > NAME_MAX:
        raise ValueError("name longer than %d bytes" % NAME_MAX)
    return raw  # struct pads with zero bytes


def _info(raw):
    values = REGION_INFO.unpack(raw)
    info = dict(zip(INFO_FIELDS, values))
    info["name"] = info["name"].rstrip(b"\0").decode("ascii")
    return info


class Region:
    """An fd the broker gave us, verified, with its info; close() releases it."""

    def __init__(self, client, fd, access, info):
        self.client = client
        self.fd = fd
        self.access = access
        self.info = info
        self.handle = info["handle"]
        self.size = info["size"]

    def map(self):
        writable = self.access & ACCESS_WRITE and not (self.seals() & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE))
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        return mmap.mmap(self.fd, self.size, flags=mmap.MAP_SHARED, prot=prot)

    def seals(self):
        return fcntl.fcntl(self.fd, F_GET_SEALS)

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self.client.release(self.handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Client:
    def __init__(self, path=None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.connect(path or default_socket_path())
        self.cookie = 0
        body = self._call(HELLO, HELLO_REQUEST.pack(VERSION, VERSION))
        hello = HELLO_REPLY.unpack(body)
        self.version, self.capabilities, self.region_size_max = hello[0], hello[2], hello[3]
        if self.version != VERSION:
            raise ProtocolError("broker chose version %d" % self.version)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, opcode, body, want_fds=0):
        """Sends one request and returns the reply's body (and fds if want_fds)."""
        self.cookie += 1
        self.sock.sendmsg([HEADER.pack(HEADER.size + len(body), opcode, 0, self.cookie, 0, 0, 0) + body])
        data, fds, flags = self._recv()
        try:
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                raise ProtocolError("truncated reply")
            if not data:
                raise ConnectionResetError("the broker closed the connection")
            size, rop, rflags, cookie, status, nfds, reserved = HEADER.unpack_from(data)
            if size != len(data) or rop != opcode | REPLY or cookie != self.cookie or nfds != len(fds):
                raise ProtocolError("reply does not match the request")
            if status < 0:
                message = data[HEADER.size:].decode("utf-8", "replace")
                raise BrokerError(-status, message or os.strerror(-status))
            if len(fds) != want_fds:
                raise ProtocolError("expected %d fds, got %d" % (want_fds, len(fds)))
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        body = data[HEADER.size:]
        return (body, fds) if want_fds else body

    def _recv(self):
        """One record and its fds, close-on-exec (socket.recv_fds drops its flags argument)."""
        fd_size = struct.calcsize("i")
        data, ancdata, flags, _ = self.sock.recvmsg(RECORD_MAX, socket.CMSG_SPACE(fd_size), socket.MSG_CMSG_CLOEXEC)
        fds = []
        for level, kind, cdata in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(cdata) - len(cdata) % fd_size
                fds.extend(struct.unpack("%di" % (usable // fd_size), cdata[:usable]))
        return data, fds, flags

    def _region(self, opcode, body):
        reply, fds = self._call(opcode, body, want_fds=1)
        access, _ = REGION_REPLY_HEAD.unpack_from(reply)
        info = _info(reply[REGION_REPLY_HEAD.size:])
        fd = fds[0]
        try:
            _verify(fd, info["size"], access)
        except BaseException:
            os.close(fd)
            self.release(info["handle"])
            raise
        return Region(self, fd, access, info)

    def create(self, size, name=None, mode=0):
        return self._region(CREATE, CREATE_REQUEST.pack(size, 0, mode, _name_field(name)))

    def open(self, name=None, handle=0, write=False):
        access = ACCESS_READ | (ACCESS_WRITE if write else 0)
        return self._region(OPEN, OPEN_REQUEST.pack(handle, access, 0, _name_field(name)))

    def seal(self, handle, seals=F_SEAL_WRITE):
        return _info(self._call(SEAL, SEAL_REQUEST.pack(handle, seals, 0)))

    def stat(self, name=None, handle=0):
        return _info(self._call(STAT, LOOKUP_REQUEST.pack(handle, _name_field(name))))

    def list(self):
        entries, after = [], 0
        while True:
            body = self._call(LIST, LIST_REQUEST.pack(after))
            count, more = LIST_REPLY_HEAD.unpack_from(body)
            for i in range(count):
                off = LIST_REPLY_HEAD.size + i * REGION_INFO.size
                entries.append(_info(body[off:off + REGION_INFO.size]))
            if not more:
                return entries
            after = entries[-1]["handle"]

    def release(self, handle):
        self._call(RELEASE, RELEASE_REQUEST.pack(handle))

    def remove(self, name=None, handle=0):
        self._call(REMOVE, LOOKUP_REQUEST.pack(handle, _name_field(name)))


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
