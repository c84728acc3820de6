/* SPDX-License-Identifier: MIT */
#ifndef MEMFD_BROKER_H
#define MEMFD_BROKER_H

/*
 * libmemfd-broker: shared-memory regions from memfd-brokerd.
 *
 * A client is one connection to the broker. Regions are sealed memfds the
 * broker hands out; map them to share memory with other processes without
 * copying. Every function returning int gives 0 (or a documented count) on
 * success and a negative errno on failure; none sets errno as its way of
 * reporting, and none prints. Errors every call that talks to the broker can
 * return, besides those listed for it:
 *   -ENOTCONN     the client's connection is gone (the broker closed it, an
 *                 earlier error below ended it, or mfb_client_free() was
 *                 called while regions were alive);
 *   -EBADMSG      the broker sent something that is not a valid reply (the
 *                 connection is shut down then: later calls give -ENOTCONN),
 *                 or an fd that failed the checks of mfb_region_fd() (that fd
 *                 is closed and its reference given back; the client stays
 *                 usable);
 *   -ENOMEM       out of memory;
 *   any error of sendmsg()/recvmsg() on the socket (-ECONNRESET, -EPIPE),
 *                 after which the connection is shut down;
 *   -ECANCELED    a callback that ran while this call waited freed the client.
 * When the broker refuses a request, its reason is also available as text
 * from mfb_client_error_message().
 *
 * A region the caller may not read, and neither owns nor created, does not
 * exist for it (root sees every region): looking it up by name or handle
 * fails with -ENOENT and the same text as for a region that does not
 * exist, mfb_list() leaves it out and mfb_region_wait() does not see it.
 * Only creating a region under its name tells it apart (-EEXIST): names are
 * one space for every user, as with shm_open(O_CREAT | O_EXCL).
 *
 * Each call that needs an answer from the broker comes in two forms. The
 * synchronous one (mfb_region_create()) blocks until the answer is there.
 * The asynchronous one (mfb_region_create_async()) only queues the request
 * and returns; its callback runs later, from mfb_client_dispatch() in the
 * caller's event loop (see "Event loops" below), or from any call on the
 * same client that waits. Both go through one queue per client: requests
 * are sent in the order they are made, and the broker answers a client's
 * requests in that order, whatever kind they are. A synchronous call waits
 * for the answers to every request made before it, and runs the callbacks
 * of the asynchronous ones among them as their answers come, before it
 * returns.
 *
 * Calls whose answer the caller does not need do not wait for it:
 * mfb_region_free() gives the region back and returns. Where the broker
 * offers a release queue (PROTOCOL.md, "Release queue"), it stores the
 * handle in a page the broker takes it from, before the client's next
 * request or on its own within 10 ms of the client's last one: no record,
 * no wakeup of the broker. Else, and for a client's first two releases
 * (the second asks for the queue: a client that frees one region and
 * leaves never has one made), it sends a RELEASE, whose answer is read,
 * and dropped, before any later answer on the client. Either way the broker has seen
 * the release before the answer to the client's next request is read (a
 * mfb_region_stat_get() on the same client no longer counts that
 * reference in nattch). Other connections see it once the broker got to
 * it, within about 10 ms: call mfb_client_roundtrip() to be sure it has
 * (say, before telling another process that a transient name is free). A
 * release the broker refused is dropped (it cannot be, for references the
 * library holds); a lost connection shows on the next call (-ENOTCONN),
 * and took every reference with it anyway.
 *
 * Threads: nothing is thread-safe on one client. A client, its regions and
 * its callbacks belong to one thread at a time (mfb_region_free() and
 * mfb_region_map() included: they touch the client's queue or error
 * message); serialize calls on them, or use one client per thread.
 * Distinct clients share no state: different threads may use them
 * concurrently. Callbacks run in the thread that dispatches. After fork(),
 * only one of the two processes may go on using a client and its regions,
 * because the connection is shared and the broker sees it close only when
 * both let go. The other may exec, or call mfb_client_free() first and then
 * mfb_region_free() on its copies (which then only unmap and close, without
 * a word to the broker).
 */

#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/*
 * Seal bits newer than some C libraries (glibc 2.36 lacks these two), for
 * testing mfb_region_stat.seals; they are kernel ABI.
 */
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Longest region name in bytes, NUL excluded. Names are printable ASCII without spaces. */
#define MFB_NAME_MAX 255

/* Environment variable that names the broker's socket. */
#define MFB_SOCKET_ENV "MEMFD_BROKER_SOCKET"

/* mfb_region_stat.state bits. */
#define MFB_REGION_REMOVED 0x1U /* the name was removed; no new opens; freed when the last holder lets go */
#define MFB_REGION_HUGETLB 0x2U /* backed by huge pages */
#define MFB_REGION_TRANSIENT 0x4U /* created with MFB_CREATE_TRANSIENT: ends with its last holder */

typedef struct mfb_client mfb_client;
typedef struct mfb_region mfb_region;

/* What the broker knows about a region: the IPC_STAT of memfd-broker. */
typedef struct mfb_region_stat {
        uint64_t handle;
        uint64_t size;
        uid_t uid;              /* owner */
        gid_t gid;
        uid_t creator_uid;
        gid_t creator_gid;
        mode_t mode;            /* permission bits */
        pid_t creator_pid;
        pid_t last_pid;         /* pid of the last create, open, seal or release */
        uint32_t nattch;        /* connections holding the region */
        uint32_t seals;         /* F_SEAL_* bits of the memfd */
        uint32_t state;         /* MFB_REGION_* bits */
        struct timespec create_time;
        struct timespec attach_time;    /* last open; zero if never */
        struct timespec detach_time;    /* last release; zero if never */
        struct timespec change_time;    /* last seal */
        char name[MFB_NAME_MAX + 1];    /* "" for an anonymous region */
} mfb_region_stat;

