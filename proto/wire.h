/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The memfd-broker wire format, version 2.
 *
 * This header is the single source of truth for record layouts, opcodes and
 * limits; proto/PROTOCOL.md describes the same in prose and must be kept in
 * step with it. Both the daemon and the client library include it.
 *
 * Every record is one SOCK_SEQPACKET message: a struct mfb_wire_header
 * followed by exactly the body its opcode defines. Fields are fixed width,
 * in the host's byte order (both peers run on the same host), naturally
 * aligned; every record size is a multiple of 8 except error replies,
 * whose body is a text message. Reserved fields and padding must be zero.
 *
 * Bump MFB_WIRE_VERSION if any layout, opcode or meaning below changes in a
 * way an existing peer would misread.
 */

#include <fcntl.h>
#include <stdint.h>

#define MFB_WIRE_VERSION 2U

/*
 * Limits. Each is stated in PROTOCOL.md. HELLO reports the record, name,
 * fds per record, requests in flight and LIST entries limits; the error
 * message and LIST scan limits, and MFB_WIRE_CREATE_BATCH_MAX below, are
 * fixed for this version and not reported.
 */
#define MFB_WIRE_RECORD_MAX             65536U  /* bytes in one record, header included */
#define MFB_WIRE_NAME_MAX               255U    /* bytes in a region name, NUL excluded */
#define MFB_WIRE_FDS_PER_RECORD_MAX     1U      /* fds the broker attaches to one reply, but a CREATE_BATCH's */
#define MFB_WIRE_REQUESTS_IN_FLIGHT_MAX 64U     /* replies queued, the socket full, before the broker stops reading */
#define MFB_WIRE_ERROR_MESSAGE_MAX      255U    /* bytes of text in an error reply */
#define MFB_WIRE_LIST_ENTRIES_MAX       128U    /* region entries in one LIST reply */
#define MFB_WIRE_LIST_SCAN_MAX          256U    /* handle values one LIST covers, for callers other than root */

/*
 * Seal bits, as the kernel defines them for F_ADD_SEALS / F_GET_SEALS.
 * glibc 2.36 lacks the newer ones; they are part of the kernel ABI.
 */
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif

/*
 * Every request of the protocol, in one table that the codec (record sizes,
 * names) and the broker's dispatcher (one handler each) are both built
 * from, so that an opcode cannot be known to one and not the other:
 *
 *   X(NAME, name, opcode, request body bytes, success reply body bytes,
 *     fds of a success reply, may be quiet, must follow HELLO)
 *
 * A reply body of -1 varies: LIST and CREATE_BATCH have a fixed part
 * followed by entries, which the codec checks on its own.
 */
#define MFB_WIRE_REQUESTS(X)                                                                              \
        X(HELLO, hello, 0x0001, sizeof(struct mfb_wire_hello_request),                                    \
          sizeof(struct mfb_wire_hello_reply), 0, false, false)                                           \
        X(CREATE, create, 0x0002, sizeof(struct mfb_wire_create_request),                                 \
          sizeof(struct mfb_wire_region_reply), 1, false, true)                                           \
        X(OPEN, open, 0x0003, sizeof(struct mfb_wire_open_request),                                       \
          sizeof(struct mfb_wire_region_reply), 1, false, true)                                           \
        X(SEAL, seal, 0x0004, sizeof(struct mfb_wire_seal_request),                                       \
          sizeof(struct mfb_wire_region_info), 0, false, true)                                            \
        X(STAT, stat, 0x0005, sizeof(struct mfb_wire_lookup_request),                                     \
          sizeof(struct mfb_wire_region_info), 0, false, true)                                            \
        X(LIST, list, 0x0006, sizeof(struct mfb_wire_list_request), -1, 0, false, true)                    \
        X(RELEASE, release, 0x0007, sizeof(struct mfb_wire_release_request), 0, 0, true, true)            \
        X(REMOVE, remove, 0x0008, sizeof(struct mfb_wire_lookup_request), 0, 0, true, true)               \
        X(SET, set, 0x0009, sizeof(struct mfb_wire_set_request),                                          \
          sizeof(struct mfb_wire_region_info), 0, false, true)                                            \
        X(WAIT, wait, 0x000A, sizeof(struct mfb_wire_wait_request),                                       \
          sizeof(struct mfb_wire_region_reply), 1, false, true)                                           \
        X(LIMITS, limits, 0x000B, 0, sizeof(struct mfb_wire_limits_reply), 0, false, true)                 \
        X(CREATE_BATCH, create_batch, 0x000C, sizeof(struct mfb_wire_create_batch_request), -1, 0, false, true) \
        X(NOTIFIER, notifier, 0x000D, sizeof(struct mfb_wire_notify_request),                              \
          sizeof(struct mfb_wire_notifier_reply), 1, false, true)                                         \
        X(NOTIFY_WATCH, notify_watch, 0x000E, sizeof(struct mfb_wire_notify_request),                      \
          sizeof(struct mfb_wire_notify_reply), 1, false, true)                                           \
        X(NOTIFY, notify, 0x000F, sizeof(struct mfb_wire_notify_request),                                  \
          sizeof(struct mfb_wire_notify_reply), 0, true, true)                                            \
        X(USAGE, usage, 0x0010, sizeof(struct mfb_wire_usage_request),                                     \
          sizeof(struct mfb_wire_usage_reply), 0, false, true)                                            \
        X(ALLOCATED, allocated, 0x0011, sizeof(struct mfb_wire_allocated_request),                         \
          sizeof(struct mfb_wire_allocated_reply), 0, false, true)                                        \
        X(RELEASE_QUEUE, release_queue, 0x0012, 0, sizeof(struct mfb_wire_release_queue_reply), 1, false, true) \
        X(SYNC, sync, 0x0013, 0, 0, 0, true, true)

