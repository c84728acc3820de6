"""memfd_broker: shared memory through memfd-brokerd, in pure Python (standard library only).

Regions are memfds that the broker creates, names, hands out with access control, and frees when nobody
holds them any more: no file in /dev/shm, and nothing left behind by a process that dies.

- SharedMemory is a drop-in for multiprocessing.shared_memory.SharedMemory: change the import, nothing else.
- Client is a connection to the broker: create, create_batch, open, wait, seal, remove, stat, list, chmod,
  chown, limits; each region it holds is a Region, whose buf is a memoryview over a shared mapping.
- Errors from the broker are OSErrors with its errno and message, of the built-in subclass for the errno
  (FileNotFoundError, FileExistsError, PermissionError, TimeoutError, ...), and also BrokerErrors.

    import memfd_broker
    with memfd_broker.Client() as c, c.create(4096, "frame") as r:
        r.buf[:5] = b"hello"
        r.seal()                    # published: c.wait("frame") elsewhere returns it, read-only
"""

from ._client import (BrokerError, BrokerUnavailableError, Client, ProtocolError, Region, RegionInfo,
                      default_socket_path)
from ._shared_memory import SharedMemory
from ._wire import (CAP_CREATE_BATCH, CAP_HUGETLB, CAP_NOTIFY, CAP_SEAL_FUTURE_WRITE, CAP_TRANSIENT,
                    F_SEAL_FUTURE_WRITE, F_SEAL_GROW, F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_WRITE, LIMIT_NONE, NAME_MAX,
                    STATE_HUGETLB, STATE_REMOVED, STATE_TRANSIENT, Notifier, Watch)

__version__ = "0.1.0"

__all__ = [
    "BrokerError", "BrokerUnavailableError", "Client", "Notifier", "ProtocolError", "Region", "RegionInfo",
    "SharedMemory", "Watch", "default_socket_path",
    "CAP_CREATE_BATCH", "CAP_HUGETLB", "CAP_NOTIFY", "CAP_SEAL_FUTURE_WRITE", "CAP_TRANSIENT",
    "F_SEAL_FUTURE_WRITE", "F_SEAL_GROW", "F_SEAL_SEAL", "F_SEAL_SHRINK", "F_SEAL_WRITE",
    "LIMIT_NONE", "NAME_MAX", "STATE_HUGETLB", "STATE_REMOVED", "STATE_TRANSIENT",
]