/*
 * The socket path a client uses when given none: $MEMFD_BROKER_SOCKET if
 * set and non-empty, else $XDG_RUNTIME_DIR/memfd-broker.sock for a non-root
 * user (effective uid) whose XDG_RUNTIME_DIR is set and non-empty, else
 * /run/memfd-broker.sock. In a setuid or setgid program the environment is
 * ignored (secure_getenv()), so that the caller cannot pick its broker.
 * Writes it to buf (size bytes, NUL-terminated; untouched on failure).
 * Returns 0, -EINVAL for a NULL buf, or -ENAMETOOLONG if it does not fit in
 * buf or in a socket address (107 bytes).
 */
int mfb_default_socket_path(char *buf, size_t size);

/*
 * Connects to the broker at socket_path (NULL: mfb_default_socket_path())
 * and negotiates the protocol version. On success *ret is a new client,
 * owned by the caller, to be freed with mfb_client_free(); it owns its
 * socket (close-on-exec). socket_path is only borrowed. Errors: -EINVAL
 * (ret NULL, or socket_path empty), -ENAMETOOLONG (path too long for a
 * socket address), -ENOENT / -ECONNREFUSED / -EACCES (no broker listening
 * there, or no permission), -EPROTONOSUPPORT (the broker speaks no protocol
 * version this library does), -ENOSPC (the broker is out of file
 * descriptors and turned the connection away), -EDQUOT (the caller's uid
 * has as many connections as the broker lets it have, or its share of the
 * broker's; see mfb_limits()), -ENOMEM, or another error of socket() or
 * connect(). *ret is untouched on failure.
 */
int mfb_client_connect(const char *socket_path, mfb_client **ret);

/*
 * Closes the connection; the broker then releases every region it held for
 * this client (named regions stay until removed). Regions still alive keep
 * their fds and mappings and must still be freed with mfb_region_free();
 * the memory behind the client is freed with the last of them. Every
 * asynchronous request still pending gets its callback, with -ECANCELED
 * (and no region), before this returns, in the order they were made; the
 * broker may or may not have carried out those already sent (a seal, say).
 * Requests not yet written to the socket are dropped: mfb_client_flush()
 * first to have them sent. Safe inside a callback of this client: the
 * client's memory stays until the callback returns, and the call that ran
 * it (mfb_client_dispatch(), or a synchronous call, which then returns
 * -ECANCELED) returns without touching the client again; the caller must
 * not use it after that either. Callbacks run by it may not make requests
 * on c (they fail with -ENOTCONN); a second mfb_client_free() of c from
 * one of them does nothing. Remove the client's fd from an event loop
 * before this closes it, or at once after, before polling again. Accepts
 * NULL. Always returns NULL, for `c = mfb_client_free(c);`.
 */
mfb_client *mfb_client_free(mfb_client *c);

/*
 * Why the last call on this client or one of its regions failed, in the
 * broker's words ("region is sealed"): set when the broker refused the
 * request, "" when that call succeeded, failed before or without the
 * broker refusing it, or the broker gave no text. One line of text, control
 * characters replaced by '?'. During a callback, the reason for the request
 * that callback answers. The string is owned by the client and valid until
 * the next call on it or its regions, or the next callback. Returns "" for
 * NULL.
 */
const char *mfb_client_error_message(const mfb_client *c);

/*
 * Creates a region of size bytes, zero-filled, with the caller's uid/gid as
 * owner and mode 0600. With name NULL it is anonymous, alive while anyone
 * holds it; with a name it persists in the broker until removed. The region
 * is opened read-write. On success *ret is a new region owned by the caller
 * (free it with mfb_region_free()), holding the client's reference to the
 * region; name is borrowed.
 * Errors: -EINVAL (c or ret NULL, size 0, or name empty or not printable
 * ASCII without spaces), -ENAMETOOLONG (name longer than MFB_NAME_MAX),
 * -EFBIG (size above the broker's limit), -EEXIST (the name is taken, also
 * by a region the caller cannot see), -EDQUOT (the caller's uid holds as
 * many regions, bytes, fds or region references as its limit or its share
 * lets it: see mfb_limits()), -ENOSPC (the broker has not that many
 * regions, bytes, fds or references left for anyone; or this client holds
 * as many references as the broker allows one connection).
 */
int mfb_region_create(mfb_client *c, const char *name, uint64_t size, mfb_region **ret);

/* Flags for mfb_region_create_with(). */
#define MFB_CREATE_HUGETLB 0x1U /* huge pages (MFD_HUGETLB); size a multiple of the huge page size */
#define MFB_CREATE_RESERVE 0x2U /* allocate every page now (fallocate), charged to the caller's memory cgroup */
#define MFB_CREATE_TRANSIENT 0x4U /* the name lives only while some client holds the region */

/*
 * As mfb_region_create(), with permission bits mode (0 for 0600; only 0777
 * bits) and MFB_CREATE_* flags. MFB_CREATE_RESERVE makes running out of
 * memory an error here (-ENOSPC or -ENOMEM, the region released again and,
 * if named, its name removed) instead of a SIGBUS at first touch; the pages
 * are allocated by this process with fallocate(), so they are charged to its
 * memory cgroup, as touching them would. Ownership as in mfb_region_create().
 *
 * MFB_CREATE_TRANSIENT (named regions only) ties the name to the region's
 * holders: when the last client holding it lets go (mfb_region_free(),
 * mfb_client_free(), or its process exiting or being killed), the broker
 * removes the name, as mfb_region_remove() would, and frees the region, so
 * that a crashed producer leaves no stale name behind. Any holder keeps it
 * alive, also one of another user the mode let open it; its owner can
 * still remove it at any time. It is never kept across a restart of the
 * broker, and its state has MFB_REGION_TRANSIENT.
 *
 * Errors: those of mfb_region_create(); -EINVAL also for unknown flags or
 * mode bits, MFB_CREATE_TRANSIENT without a name, or a hugetlb size that is
 * not a multiple of the huge page size; -ENOMEM for MFB_CREATE_HUGETLB when
 * the system has too few huge pages reserved (vm.nr_hugepages);
 * -EOPNOTSUPP when the broker's kernel has no hugetlb memfds, or for
 * MFB_CREATE_TRANSIENT when the broker is too old to offer it; for
 * MFB_CREATE_RESERVE, what fallocate() failed with (-ENOSPC, -ENOMEM;
 * -EPERM if a peer sealed the region in between).
 */