/* Opcodes. A reply carries its request's opcode with MFB_WIRE_REPLY set. */
enum mfb_wire_opcode {
#define MFB_WIRE_OPCODE_ENUM(NAME, name, opcode, ...) MFB_WIRE_OP_##NAME = opcode,
        MFB_WIRE_REQUESTS(MFB_WIRE_OPCODE_ENUM)
#undef MFB_WIRE_OPCODE_ENUM
};
#define MFB_WIRE_REPLY 0x8000U

/*
 *  0               1               2               3
 *  0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
 * +---------------------------------------------------------------+
 * |                 size (record bytes, header included)          |
 * +-------------------------------+-------------------------------+
 * |            opcode             |   flags (0, or FLAG_QUIET)    |
 * +-------------------------------+-------------------------------+
 * |                      cookie (low 32 bits)                     |
 * |                      cookie (high 32 bits)                    |
 * +---------------------------------------------------------------+
 * |           status (replies: 0 or -errno; requests: 0)          |
 * +-------------------------------+-------------------------------+
 * |   nfds (replies; requests 0)  |        reserved (zero)        |
 * +-------------------------------+-------------------------------+
 */
struct mfb_wire_header {
        uint32_t size;
        uint16_t opcode;
        uint16_t flags;
        uint64_t cookie;
        int32_t status;
        uint16_t nfds;
        uint16_t reserved;
};

/* A region name: NUL-padded; the bytes after the first NUL must be zero. */
struct mfb_wire_name {
        char bytes[MFB_WIRE_NAME_MAX + 1];
};

/* HELLO: the first request on every connection. */
struct mfb_wire_hello_request {
        uint32_t version_min;
        uint32_t version_max;
};

/* Capability bits in the HELLO reply: what this broker and kernel support. */
#define MFB_WIRE_CAP_SEAL_FUTURE_WRITE 0x1U  /* F_SEAL_FUTURE_WRITE */
#define MFB_WIRE_CAP_NOEXEC_SEAL       0x2U  /* regions are created with MFD_NOEXEC_SEAL */
#define MFB_WIRE_CAP_HUGETLB           0x4U  /* MFD_HUGETLB regions can be created */
#define MFB_WIRE_CAP_QUIET             0x8U  /* requests may carry MFB_WIRE_FLAG_QUIET */
#define MFB_WIRE_CAP_CREATE_BATCH      0x10U /* CREATE_BATCH is served */
#define MFB_WIRE_CAP_NOTIFY            0x20U /* NOTIFIER, NOTIFY_WATCH and NOTIFY are served */
#define MFB_WIRE_CAP_TRANSIENT         0x40U /* CREATE accepts MFB_WIRE_CREATE_TRANSIENT */
#define MFB_WIRE_CAP_CARRIED_RELEASES  0x80U /* requests may carry MFB_WIRE_FLAG_RELEASES */
#define MFB_WIRE_CAP_RELEASE_QUEUE     0x100U /* RELEASE_QUEUE and SYNC are served, MFB_WIRE_FLAG_QUEUED taken */

