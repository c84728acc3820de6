/* SPDX-License-Identifier: MIT */
/*
 * The whole request path: a real broker and its event loop, in this
 * process, serving clients of several users over socketpairs, driven by a
 * script the fuzzer writes. Each input gets a fresh broker.
 *
 * The script is a sequence of steps, each a byte naming what to do and the
 * bytes that say how (see run_step()): send a request on one connection
 * (built from a few bytes and mostly well-formed, so that the fuzzer gets
 * past the checks; or raw; sometimes with an fd attached, handles to
 * release carried after the body, up to one more than allowed, or the flag
 * that has the broker take the release queue first), write an entry to a
 * connection's release queue (mostly complete, with a handle the broker
 * gave out), read the replies, run the loop until the broker is idle,
 * close or shut down a connection (also with a WAIT pending or replies
 * unread), open another, let a little time pass for short WAIT timeouts.
 *
 * What every input must satisfy, else abort():
 * - every reply is valid by PROTOCOL.md (mfb_wire_reply_check(), with an
 *   fd attached exactly when nfds says, and the fd what the reply
 *   promises), answers the oldest unanswered request of its connection
 *   (cookie and opcode), and is consistent with the request and with the
 *   access rules (an OPEN, STAT or WAIT never gives a non-root client a
 *   region its mode does not let it read, nor a LIST one it may not see);
 * - the broker closes a connection only for a reason PROTOCOL.md gives (an
 *   untrustworthy header, a truncated or empty record, the connection
 *   limit), and answers every request of a connection it keeps, but for
 *   those behind a pending WAIT;
 * - no connection outlives its client: once a client closed its end or
 *   shut down its sending side and the loop is idle, its connection is
 *   gone, and at the end, with every client closed, there are none;
 * - the broker never stays busy: the loop goes idle;
 * - no fd leaks (the count in /proc/self/fd is the same before the broker
 *   is made and after it is freed) and no memory leaks (libFuzzer's).
 *
 * MFB_FUZZ_LOG=debug (a level of the daemon's --log-level) shows the
 * broker's log while reproducing a crash.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sockios.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "access.h"
#include "broker.h"
#include "codec.h"
#include "settings.h"
#include "connection.h"
#include "session.h"
#include "fdpass.h"
#include "log.h"
#include "macro.h"
#include "wire.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Connections one script can have at once. */
#define SLOTS_MAX 8U
/* Requests a connection may have unanswered; a script that sends more has the rest skipped. */
#define PENDING_MAX 256U
/* Steps of one script at most: a longer one tells nothing more, only slower. */
#define STEPS_MAX 256U
/* Handles seen in replies, which requests then name. */
#define HANDLES_MAX 16U
/* Loop passes in a row that change something before the broker counts as never idle. */
#define PASSES_MAX 10000U

/*
 * Small limits, so that scripts run into them and into the fair shares.
 * Not the fds, nor the bytes of queued replies: the broker may drop a
 * client that does not read once its uid's share of those is used up,
 * which would leave no way to tell a drop for no reason.
 */
#define LIMIT_REGION_SIZE               (UINT64_C(2) << 20)
#define LIMIT_REGIONS                   24U
#define LIMIT_REGIONS_PER_UID           8U
#define LIMIT_BYTES                     (UINT64_C(12) << 20)
#define LIMIT_BYTES_PER_UID             (UINT64_C(8) << 20)
#define LIMIT_HOLDS_PER_CONNECTION      8U
#define LIMIT_CONNECTIONS               12U
#define LIMIT_CONNECTIONS_PER_UID       2U
#define LIMIT_WAITERS                   4U
#define LIMIT_RELEASE_QUEUES            3U
#define FD_LIMIT                        (UINT64_C(1) << 20)
#define PHYSICAL_MEMORY                 (UINT64_C(1) << 30)

/*
 * The broker's socket buffers, small (the kernel doubles this) so that a
 * client that does not read soon has its replies queued; yet the largest
 * record fits, as it does in the default buffers.
 */
#define SOCKET_BUFFER ((MFB_WIRE_RECORD_MAX + 1024) / 2)

/* The users clients play: root, and others in and out of each other's groups. */
struct identity {
        uid_t uid;
        gid_t gid;
        gid_t groups[2];        /* sorted, as SO_PEERGROUPS gives them to the broker */
        size_t n_groups;
};

static const struct identity identities[] = {
        { .uid = 0, .gid = 0 },
        { .uid = 1000, .gid = 1000, .groups = { 100 }, .n_groups = 1 },
        { .uid = 1001, .gid = 1001, .groups = { 100, 1000 }, .n_groups = 2 },
        { .uid = 1001, .gid = 100 },
        { .uid = 65534, .gid = 65534 },
        { .uid = 1002, .gid = 1002, .groups = { 1001 }, .n_groups = 1 },
};

/* A request sent and not answered yet, and what its reply must be. */
struct expected {
        bool ends;              /* not a request: a record that makes the broker drop the connection */
        uint64_t cookie;
        uint16_t opcode;
        bool must_fail;         /* sent with an fd, refused by the codec, or quiet where it cannot be */
        bool quiet;             /* a RELEASE or REMOVE with MFB_WIRE_FLAG_QUIET: answered only if it fails */
        bool carries;           /* handles to release (MFB_WIRE_FLAG_RELEASES): one not held fails it -ENOENT */
        bool queued;            /* MFB_WIRE_FLAG_QUEUED: refused -EINVAL without a queue */
        bool may_stay;          /* a WAIT that may be pending */
        uint32_t access;        /* CREATE, OPEN, WAIT: what a region reply grants */
        uint64_t handle;        /* by handle (OPEN, STAT, SEAL, SET), LIST's after_handle */
        bool by_name;
        struct mfb_wire_name name;
        uint64_t size;          /* CREATE, CREATE_BATCH */
        uint32_t count;         /* CREATE_BATCH */
        uint32_t mode;          /* CREATE, CREATE_BATCH (0 is 0600), SET */
        uint32_t create_flags;  /* CREATE */
        uint32_t seals;         /* SEAL */
        uint32_t set_fields;    /* SET, with mode and these */
        uint32_t uid, gid;
        uint32_t notify_flags;  /* NOTIFY */
};

struct slot {
        int fd;                 /* the client's end; -1 when closed or never opened */
        bool open;              /* the client has not closed it */
        bool shut;              /* the client shut down its sending side */
        bool ended;             /* the broker closed its end (end of file read) */
        bool refused;           /* over the connection limit: answered once, then closed */
        bool replied;           /* a reply came */
        bool hello_done;        /* a HELLO succeeded */
        pid_t pid;              /* as the broker was told: finds the connection */
        struct mfb_wire_release_queue_entry *queue;     /* its release queue's slots, mapped; NULL for none */
        uint64_t queue_written;
        const struct identity *id;
        struct expected pending[PENDING_MAX];
        size_t head, n;
};

/* Everything one input uses, set up afresh for each. */
static struct {
        struct settings config;
        struct broker *broker;
        struct slot slots[SLOTS_MAX];
        uint64_t handles[HANDLES_MAX];
        size_t n_handles;
        uint64_t cookie;
        pid_t next_pid;
} f;

/* For the whole run: the fds requests carry, and the broker's directory, removed at exit. */
static int memfd = -1, devnull = -1;
static char dir[PATH_MAX], socket_path[PATH_MAX];
static uint8_t record[MFB_WIRE_RECORD_MAX + 1];

static void fail(const char *what, const struct slot *s) {
        fprintf(stderr, "fuzz-requests: %s", what);
        if (s)
                fprintf(stderr, " (connection %zu, uid %u, pid %d)", (size_t) (s - f.slots), (unsigned) s->id->uid,
                        (int) s->pid);
        fputc('\n', stderr);
        abort();
}

#define check(cond, what, s)                    \
        do {                                    \
                if (!(cond))                    \
                        fail(what, s);          \
        } while (0)

/* The script being run: bytes taken from the front, zeros once it is used up. */
struct input {
        const uint8_t *p;
        size_t n;
};

static uint8_t take_u8(struct input *in) {
        if (in->n == 0)
                return 0;
        in->n--;
        return *in->p++;
}

static void take_bytes(struct input *in, void *buf, size_t len) {
        size_t k = len < in->n ? len : in->n;

        memcpy(buf, in->p, k);
        memset((uint8_t *) buf + k, 0, len - k);
        in->p += k;
        in->n -= k;
}

static uint64_t take_u64(struct input *in) {
        uint64_t v;

        take_bytes(in, &v, sizeof(v));
        return v;
}