int mfb_region_create_with(mfb_client *c, const char *name, uint64_t size, mode_t mode, unsigned flags,
                           mfb_region **ret);

/*
 * Opens the named region with access O_RDONLY or O_RDWR (exactly those
 * values, no other flags). On success *ret is a new region owned by the
 * caller; name is borrowed. Each open is a reference the broker holds for
 * this client until mfb_region_free().
 * Errors: -EINVAL (c, name or ret NULL, a bad name, access not
 * O_RDONLY/O_RDWR), -ENAMETOOLONG, -ENOENT (no region of that name the
 * caller can see), -EPERM (O_RDWR on a sealed region), -EACCES (the
 * region's mode does not allow the access asked for: writing, or reading
 * for its owner or creator), -EDQUOT (the region is not open in this client
 * yet, and the caller's uid holds as many region references as its share
 * lets it: see mfb_limits()), -ENOSPC (no references left for anyone, the
 * broker's limit on references one connection holds, or the broker is out
 * of file descriptors).
 */
int mfb_region_open(mfb_client *c, const char *name, int access, mfb_region **ret);

/*
 * As mfb_region_open(), by handle; also reaches anonymous regions. -EINVAL
 * also for handle 0; -ENOENT also for a removed region.
 */
int mfb_region_open_handle(mfb_client *c, uint64_t handle, int access, mfb_region **ret);

/*
 * Maps the whole region (MAP_SHARED) and stores the address in *ret_addr.
 * The mapping is writable if the region was opened O_RDWR and is not sealed
 * (F_SEAL_WRITE or F_SEAL_FUTURE_WRITE), read-only otherwise. It belongs to
 * the region: repeated calls return the same address, mfb_region_seal() and
 * mfb_region_free() unmap it. A writable mapping is not inherited by
 * children made with fork() (MADV_DONTFORK): a child holding it would keep
 * anyone from sealing the region for as long as it lives. Does not talk to
 * the broker. Errors: -EINVAL (NULL argument), -EFBIG (larger than the
 * address space of a 32-bit process), or what mmap() or madvise() failed
 * with (-ENOMEM).
 */
int mfb_region_map(mfb_region *r, void **ret_addr);

/*
 * As mfb_region_map(), for a caller that is going to write: the mapping is
 * writable, or the call fails with -EPERM (the region was opened O_RDONLY,
 * or is sealed, or is already mapped read-only because it was sealed when
 * mapped). Unlike checking the seals first, this cannot race with a peer
 * sealing the region in between.
 */
int mfb_region_map_writable(mfb_region *r, void **ret_addr);

/*
 * Seals the region's contents: from now on nobody can write them, not the
 * creator, not any other holder (F_SEAL_WRITE, enforced by the kernel). The
 * region must be open O_RDWR. Unmaps this region's own mapping first (the
 * kernel refuses the seal while any writable mapping exists), so an address
 * from mfb_region_map() is invalid afterwards, even if the broker then
 * refuses; call it again for a read-only mapping. Sealing a sealed region
 * succeeds. Errors: -EINVAL (NULL), -EPERM (opened read-only), -ENOTCONN
 * (the mapping is left alone then), -EBUSY (a writable mapping of it still
 * exists elsewhere: in another process, of another mfb_region of the same
 * region, or made from mfb_region_fd()).
 */
int mfb_region_seal(mfb_region *r);

/*
 * Removes the region's name, like IPC_RMID: the name can be reused at once,
 * nobody can open the region any more, and it is freed when the last holder
 * releases it. Holders keep their fds and mappings. Only the region's
 * owner, its creator or root may remove it. Errors: -EINVAL (NULL),
 * -ENOENT (already removed, or a chmod or chown since it was opened hides
 * it from the caller), -EPERM (not owner, creator or root).
 */
int mfb_region_remove(mfb_region *r);

/*
 * Seals the region against writes through any fd or mapping made from now
 * on (F_SEAL_FUTURE_WRITE), while this region's existing writable mapping
 * keeps working: for a producer that goes on writing while every later open
 * is read-only. Unlike mfb_region_seal() it leaves the mapping alone, so
 * mfb_region_map() goes on returning the same writable address; a region not
 * mapped yet can only be mapped read-only afterwards. The region must be
 * open O_RDWR. Sealing a region that has this seal succeeds; a later
 * mfb_region_seal() may still add F_SEAL_WRITE. Waiters of
 * mfb_region_wait() see the region as published. Errors: -EINVAL (NULL),
 * -EPERM (opened read-only, or a holder added F_SEAL_SEAL to the memfd
 * itself), -EOPNOTSUPP (the broker's kernel lacks F_SEAL_FUTURE_WRITE).
 */
int mfb_region_seal_future_write(mfb_region *r);