/*
 * Request header flags. MFB_WIRE_FLAG_QUIET: answer only a failure. For
 * RELEASE and REMOVE, whose success has nothing to say: a client need not
 * wait, and the broker need not write, for the common case. Replies come
 * in request order, so the reply to a later request tells that every quiet
 * one before it succeeded, but those whose error reply came before it. A
 * failed quiet request's reply counts among the queued replies of
 * MFB_WIRE_REQUESTS_IN_FLIGHT_MAX as any other.
 */
#define MFB_WIRE_FLAG_QUIET 0x1U

/*
 * MFB_WIRE_FLAG_RELEASES: the record ends, after the opcode's body, with 1
 * to MFB_WIRE_RELEASES_CARRIED_MAX u64 handles, each released (as by a
 * RELEASE) in order before the request is carried out. A client that gives
 * regions back often saves a record for each: a record costs both ends far
 * more than the 8 bytes. If one fails, the request is answered with its
 * error and not carried out; the releases before it stand.
 */
#define MFB_WIRE_FLAG_RELEASES 0x2U
#define MFB_WIRE_RELEASES_CARRIED_MAX 16U

/*
 * MFB_WIRE_FLAG_QUEUED: before anything else of the request, the broker
 * takes the connection's release queue (see RELEASE_QUEUE below). Refused
 * with -EINVAL on a connection that has none.
 */
#define MFB_WIRE_FLAG_QUEUED 0x4U

struct mfb_wire_hello_reply {
        uint32_t version;
        uint32_t reserved;
        uint64_t capabilities;
        uint64_t region_size_max;
        uint32_t record_max;
        uint32_t name_max;
        uint32_t fds_per_record_max;    /* but a CREATE_BATCH reply, which has count */
        uint32_t requests_in_flight_max; /* replies queued unsent before the broker stops reading */
        uint32_t list_entries_max;
        uint32_t reserved2;
};

/* Access requested by OPEN and granted in a region reply. */
#define MFB_WIRE_ACCESS_READ  0x1U
#define MFB_WIRE_ACCESS_WRITE 0x2U

/* State bits in struct mfb_wire_region_info. */
#define MFB_WIRE_STATE_REMOVED   0x1U /* its name was removed; no new opens */
#define MFB_WIRE_STATE_HUGETLB   0x2U /* created with MFB_WIRE_CREATE_HUGETLB */
#define MFB_WIRE_STATE_TRANSIENT 0x4U /* created with MFB_WIRE_CREATE_TRANSIENT: ends with its last holder */

/*
 * Everything known about one region (the IPC_STAT of memfd-broker).
 * Times are nanoseconds since the Unix epoch (CLOCK_REALTIME), 0 for never.
 */
struct mfb_wire_region_info {
        uint64_t handle;
        uint64_t size;
        uint32_t uid;           /* owner */
        uint32_t gid;
        uint32_t creator_uid;
        uint32_t creator_gid;
        uint32_t mode;          /* permission bits, 0600 by default */
        uint32_t creator_pid;
        uint32_t last_pid;      /* of the last CREATE, OPEN, WAIT answered, SEAL, SET, RELEASE, holder disconnecting */
        uint32_t nattch;        /* connections holding the region */
        uint32_t seals;         /* F_GET_SEALS of the memfd */
        uint32_t state;         /* MFB_STATE_* */
        uint64_t create_time;
        uint64_t attach_time;
        uint64_t detach_time;
        uint64_t change_time;
        struct mfb_wire_name name;      /* empty for an anonymous or removed region */
};

/* CREATE flags. */
#define MFB_WIRE_CREATE_HUGETLB 0x1U /* back the region with huge pages (MFD_HUGETLB) */
/*
 * The name lives only while some connection holds the region: when the last
 * holder lets go (RELEASE, close, exit, crash), the name is removed, as by
 * REMOVE, and the region freed. Named regions only; never kept across a
 * restart of the broker. CREATE_BATCH refuses it.
 */