static uint16_t take_u16(struct input *in) {
        uint16_t v;

        take_bytes(in, &v, sizeof(v));
        return v;
}

static size_t count_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        size_t n = 0;

        check(d, "opening /proc/self/fd failed", NULL);
        while (readdir(d))
                n++;
        closedir(d);
        return n;
}

/* ---- Connections ---- */

static struct session *find_session(const struct slot *s) {
        struct session *x;

        TAILQ_FOREACH(x, &f.broker->services.sessions, link)
                if (x->peer.creds.pid == s->pid)
                        return x;
        return NULL;
}

/* Makes s unused. Not the whole slot: its pending requests are set as they come, and they are many. */
static void slot_reset(struct slot *s) {
        s->fd = -1;
        s->open = s->shut = s->ended = s->refused = s->replied = s->hello_done = false;
        s->pid = 0;
        s->id = NULL;
        s->head = s->n = 0;
        s->queue = NULL;        /* unmapped when the client closed */
        s->queue_written = 0;
}

static void slot_open(struct slot *s, const struct identity *id) {
        struct peer peer = {};
        int pair[2], r;

        check(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) == 0, "socketpair() failed",
              NULL);
        check(setsockopt(pair[1], SOL_SOCKET, SO_SNDBUF, &(int) { SOCKET_BUFFER }, sizeof(int)) == 0,
              "setsockopt(SO_SNDBUF) failed", NULL);
        slot_reset(s);
        s->fd = pair[0];
        s->open = true;
        s->pid = f.next_pid++;
        s->id = id;
        peer.creds = (struct ucred) { .pid = s->pid, .uid = id->uid, .gid = id->gid };
        if (id->n_groups > 0) {
                peer.groups = malloc(id->n_groups * sizeof(gid_t));
                check(peer.groups, "out of memory", NULL);
                memcpy(peer.groups, id->groups, id->n_groups * sizeof(gid_t));
                peer.n_groups = id->n_groups;
        }
        r = session_new_with_peer(&f.broker->services, pair[1], &peer);
        /* Closed at once, unanswered: too many refused connections of its uid wait already. */
        if (r < 0) {
                check(r == -EDQUOT, "a connection failed for a reason other than its uid's limit", s);
                s->refused = true;
        }
}

/* The client closes its end. */
static void slot_close(struct slot *s) {
        s->fd = safe_close(s->fd);
        s->open = false;
        if (s->queue)
                check(munmap((uint8_t *) s->queue - MFB_WIRE_RELEASE_QUEUE_HEADER, MFB_WIRE_RELEASE_QUEUE_SIZE) == 0,
                      "munmap() failed", s);
        s->queue = NULL;
}

/* ---- What a reply must be ---- */

static struct expected *pending_push(struct slot *s) {
        struct expected *e;

        if (s->n == PENDING_MAX)
                return NULL;
        e = &s->pending[(s->head + s->n) % PENDING_MAX];
        s->n++;
        *e = (struct expected) {};
        return e;
}

static struct expected *pending_head(struct slot *s) {
        return s->n > 0 ? &s->pending[s->head] : NULL;
}

static void pending_pop(struct slot *s) {
        s->head = (s->head + 1) % PENDING_MAX;
        s->n--;
}

static void remember_handle(uint64_t handle) {
        for (size_t i = 0; i < f.n_handles; i++)
                if (f.handles[i] == handle)
                        return;
        if (f.n_handles < HANDLES_MAX)
                f.handles[f.n_handles++] = handle;
        else
                f.handles[handle % HANDLES_MAX] = handle;
}

/* Whether gid is id's primary or one of its supplementary groups. */
static bool in_groups(const struct identity *id, gid_t gid) {
        for (size_t i = 0; i < id->n_groups; i++)
                if (id->groups[i] == gid)
                        return true;
        return id->gid == gid;
}

/* PROTOCOL.md, "Access control": whether id may have access to a region described by info. */
static bool may(const struct identity *id, const struct mfb_wire_region_info *info, uint32_t access) {
        unsigned need = (access & MFB_WIRE_ACCESS_READ ? 4 : 0) | (access & MFB_WIRE_ACCESS_WRITE ? 2 : 0);
        unsigned bits;

        if (id->uid == 0)
                return true;
        if (id->uid == info->uid)
                bits = (info->mode >> 6) & 7;
        else if (in_groups(id, info->gid))
                bits = (info->mode >> 3) & 7;
        else
                bits = info->mode & 7;
        return (bits & need) == need;
}

/* Whether id may see the region: read it, or own it (root, the owner uid, the creator uid). */
static bool may_see(const struct identity *id, const struct mfb_wire_region_info *info) {
        return may(id, info, MFB_WIRE_ACCESS_READ) || id->uid == 0 || id->uid == info->uid || id->uid == info->creator_uid;
}

static bool same_name(const struct mfb_wire_name *a, const struct mfb_wire_name *b) {
        return memcmp(a, b, sizeof(*a)) == 0;
}

static void check_info(const struct slot *s, const struct mfb_wire_region_info *info) {
        const unsigned resize_seals = F_SEAL_SHRINK | F_SEAL_GROW;

        check(info->handle != 0, "a region has handle 0", s);
        check(info->size != 0 && info->size <= LIMIT_REGION_SIZE, "a region has a size the broker does not make", s);
        check(info->mode <= 0777, "a region has a mode above 0777", s);
        check((info->seals & resize_seals) == resize_seals, "a region is not sealed against resizing", s);
        check((info->state & ~(MFB_WIRE_STATE_REMOVED | MFB_WIRE_STATE_HUGETLB | MFB_WIRE_STATE_TRANSIENT)) == 0,
              "a region has unknown state bits", s);
        /* Its last holder ends it: no one can describe a transient region that nobody holds. */
        check(!(info->state & MFB_WIRE_STATE_TRANSIENT) || info->nattch >= 1, "a transient region outlived its holders",
              s);
        check(!(info->state & MFB_WIRE_STATE_TRANSIENT) || (info->state & MFB_WIRE_STATE_REMOVED) ||
              info->name.bytes[0] != 0, "a transient region has no name", s);
        check(mfb_wire_name_check(&info->name) >= 0, "a region's name field is bad", s);
        check(!(info->state & MFB_WIRE_STATE_REMOVED) || info->name.bytes[0] == 0, "a removed region has a name", s);
        remember_handle(info->handle);
}

/* The fd of a region reply: the region's memfd, of its size, sealed against resizing, with the access granted. */
static void check_region_fd(const struct slot *s, int fd, const struct mfb_wire_region_reply *reply) {
        const int resize_seals = F_SEAL_SHRINK | F_SEAL_GROW;
        struct stat st;
        int seals, flags;

        check(fstat(fd, &st) == 0 && S_ISREG(st.st_mode), "a region reply's fd is not a regular file", s);
        check((uint64_t) st.st_size == reply->info.size, "a region reply's fd is not of the region's size", s);
        seals = fcntl(fd, F_GET_SEALS);
        check(seals >= 0 && (seals & resize_seals) == resize_seals, "a region reply's fd can be resized", s);
        /* Seals only ever grow: a later SEAL may have added one since the reply was made. */
        check((reply->info.seals & ~(uint32_t) seals) == 0, "a region reply has seals its fd has not", s);
        flags = fcntl(fd, F_GETFL);
        check(flags >= 0, "fcntl(F_GETFL) failed", s);
        check((flags & O_ACCMODE) == (reply->access & MFB_WIRE_ACCESS_WRITE ? O_RDWR : O_RDONLY),
              "a region reply's fd is not open for the access granted", s);
}

/* An error message: one line of text for a human, without control characters. */
static void check_error_message(const struct slot *s, const uint8_t *text, size_t len) {
        for (size_t i = 0; i < len; i++)
                check(text[i] >= 0x20 && text[i] != 0x7f, "an error message has a control character", s);
}