/*
 * Waits until a region named name exists and is sealed (F_SEAL_WRITE or
 * F_SEAL_FUTURE_WRITE), then opens it read-only, like Plasma's Get. A
 * timeout_ms of 0 does not wait, -1 waits without limit (as does one beyond
 * 584 years); the broker keeps the time, and the call blocks until it
 * answers: signals do not end the wait, so use a timeout to stay responsive.
 * The region must be sealed through the broker (mfb_region_seal(),
 * mfb_region_seal_future_write()) to end a pending wait. On success *ret is
 * a new region owned by the caller, as from mfb_region_open(); name is
 * borrowed; *ret is untouched on failure. The client can do nothing else
 * while it waits. Errors: -EINVAL (c, name or ret NULL, a bad name,
 * timeout_ms below -1), -ENAMETOOLONG, -ETIMEDOUT (no sealed region of that
 * name, or none the caller may read, within the timeout), -EIDRM (the region
 * was removed while waited for), -EACCES (the sealed region's mode does not
 * let its owner or creator read it), -EDQUOT (the caller's uid has as many
 * waits pending, or region references, as its share lets it: see
 * mfb_limits()), -ENOSPC (no waiters or references left for anyone, the
 * broker's limit on references one connection holds, or the broker is out
 * of file descriptors).
 */
int mfb_region_wait(mfb_client *c, const char *name, int64_t timeout_ms, mfb_region **ret);

/*
 * Changes the permission bits of the region called name (the IPC_SET of
 * memfd-broker); name is borrowed. Only its owner, its creator or root may.
 * Unlike at creation, mode 0 means no bits: only root may then open or stat
 * the region, while its owner and creator may still change it. Later opens
 * see the new mode;
 * fds already handed out keep their access. Errors: -EINVAL (c or name NULL,
 * a bad name, mode bits outside 0777), -ENAMETOOLONG, -ENOENT (no region of
 * that name the caller can see), -EPERM (not owner, creator or root).
 */
int mfb_chmod(mfb_client *c, const char *name, mode_t mode);

/*
 * Changes the owner uid and gid of the region called name; (uid_t) -1 or
 * (gid_t) -1 leaves one unchanged. name is borrowed. Only its owner, its
 * creator or root may, and only root may give the region to another uid
 * (as chown(2): a uid could otherwise be charged for, or given, regions it
 * never asked for); the owner and the creator may set the gid only to their
 * own gid or one of their supplementary groups, and keep their rights after
 * a change. A new owner's limits then count the region. Errors: those of
 * mfb_chmod(); -EINVAL also when both are -1; -EPERM also for a uid other
 * than the current owner's when the caller is not root, and for a gid that
 * is none of the caller's groups; -EDQUOT (the new owner has no room for
 * the region under the broker's limits; nothing changed).
 */
int mfb_chown(mfb_client *c, const char *name, uid_t uid, gid_t gid);

/*
 * As mfb_region_remove(), by name, without opening the region first; name
 * is borrowed. Errors: -EINVAL (NULL, or a bad name), -ENAMETOOLONG,
 * -ENOENT (no region of that name the caller can see).
 */
int mfb_remove(mfb_client *c, const char *name);

/* As mfb_region_remove(), by handle. -EINVAL also for handle 0. */
int mfb_remove_handle(mfb_client *c, uint64_t handle);

/*
 * Fills *ret with the broker's view of the region (untouched on failure).
 * Needs read permission, as IPC_STAT does. Errors: -EINVAL (NULL), -ENOENT
 * (the region's mode no longer lets the caller read it, and it neither owns
 * nor created it), -EACCES (it does own or create it, but may not read it).
 */
int mfb_region_stat_get(mfb_region *r, mfb_region_stat *ret);

/*
 * As mfb_region_stat_get(), by name or by handle, without opening the
 * region; name is borrowed. A removed region can still be looked up by
 * handle while it lives. Errors: -EINVAL (NULL, a bad name, handle 0),
 * -ENAMETOOLONG, -ENOENT (no such region the caller can see), -EACCES.
 */
int mfb_stat(mfb_client *c, const char *name, mfb_region_stat *ret);
int mfb_stat_handle(mfb_client *c, uint64_t handle, mfb_region_stat *ret);

/*
 * Lists every region the caller may read, owns or created (all of them for
 * root), in handle order. The broker covers a bounded range per request
 * (256 handle values; 256 regions for root), so this asks as many times as
 * the broker's handles need, whatever the caller may see; regions created or freed
 * meanwhile may or may not appear, none appears twice. On success
 * *ret_entries is an array of *ret_count entries allocated with malloc()
 * and owned by the caller (free() it; it is NULL when the count is 0). Both
 * are untouched on failure. Errors: -EINVAL (NULL argument).
 */
int mfb_list(mfb_client *c, mfb_region_stat **ret_entries, size_t *ret_count);

/* How much memory one region really uses, as mfb_list_allocated() and mfb_allocated_handle() report it. */
typedef struct mfb_allocation {
        uint64_t handle;
        uint64_t allocated;     /* bytes: the pages written or reserved so far, as fstat()'s st_blocks * 512
                                 * of the broker's memfd says; at most the size rounded up to pages */
} mfb_allocation;

/*
 * The memory every region the caller may see really uses (the same regions
 * as mfb_list(), which the region stat cannot carry): pages are allocated
 * as they are first written (or reserved, MFB_CREATE_RESERVE), so a
 * region's size is only what it may grow to use. In handle order, paged
 * as mfb_list() is; regions created or freed meanwhile may or may not
 * appear, none twice. On success *ret_entries is an array of *ret_count
 * entries allocated with malloc() and owned by the caller (free() it;
 * NULL when the count is 0). Both are untouched on failure. Errors:
 * -EINVAL (NULL argument), -EOPNOTSUPP (the broker is older than this call).
 */
int mfb_list_allocated(mfb_client *c, mfb_allocation **ret_entries, size_t *ret_count);