#define MFB_WIRE_CREATE_TRANSIENT 0x2U

/*
 * CREATE: reply is struct mfb_wire_region_reply with one read-write fd, a
 * duplicate of the broker's own descriptor of the memfd: the creator shares
 * its open file description (offset, status flags, OFD locks) with the
 * broker (PROTOCOL.md, "Open file descriptions").
 */
struct mfb_wire_create_request {
        uint64_t size;
        uint32_t flags;         /* MFB_CREATE_* */
        uint32_t mode;          /* permission bits; 0 means 0600 */
        struct mfb_wire_name name;      /* empty for an anonymous region */
};

/*
 * CREATE_BATCH: count anonymous regions of one size, flags and mode, made
 * all or none. The reply is struct mfb_wire_create_batch_reply followed by
 * count handles, with count read-write fds attached in the same order, each
 * sharing its open file description with the broker as CREATE's does. The
 * client's recvmsg() needs room for count fds, or gets MSG_CTRUNC and loses
 * the fds that did not fit (PROTOCOL.md, "File descriptors in replies").
 */
#define MFB_WIRE_CREATE_BATCH_MAX 253U  /* regions in one CREATE_BATCH: the fds of one record (SCM_MAX_FD) */
struct mfb_wire_create_batch_request {
        uint64_t size;
        uint32_t count;         /* 1 to MFB_WIRE_CREATE_BATCH_MAX */
        uint32_t flags;         /* MFB_CREATE_* */
        uint32_t mode;          /* permission bits; 0 means 0600 */
        uint32_t reserved;
};

struct mfb_wire_create_batch_reply {
        uint32_t count;         /* as asked */
        uint32_t access;        /* granted for every fd: read-write */
        uint64_t size;          /* of every region */
        /* then count u64 handles */
};

/*
 * OPEN: by name (name non-empty, handle 0) or by handle (name empty).
 * Reply is struct mfb_wire_region_reply with one fd of the granted access,
 * a fresh open with an open file description of its own.
 */
struct mfb_wire_open_request {
        uint64_t handle;
        uint32_t access;        /* MFB_WIRE_ACCESS_READ, or MFB_WIRE_ACCESS_READ | MFB_WIRE_ACCESS_WRITE */
        uint32_t reserved;
        struct mfb_wire_name name;
};

struct mfb_wire_region_reply {
        uint32_t access;        /* granted: MFB_ACCESS_* bits */
        uint32_t reserved;
        struct mfb_wire_region_info info;
};

/*
 * SEAL: adds F_SEAL_WRITE, or F_SEAL_FUTURE_WRITE, to a region the
 * connection holds writable. Reply: struct mfb_wire_region_info. The
 * region's first SEAL answers pending WAITs, whatever seals it had.
 */
struct mfb_wire_seal_request {
        uint64_t handle;
        uint32_t seals;
        uint32_t reserved;
};

/* STAT and REMOVE: by name (name non-empty, handle 0) or by handle (name empty). */
struct mfb_wire_lookup_request {
        uint64_t handle;
        struct mfb_wire_name name;
};

/* STAT and SEAL reply: struct mfb_wire_region_info. */

/*
 * LIST: regions with handles greater than after_handle, in ascending order.
 * One request covers at most MFB_WIRE_LIST_SCAN_MAX handle values (root,
 * who sees every region, gets the next MFB_WIRE_LIST_ENTRIES_MAX live
 * ones), so that its cost does not depend on what other users hold, nor
 * its cursor on where their hidden regions are: a reply may have fewer
 * entries than fit, even none, and still have more = 1.
 */
struct mfb_wire_list_request {
        uint64_t after_handle;
};

/* Followed by count struct mfb_wire_region_info entries. */
struct mfb_wire_list_reply {
        uint32_t count;
        uint32_t more;          /* 1: ask again from next_after (always after a full page); 0: done */
        uint64_t next_after;    /* with more, the next after_handle; at least the last entry's handle */
};

/* RELEASE: drops one reference this connection holds. Reply has no body. */
struct mfb_wire_release_request {
        uint64_t handle;
};

/* REMOVE: request is struct mfb_wire_lookup_request; reply has no body. */