static void check_region_reply(struct slot *s, const struct expected *e, const uint8_t *body, int fd) {
        const unsigned write_seals = F_SEAL_WRITE | F_SEAL_FUTURE_WRITE;
        const struct identity *id = s->id;
        struct mfb_wire_region_reply reply;

        memcpy(&reply, body, sizeof(reply));
        check_info(s, &reply.info);
        check(fd >= 0, "a region reply came without its fd", s);
        check_region_fd(s, fd, &reply);
        check(reply.access == e->access, "a region reply grants other access than asked for", s);
        check(reply.reserved == 0, "a region reply's reserved field is not zero", s);
        check(reply.info.nattch >= 1, "a region just given out has no holder", s);
        check(!(reply.info.state & MFB_WIRE_STATE_REMOVED), "a removed region was given out", s);

        switch (e->opcode) {
        case MFB_WIRE_OP_CREATE:
                check(reply.info.size == e->size && reply.info.mode == (e->mode ?: 0600) &&
                      same_name(&reply.info.name, &e->name), "a region was created other than asked for", s);
                check(reply.info.uid == id->uid && reply.info.gid == id->gid && reply.info.creator_uid == id->uid &&
                      reply.info.creator_gid == id->gid, "a region was created for another user", s);
                check(!(reply.info.seals & write_seals), "a new region is sealed against writes", s);
                check(!(reply.info.state & MFB_WIRE_STATE_TRANSIENT) == !(e->create_flags & MFB_WIRE_CREATE_TRANSIENT),
                      "a region is transient other than asked for", s);
                break;
        case MFB_WIRE_OP_OPEN:
                check(e->by_name ? same_name(&reply.info.name, &e->name) : reply.info.handle == e->handle,
                      "OPEN gave another region than named", s);
                check(may(id, &reply.info, e->access), "OPEN gave access the region's mode does not grant", s);
                check(!(e->access & MFB_WIRE_ACCESS_WRITE) || !(reply.info.seals & write_seals),
                      "OPEN gave write access to a sealed region", s);
                break;
        case MFB_WIRE_OP_WAIT:
                check(same_name(&reply.info.name, &e->name), "WAIT gave another region than named", s);
                check(reply.info.seals & write_seals, "WAIT gave a region that is not sealed", s);
                check(may(id, &reply.info, MFB_WIRE_ACCESS_READ), "WAIT gave a region the caller may not read", s);
                break;
        }
}

/*
 * A NOTIFIER reply: the control page, a sealed memfd of one page, with
 * exactly the access the reply grants, read-only or read-write.
 */
static void check_page_reply(struct slot *s, const uint8_t *body, int fd) {
        const int page_seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
        struct mfb_wire_notifier_reply reply;
        struct stat st;
        int seals, flags;

        memcpy(&reply, body, sizeof(reply));
        check(reply.reserved == 0, "a NOTIFIER reply's reserved field is not zero", s);
        check(reply.access == MFB_WIRE_ACCESS_READ || reply.access == (MFB_WIRE_ACCESS_READ | MFB_WIRE_ACCESS_WRITE),
              "a NOTIFIER reply grants no valid access", s);
        check(fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == MFB_WIRE_NOTIFY_PAGE_SIZE &&
              (st.st_mode & 07777) == 0644, "NOTIFIER gave no control page", s);
        seals = fcntl(fd, F_GET_SEALS);
        check(seals >= 0 && (seals & page_seals) == page_seals, "a control page can be resized or sealed", s);
        flags = fcntl(fd, F_GETFL);
        check(flags >= 0 && (flags & O_ACCMODE) == (reply.access & MFB_WIRE_ACCESS_WRITE ? O_RDWR : O_RDONLY),
              "a control page's fd has other access than the reply grants", s);
}