/*
 * As mfb_list_allocated(), for the region with that handle only, in one
 * request: stores its allocated bytes in *ret_bytes (untouched on failure).
 * Errors: -EINVAL (c or ret_bytes NULL, handle 0), -ENOENT (no region with
 * that handle that the caller may see; a removed one still held is found),
 * -EOPNOTSUPP (the broker is older than this call).
 */
int mfb_allocated_handle(mfb_client *c, uint64_t handle, uint64_t *ret_bytes);

/*
 * The resources the broker shares among users, as indexes into the array
 * mfb_limits() fills. Every one is shared the same way: a uid may hold at
 * most its per-uid limit, where the broker has one, and of what nobody holds
 * yet only a share that shrinks as more uids hold some (so that one uid
 * alone can take at most half of it, and never lock the others out). A
 * request beyond the caller's limit or share fails with -EDQUOT, one for
 * more than is left for anyone with -ENOSPC, and mfb_client_error_message()
 * names the resource. Root and the broker's own uid are exempt from limits
 * per uid and from shares: only -ENOSPC can refuse them.
 */
enum mfb_limit_resource {
        MFB_LIMIT_REGIONS      = 0,     /* regions the uid owns, removed ones still held included */
        MFB_LIMIT_BYTES        = 1,     /* the sum of their sizes */
        MFB_LIMIT_FDS          = 2,     /* fds the broker holds for the uid: one per region, per connection,
                                         * per reply with an fd not read yet */
        MFB_LIMIT_CONNECTIONS  = 3,     /* the uid's open connections */
        MFB_LIMIT_QUEUED_BYTES = 4,     /* bytes of replies the uid's connections have not read yet */
        MFB_LIMIT_WAITERS      = 5,     /* the uid's pending mfb_region_wait() calls */
        MFB_LIMIT_KEPT         = 6,     /* its named regions the service manager keeps across broker restarts */
        MFB_LIMIT_HOLDS        = 7,     /* references the uid's clients hold: one per region per client,
                                         * however many times that client opened it */
        MFB_LIMIT_COUNT        = 8,     /* the number of resources this header knows */
};

/* In struct mfb_limit: no such limit (in a maximum or in uid_available). */
#define MFB_UNLIMITED UINT64_MAX
/* In struct mfb_limit: the broker does not say (broker_used, to callers that are not exempt). */
#define MFB_UNKNOWN UINT64_MAX

/* One resource, as mfb_limits() reports it. Counts, or bytes for the *_BYTES resources. */
typedef struct mfb_limit {
        uint64_t broker_max;    /* for every uid together, or MFB_UNLIMITED */
        uint64_t broker_used;   /* held by every uid together; MFB_UNKNOWN unless the caller is exempt
                                 * (root or the broker's own uid) */
        uint64_t uid_max;       /* for one uid; MFB_UNLIMITED when there is no per-uid limit, and
                                 * for root and the broker's own uid, which are exempt */
        uint64_t uid_used;      /* held by the caller's uid */
        uint64_t uid_available; /* the most the caller's uid may take now: its share of what is left,
                                 * within uid_max; it shrinks as others take some */
} mfb_limit;

/*
 * What the broker lets the caller's uid hold, and what it holds, as the
 * broker sees it at this moment. Fills ret_limits[i] for resource i
 * (MFB_LIMIT_*) for every i below both n and the number of resources the
 * broker reports, which it returns: MFB_LIMIT_COUNT from a broker of this
 * protocol version. Pass n = MFB_LIMIT_COUNT: a later library that knows
 * more resources fills no more than n entries, and ones the broker does not
 * report are left untouched. ret_limits (n entries) is the caller's; it
 * may be NULL when n is 0. Unless ret_uid is NULL, stores the caller's uid
 * as the broker sees it (the connection's SO_PEERCRED). Nothing is touched
 * on failure. Errors: -EINVAL (c NULL, ret_limits NULL with n > 0).
 */
int mfb_limits(mfb_client *c, size_t n, mfb_limit *ret_limits, uid_t *ret_uid);

/*
 * What each uid holds against its limits, like ipcs -u with quotas: one row
 * per uid, in ascending uid order, each what mfb_limits() would tell that
 * uid (uid_max, uid_used and uid_available are the row's uid's). Root and
 * the broker's own uid get a row for every uid the broker counts anything
 * for (holding regions, connections, references...; their own included),
 * and broker_used in every row. Any other caller gets only its own row,
 * with broker_used MFB_UNKNOWN: nothing about other users. The broker
 * answers at most 16 rows per request, so this asks as many times as there
 * are rows; uids that come or go meanwhile may or may not appear, none
 * appears twice.
 *
 * n is the number of resources per row the caller makes room for: pass
 * MFB_LIMIT_COUNT. On success *ret_uids is an array of *ret_count uids and
 * *ret_limits one of *ret_count * n entries, row i's resource j at
 * (*ret_limits)[i * n + j]; resources the broker does not report are
 * MFB_UNKNOWN in every field. Both are allocated with malloc() and owned by
 * the caller (free() them); NULL when there is no row (and *ret_limits when
 * n is 0). Returns the number of resources the broker reports:
 * MFB_LIMIT_COUNT from a broker of this protocol version. Nothing is
 * touched on failure. Errors: -EINVAL (a NULL argument), -EOPNOTSUPP (the
 * broker is older than this call).
 */
int mfb_usage(mfb_client *c, size_t n, uid_t **ret_uids, mfb_limit **ret_limits, size_t *ret_count);

/* The region's handle: unique for the broker's lifetime, never 0. 0 for NULL. */
uint64_t mfb_region_handle(const mfb_region *r);

/* The region's size in bytes. 0 for NULL. */
uint64_t mfb_region_size(const mfb_region *r);

/* O_RDONLY or O_RDWR, as the region was opened. -EINVAL for NULL. */
int mfb_region_access(const mfb_region *r);