/* SET fields (the IPC_SET of memfd-broker): which of mode, uid, gid to change. */
#define MFB_WIRE_SET_MODE 0x1U
#define MFB_WIRE_SET_UID  0x2U
#define MFB_WIRE_SET_GID  0x4U

/* SET: by name or by handle, as lookups. Reply: struct mfb_wire_region_info. */
struct mfb_wire_set_request {
        uint64_t handle;
        uint32_t fields;        /* MFB_SET_* */
        uint32_t mode;
        uint32_t uid;
        uint32_t gid;
        struct mfb_wire_name name;
};

/* WAIT timeout meaning "until it happens". */
#define MFB_WIRE_WAIT_FOREVER UINT64_MAX

/*
 * WAIT: until a region of this name that the caller may read exists and is
 * sealed (F_SEAL_WRITE or F_SEAL_FUTURE_WRITE), then opens it read-only.
 * Reply: struct mfb_wire_region_reply with one read-only fd, a fresh open.
 * The broker reads no more of the connection's requests while it waits.
 */
struct mfb_wire_wait_request {
        uint64_t timeout_ns;    /* 0: do not wait; MFB_WIRE_WAIT_FOREVER: no timeout */
        uint32_t access;        /* MFB_WIRE_ACCESS_READ */
        uint32_t reserved;
        struct mfb_wire_name name;
};

/*
 * LIMITS: what the broker lets the caller's uid hold, and what it holds.
 * The request has no body. Each resource is shared the same way: a uid may
 * hold at most uid_max, and of what no one holds, only a share that
 * shrinks as more uids hold some (PROTOCOL.md, "Fair shares").
 */
enum mfb_wire_resource {
        MFB_WIRE_RESOURCE_REGIONS      = 0,  /* regions the uid owns, removed ones still held included */
        MFB_WIRE_RESOURCE_BYTES        = 1,  /* the sum of their sizes */
        MFB_WIRE_RESOURCE_FDS          = 2,  /* fds the broker holds for the uid: its regions, connections, queued fds */
        MFB_WIRE_RESOURCE_CONNECTIONS  = 3,  /* the uid's open connections */
        MFB_WIRE_RESOURCE_QUEUED_BYTES = 4,  /* bytes of replies queued for the uid's connections that do not read */
        MFB_WIRE_RESOURCE_WAITERS      = 5,  /* the uid's pending WAITs */
        MFB_WIRE_RESOURCE_KEPT         = 6,  /* its named regions kept across restarts by the service manager */
        MFB_WIRE_RESOURCE_HOLDS        = 7,  /* regions its connections hold references to: one per region and connection */
        MFB_WIRE_RESOURCE_COUNT        = 8,
};

/* UINT64_MAX in a limit means "no limit"; in broker_used, "not told" (callers but root and the broker's uid). */
#define MFB_WIRE_LIMIT_NONE UINT64_MAX

struct mfb_wire_limit {
        uint64_t broker_max;    /* for every uid together */
        uint64_t broker_used;   /* by every uid together: for the exempt uids only, MFB_WIRE_LIMIT_NONE for others */
        uint64_t uid_max;       /* for one uid; MFB_WIRE_LIMIT_NONE if none, and for root and the broker's uid (exempt) */
        uint64_t uid_used;      /* by the caller's uid */
        uint64_t uid_available; /* what the caller's uid may take more right now */
};

struct mfb_wire_limits_reply {
        uint32_t uid;           /* the caller's uid, as the broker sees it */
        uint32_t count;         /* MFB_WIRE_RESOURCE_COUNT */
        struct mfb_wire_limit resources[MFB_WIRE_RESOURCE_COUNT];
};

/*
 * USAGE: what each uid holds, against its limits, a page of rows at a time
 * in ascending uid order, each row laid out as a LIMITS reply for its uid
 * (uid, count, the resources). Root and the broker's uid (the exempt ones)
 * get a row for every uid the broker counts anything for; any other caller
 * gets only its own row, whatever first_uid asks, and broker_used as LIMITS
 * tells it: how much others hold is not every uid's business. One request
 * costs at most MFB_WIRE_USAGE_ROWS_MAX rows, whatever the broker holds.
 *
 * The reply has a fixed size, so that the codec checks it as any other:
 * the rows after the first count are zero, to be ignored.
 */