/* A CREATE_BATCH reply: the count asked for, each fd a new region's of the size asked for, read-write. */
/* A release queue: a page sealed against resizing, read-write, mapped for the script to write to. */
static void check_queue_reply(struct slot *s, const uint8_t *body, int fd) {
        struct mfb_wire_release_queue_reply reply;
        int seals = fcntl(fd, F_GET_SEALS), flags = fcntl(fd, F_GETFL);
        struct stat st;
        void *page;

        memcpy(&reply, body, sizeof(reply));
        check(reply.slots == MFB_WIRE_RELEASE_QUEUE_SLOTS && reply.reserved == 0,
              "a RELEASE_QUEUE reply has another number of slots", s);
        check(fstat(fd, &st) == 0 && st.st_size == MFB_WIRE_RELEASE_QUEUE_SIZE && flags >= 0 &&
              (flags & O_ACCMODE) == O_RDWR && seals >= 0 &&
              (seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) == (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
              "RELEASE_QUEUE gave no sealed read-write page", s);
        check(!s->queue, "a second RELEASE_QUEUE succeeded", s);
        page = mmap(NULL, MFB_WIRE_RELEASE_QUEUE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        check(page != MAP_FAILED, "mapping a release queue failed", s);
        s->queue = (struct mfb_wire_release_queue_entry *) ((uint8_t *) page + MFB_WIRE_RELEASE_QUEUE_HEADER);
        s->queue_written = 0;
}

static void check_batch_reply(struct slot *s, const struct expected *e, const uint8_t *body, const int *fds,
                              size_t nfds) {
        struct mfb_wire_create_batch_reply reply;
        struct mfb_wire_region_reply as_region = { .access = MFB_WIRE_ACCESS_READ | MFB_WIRE_ACCESS_WRITE };

        memcpy(&reply, body, sizeof(reply));
        check(reply.count == e->count && nfds == e->count, "CREATE_BATCH made another number of regions", s);
        check(reply.size == e->size && reply.access == (MFB_WIRE_ACCESS_READ | MFB_WIRE_ACCESS_WRITE),
              "CREATE_BATCH made regions other than asked for", s);
        as_region.info.size = reply.size;
        for (uint32_t i = 0; i < reply.count; i++) {
                uint64_t handle;

                memcpy(&handle, body + sizeof(reply) + i * sizeof(handle), sizeof(handle));
                check(handle != 0, "CREATE_BATCH gave handle 0", s);
                for (uint32_t j = 0; j < i; j++) {
                        uint64_t other;

                        memcpy(&other, body + sizeof(reply) + j * sizeof(other), sizeof(other));
                        check(other != handle, "CREATE_BATCH gave one handle twice", s);
                }
                check_region_fd(s, fds[i], &as_region);
                remember_handle(handle);
        }
}

/* Whether the bytes from start to end are all zero: the unused part of a fixed-size reply. */
static bool all_zero(const uint8_t *start, const uint8_t *end) {
        for (; start < end; start++)
                if (*start)
                        return false;
        return true;
}

/*
 * A USAGE reply: ascending rows from first_uid, each laid out as a LIMITS
 * reply; for a caller that is not exempt (root or the broker's uid), its
 * own row alone and nothing of what others hold.
 */
static void check_usage_reply(struct slot *s, const struct expected *e, const uint8_t *body) {
        const struct identity *id = s->id;
        bool exempt = id->uid == 0 || id->uid == geteuid();
        struct mfb_wire_usage_reply reply;
        uint64_t next = e->uid;
        bool own = false;

        memcpy(&reply, body, sizeof(reply));
        check(reply.count <= MFB_WIRE_USAGE_ROWS_MAX && reply.more <= 1 && reply.reserved == 0,
              "a USAGE reply has a bad count, more or reserved field", s);
        check(all_zero((const uint8_t *) &reply.rows[reply.count], (const uint8_t *) (&reply + 1)),
              "a USAGE reply's unused rows are not zero", s);
        for (uint32_t i = 0; i < reply.count; i++) {
                const struct mfb_wire_limits_reply *row = &reply.rows[i];

                check(row->uid >= next && row->count == MFB_WIRE_RESOURCE_COUNT,
                      "USAGE rows are not ascending from first_uid, or have another count", s);
                next = (uint64_t) row->uid + 1;
                own = own || row->uid == id->uid;
                check(exempt || row->uid == id->uid, "USAGE showed a non-exempt caller another uid's row", s);
                for (unsigned j = 0; j < MFB_WIRE_RESOURCE_COUNT; j++)
                        check(exempt || row->resources[j].broker_used == MFB_WIRE_LIMIT_NONE,
                              "USAGE told a non-exempt caller what everyone uses", s);
        }
        /* Its own connection makes every caller one the broker counts: in the page, unless after it. */
        check(id->uid < e->uid || own || (reply.more && id->uid >= next), "USAGE left out the caller's own row", s);
        check(exempt || !reply.more, "USAGE told a non-exempt caller that more rows follow", s);
        check(!reply.more || (reply.count == MFB_WIRE_USAGE_ROWS_MAX && reply.next_uid == next),
              "USAGE's next_uid would have the client read a row twice, or skip some", s);
}

/* An ALLOCATED reply: LIST's cursor rules, at most max_count entries, zeros after them. */
static void check_allocated_reply(struct slot *s, const struct expected *e, const uint8_t *body) {
        struct mfb_wire_allocated_reply reply;
        uint64_t last = e->handle;

        memcpy(&reply, body, sizeof(reply));
        check(reply.count <= e->count && reply.more <= 1, "an ALLOCATED reply has too many entries, or a bad more", s);
        check(all_zero((const uint8_t *) &reply.entries[reply.count], (const uint8_t *) (&reply + 1)),
              "an ALLOCATED reply's unused entries are not zero", s);
        for (uint32_t i = 0; i < reply.count; i++) {
                check(reply.entries[i].handle > last, "ALLOCATED entries are not ascending above after_handle", s);
                check(reply.entries[i].allocated <= LIMIT_REGION_SIZE, "ALLOCATED says a region uses more than it may", s);
                last = reply.entries[i].handle;
        }
        check(!reply.more || (reply.next_after >= last && reply.next_after > e->handle),
              "ALLOCATED's next_after would have the client list a region twice, or ask forever", s);
}

static void check_success(struct slot *s, const struct expected *e, const uint8_t *body, size_t body_len,
                          const int *fds, size_t nfds) {
        int fd = nfds > 0 ? fds[0] : -1;
        const struct identity *id = s->id;
        struct mfb_wire_region_info info;

        check(!e->must_fail, "a request the broker must refuse succeeded", s);
        if (e->opcode == MFB_WIRE_OP_HELLO) {
                struct mfb_wire_hello_reply hello;

                check(!s->hello_done, "a second HELLO succeeded", s);
                s->hello_done = true;
                memcpy(&hello, body, sizeof(hello));
                check(hello.version == MFB_WIRE_VERSION && hello.record_max == MFB_WIRE_RECORD_MAX &&
                      hello.name_max == MFB_WIRE_NAME_MAX && hello.fds_per_record_max == MFB_WIRE_FDS_PER_RECORD_MAX &&
                      hello.requests_in_flight_max == MFB_WIRE_REQUESTS_IN_FLIGHT_MAX &&
                      hello.list_entries_max == MFB_WIRE_LIST_ENTRIES_MAX && hello.reserved == 0 &&
                      hello.reserved2 == 0, "the HELLO reply does not give the protocol's limits", s);
                check(hello.region_size_max == LIMIT_REGION_SIZE, "the HELLO reply does not give the size limit", s);
                return;
        }
        check(s->hello_done, "a request before HELLO succeeded", s);

        switch (e->opcode) {
        case MFB_WIRE_OP_CREATE:
        case MFB_WIRE_OP_OPEN:
        case MFB_WIRE_OP_WAIT:
                check_region_reply(s, e, body, fd);
                return;
        case MFB_WIRE_OP_SEAL:
        case MFB_WIRE_OP_STAT:
        case MFB_WIRE_OP_SET:
                memcpy(&info, body, sizeof(info));
                check_info(s, &info);
                if (e->opcode == MFB_WIRE_OP_SEAL) {
                        check(info.handle == e->handle, "SEAL answered for another region", s);
                        check(info.seals & e->seals, "SEAL succeeded without sealing", s);
                        return;
                }
                check(e->by_name ? same_name(&info.name, &e->name) : info.handle == e->handle,
                      "a region other than the one named was described", s);
                if (e->opcode == MFB_WIRE_OP_STAT) {
                        check(may(id, &info, MFB_WIRE_ACCESS_READ), "STAT described a region the caller may not read", s);
                        return;
                }
                check((!(e->set_fields & MFB_WIRE_SET_MODE) || info.mode == e->mode) &&
                      (!(e->set_fields & MFB_WIRE_SET_UID) || info.uid == e->uid) &&
                      (!(e->set_fields & MFB_WIRE_SET_GID) || info.gid == e->gid), "SET did not make the change", s);
                return;
        case MFB_WIRE_OP_LIST: {
                struct mfb_wire_list_reply list;
                uint64_t last = e->handle;

                memcpy(&list, body, sizeof(list));
                for (uint32_t i = 0; i < list.count; i++) {
                        memcpy(&info, body + sizeof(list) + i * sizeof(info), sizeof(info));
                        check_info(s, &info);
                        check(info.handle > last, "LIST entries are not ascending above after_handle", s);
                        check(may_see(id, &info), "LIST showed a region the caller may not see", s);
                        last = info.handle;
                }
                check(list.count <= MFB_WIRE_LIST_ENTRIES_MAX, "LIST gave too many entries", s);
                check(!list.more || (list.next_after >= last && list.next_after > e->handle),
                      "LIST's next_after would have the client list a region twice, or ask forever", s);
                return;
        }
        case MFB_WIRE_OP_LIMITS: {
                struct mfb_wire_limits_reply limits;

                memcpy(&limits, body, sizeof(limits));
                check(limits.uid == id->uid && limits.count == MFB_WIRE_RESOURCE_COUNT,
                      "LIMITS answered for another uid, or with another count", s);
                for (unsigned i = 0; i < MFB_WIRE_RESOURCE_COUNT; i++)
                        check(id->uid == 0 || limits.resources[i].broker_used == MFB_WIRE_LIMIT_NONE,
                              "LIMITS told a non-root caller what everyone uses", s);
                return;
        }
        case MFB_WIRE_OP_USAGE:
                check_usage_reply(s, e, body);
                return;
        case MFB_WIRE_OP_ALLOCATED:
                check_allocated_reply(s, e, body);
                return;
        case MFB_WIRE_OP_RELEASE:
        case MFB_WIRE_OP_REMOVE:
                check(body_len == 0, "an empty reply has a body", s);
                return;
        case MFB_WIRE_OP_CREATE_BATCH:
                check_batch_reply(s, e, body, fds, nfds);
                return;
        case MFB_WIRE_OP_NOTIFIER:
                check_page_reply(s, body, fd);
                return;
        case MFB_WIRE_OP_NOTIFY_WATCH: {
                struct stat st;
                int flags = fcntl(fd, F_GETFL);

                /* The read end, as PROTOCOL.md promises: the write end never leaves the broker. */
                check(fd >= 0 && fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode), "NOTIFY_WATCH gave no pipe", s);
                check(flags >= 0 && (flags & O_NONBLOCK) && (flags & O_ACCMODE) == O_RDONLY,
                      "NOTIFY_WATCH gave no non-blocking read end", s);
                return;
        }
        case MFB_WIRE_OP_NOTIFY:
                check(body_len == sizeof(struct mfb_wire_notify_reply), "a NOTIFY reply has another body", s);
                return;
        case MFB_WIRE_OP_RELEASE_QUEUE:
                check_queue_reply(s, body, fd);
                return;
        case MFB_WIRE_OP_SYNC:
                check(body_len == 0, "a SYNC reply has a body", s);
                return;
        default:
                fail("an opcode that is no request succeeded", s);
        }
}

/* Whether the reply with header h answers e, a quiet request: only as its failure. */
static bool answers_quiet(const struct expected *e, const struct mfb_wire_header *h) {
        return h->cookie == e->cookie && h->opcode == (e->opcode | MFB_WIRE_REPLY) && h->status < 0;
}

static void check_reply(struct slot *s, const uint8_t *rec, size_t len, const int *fds, size_t nfds) {
        struct expected *e = pending_head(s);
        struct mfb_wire_header h;
        bool first = !s->replied;

        check(mfb_wire_reply_check(rec, len, nfds, &h) == 0, "a reply is not valid by PROTOCOL.md", s);
        /* Replies come in request order: one for a later request says the quiet ones before it succeeded. */
        while (e && e->quiet && !answers_quiet(e, &h)) {
                pending_pop(s);
                e = pending_head(s);
        }
        check(!s->refused, "a refused connection was answered twice", s);
        check(e, "a reply came for no request", s);
        check(!e->ends, "a reply came after a record that had to end the connection", s);
        check(h.cookie == e->cookie, "a reply's cookie is not its request's: replies out of order", s);
        check(h.opcode == (e->opcode | MFB_WIRE_REPLY), "a reply's opcode is not its request's", s);
        check(h.status >= -4095, "a reply's status is not an errno", s);
        s->replied = true;

        /* The connection limit refuses whatever comes first; nothing else answers the first request so. */
        if (first && h.status == -EDQUOT) {
                s->refused = true;
                check(len > sizeof(h), "a refusal has no message", s);
        } else if (h.status < 0) {
                check(e->opcode != MFB_WIRE_OP_HELLO || s->hello_done || e->must_fail || h.status == -EPROTONOSUPPORT ||
                      h.status == -EBADMSG || h.status == -EMSGSIZE || (e->carries && h.status == -ENOENT) ||
                      (e->queued && h.status == -EINVAL),
                      "a first HELLO was refused for no reason", s);
                check_error_message(s, rec + sizeof(h), len - sizeof(h));
        } else
                check_success(s, e, rec + sizeof(h), len - sizeof(h), fds, nfds);
        pending_pop(s);
}

/*
 * The broker closed the connection: for a reason PROTOCOL.md gives. The
 * replies it had queued for requests before that reason go with it.
 */
static void check_ended(struct slot *s) {
        bool reason = s->refused || s->shut;

        for (size_t i = 0; i < s->n; i++)
                reason = reason || s->pending[(s->head + i) % PENDING_MAX].ends;
        check(reason, "the broker closed a connection for no reason", s);
        s->ended = true;
        s->n = 0;
}

/*
 * With nothing to read: when the broker has read all that s sent and has no
 * reply queued for it, the quiet requests at the head of what s waits for
 * were carried out without a word, so they succeeded.
 */
static void settle_quiet(struct slot *s) {
        struct session *x = find_session(s);
        int outq = 0;

        if (!x || connection_queued(x->connection) > 0 || ioctl(s->fd, SIOCOUTQ, &outq) < 0 || outq > 0)
                return;
        while (pending_head(s) && pending_head(s)->quiet)
                pending_pop(s);
}

/* Reads and checks every record waiting on s, and the end of the connection. */
static bool slot_read(struct slot *s) {
        bool any = false;

        while (s->fd >= 0 && !s->ended) {
                int fds[MFB_FDS_RECV_MAX];
                size_t nfds = 0;
                ssize_t n;

                n = mfb_record_recv(s->fd, record, sizeof(record), fds, &nfds, MSG_DONTWAIT);
                if (n == -EAGAIN) {
                        settle_quiet(s);
                        break;
                }
                any = true;
                /* The broker closed with requests unread: the kernel says so first, then gives the replies. */
                if (n == -ECONNRESET)
                        continue;
                check(n != -EMSGSIZE, "a reply was longer than the protocol's records, or had too many fds", s);
                check(n >= 0, "recvmsg() failed", s);
                if (n == 0) {
                        check_ended(s);
                        break;
                }
                check_reply(s, record, (size_t) n, fds, nfds);
                mfb_close_fds(fds, nfds);
        }
        return any;
}

/* ---- The event loop ---- */

/* What changes when the broker does anything: bytes waiting either way, connections, queued replies. */
static uint64_t fingerprint(void) {
        uint64_t fp = f.broker->services.n_sessions;
        struct session *x;

        for (size_t i = 0; i < SLOTS_MAX; i++) {
                int inq = 0, outq = 0;

                if (f.slots[i].fd < 0)
                        continue;
                check(ioctl(f.slots[i].fd, SIOCINQ, &inq) == 0 && ioctl(f.slots[i].fd, SIOCOUTQ, &outq) == 0,
                      "ioctl(SIOCINQ, SIOCOUTQ) failed", &f.slots[i]);
                fp = fp * 1000003 + (uint64_t) inq;
                fp = fp * 1000003 + (uint64_t) outq;
        }
        TAILQ_FOREACH(x, &f.broker->services.sessions, link)
                fp = fp * 1000003 + connection_queued(x->connection);
        return fp;
}

/* Runs the loop until a pass changes nothing; then no client that left may still have its connection. */
static void run_until_idle(void) {
        uint64_t before = fingerprint(), after;

        for (unsigned i = 0;; i++) {
                check(i < PASSES_MAX, "the broker never goes idle", NULL);
                check(event_base_loop(f.broker->base, EVLOOP_NONBLOCK) >= 0, "the event loop failed", NULL);
                after = fingerprint();
                if (after == before)
                        break;
                before = after;
        }
        for (size_t i = 0; i < SLOTS_MAX; i++) {
                struct slot *s = &f.slots[i];

                if (s->pid != 0 && (!s->open || s->shut))
                        check(!find_session(s), "a connection outlives its client, which closed or shut down", s);
        }
}

/* ---- Requests ---- */

static const uint16_t opcodes[] = {
        MFB_WIRE_OP_HELLO, MFB_WIRE_OP_CREATE, MFB_WIRE_OP_OPEN, MFB_WIRE_OP_SEAL, MFB_WIRE_OP_STAT, MFB_WIRE_OP_LIST, MFB_WIRE_OP_RELEASE,
        MFB_WIRE_OP_REMOVE, MFB_WIRE_OP_SET, MFB_WIRE_OP_WAIT, MFB_WIRE_OP_LIMITS, MFB_WIRE_OP_CREATE, MFB_WIRE_OP_OPEN, MFB_WIRE_OP_SEAL, MFB_WIRE_OP_WAIT,
        MFB_WIRE_OP_CREATE_BATCH, MFB_WIRE_OP_NOTIFIER, MFB_WIRE_OP_NOTIFY_WATCH, MFB_WIRE_OP_NOTIFY,
        MFB_WIRE_OP_NOTIFY, MFB_WIRE_OP_USAGE, MFB_WIRE_OP_ALLOCATED, MFB_WIRE_OP_RELEASE_QUEUE, MFB_WIRE_OP_SYNC,
        0,      /* an opcode that is no request */
};

static uint64_t pick_handle(struct input *in) {
        uint8_t b = take_u8(in);

        if (b < 0xe0)
                return f.n_handles > 0 ? f.handles[b % f.n_handles] : 1 + b % 4;
        if (b < 0xf0)
                return b & 0xf;
        return b == 0xff ? UINT64_MAX : take_u64(in);
}

/* A name field: mostly one of a few names, so that requests meet; sometimes a bad one. */
static void pick_name(struct input *in, struct mfb_wire_name *ret) {
        static const char *const names[] = { "a", "b", "shared", "x.y-z_1~", "A" };
        uint8_t b = take_u8(in);

        memset(ret, 0, sizeof(*ret));
        if (b < 0xc0) {
                memcpy(ret->bytes, names[b % ELEMENTSOF(names)], strlen(names[b % ELEMENTSOF(names)]));
                return;
        }
        switch (b & 7) {
        case 0:
                memset(ret->bytes, 'n', MFB_WIRE_NAME_MAX);     /* the longest */
                return;
        case 1:
                memcpy(ret->bytes, "a b", 3);                   /* a space */
                return;
        case 2:
                memcpy(ret->bytes, "a\0b", 3);                  /* padding that is not zero */
                return;
        case 3:
                memset(ret->bytes, 'n', sizeof(ret->bytes));    /* no NUL */
                return;
        case 4:
                ret->bytes[0] = (char) 0x80;
                return;
        default:
                take_bytes(in, ret->bytes, 1 + (b >> 3) % 8);   /* a few raw bytes */
                return;
        }
}

/* A handle or a name, as lookups take them: mostly exactly one. */
static void pick_lookup(struct input *in, uint64_t *ret_handle, struct mfb_wire_name *ret_name) {
        uint8_t b = take_u8(in);

        *ret_handle = 0;
        memset(ret_name, 0, sizeof(*ret_name));
        if (b % 8 < 4 || b % 8 == 6)
                *ret_handle = pick_handle(in);
        if (b % 8 >= 4)
                pick_name(in, ret_name);
}

static uint32_t pick_mode(struct input *in) {
        static const uint32_t modes[] = { 0, 0600, 0640, 0644, 0660, 0666, 0400, 0440, 0444, 0777, 0200, 0060, 0004 };
        uint8_t b = take_u8(in);

        return b < 0xf0 ? modes[b % ELEMENTSOF(modes)] : take_u16(in);
}

static uint32_t pick_id(struct input *in) {
        static const uint32_t ids[] = { 0, 100, 1000, 1001, 1002, 65534, UINT32_MAX };
        uint8_t b = take_u8(in);

        return b < 0xf0 ? ids[b % ELEMENTSOF(ids)] : (uint32_t) take_u64(in);
}

/* The body of a request of opcode, from a few bytes of input. Returns its length. */
static size_t build_body(struct input *in, uint16_t opcode, uint8_t *body) {
        uint8_t b;

        switch (opcode) {
        case MFB_WIRE_OP_HELLO: {
                static const uint32_t versions[][2] = { { 1, MFB_WIRE_VERSION }, { MFB_WIRE_VERSION, MFB_WIRE_VERSION },
                                                        { 1, 1 }, { MFB_WIRE_VERSION + 1, 9 },
                                                        { MFB_WIRE_VERSION, 1 } };
                struct mfb_wire_hello_request req;

                b = take_u8(in);
                req.version_min = versions[b % ELEMENTSOF(versions)][0];
                req.version_max = versions[b % ELEMENTSOF(versions)][1];
                memcpy(body, &req, sizeof(req));
                return sizeof(req);
        }
        case MFB_WIRE_OP_CREATE: {
                static const uint64_t sizes[] = { 4096, 1, 65536, 1 << 20, LIMIT_REGION_SIZE, LIMIT_REGION_SIZE + 1,
                                                  0, UINT64_MAX, 3 << 20 };
                struct mfb_wire_create_request req = {};

                b = take_u8(in);
                req.size = b < 0xf0 ? sizes[b % ELEMENTSOF(sizes)] : take_u64(in);
                b = take_u8(in);
                /* Mostly none; now and then each known flag, or any bits. */
                req.flags = b < 0xe0 ? 0 : b < 0xf0 ? MFB_WIRE_CREATE_TRANSIENT : b == 0xff ? MFB_WIRE_CREATE_HUGETLB : b;
                req.mode = pick_mode(in);
                b = take_u8(in);
                if (b & 1)
                        pick_name(in, &req.name);
                memcpy(body, &req, sizeof(req));
                return sizeof(req);
        }
        case MFB_WIRE_OP_CREATE_BATCH: {
                static const uint32_t counts[] = { 1, 2, 3, MFB_WIRE_CREATE_BATCH_MAX, 0,
                                                   MFB_WIRE_CREATE_BATCH_MAX + 1, 17 };
                struct mfb_wire_create_batch_request req = {};

                b = take_u8(in);
                req.size = b < 0xf0 ? (uint64_t) 4096 << (b % 4) : take_u64(in);
                b = take_u8(in);
                req.count = b < 0xf0 ? counts[b % ELEMENTSOF(counts)] : (uint32_t) take_u64(in);
                b = take_u8(in);
                req.flags = b < 0xf0 ? 0 : b == 0xff ? MFB_WIRE_CREATE_HUGETLB : b == 0xfe ? MFB_WIRE_CREATE_TRANSIENT : b;
                req.mode = pick_mode(in);
                req.reserved = take_u8(in) == 0xff;
                memcpy(body, &req, sizeof(req));
                return sizeof(req);
        }
        case MFB_WIRE_OP_OPEN: {
                static const uint32_t accesses[] = { MFB_WIRE_ACCESS_READ, MFB_WIRE_ACCESS_READ | MFB_WIRE_ACCESS_WRITE,
                                                     MFB_WIRE_ACCESS_WRITE, 0 };
                struct mfb_wire_open_request req = {};

                pick_lookup(in, &req.handle, &req.name);
                req.access = accesses[take_u8(in) % ELEMENTSOF(accesses)];
                memcpy(body, &req, sizeof(req));
                return sizeof(req);
        }
        case MFB_WIRE_OP_SEAL: {
                static const uint32_t seals[] = { F_SEAL_WRITE, F_SEAL_FUTURE_WRITE, F_SEAL_WRITE, F_SEAL_SEAL };
                struct mfb_wire_seal_request req = {};

                req.handle = pick_handle(in);
                req.seals = seals[take_u8(in) % ELEMENTSOF(seals)];
                memcpy(body, &req, sizeof(req));
                return sizeof(req);
        }
        case MFB_WIRE_OP_STAT:
        case MFB_WIRE_OP_REMOVE: {
                struct mfb_wire_lookup_request req;

                pick_lookup(in, &req.handle, &req.name);
                memcpy(body, &req, sizeof(req));
                return sizeof(req);
        }
        case MFB_WIRE_OP_LIST: {
                struct mfb_wire_list_request req;

                b = take_u8(in);
                req.after_handle = b < 0x80 ? 0 : pick_handle(in);
                memcpy(body, &req, sizeof(req));
                return sizeof(req);
        }
        case MFB_WIRE_OP_RELEASE: {
                struct mfb_wire_release_request req = { .handle = pick_handle(in) };

                memcpy(body, &req, sizeof(req));
                return sizeof(req);
        }
        case MFB_WIRE_OP_SET: {
                struct mfb_wire_set_request req = {};

                pick_lookup(in, &req.handle, &req.name);
                b = take_u8(in);
                req.fields = b < 0xf8 ? 1 + b % 7 : b;
                if (req.fields & MFB_WIRE_SET_MODE)
                        req.mode = pick_mode(in);
                if (req.fields & MFB_WIRE_SET_UID)
                        req.uid = pick_id(in);
                if (req.fields & MFB_WIRE_SET_GID)
                        req.gid = pick_id(in);
                memcpy(body, &req, sizeof(req));
                return sizeof(req);
        }
        case MFB_WIRE_OP_WAIT: {
                /* Short timeouts end while the script runs; long ones only with the connection. */
                static const uint64_t timeouts[] = { MFB_WIRE_WAIT_FOREVER, 0, 1000, 1, UINT64_C(3600) * 1000000000 };
                struct mfb_wire_wait_request req = { .access = MFB_WIRE_ACCESS_READ };

                b = take_u8(in);
                req.timeout_ns = b < 0xf0 ? timeouts[b % ELEMENTSOF(timeouts)] : take_u64(in);
                pick_name(in, &req.name);
                b = take_u8(in);
                if (b >= 0xf0)
                        req.access = b & 0xf;
                memcpy(body, &req, sizeof(req));
                return sizeof(req);
        }
        case MFB_WIRE_OP_LIMITS:
        case MFB_WIRE_OP_RELEASE_QUEUE:
        case MFB_WIRE_OP_SYNC:
                return 0;
        case MFB_WIRE_OP_USAGE: {
                struct mfb_wire_usage_request req = {};

                b = take_u8(in);
                req.first_uid = b < 0x80 ? 0 : pick_id(in);
                req.reserved = b == 0xff;
                memcpy(body, &req, sizeof(req));
                return sizeof(req);
        }
        case MFB_WIRE_OP_ALLOCATED: {
                static const uint32_t counts[] = { 0, 1, 2, MFB_WIRE_ALLOCATED_ENTRIES_MAX,
                                                   MFB_WIRE_ALLOCATED_ENTRIES_MAX + 1 };
                struct mfb_wire_allocated_request req = {};

                b = take_u8(in);
                req.after_handle = b < 0x80 ? 0 : pick_handle(in);
                b = take_u8(in);
                req.max_count = b < 0xf0 ? counts[b % ELEMENTSOF(counts)] : (uint32_t) take_u64(in);
                req.reserved = b == 0xef;
                memcpy(body, &req, sizeof(req));
                return sizeof(req);
        }
        case MFB_WIRE_OP_NOTIFIER:
        case MFB_WIRE_OP_NOTIFY_WATCH:
        case MFB_WIRE_OP_NOTIFY: {
                struct mfb_wire_notify_request req = { .handle = pick_handle(in) };

                b = take_u8(in);
                /* Mostly valid flags (NOTIFY: with or without MFB_WIRE_NOTIFY_ADVANCE), now and then any. */
                if (b >= 0xf0)
                        req.flags = take_u8(in);
                else if (opcode == MFB_WIRE_OP_NOTIFY)
                        req.flags = b & MFB_WIRE_NOTIFY_ADVANCE;
                if (b == 0xef)
                        req.reserved = 1;
                memcpy(body, &req, sizeof(req));
                return sizeof(req);
        }
        default:
                b = take_u8(in);
                take_bytes(in, body, b % 32);
                return b % 32;
        }
}

/* What the reply to the record (len bytes) must be, from the request as the broker will read it. */
static void expect(struct slot *s, const uint8_t *rec, size_t len, bool with_fd) {
        const uint8_t *body = rec + sizeof(struct mfb_wire_header);
        struct mfb_wire_header h;
        struct expected *e;
        int r;

        e = pending_push(s);
        check(e, "too many requests unanswered", s);
        /* Empty (end of file), truncated, or with a header that cannot be trusted: the broker drops it. */
        r = len == 0 || len > MFB_WIRE_RECORD_MAX ? -EBADMSG : mfb_wire_request_check(rec, len, &h);
        if (r == -EBADMSG) {
                e->ends = true;
                return;
        }
        e->cookie = h.cookie;
        e->opcode = h.opcode;
        e->carries = r == 0 && (h.flags & MFB_WIRE_FLAG_RELEASES);
        e->queued = r == 0 && (h.flags & MFB_WIRE_FLAG_QUEUED);
        e->quiet = (h.flags & MFB_WIRE_FLAG_QUIET) &&
                   (h.opcode == MFB_WIRE_OP_RELEASE || h.opcode == MFB_WIRE_OP_REMOVE || h.opcode == MFB_WIRE_OP_NOTIFY ||
                    h.opcode == MFB_WIRE_OP_SYNC);
        e->must_fail = with_fd || r < 0 || ((h.flags & MFB_WIRE_FLAG_QUIET) && !e->quiet);
        if (e->must_fail)
                return;

        switch (h.opcode) {
        case MFB_WIRE_OP_CREATE: {
                struct mfb_wire_create_request req;

                memcpy(&req, body, sizeof(req));
                e->access = MFB_WIRE_ACCESS_READ | MFB_WIRE_ACCESS_WRITE;
                e->size = req.size;
                e->mode = req.mode;
                e->name = req.name;
                e->create_flags = req.flags;
                /* Unknown flags, or a transient region without a name. */
                e->must_fail = (req.flags & ~(MFB_WIRE_CREATE_HUGETLB | MFB_WIRE_CREATE_TRANSIENT)) ||
                               ((req.flags & MFB_WIRE_CREATE_TRANSIENT) && req.name.bytes[0] == 0);
                return;
        }
        case MFB_WIRE_OP_CREATE_BATCH: {
                struct mfb_wire_create_batch_request req;

                memcpy(&req, body, sizeof(req));
                e->access = MFB_WIRE_ACCESS_READ | MFB_WIRE_ACCESS_WRITE;
                e->size = req.size;
                e->count = req.count;
                e->mode = req.mode;
                /* Its regions are anonymous: never transient. */
                e->must_fail = req.flags & MFB_WIRE_CREATE_TRANSIENT;
                return;
        }
        case MFB_WIRE_OP_OPEN: {
                struct mfb_wire_open_request req;

                memcpy(&req, body, sizeof(req));
                e->access = req.access;
                e->handle = req.handle;
                e->by_name = req.name.bytes[0] != 0;
                e->name = req.name;
                return;
        }
        case MFB_WIRE_OP_SEAL: {
                struct mfb_wire_seal_request req;

                memcpy(&req, body, sizeof(req));
                e->handle = req.handle;
                e->seals = req.seals;
                return;
        }
        case MFB_WIRE_OP_STAT:
        case MFB_WIRE_OP_REMOVE: {
                struct mfb_wire_lookup_request req;

                memcpy(&req, body, sizeof(req));
                e->handle = req.handle;
                e->by_name = req.name.bytes[0] != 0;
                e->name = req.name;
                return;
        }
        case MFB_WIRE_OP_LIST: {
                struct mfb_wire_list_request req;

                memcpy(&req, body, sizeof(req));
                e->handle = req.after_handle;
                return;
        }
        case MFB_WIRE_OP_SET: {
                struct mfb_wire_set_request req;

                memcpy(&req, body, sizeof(req));
                e->handle = req.handle;
                e->by_name = req.name.bytes[0] != 0;
                e->name = req.name;
                e->set_fields = req.fields;
                e->mode = req.mode;
                e->uid = req.uid;
                e->gid = req.gid;
                return;
        }
        case MFB_WIRE_OP_WAIT: {
                struct mfb_wire_wait_request req;

                memcpy(&req, body, sizeof(req));
                e->access = MFB_WIRE_ACCESS_READ;
                e->name = req.name;
                e->may_stay = req.timeout_ns != 0;
                return;
        }
        case MFB_WIRE_OP_USAGE: {
                struct mfb_wire_usage_request req;

                memcpy(&req, body, sizeof(req));
                e->uid = req.first_uid;
                e->must_fail = req.reserved != 0;
                return;
        }
        case MFB_WIRE_OP_ALLOCATED: {
                struct mfb_wire_allocated_request req;

                memcpy(&req, body, sizeof(req));
                e->handle = req.after_handle;
                e->count = req.max_count ?: MFB_WIRE_ALLOCATED_ENTRIES_MAX;
                e->must_fail = req.reserved != 0 || req.max_count > MFB_WIRE_ALLOCATED_ENTRIES_MAX;
                return;
        }
        case MFB_WIRE_OP_NOTIFIER:
        case MFB_WIRE_OP_NOTIFY_WATCH:
        case MFB_WIRE_OP_NOTIFY: {
                struct mfb_wire_notify_request req;

                memcpy(&req, body, sizeof(req));
                e->handle = req.handle;
                e->notify_flags = req.flags;
                /* Only holders are answered, and only with valid flags and a zero reserved field. */
                e->must_fail = req.reserved != 0 ||
                               (req.flags & ~(h.opcode == MFB_WIRE_OP_NOTIFY ? MFB_WIRE_NOTIFY_ADVANCE : 0U));
                return;
        }
        }
}

/* Sends len bytes of record on s, with fd attached if not -1, and notes what its reply must be. */
static void slot_send(struct slot *s, size_t len, int fd) {
        struct iovec iov = { .iov_base = record, .iov_len = len };
        union {
                struct cmsghdr align;
                uint8_t buf[CMSG_SPACE(sizeof(int))];
        } control = {};
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t n;

        if (s->fd < 0 || s->shut || s->n == PENDING_MAX)
                return;
        if (fd >= 0) {
                struct cmsghdr *cmsg;

                msg.msg_control = control.buf;
                msg.msg_controllen = sizeof(control.buf);
                cmsg = CMSG_FIRSTHDR(&msg);
                cmsg->cmsg_level = SOL_SOCKET;
                cmsg->cmsg_type = SCM_RIGHTS;
                cmsg->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
        }
        /* A full socket: the broker is not reading (a WAIT, or replies unread); give it one pass. */
        n = sendmsg(s->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN) {
                check(event_base_loop(f.broker->base, EVLOOP_NONBLOCK) >= 0, "the event loop failed", NULL);
                n = sendmsg(s->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        if (n < 0) {
                /* Still full, or the broker closed its end already: not sent. */
                check(errno == EAGAIN || errno == EPIPE || errno == ECONNRESET || errno == ECONNREFUSED,
                      "sendmsg() failed", s);
                return;
        }
        check((size_t) n == len, "a record was sent in part", s);
        expect(s, record, len, fd >= 0);
}

/* Steps of a script: the low bits of their first byte. */
enum {
        STEP_SEND,              /* a request built from the input */
        STEP_SEND_FIXED,        /* a body of raw bytes under a header that fits it */
        STEP_SEND_RAW,          /* a record of raw bytes */
        STEP_READ,              /* read a connection's replies */
        STEP_RUN,               /* run the loop until the broker is idle */
        STEP_CLOSE,             /* the client closes a connection */
        STEP_SHUTDOWN,          /* the client shuts down its sending side */
        STEP_CONNECT,           /* a new connection */
        STEP_TIME,              /* a few microseconds pass: short WAIT timeouts end */
        STEP_QUEUE,             /* write an entry to a connection's release queue */
        STEP_COUNT,
};

/* Send options, in the byte that also names the connection. */
#define SEND_WITH_FD    0x08U   /* attach an fd: a memfd, or /dev/null */
#define SEND_MEMFD      0x10U
#define SEND_MUTATE     0x20U   /* then flip bits of one byte */
#define SEND_RUN        0x40U   /* then run the loop */
#define SEND_READ       0x80U   /* then read the replies */

static void step_send(struct input *in, unsigned kind) {
        uint8_t how = take_u8(in);
        struct slot *s = &f.slots[how % SLOTS_MAX];
        struct mfb_wire_header h;
        uint16_t opcode;
        size_t len;
        uint8_t b;

        if (kind == STEP_SEND_RAW) {
                uint16_t n = take_u16(in);

                /* Sometimes one byte more than a record may have: the broker sees it truncated. */
                len = n == UINT16_MAX ? MFB_WIRE_RECORD_MAX + 1 : n % 1024;
                take_bytes(in, record, len);
        } else {
                opcode = opcodes[take_u8(in) % ELEMENTSOF(opcodes)];
                if (opcode == 0)
                        opcode = take_u16(in);
                if (kind == STEP_SEND)
                        len = sizeof(h) + build_body(in, opcode, record + sizeof(h));
                else {
                        int body = mfb_wire_request_body_size(opcode);

                        b = take_u8(in);
                        len = sizeof(h) + (body >= 0 && b < 0xf0 ? (size_t) body : b % 64);
                        take_bytes(in, record + sizeof(h), len - sizeof(h));
                }
                mfb_wire_header_init(&h, opcode, ++f.cookie, 0, 0, (uint32_t) len);
                /* Quiet, mostly where it may be: a RELEASE or REMOVE answered only if it fails. */
                if ((opcode == MFB_WIRE_OP_RELEASE || opcode == MFB_WIRE_OP_REMOVE || opcode == MFB_WIRE_OP_STAT ||
                     opcode == MFB_WIRE_OP_NOTIFY || opcode == MFB_WIRE_OP_SYNC) && take_u8(in) >= 0x80)
                        h.flags = MFB_WIRE_FLAG_QUIET;
                /*
                 * Now and then handles to release, carried after the body: mostly ones
                 * the broker gave out; or the release queue taken first.
                 */
                b = take_u8(in);
                if (b >= 0xc0 && b < 0xe0)
                        h.flags |= MFB_WIRE_FLAG_QUEUED;
                if (b >= 0xe0) {
                        size_t n = 1 + take_u8(in) % (MFB_WIRE_RELEASES_CARRIED_MAX + 1);

                        for (size_t i = 0; i < n; i++, len += sizeof(uint64_t)) {
                                uint64_t handle = pick_handle(in);

                                memcpy(record + len, &handle, sizeof(handle));
                        }
                        h.size = (uint32_t) len;
                        h.flags |= MFB_WIRE_FLAG_RELEASES;
                }
                memcpy(record, &h, sizeof(h));
        }
        if (how & SEND_MUTATE && len > 0) {
                uint16_t at = take_u16(in);
                uint8_t bits = take_u8(in);

                record[at % len] ^= bits ?: 1;
        }
        slot_send(s, len, how & SEND_WITH_FD ? (how & SEND_MEMFD ? memfd : devnull) : -1);
        if (how & SEND_RUN)
                run_until_idle();
        if (how & SEND_READ)
                slot_read(s);
}

/*
 * An entry in a connection's release queue, as a client writes it, if it
 * has one: a handle, then its seq, mostly the one that completes it; or
 * one it is not, or any: the broker must take what it may and no more.
 */
static void step_queue(struct input *in) {
        struct slot *s = &f.slots[take_u8(in) % SLOTS_MAX];
        uint64_t handle = pick_handle(in), seq;
        uint8_t how = take_u8(in);
        struct mfb_wire_release_queue_entry *e;

        if (!s->queue)
                return;
        e = &s->queue[s->queue_written % MFB_WIRE_RELEASE_QUEUE_SLOTS];
        seq = how < 0xe0 ? s->queue_written + 1 : how < 0xf0 ? s->queue_written : take_u64(in);
        e->handle = handle;
        __atomic_store_n(&e->seq, seq, __ATOMIC_RELEASE);
        if (how < 0xe0)
                s->queue_written++;
}

static void run_step(struct input *in) {
        uint8_t step = take_u8(in);
        struct slot *s;

        switch (step % STEP_COUNT) {
        case STEP_SEND:
        case STEP_SEND_FIXED:
        case STEP_SEND_RAW:
                step_send(in, step % STEP_COUNT);
                return;
        case STEP_READ:
                slot_read(&f.slots[take_u8(in) % SLOTS_MAX]);
                return;
        case STEP_RUN:
                run_until_idle();
                return;
        case STEP_CLOSE:
                slot_close(&f.slots[take_u8(in) % SLOTS_MAX]);
                return;
        case STEP_SHUTDOWN:
                s = &f.slots[take_u8(in) % SLOTS_MAX];
                if (s->fd >= 0 && !s->shut) {
                        check(shutdown(s->fd, SHUT_WR) == 0, "shutdown() failed", s);
                        s->shut = true;
                }
                return;
        case STEP_CONNECT: {
                uint8_t b = take_u8(in);

                s = &f.slots[b % SLOTS_MAX];
                if (s->pid == 0 || !s->open)
                        slot_open(s, &identities[(b / SLOTS_MAX) % ELEMENTSOF(identities)]);
                return;
        }
        case STEP_TIME:
                nanosleep(&(struct timespec) { .tv_nsec = 5000 }, NULL);
                run_until_idle();
                return;
        case STEP_QUEUE:
                step_queue(in);
                return;
        }
}

/* ---- One input ---- */

static void broker_start(void) {
        settings_init(&f.config);
        f.config.max_region_size = LIMIT_REGION_SIZE;
        f.config.max_regions = LIMIT_REGIONS;
        f.config.max_regions_per_uid = LIMIT_REGIONS_PER_UID;
        f.config.max_bytes = LIMIT_BYTES;
        f.config.max_bytes_per_uid = LIMIT_BYTES_PER_UID;
        f.config.max_holds_per_connection = LIMIT_HOLDS_PER_CONNECTION;
        f.config.max_connections = LIMIT_CONNECTIONS;
        f.config.max_connections_per_uid = LIMIT_CONNECTIONS_PER_UID;
        f.config.max_waiters = LIMIT_WAITERS;
        f.config.max_release_queues = LIMIT_RELEASE_QUEUES;
        settings_derive_limits(&f.config, FD_LIMIT, PHYSICAL_MEMORY);
        check(settings_set_socket_path(&f.config, socket_path) == 0, "out of memory", NULL);
        check(broker_new(&f.config, &f.broker) == 0, "the broker did not start", NULL);
}

static void broker_stop(void) {
        f.broker = broker_free(f.broker);
        settings_done(&f.config);
        check(access(socket_path, F_OK) < 0 && errno == ENOENT, "the broker left its socket file behind", NULL);
}

/* Reads until nothing more comes; then every request of a connection the broker keeps is answered, or waits. */
static void drain(void) {
        bool any;

        do {
                run_until_idle();
                any = false;
                for (size_t i = 0; i < SLOTS_MAX; i++)
                        any = slot_read(&f.slots[i]) || any;
        } while (any);

        for (size_t i = 0; i < SLOTS_MAX; i++) {
                struct slot *s = &f.slots[i];
                struct expected *e = pending_head(s);

                if (s->fd < 0 || s->ended || s->shut)
                        continue;
                check(!s->refused, "a refused connection was not closed", s);
                /* Quiet requests need no answer: what must have one is the first request after them. */
                for (size_t k = 1; e && e->quiet; k++)
                        e = k < s->n ? &s->pending[(s->head + k) % PENDING_MAX] : NULL;
                if (!e)
                        continue;
                check(e->ends || s->refused || e->may_stay, "a request of a connection the broker keeps is unanswered",
                      s);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct input in = { .p = data, .n = size };
        size_t fds_before = count_fds();

        for (size_t i = 0; i < SLOTS_MAX; i++)
                slot_reset(&f.slots[i]);
        f.n_handles = 0;
        f.cookie = 0;
        f.next_pid = 100000;
        broker_start();
        for (size_t i = 0; i < 3; i++)
                slot_open(&f.slots[i], &identities[i]);

        for (unsigned i = 0; i < STEPS_MAX && in.n > 0; i++)
                run_step(&in);

        drain();
        for (size_t i = 0; i < SLOTS_MAX; i++)
                slot_close(&f.slots[i]);
        run_until_idle();
        check(f.broker->services.n_sessions == 0 && TAILQ_EMPTY(&f.broker->services.sessions),
              "connections outlive their clients, all closed", NULL);
        broker_stop();
        check(count_fds() == fds_before, "fds leaked", NULL);
        return 0;
}

static void remove_dir(void) {
        rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        const char *level = getenv("MFB_FUZZ_LOG"), *tmp = getenv("TMPDIR");
        int r;

        /* Not under a service manager: no socket passed, nothing to notify. */
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDNAMES");
        unsetenv("NOTIFY_SOCKET");
        /* Timers to the microsecond, not to the coarse clock's tick: a short WAIT times out within a step. */
        setenv("EVENT_PRECISE_TIMER", "1", 1);
        /* Quiet unless asked: the broker logs every refused request at debug level, and starting at notice. */
        log_set_max_level(level ? log_level_from_string(level) : LOG_ERR - 1);

        memfd = memfd_create("fuzz-requests", MFD_CLOEXEC);
        devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        check(memfd >= 0 && devnull >= 0, "opening the fds to attach failed", NULL);

        r = snprintf(dir, sizeof(dir), "%s/fuzz-requests.XXXXXX", tmp && *tmp ? tmp : "/tmp");
        check(r > 0 && (size_t) r < sizeof(dir) && mkdtemp(dir), "making a temporary directory failed", NULL);
        atexit(remove_dir);
        r = snprintf(socket_path, sizeof(socket_path), "%s/broker.sock", dir);
        check(r > 0 && (size_t) r < sizeof(socket_path), "the temporary directory's name is too long", NULL);
        return 0;
}