/*
 * The region's memfd: borrowed, owned by the region and closed by
 * mfb_region_free(); dup it (F_DUPFD_CLOEXEC) to keep it longer. Already
 * verified: a regular file, sealed against shrinking and growing, at least
 * mfb_region_size() bytes, opened with exactly the access granted
 * (mfb_region_access()). An open (mfb_region_open(), mfb_region_wait())
 * gets an open file description of its own; a create shares the broker's,
 * through which the broker does no I/O. Either way use mmap() or
 * pread()/pwrite(), not the file offset, and leave the file status flags
 * alone: O_APPEND set on a create's fd would stay on the broker's open file
 * description, and makes even pwrite() append, which the grow seal refuses.
 * -EINVAL for NULL.
 */
int mfb_region_fd(const mfb_region *r);

/*
 * Unmaps the region, closes its fd and tells the broker this client no
 * longer holds it, without waiting for its answer: the broker has it
 * before the answer to the client's next request is read (see the top of
 * this file), and other connections see it once the broker got to it,
 * within about 10 ms (mfb_client_roundtrip() waits for that). By default
 * the handle goes in the client's release queue; where there is none, or
 * no room, or the client sent nothing for 5 ms (the broker may have swept
 * its queue for the last time), a RELEASE is written at once if the
 * socket has room, else queued until the client next sends
 * (mfb_client_flush(), mfb_client_dispatch(), any request). With deferred
 * releases on and no queue, it rides in the client's next request, or
 * goes at the next mfb_client_flush(); off, it is a RELEASE each time (see
 * mfb_client_set_deferred_releases()). Skipped once the connection is
 * gone, which released the region already. Safe in a
 * callback, also for a region of another request's callback. Frees a
 * client given to mfb_client_free() with its last region. Unmaps the
 * region's control page and closes its notification fd, if it had them.
 * Accepts NULL.
 * Always returns NULL.
 */
mfb_region *mfb_region_free(mfb_region *r);

/*
 * Many anonymous regions of one size at once: as n calls of
 * mfb_region_create(c, NULL, size, ...), for nowhere near n round trips:
 * up to 253 regions in one request and one reply where the broker offers
 * it (CREATE_BATCH), else one CREATE each, pipelined. On success
 * ret_regions[0] to ret_regions[n - 1] are n new regions, read-write, each
 * owned by the caller (free each with mfb_region_free()); ret_regions is
 * the caller's array of n pointers, and is only written on success. n 0
 * does nothing (ret_regions may then be NULL). On failure nothing is
 * left: every region the batch had made is freed again, their releases
 * reach the broker before the answer to the client's next request is read,
 * and the array is untouched.
 * The error and mfb_client_error_message() are those of the first CREATE
 * that failed, in request order. Callbacks of earlier asynchronous requests
 * on c run while it waits. Errors: those of mfb_region_create(), and
 * -EINVAL also for ret_regions NULL with n above 0, -EDQUOT also when the
 * broker would have the caller's uid leave more fds unread in flight than
 * its share (a broker with a low limit on open files): ask for fewer.
 */
int mfb_region_create_batch(mfb_client *c, uint64_t size, size_t n, mfb_region **ret_regions);

/*
 * Notifications: a region's holders can wake each other without a round
 * trip through the broker. Each region has a sequence, a 64-bit counter on
 * a small control page the broker keeps with the region (across restarts
 * too, for named regions under a service manager). A writer notifies by
 * advancing it and waking whoever waits; a holder waits by sleeping until
 * it differs from the value it saw last (futex(2)), or polls an fd that
 * the broker makes readable after notifications. Readers cannot advance
 * the sequence: their page is read-only, the kernel sees to it.
 *
 * The first notification call on a region asks the broker for its page
 * (one round trip: -ENOTCONN and the broker's refusals are possible then,
 * and callbacks of earlier asynchronous requests on its client run); the
 * page stays mapped until mfb_region_free(). Each needs a broker that
 * serves notifications: -EOPNOTSUPP otherwise.
 */

/*
 * Notifies r's holders: adds 1 to its sequence, wakes every thread waiting
 * in mfb_region_wait_notify() on it, in any process, and if anyone watches
 * with mfb_region_notify_fd(), asks the broker to signal them, without
 * waiting for its answer (a refusal is dropped). After the first call it
 * never waits for the broker. Returns 0. Errors: -EINVAL (r NULL), -EACCES
 * (r was opened O_RDONLY), -EOPNOTSUPP, the errors of the first call (see
 * above: -ENOTCONN; -EDQUOT or -ENOSPC when the broker may not make the
 * region's page, charged to the region's owner as an fd; -ENOMEM), and
 * -ENOMEM when the request to signal the watchers could not be queued (the
 * sequence was advanced, and the waiters woken, all the same). Once the
 * client's connection is gone (the broker restarted), a notification still
 * advances the sequence and wakes the waiters, and returns 0: the watchers'
 * fds came from the broker that is gone, and show end of file
 * (mfb_region_notify_read()).
 */
int mfb_region_notify(mfb_region *r);

/*
 * Waits until r's sequence differs from *seq, then stores the new one in
 * *seq and returns 0: start with *seq from mfb_region_notify_read() (or 0)
 * and pass it again, so that a notification between two calls is never
 * missed. Several notifications may show as one. timeout_ms: 0 only looks,
 * negative waits without limit. Blocks the calling thread (futex(2)), not
 * talking to the broker after the first call, restarting after signals.
 * Works for readers and writers. Errors: -EINVAL (r or seq NULL),
 * -ETIMEDOUT, -EOPNOTSUPP, and the errors of the first call (see above).
 */
int mfb_region_wait_notify(mfb_region *r, uint64_t *seq, int64_t timeout_ms);