#define MFB_WIRE_USAGE_ROWS_MAX 16U     /* rows in one USAGE reply */

struct mfb_wire_usage_request {
        uint32_t first_uid;     /* rows of this uid and those above it; 0 to start */
        uint32_t reserved;
};

struct mfb_wire_usage_reply {
        uint32_t count;         /* meaningful rows, 0 to MFB_WIRE_USAGE_ROWS_MAX */
        uint32_t more;          /* 1: ask again from next_uid; 0: done */
        uint32_t next_uid;      /* with more, the next first_uid: above the last row's uid */
        uint32_t reserved;
        struct mfb_wire_limits_reply rows[MFB_WIRE_USAGE_ROWS_MAX];    /* ascending uids; zero after count */
};

/*
 * ALLOCATED: the bytes of memory each region really uses (the broker's
 * fstat() of its memfd: st_blocks * 512), which the region info cannot
 * carry, its layout being fixed. Pages as LIST, over the same regions with
 * the same rules (MFB_WIRE_LIST_SCAN_MAX, dense for root; a reply of fewer
 * entries than fit, even none, may still have more = 1), but a page holds
 * at most max_count entries: 1 for one region (after_handle = its handle -
 * 1). The reply has a fixed size; entries after count are zero.
 */
#define MFB_WIRE_ALLOCATED_ENTRIES_MAX 128U    /* entries in one ALLOCATED reply */

struct mfb_wire_allocated_request {
        uint64_t after_handle;
        uint32_t max_count;     /* entries wanted at most: 1 to MFB_WIRE_ALLOCATED_ENTRIES_MAX; 0 for that many */
        uint32_t reserved;
};

struct mfb_wire_allocated_entry {
        uint64_t handle;
        uint64_t allocated;     /* bytes of memory the region uses: st_blocks * 512 of its memfd */
};

struct mfb_wire_allocated_reply {
        uint32_t count;         /* meaningful entries */
        uint32_t more;          /* as LIST's */
        uint64_t next_after;    /* as LIST's */
        struct mfb_wire_allocated_entry entries[MFB_WIRE_ALLOCATED_ENTRIES_MAX]; /* ascending handles; zero after count */
};

/*
 * Notifications (PROTOCOL.md, "Notifications"). Every region can have a
 * control page: a memfd of MFB_WIRE_NOTIFY_PAGE_SIZE bytes that the broker
 * makes on the first NOTIFIER for the region, owns (mode 0644, sealed
 * against resizing and further seals) and keeps as long as the region.
 * NOTIFIER gives a holder the page's fd: read-write to a connection that
 * holds the region writable, read-only to any other holder, so that only
 * writers can advance the sequence: the kernel enforces it.
 *
 * To notify, a holder of a read-write page fd adds 1 to seq atomically (a
 * 64-bit atomic add on its shared mapping), then wakes every futex waiter
 * on seq's low 32 bits (FUTEX_WAKE, not FUTEX_PRIVATE_FLAG, INT_MAX
 * waiters), then, if watchers is not 0, sends NOTIFY without
 * MFB_WIRE_NOTIFY_ADVANCE (may be quiet), so that the broker signals the
 * connections that watch with a pipe. A client that cannot do atomics
 * sends NOTIFY with MFB_WIRE_NOTIFY_ADVANCE instead: the broker does all
 * three.
 *
 * To wait, any holder reads seq from its mapping; while it is what it saw
 * last, it sleeps in FUTEX_WAIT on the low 32 bits with their value (which
 * works on a read-only shared mapping), or polls the pipe from
 * NOTIFY_WATCH. A wake-up with seq unchanged is no notification: a
 * read-only holder can issue FUTEX_WAKE, but cannot change seq.
 */
#define MFB_WIRE_NOTIFY_PAGE_SIZE 4096U

struct mfb_wire_notify_page {
        uint64_t seq;           /* notifications so far; its low 32 bits are the futex word */
        uint32_t watchers;      /* pipes NOTIFY_WATCH gave out and the broker signals; the broker's to write */
        uint32_t reserved;
};

/*
 * The futex word: the low 32 bits of seq, which are its first four bytes on
 * a little-endian host and its last four on a big-endian one.
 */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define MFB_WIRE_NOTIFY_FUTEX_OFFSET 0U
