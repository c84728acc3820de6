"""SharedMemory: multiprocessing.shared_memory.SharedMemory, with the broker's regions in place of shm_open.

A program written for the standard library changes its import and nothing else. What differs, on purpose:
no file in /dev/shm, so nothing to leak there; no resource tracker, so a process that only attached never
destroys anything when it exits; the broker's access control, so other users see a region only as its mode
allows; and one keyword the standard library lacks, transient=True.
"""

import os
import secrets
import threading

from . import _client

__all__ = ["SharedMemory"]

# Generated names look like the standard library's ("psm_" and 8 hex digits), so that code which shows or
# logs them sees what it is used to.
_NAME_PREFIX = "psm_"
_NAME_RANDOM_BYTES = 4

_default = None  # (pid, Client): the connection of this process that SharedMemory uses unless given one
_default_lock = threading.Lock()


def _default_client():
    """This process's Client for SharedMemory, made on first use, and made anew in a child after fork()
    (the parent's connection is the parent's: a child must not speak on it)."""
    global _default
    with _default_lock:
        if _default is None or _default[0] != os.getpid() or _default[1].closed:
            _default = (os.getpid(), _client.Client())
        return _default[1]


def _make_name():
    return _NAME_PREFIX + secrets.token_hex(_NAME_RANDOM_BYTES)


class SharedMemory:
    """Creates a new shared memory block or attaches to an existing one, as
    multiprocessing.shared_memory.SharedMemory does, with a region of memfd-brokerd as the block.

    name: the block's name, or None with create=True for a new, unique one. create: make a new block
    (FileExistsError when the name is taken) rather than attach to an existing one (FileNotFoundError when
    there is none). size: bytes of a new block (ValueError when 0 or negative); ignored when attaching,
    where size becomes the block's. A new block is zero-filled and exactly size bytes long.

    As with the standard library on Linux, a block lives until some process calls unlink(), whatever the
    processes that used it do: close() only ends this process's use, and no process ever removes a block
    on exit. transient=True (create only) makes a block whose name lives only while some process holds the
    block: when the last one closes it or ends, SIGKILL included, the block and its name are gone.

    client: the Client to go through; by default one connection per process, to the default socket
    (see Client), shared by the process's blocks.
    """

    # Defaults, so that close() and unlink() work on an object whose __init__ failed.
    _name = None
    _region = None
    _buf = None
    _size = 0
    _client = None

    def __init__(self, name=None, create=False, size=0, *, transient=False, client=None):
        if not size >= 0:
            raise ValueError("'size' must be a positive integer")
        if create and size == 0:
            raise ValueError("'size' must be a positive number different from zero")
        if name is None and not create:
            raise ValueError("'name' can only be None if create=True")
        if transient and not create:
            raise ValueError("'transient' applies to a block being created")
        self._client = client or _default_client()
        if create:
            while True:
                try_name = _make_name() if name is None else name
                try:
                    region = self._client.create(size, try_name, transient=transient)
                except FileExistsError:
                    if name is None:
                        continue
                    raise
                break
        else:
            try_name = name
            region = self._client.open(name, write=True)
        self._region = region
        self._name = try_name
        self._size = region.size
        self._buf = region.buf

    def __del__(self):
        try:
            self.close()
        except (OSError, BufferError, ValueError, RuntimeError):
            pass

    def __reduce__(self):
        # As the standard library's: the unpickled object attaches by name, in whichever process.
        return (self.__class__, (self.name, False, self.size))

    def __repr__(self):
        return f"{self.__class__.__name__}({self.name!r}, size={self.size})"

    @property
    def buf(self):
        """A memoryview of contents of the shared memory block."""
        return self._buf

    @property
    def name(self):
        """Unique name that identifies the shared memory block."""
        return self._name

    @property
    def size(self):
        """Size in bytes."""
        return self._size

    def close(self):
        """Closes access to the shared memory from this instance but does not destroy the shared memory
        block (unless it is transient and this was its last holder). Releases buf first: BufferError while
        something still exports it, as with the standard library."""
        if self._buf is not None:
            self._buf.release()
            self._buf = None
        if self._region is not None:
            self._region.close()
            self._region = None

    def unlink(self):
        """Requests that the underlying shared memory block be destroyed: its name goes at once, and the
        memory when every process has closed it. Call it once across all the processes that use the block;
        FileNotFoundError when it was already unlinked."""
        if self._name:
            client = self._client
            if client is None or client.closed or client._pid != os.getpid():
                client = _default_client()  # in a child of fork(), say
            client.remove(self._name)