/*
 * An fd for an event loop: POLLIN after a notification of r, by anyone who
 * notifies (the read end of a pipe that the broker writes a byte to, at
 * most once per pass of its loop, however many notifications there were). Consume its readiness with
 * mfb_region_notify_read(). The first call asks the broker for the page
 * and the fd (two round trips); later ones return the same fd. The fd is
 * r's: do not close or read it yourself; mfb_region_free() closes it.
 * Regions of one client with the same handle share one such fd, so
 * reading it through one consumes it for all. Returns the fd, or -EINVAL
 * (r NULL), -EOPNOTSUPP, or the errors of the first call (see above).
 */
int mfb_region_notify_fd(mfb_region *r);

/*
 * Consumes the readiness of mfb_region_notify_fd()'s fd, if it was asked
 * for, and stores r's current sequence in *ret_seq. Never blocks, nor
 * talks to the broker after the first notification call on r. Returns 0,
 * or -EINVAL (r or ret_seq NULL), -EOPNOTSUPP, or the errors of the first
 * call (see above), or -ENOTCONN with *ret_seq stored all the same: the
 * broker that gave the fd is gone (it restarted, or closed the
 * connection), so nobody signals the fd any more, and it polls readable
 * for good. Stop polling it then: mfb_region_wait_notify() keeps working
 * on r, and for a pollable fd again, connect a new client, open the
 * region with it and ask that region's mfb_region_notify_fd().
 */
int mfb_region_notify_read(mfb_region *r, uint64_t *ret_seq);

/*
 * Event loops.
 *
 * The asynchronous calls below queue a request and return at once; they
 * never run a callback themselves. A callback runs exactly once for each
 * asynchronous call that returned 0 (and never for one that failed), from
 * mfb_client_dispatch(), mfb_client_flush(), mfb_client_roundtrip(), a
 * synchronous call on the same client, or mfb_client_free() (-ECANCELED).
 * Callbacks of one client run in the order the requests were made. A
 * callback may make new requests on the client, synchronous ones included
 * (they run the callbacks of what was asked before them), free regions,
 * and free the client.
 *
 * To drive a client from an event loop (libevent, sd-event, GLib, epoll):
 * watch mfb_client_get_fd() for the events of mfb_client_get_events(),
 * call mfb_client_dispatch() when the fd is ready, and look at
 * mfb_client_get_events() again after each dispatch and each request made,
 * since POLLOUT comes and goes with the socket's room. The fd is
 * level-triggered: as long as it polls readable, dispatch again.
 *
 * Requests wait in memory, as many as the caller makes: the library writes
 * them as the socket takes them, and reads answers meanwhile wherever it
 * waits (the broker stops reading a connection whose answers are not being
 * read, see PROTOCOL.md). A WAIT that has to wait holds back every later
 * request of the same client until it is answered, because the broker
 * reads nothing more from that connection meanwhile: give waits a client
 * of their own when other requests must not wait for them.
 *
 * Once the connection fails (the broker closed it, a socket error, a reply
 * that breaks the protocol), every pending callback gets the error when
 * the client next dispatches or waits, mfb_client_dispatch() returns it
 * from then on, and every other call -ENOTCONN. The socket is shut down,
 * so the broker releases what the client held at once, but its fd stays
 * open, and polls readable, until mfb_client_free().
 */

/*
 * The callback of an asynchronous create, open or wait. error is 0 and
 * region a new region, owned by the callback from then on (free it with
 * mfb_region_free(), now or later); or error is a negative errno, the
 * same the synchronous call would return, region is NULL, and during the
 * callback mfb_client_error_message(c) gives the broker's reason when it
 * refused. -ECANCELED: the client was freed first. userdata is the
 * caller's, as given.
 */
typedef void (*mfb_region_callback)(mfb_client *c, int error, mfb_region *region, void *userdata);

/* The callback of an asynchronous seal: error as for mfb_region_callback. */
typedef void (*mfb_callback)(mfb_client *c, int error, void *userdata);

/*
 * Returns the client's socket, for an event loop to watch. Borrowed: owned
 * by the client, open until mfb_client_free(), even after the connection
 * failed; do not read, write or close it. Errors: -EINVAL (NULL, or freed).
 */
int mfb_client_get_fd(const mfb_client *c);

/*
 * Returns what to watch the fd for, as poll() events (<poll.h>): POLLIN
 * always (answers, and the end of the connection), with POLLOUT while the
 * connection works and requests wait for room in the socket. Errors:
 * -EINVAL (NULL, or freed).
 */
int mfb_client_get_events(const mfb_client *c);

/*
 * Does what can be done now without blocking: writes queued requests while
 * the socket takes them, reads the answers that are there and runs their
 * callbacks, at most one answer per request written when it started (so
 * that callbacks that make requests cannot keep it going forever). Returns
 * the number of callbacks run (0 when nothing was there), or, once the
 * connection failed, its error, after running every pending callback with
 * it: -ENOTCONN (the broker closed it), -EBADMSG (it broke the protocol),
 * -ECONNRESET or another error of sendmsg()/recvmsg(). When a callback
 * freed the client, returns the callbacks run, and c must not be used
 * again. Errors: -EINVAL (NULL, or freed).
 */
int mfb_client_dispatch(mfb_client *c);

/*
 * Blocks until every queued request is written to the socket (not
 * answered), deferred releases included (mfb_client_set_deferred_releases()),
 * reading answers and running callbacks meanwhile when the socket is full.
 * Releases stored in the release queue since the last request get a quiet
 * SYNC, which has the broker take them now rather than within 10 ms.
 * Returns 0, or the connection's error as mfb_client_dispatch() does (a
 * poll() that fails, other than with EINTR, fails the connection with its
 * error). When a callback freed the client, returns 0, and c must not be
 * used again. Errors: -EINVAL (NULL, or freed), -ENOMEM (no room to queue
 * the deferred releases or the SYNC, which then stay waiting for the next
 * request, or the sweep).
 */