#else
#define MFB_WIRE_NOTIFY_FUTEX_OFFSET 4U
#endif

/* NOTIFY flags. */
#define MFB_WIRE_NOTIFY_ADVANCE 0x1U    /* the broker advances seq and wakes the futex waiters itself */

/* NOTIFIER, NOTIFY_WATCH and NOTIFY name a region the connection holds. */
struct mfb_wire_notify_request {
        uint64_t handle;
        uint32_t flags;         /* NOTIFY: MFB_WIRE_NOTIFY_*; zero for the others */
        uint32_t reserved;
};

/*
 * NOTIFIER reply, with one fd: the control page, read-write (access
 * MFB_WIRE_ACCESS_READ | MFB_WIRE_ACCESS_WRITE) if the connection holds
 * the region writable, else read-only (MFB_WIRE_ACCESS_READ).
 */
struct mfb_wire_notifier_reply {
        uint32_t access;
        uint32_t reserved;
        uint64_t seq;           /* the sequence when the broker answered */
};

/*
 * NOTIFY_WATCH reply, with one fd: the read end (O_NONBLOCK) of a pipe
 * the broker writes a byte to after notifications of the region, at most
 * once per pass of its loop, for as long as the connection holds the
 * region; end of file after that. One per connection and region: a second
 * NOTIFY_WATCH gives a copy of the same read end.
 * NOTIFY reply: seq after it.
 */
struct mfb_wire_notify_reply {
        uint64_t seq;
};

/*
 * Release queues (PROTOCOL.md, "Release queue"). RELEASE_QUEUE (no body)
 * gives the connection a page of MFB_WIRE_RELEASE_QUEUE_SIZE bytes, a memfd
 * that the broker made (sealed against resizing and further seals) and the
 * client writes the handles it lets go of into: the reply carries its one
 * read-write fd; a second RELEASE_QUEUE is refused with -EEXIST. The
 * broker takes what the client wrote (each entry released as by a RELEASE)
 * before a request with MFB_WIRE_FLAG_QUEUED, and on its own once the
 * connection has sent nothing since its last request for between
 * MFB_WIRE_RELEASE_QUEUE_WINDOW_MS and MFB_WIRE_RELEASE_QUEUE_SWEEP_MS. So a release costs the client a store, and the broker
 * neither a record nor a wakeup, while it still ends within that time.
 *
 * Entry n (counted from 0 over the queue's life) goes in slot n % slots:
 * first its handle, then (a store with release ordering) its seq, n + 1,
 * which completes it. The broker takes entries in order, from the first it
 * has not taken, and stops at a slot whose seq is not the one due. The
 * client may write entry n only once the broker has taken entry n - slots:
 * it knows that every entry it wrote before a request with
 * MFB_WIRE_FLAG_QUEUED is taken once that request is answered. A client
 * that writes an entry MFB_WIRE_RELEASE_QUEUE_WINDOW_MS or more after it
 * last sent a request (time read again after the store) sends a request
 * with MFB_WIRE_FLAG_QUEUED, such as a quiet SYNC, for it to be taken soon.
 * An entry of a handle the connection does not hold fails, with -ENOENT,
 * the request it was taken for, or else the connection's next request.
 *
 * SYNC (no body): does nothing; its empty reply tells that the broker has
 * handled everything the connection sent before it. May be quiet.
 */
#define MFB_WIRE_RELEASE_QUEUE_SIZE 4096U
#define MFB_WIRE_RELEASE_QUEUE_HEADER 64U       /* bytes before slot 0: reserved, zero */
#define MFB_WIRE_RELEASE_QUEUE_SLOTS 252U       /* (4096 - 64) / 16 */
#define MFB_WIRE_RELEASE_QUEUE_SWEEP_MS 10U
#define MFB_WIRE_RELEASE_QUEUE_WINDOW_MS 5U

struct mfb_wire_release_queue_entry {
        uint64_t handle;
        uint64_t seq;           /* n + 1 once entry n is complete */
};

struct mfb_wire_release_queue_reply {
        uint32_t slots;         /* MFB_WIRE_RELEASE_QUEUE_SLOTS */
        uint32_t reserved;
};

/* Errors: status < 0, no fds, and the body is up to MFB_WIRE_ERROR_MESSAGE_MAX bytes of UTF-8 text, no NUL. */