int mfb_client_flush(mfb_client *c);

/*
 * How mfb_region_free() gives regions back: deferred (nonzero) or at once
 * (0). Every RELEASE record costs a write and a read on each side and a
 * wakeup of the broker, more than the broker's own work for the release
 * (docs/PERFORMANCE.md has what that is for a create+map+free); deferring
 * saves them.
 *
 * Deferred, each release goes in the client's release queue where the
 * broker offers one: the broker takes it before the client's next request,
 * or on its own within 10 ms of the client's last request. Where there is
 * no queue (the broker predates it, or has as many as its
 * --max-release-queues), the release waits in the client instead and rides
 * in the next request record this client sends, of any kind, synchronous
 * or not; the broker carries it out before that request. At most 16 wait
 * so; the seventeenth free sends them all at once. mfb_client_flush() and
 * mfb_client_roundtrip() send what waits, and have the broker take the
 * queue, and so does turning deferral off.
 *
 * The price: until the release reaches the broker, the client still holds
 * the region there. Other connections see it among the holders (STAT's
 * nattch), an anonymous or removed region's memory stays allocated, a
 * transient region keeps its name, and the uid's quota stays charged: for
 * up to 10 ms with the queue, for as long as the client sends nothing
 * without it. At once, a release is a record sent with the free, which the
 * broker handles as soon as it gets to it.
 *
 * The default is deferred where the broker offers a release queue (its
 * HELLO reply has MFB_WIRE_CAP_RELEASE_QUEUE), at once where it does not.
 * Returns 0, or -EINVAL (NULL, or freed), -EOPNOTSUPP (deferred on, and
 * the broker has neither a queue nor carried releases:
 * MFB_WIRE_CAP_CARRIED_RELEASES), or when turning it off, -ENOMEM from
 * queuing what waits (it stays waiting then, and deferral is off). Once
 * the connection is gone, which released everything, nothing waits and
 * nothing fails here.
 */
int mfb_client_set_deferred_releases(mfb_client *c, int deferred);

/*
 * Blocks until the broker has answered every request of this client, those
 * the callbacks make meanwhile included, and their callbacks ran. After it
 * every connection sees what this client did, its releases included. When
 * the newest request is a release, which the broker answers only if it
 * fails, or releases wait in the release queue, this asks one more
 * question to learn that they were done. Returns 0,
 * or the connection's error as mfb_client_flush() does. When a callback
 * freed the client, returns -ENOTCONN (not -ECANCELED), and c must not be
 * used again. Errors: -EINVAL (NULL, or freed), -ENOMEM.
 */
int mfb_client_roundtrip(mfb_client *c);

/*
 * mfb_region_create_with(), asynchronously: queues the CREATE and returns
 * 0; callback gets the region or the error mfb_region_create_with() would
 * return (MFB_CREATE_RESERVE is done before the callback runs; its
 * failure removes a named region's name without waiting for the answer).
 * name is borrowed for the call only. Errors returned at once: -EINVAL
 * (callback NULL, or the arguments mfb_region_create_with() refuses),
 * -ENAMETOOLONG, -EFBIG (MFB_CREATE_RESERVE beyond off_t), -ENOTCONN,
 * -ENOMEM; the callback does not run then.
 */
int mfb_region_create_async(mfb_client *c, const char *name, uint64_t size, mode_t mode, unsigned flags,
                            mfb_region_callback callback, void *userdata);

/*
 * mfb_region_open() and mfb_region_open_handle(), asynchronously: queue the
 * OPEN and return 0; callback gets the region (then its own) or the error
 * the synchronous call would return. name is borrowed for the call only.
 * Errors returned at once: -EINVAL (c or callback NULL, a bad or NULL name,
 * handle 0, access not O_RDONLY/O_RDWR), -ENAMETOOLONG, -ENOTCONN, -ENOMEM;
 * the callback does not run then.
 */
int mfb_region_open_async(mfb_client *c, const char *name, int access,
                          mfb_region_callback callback, void *userdata);
int mfb_region_open_handle_async(mfb_client *c, uint64_t handle, int access,
                                 mfb_region_callback callback, void *userdata);

/*
 * mfb_region_wait(), asynchronously: the callback runs when the broker
 * answers, with the region (then its own) or -ETIMEDOUT, -EIDRM and the
 * other errors of mfb_region_wait(). Until then the broker holds back every
 * later request of c (see "Event loops"). name is borrowed for the call
 * only. Errors returned at once: -EINVAL (c, name or callback NULL, a bad
 * name, timeout_ms below -1), -ENAMETOOLONG, -ENOTCONN, -ENOMEM; the
 * callback does not run then.
 */
int mfb_region_wait_async(mfb_client *c, const char *name, int64_t timeout_ms,
                          mfb_region_callback callback, void *userdata);

/*
 * mfb_region_seal() and mfb_region_seal_future_write(), asynchronously:
 * mfb_region_seal_async() unmaps the region's own mapping at once, as
 * mfb_region_seal() does. callback (NULL: the result is dropped) gets 0 or
 * the error of the synchronous call. r stays the caller's, and may be freed
 * before the callback runs. Errors returned at once: -EINVAL (r NULL),
 * -EPERM (opened read-only), -ENOTCONN (the mapping is left alone then),
 * -ENOMEM; the callback does not run then.
 */
int mfb_region_seal_async(mfb_region *r, mfb_callback callback, void *userdata);
int mfb_region_seal_future_write_async(mfb_region *r, mfb_callback callback, void *userdata);

#ifdef __cplusplus
}
#endif

#endif