_Static_assert(sizeof(struct mfb_wire_header) == 24, "header layout");
_Static_assert(sizeof(struct mfb_wire_name) == 256, "name layout");
_Static_assert(sizeof(struct mfb_wire_hello_request) == 8, "hello request layout");
_Static_assert(sizeof(struct mfb_wire_hello_reply) == 48, "hello reply layout");
_Static_assert(sizeof(struct mfb_wire_region_info) == 344, "region info layout");
_Static_assert(sizeof(struct mfb_wire_create_request) == 272, "create layout");
_Static_assert(sizeof(struct mfb_wire_open_request) == 272, "open layout");
_Static_assert(sizeof(struct mfb_wire_region_reply) == 352, "region reply layout");
_Static_assert(sizeof(struct mfb_wire_seal_request) == 16, "seal layout");
_Static_assert(sizeof(struct mfb_wire_lookup_request) == 264, "lookup layout");
_Static_assert(sizeof(struct mfb_wire_list_request) == 8, "list request layout");
_Static_assert(sizeof(struct mfb_wire_list_reply) == 16, "list reply layout");
_Static_assert(sizeof(struct mfb_wire_limit) == 40, "limit layout");
_Static_assert(sizeof(struct mfb_wire_limits_reply) == 8 + 40 * MFB_WIRE_RESOURCE_COUNT, "limits reply layout");
_Static_assert(sizeof(struct mfb_wire_release_request) == 8, "release layout");
_Static_assert(sizeof(struct mfb_wire_create_batch_request) == 24, "create batch request layout");
_Static_assert(sizeof(struct mfb_wire_create_batch_reply) == 16, "create batch reply layout");
_Static_assert(sizeof(struct mfb_wire_create_batch_reply) + MFB_WIRE_CREATE_BATCH_MAX * sizeof(uint64_t) <=
               MFB_WIRE_RECORD_MAX, "a whole batch fits in one record");
_Static_assert(sizeof(struct mfb_wire_set_request) == 280, "set layout");
_Static_assert(sizeof(struct mfb_wire_notify_page) == 16, "notify page layout");
_Static_assert(sizeof(struct mfb_wire_notify_request) == 16, "notify request layout");
_Static_assert(sizeof(struct mfb_wire_notifier_reply) == 16, "notifier reply layout");
_Static_assert(sizeof(struct mfb_wire_notify_reply) == 8, "notify reply layout");
_Static_assert(sizeof(struct mfb_wire_wait_request) == 272, "wait layout");
_Static_assert(sizeof(struct mfb_wire_usage_request) == 8, "usage request layout");
_Static_assert(sizeof(struct mfb_wire_usage_reply) == 16 + 328 * MFB_WIRE_USAGE_ROWS_MAX, "usage reply layout");
_Static_assert(sizeof(struct mfb_wire_allocated_request) == 16, "allocated request layout");
_Static_assert(sizeof(struct mfb_wire_allocated_entry) == 16, "allocated entry layout");
_Static_assert(sizeof(struct mfb_wire_allocated_reply) == 16 + 16 * MFB_WIRE_ALLOCATED_ENTRIES_MAX,
               "allocated reply layout");
_Static_assert(sizeof(struct mfb_wire_release_queue_entry) == 16, "release queue entry layout");
_Static_assert(sizeof(struct mfb_wire_release_queue_reply) == 8, "release queue reply layout");
_Static_assert(MFB_WIRE_RELEASE_QUEUE_HEADER + MFB_WIRE_RELEASE_QUEUE_SLOTS * sizeof(struct mfb_wire_release_queue_entry)
               == MFB_WIRE_RELEASE_QUEUE_SIZE, "release queue layout");
_Static_assert(MFB_WIRE_RELEASE_QUEUE_WINDOW_MS < MFB_WIRE_RELEASE_QUEUE_SWEEP_MS,
               "a client writes within the window only what the broker takes on its own");
_Static_assert(sizeof(struct mfb_wire_header) + sizeof(struct mfb_wire_list_reply)
               + MFB_WIRE_LIST_ENTRIES_MAX * sizeof(struct mfb_wire_region_info) <= MFB_WIRE_RECORD_MAX,
               "a full LIST reply fits in one record");
