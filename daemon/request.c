/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "access.h"
#include "codec.h"
#include "settings.h"
#include "connection.h"
#include "control.h"
#include "hugetlb.h"
#include "log.h"
#include "macro.h"
#include "persist.h"
#include "quota.h"
#include "region.h"
#include "reply.h"
#include "request.h"
#include "services.h"
#include "session.h"
#include "wait.h"
#include "wire.h"

#define MODE_DEFAULT 0600U

/* What an error message calls a region: "region NAME", or "region HANDLE" when it has no name. */
#define REGION_LABEL_MAX (sizeof("region ") + MFB_WIRE_NAME_MAX)

/*
 * A request being handled. A handler returns 0 once it has answered (or,
 * for a WAIT, left the answer pending), or -errno, having said why in
 * message with fail(): answer() then sends the one error reply. So no check
 * replies itself, and every refusal is logged and worded in one place.
 */
struct request {
        struct session *session;
        struct mfb_wire_header header;
        const void *body;                               /* exactly the opcode's body size */
        char message[MFB_WIRE_ERROR_MESSAGE_MAX + 1];   /* why it failed; empty: the errno's own words */
};

typedef int (*request_handler_t)(struct request *q);

/* Says why q fails with error (a negative errno), for a human; returns error. */
static int fail(struct request *q, int error, const char *format, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct request *q, int error, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        (void) vsnprintf(q->message, sizeof(q->message), format, ap);
        va_end(ap);
        return error;
}

/*
 * A kernel or memory error PROTOCOL.md has no specific answer for: out of
 * fds becomes -ENOSPC; what says what failed.
 */
static int fail_kernel(struct request *q, int error, const char *what) {
        if (error == -EMFILE || error == -ENFILE)
                return fail(q, -ENOSPC, "the broker is out of file descriptors");
        if (error == -ENOMEM)
                return fail(q, error, "the broker is out of memory");
        return fail(q, error, "%s: %s", what, strerror(-error));
}

/*
 * error, -EDQUOT or -ENOSPC from quota_charge(), saying which resource of
 * uid's refused (MFB_WIRE_RESOURCE_COUNT when none did: the kernel's own error).
 */
static int fail_quota(struct request *q, int error, uid_t uid, enum mfb_wire_resource resource) {
        const struct quota *quota = q->session->services->quota;
        const char *what = quota_resource_name(resource);

        if ((unsigned) resource >= MFB_WIRE_RESOURCE_COUNT)
                return fail_kernel(q, error, "the kernel refused");
        if (error == -ENOSPC)
                return fail(q, error, "the broker's limit of %" PRIu64 " %s is reached",
                            quota_limits(quota)->broker_max.n[resource], what);
        return fail(q, error, "uid %u holds %" PRIu64 " %s and may take only %" PRIu64 " more: its limit per uid, "
                    "or its share of what is left", (unsigned) uid, quota_held(quota, uid, resource), what,
                    quota_available(quota, uid, resource));
}

static int fail_bad_name(struct request *q) {
        return fail(q, -EBADMSG, "bad name field: 1 to %u printable ASCII bytes without spaces, then zero bytes",
                    MFB_WIRE_NAME_MAX);
}

/* Sends q's error reply, if handling it failed with r; logs the refusal. */
static void answer(struct request *q, int r) {
        struct session *s = q->session;

        if (r >= 0)
                return;
        if (!q->message[0])
                snprintf(q->message, sizeof(q->message), "%s", strerror(-r));
        log_debug_errno(r, "%s of pid %d uid %u refused: %s (%m)", mfb_wire_opcode_name(q->header.opcode),
                        (int) s->peer.creds.pid, s->peer.creds.uid, q->message);
        (void) reply_error(s->connection, &q->header, r, q->message);
}

static const char *region_label(const struct region *r, char buf[static REGION_LABEL_MAX]) {
        if (r->name)
                snprintf(buf, REGION_LABEL_MAX, "region %s", r->name);
        else
                snprintf(buf, REGION_LABEL_MAX, "region %" PRIu64, r->handle);
        return buf;
}

/*
 * Finds the region a request names by handle or by name (name NULL when
 * the name field is empty): exactly one must be given. Removed regions are
 * found by handle only if removed_ok. A region the caller may not see
 * (access_may_see()) is not found, with the very answer a missing one
 * gets. Returns 0 and the region, or -errno.
 */
static int lookup(struct request *q, uint64_t handle, const char *name, bool removed_ok, struct region **ret) {
        struct session *s = q->session;
        const struct region_table *t = s->services->regions;
        struct region *r;

        if ((handle != 0) == (name != NULL))
                return fail(q, -EINVAL, "give exactly one of a handle and a name");
        if (name) {
                r = region_get_by_name(t, name);
                if (!r || !access_may_see(&s->peer, r))
                        return fail(q, -ENOENT, "no region is named %s", name);
        } else {
                r = region_get_by_handle(t, handle);
                if (!r || !access_may_see(&s->peer, r))
                        return fail(q, -ENOENT, "no region has handle %" PRIu64, handle);
                if (r->removed && !removed_ok)
                        return fail(q, -ENOENT, "region %" PRIu64 " was removed", handle);
        }
        *ret = r;
        return 0;
}

/* As lookup(), for STAT and REMOVE: their body (a lookup request) says which region. */
static int lookup_body(struct request *q, bool removed_ok, struct region **ret) {
        struct mfb_wire_lookup_request req;
        int name_len;

        memcpy(&req, q->body, sizeof(req));
        name_len = mfb_wire_name_check(&req.name);
        if (name_len < 0)
                return fail_bad_name(q);
        return lookup(q, req.handle, name_len > 0 ? req.name.bytes : NULL, removed_ok, ret);
}

/* Returns 0 if the caller may have access (MFB_ACCESS_*) to r, or -EACCES saying that it may not "VERB region NAME HOW". */
static int check_access(struct request *q, const struct region *r, uint32_t access, const char *verb,
                        const char *how) {
        struct session *s = q->session;
        char label[REGION_LABEL_MAX];

        if (access_may(&s->peer, r, access))
                return 0;
        return fail(q, -EACCES, "mode 0%03o does not let uid %u %s %s%s", (unsigned) r->mode, s->peer.creds.uid,
                    verb, region_label(r, label), how);
}

/* Returns 0 if the caller owns r (may change or remove it), or -EPERM saying that it may not do what. */
static int check_owner(struct request *q, const struct region *r, const char *what) {
        char label[REGION_LABEL_MAX];

        if (access_owns(&q->session->peer, r))
                return 0;
        return fail(q, -EPERM, "only the owner (uid %u), the creator (uid %u) or root may %s %s", (unsigned) r->uid,
                    (unsigned) r->creator_uid, what, region_label(r, label));
}

/* Returns 0 when the caller may hold one more reference, or -ENOSPC. */
static int check_hold_allowed(struct request *q) {
        struct session *s = q->session;
        uint32_t max = s->services->settings->max_holds_per_connection;

        if (s->n_references < max)
                return 0;
        return fail(q, -ENOSPC, "this connection holds %" PRIu32 " references, the broker's limit", max);
}

/*
 * Answers an OPEN or a WAIT whose checks passed: gives the caller one more
 * reference to r and replies with a fresh open of r, read-write if
 * writable, else read-only (region_open()). Returns 0, or -errno.
 */
static int grant(struct request *q, struct region *r, bool writable) {
        struct session *s = q->session;
        _cleanup_(closep) int fd = -1;
        uint32_t access = MFB_WIRE_ACCESS_READ | (writable ? MFB_WIRE_ACCESS_WRITE : 0);
        enum mfb_wire_resource refused = MFB_WIRE_RESOURCE_COUNT;
        int k;

        k = check_hold_allowed(q);
        if (k < 0)
                return k;
        fd = region_open(r, writable);
        if (fd < 0)
                return fail_kernel(q, fd, "opening the region failed");
        k = session_hold(s, r, writable, &refused);
        if (k == -EDQUOT || k == -ENOSPC)
                return fail_quota(q, k, s->peer.creds.uid, refused);
        if (k < 0)
                return fail_kernel(q, k, "holding the region failed");
        region_touched(s->services->regions, r, s->peer.creds.pid, REGION_ATTACHED, region_now());

        log_debug("%s of pid %d uid %u: region %" PRIu64 " %s", mfb_wire_opcode_name(q->header.opcode),
                  (int) s->peer.creds.pid, s->peer.creds.uid, r->handle, writable ? "read-write" : "read-only");
        (void) reply_region_consume_fd(s->connection, &q->header, r, access, TAKE_FD(fd));
        return 0;
}

static int handle_hello(struct request *q) {
        struct session *s = q->session;
        const struct region_table *t = s->services->regions;
        struct mfb_wire_hello_request req;
        struct {
                struct mfb_wire_header header;
                struct mfb_wire_hello_reply body;
        } rec;

        memcpy(&req, q->body, sizeof(req));
        if (s->hello_done)
                return fail(q, -EPROTO, "HELLO was sent already");
        if (req.version_min > req.version_max || req.version_min > MFB_WIRE_VERSION ||
            req.version_max < MFB_WIRE_VERSION)
                return fail(q, -EPROTONOSUPPORT,
                                   "versions %" PRIu32 " to %" PRIu32 " asked for, this broker speaks version %u",
                                   req.version_min, req.version_max, MFB_WIRE_VERSION);

        s->hello_done = true;
        rec.body = (struct mfb_wire_hello_reply) {
                .version = MFB_WIRE_VERSION,
                .capabilities = region_table_capabilities(t) | MFB_WIRE_CAP_QUIET | MFB_WIRE_CAP_CREATE_BATCH |
                                MFB_WIRE_CAP_NOTIFY | MFB_WIRE_CAP_TRANSIENT | MFB_WIRE_CAP_CARRIED_RELEASES |
                                MFB_WIRE_CAP_RELEASE_QUEUE,
                .region_size_max = region_table_max_region_size(t),
                .record_max = MFB_WIRE_RECORD_MAX,
                .name_max = MFB_WIRE_NAME_MAX,
                .fds_per_record_max = MFB_WIRE_FDS_PER_RECORD_MAX,
                .requests_in_flight_max = MFB_WIRE_REQUESTS_IN_FLIGHT_MAX,
                .list_entries_max = MFB_WIRE_LIST_ENTRIES_MAX,
        };
        log_debug("HELLO of pid %d uid %u: version %u", (int) s->peer.creds.pid, s->peer.creds.uid, MFB_WIRE_VERSION);
        (void) reply_record(s->connection, &q->header, &rec.header, sizeof(rec));
        return 0;
}

/*
 * Returns 0 if a hugetlb region of size bytes can be made, or -errno
 * saying why not. Free huge pages are checked now, so that a shortage is an error
 * here rather than a SIGBUS in whichever client touches the pages first;
 * it is only a check, nothing is reserved.
 */
static int check_hugetlb(struct request *q, uint64_t size) {
        uint64_t page_size = region_table_hugetlb_page_size(q->session->services->regions), free_bytes;
        int k;

        if (page_size == 0)
                return fail(q, -EOPNOTSUPP, "the broker's kernel cannot make hugetlb memfds");
        if (size % page_size != 0)
                return fail(q, -EINVAL, "size %" PRIu64 " is not a multiple of the huge page size, %" PRIu64
                                   " KiB", size, page_size / 1024);
        k = hugetlb_free_bytes(&free_bytes);
        if (k < 0)
                return fail_kernel(q, k, "reading the free huge pages from /proc/meminfo failed");
        if (free_bytes < size)
                return fail(q, -ENOMEM,
                                   "not enough huge pages: %" PRIu64 " KiB free and not reserved by a mapping, of the %"
                                   PRIu64 " KiB needed; see vm.nr_hugepages", free_bytes / 1024, size / 1024);
        return 0;
}

static int handle_create(struct request *q) {
        struct session *s = q->session;
        struct region_table *t = s->services->regions;
        struct mfb_wire_create_request req;
        enum mfb_wire_resource refused = MFB_WIRE_RESOURCE_COUNT;
        struct region *r;
        bool hugetlb, transient;
        int name_len, k;

        memcpy(&req, q->body, sizeof(req));
        name_len = mfb_wire_name_check(&req.name);
        if (name_len < 0)
                return fail_bad_name(q);
        if (req.flags & ~(MFB_WIRE_CREATE_HUGETLB | MFB_WIRE_CREATE_TRANSIENT))
                return fail(q, -EINVAL, "flags 0x%" PRIx32 " has bits other than 0x%x (MFB_WIRE_CREATE_HUGETLB) "
                                   "and 0x%x (MFB_WIRE_CREATE_TRANSIENT)", req.flags, MFB_WIRE_CREATE_HUGETLB,
                                   MFB_WIRE_CREATE_TRANSIENT);
        if (req.mode & ~0777U)
                return fail(q, -EINVAL, "mode 0%" PRIo32 " has bits outside 0777", req.mode);
        hugetlb = req.flags & MFB_WIRE_CREATE_HUGETLB;
        transient = req.flags & MFB_WIRE_CREATE_TRANSIENT;
        /* Refused rather than ignored: a client that asked for it expects a name that ends. */
        if (transient && name_len == 0)
                return fail(q, -EINVAL, "MFB_WIRE_CREATE_TRANSIENT needs a name: an anonymous region goes with "
                                   "its last holder anyway");
        if (hugetlb) {
                k = check_hugetlb(q, req.size);
                if (k < 0)
                        return k;
        }
        k = check_hold_allowed(q);
        if (k < 0)
                return k;

        k = region_create(t, req.size, name_len > 0 ? req.name.bytes : NULL, req.mode ?: MODE_DEFAULT, hugetlb,
                          &s->peer.creds, &r, &refused);
        switch (k) {
        case 0:
                break;
        case -EINVAL:
                return fail(q, k, "size must not be 0");
        case -EFBIG:
                return fail(q, k, "size %" PRIu64 " is above the broker's limit of %" PRIu64 " bytes",
                                   req.size, region_table_max_region_size(t));
        case -EEXIST:
                return fail(q, k, "a region named %s exists", req.name.bytes);
        case -ENOSPC:
        case -EDQUOT:
                return fail_quota(q, k, s->peer.creds.uid, refused);
        default:
                return fail_kernel(q, k, "creating the region failed");
        }
        /* Before its first holder, whose going ends it; and before persist, which keeps no transient region. */
        r->transient = transient;

        /* Before the handle leaves: a client that got it can rely on it after a restart. */
        k = persist_region_created(s->services->persist, r, &refused);
        if (k >= 0) {
                k = session_hold(s, r, true, &refused);
                if (k < 0)
                        persist_region_removed(s->services->persist, r);
        }
        if (k < 0) {
                region_remove(t, r);
                if (k == -EDQUOT || k == -ENOSPC)
                        return fail_quota(q, k, s->peer.creds.uid, refused);
                if (k == -ETOOMANYREFS)
                        return fail(q, -ENOSPC, "the kernel refuses the broker more fds in flight (its "
                                           "RLIMIT_NOFILE): no more named regions can be kept across a restart");
                if (k == -E2BIG)
                        return fail(q, -ENOSPC, "the service manager cannot keep more named regions "
                                           "across a restart");
                return fail_kernel(q, k, "saving or holding the region failed");
        }

        log_debug("CREATE of pid %d uid %u: region %" PRIu64 ", %" PRIu64 " bytes, name %s, mode 0%o%s%s",
                  (int) s->peer.creds.pid, s->peer.creds.uid, r->handle, r->size, r->name ?: "(none)",
                  (unsigned) r->mode, hugetlb ? ", huge pages" : "", transient ? ", transient" : "");
        /*
         * The creator gets the broker's own open file description, which no
         * other holder shares (each OPEN is a fresh open) and through which the
         * broker does no I/O, so no flag or offset the creator sets matters to
         * anyone. Sent as it is, as CREATE_BATCH does: a copy is made only for
         * a reply that has to wait in the queue, rather than a dup() and a
         * close() on every CREATE.
         */
        k = reply_region_borrowed_fd(s->connection, &q->header, r, MFB_WIRE_ACCESS_READ | MFB_WIRE_ACCESS_WRITE,
                                     r->fd);
        if (k == -EMFILE || k == -ENFILE) {
                /* Nothing was sent: no one knows of the region; undone, the name last (r is held till then). */
                persist_region_removed(s->services->persist, r);
                region_remove(t, r);
                (void) session_release(s, r->handle);
                return fail_kernel(q, k, "creating the region failed");
        }
        return 0;
}

static int handle_open(struct request *q) {
        struct mfb_wire_open_request req;
        struct region *r;
        bool writable;
        int name_len, k;

        memcpy(&req, q->body, sizeof(req));
        if (req.reserved != 0)
                return fail(q, -EBADMSG, "reserved field is not zero");
        name_len = mfb_wire_name_check(&req.name);
        if (name_len < 0)
                return fail_bad_name(q);
        if (req.access != MFB_WIRE_ACCESS_READ && req.access != (MFB_WIRE_ACCESS_READ | MFB_WIRE_ACCESS_WRITE))
                return fail(q, -EINVAL, "access must be 0x1 (read-only) or 0x3 (read-write), not 0x%" PRIx32,
                                   req.access);
        k = lookup(q, req.handle, name_len > 0 ? req.name.bytes : NULL, false, &r);
        if (k < 0)
                return k;
        writable = req.access & MFB_WIRE_ACCESS_WRITE;
        k = check_access(q, r, req.access, "open", writable ? " read-write" : " read-only");
        if (k < 0)
                return k;

        /* After the permission check, so that a refused caller learns nothing of the seals. */
        if (writable) {
                int seals = region_get_seals(r);

                if (seals < 0)
                        return fail_kernel(q, seals, "reading the region's seals failed");
                if (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE))
                        return fail(q, -EPERM, "region is sealed");
        }
        return grant(q, r, writable);
}

static int handle_seal(struct request *q) {
        struct session *s = q->session;
        struct mfb_wire_seal_request req;
        struct hold *hold;
        struct region *r;
        int k;

        memcpy(&req, q->body, sizeof(req));
        if (req.reserved != 0)
                return fail(q, -EBADMSG, "reserved field is not zero");
        if (req.seals != F_SEAL_WRITE && req.seals != F_SEAL_FUTURE_WRITE)
                return fail(q, -EINVAL,
                                   "seals must be 0x%x (F_SEAL_WRITE) or 0x%x (F_SEAL_FUTURE_WRITE), not 0x%" PRIx32,
                                   (unsigned) F_SEAL_WRITE, (unsigned) F_SEAL_FUTURE_WRITE, req.seals);
        if (req.seals == F_SEAL_FUTURE_WRITE &&
            !(region_table_capabilities(s->services->regions) & MFB_WIRE_CAP_SEAL_FUTURE_WRITE))
                return fail(q, -EOPNOTSUPP, "the broker's kernel has no F_SEAL_FUTURE_WRITE");
        hold = session_get_hold(s, req.handle);
        if (!hold)
                return fail(q, -ENOENT, "this connection does not hold region %" PRIu64, req.handle);
        if (hold->writable == 0)
                return fail(q, -EPERM, "this connection holds region %" PRIu64 " read-only", req.handle);
        r = hold->region;

        k = region_seal(r, (int) req.seals);
        if (k == -EBUSY)
                return fail(q, k, "a writable mapping of the region still exists; unmap it first");
        if (k == -EPERM)
                return fail(q, k, "the region's seals were sealed (F_SEAL_SEAL)");
        if (k < 0)
                return fail_kernel(q, k, "sealing the region failed");
        region_touched(s->services->regions, r, s->peer.creds.pid, REGION_CHANGED, region_now());

        log_debug("SEAL of pid %d uid %u: region %" PRIu64 " with 0x%" PRIx32, (int) s->peer.creds.pid,
                  s->peer.creds.uid, r->handle, req.seals);
        /* The sealer's reply first: it asked first, and the waiters may be many. */
        (void) reply_info(s->connection, &q->header, r);
        /*
         * Once: the waiters that stay are walked again at each wake-up. Not
         * only when the seal is new, which a holder may have added with
         * fcntl() before asking: its waiters would never hear of it.
         */
        if (!r->seal_announced) {
                r->seal_announced = true;
                wait_wake_readers(s->services->waits, r);
        }
        return 0;
}

static int handle_stat(struct request *q) {
        struct session *s = q->session;
        struct region *r;
        int k;

        k = lookup_body(q, true, &r);
        if (k >= 0)
                k = check_access(q, r, MFB_WIRE_ACCESS_READ, "stat", "");
        if (k < 0)
                return k;

        log_debug("STAT of pid %d uid %u: region %" PRIu64, (int) s->peer.creds.pid, s->peer.creds.uid, r->handle);
        (void) reply_info(s->connection, &q->header, r);
        return 0;
}

/*
 * A LIST (and an ALLOCATED, which pages alike) must cost the same whatever
 * others hold, and must not tell a caller anything about the regions it
 * may not see, not even that they exist. So a caller other than root is
 * given the regions of the next MFB_WIRE_LIST_SCAN_MAX handle values,
 * whichever of them are live, and the cursor moves on by that range: a
 * cursor that stopped at the last region examined would say where hidden
 * regions are. Whether there is more depends only on the highest handle
 * given, which any CREATE tells. Root sees every region, so its pages are
 * dense: the next MFB_WIRE_LIST_SCAN_MAX live regions, however sparse
 * their handles.
 */
struct page {
        uint32_t count;         /* regions taken, at most the page's max */
        uint32_t scanned;       /* regions examined */
        uint32_t more;
        uint64_t next_after;
};

/* Takes r, which the caller may see, as the page's entry i. Returns 0 or -errno (fail() said why). */
typedef int (*page_take_t)(struct request *q, struct region *r, uint32_t i, void *userdata);

/* Walks the page after after_handle, of at most max entries, handing each region the caller may see to take. */
static int page_walk(struct request *q, uint64_t after_handle, uint32_t max, page_take_t take, void *userdata,
                     struct page *ret) {
        const struct session *s = q->session;
        struct region_table *t = s->services->regions;
        uint64_t last_handle = region_table_last_handle(t), end, last_taken = 0;
        bool dense = s->peer.creds.uid == 0;
        struct region *r;
        uint32_t n = 0, scanned = 0;

        if (dense || after_handle > UINT64_MAX - MFB_WIRE_LIST_SCAN_MAX)
                end = UINT64_MAX;
        else
                end = after_handle + MFB_WIRE_LIST_SCAN_MAX;
        for (r = region_next(t, after_handle); r && r->handle <= end; r = region_after(t, r)) {
                int k;

                if (n == max || scanned == MFB_WIRE_LIST_SCAN_MAX)
                        break;
                scanned++;
                if (!access_may_see(&s->peer, r))
                        continue;
                k = take(q, r, n++, userdata);
                if (k < 0)
                        return k;
                last_taken = r->handle;
        }
        *ret = (struct page) { .count = n, .scanned = scanned };
        if (n == max) {
                /*
                 * A full page: on from its last entry, which the caller may
                 * see; whether anything follows it is the next page's to say.
                 */
                ret->more = 1;
                ret->next_after = last_taken;
        } else if (dense) {
                /* Root sees every region it examined, so the last one examined may say where it stopped. */
                ret->more = r != NULL;
                ret->next_after = n > 0 ? last_taken : after_handle;
        } else {
                ret->more = end < last_handle;
                ret->next_after = end < last_handle ? end : last_handle;
        }
        return 0;
}

static int list_take(struct request *q, struct region *r, uint32_t i, void *userdata) {
        struct mfb_wire_region_info *entries = userdata;

        region_info(r, &entries[i]);
        return 0;
}

static int handle_list(struct request *q) {
        struct session *s = q->session;
        struct mfb_wire_list_request req;
        struct {
                struct mfb_wire_header header;
                struct mfb_wire_list_reply body;
                struct mfb_wire_region_info entries[MFB_WIRE_LIST_ENTRIES_MAX];
        } rec;
        struct page page;

        memcpy(&req, q->body, sizeof(req));
        (void) page_walk(q, req.after_handle, MFB_WIRE_LIST_ENTRIES_MAX, list_take, rec.entries, &page);
        rec.body = (struct mfb_wire_list_reply) {
                .count = page.count,
                .more = page.more,
                .next_after = page.next_after,
        };

        log_debug("LIST of pid %d uid %u: %" PRIu32 " of %" PRIu32 " regions after %" PRIu64 "%s",
                  (int) s->peer.creds.pid, s->peer.creds.uid, page.count, page.scanned, req.after_handle,
                  page.more ? ", more to come" : "");
        (void) reply_record(s->connection, &q->header, &rec.header,
                            offsetof(__typeof__(rec), entries) + page.count * sizeof(rec.entries[0]));
        return 0;
}

/* Drops one reference q's connection holds to handle: a RELEASE, or one that q carries. */
static int release_one(struct request *q, uint64_t handle) {
        struct session *s = q->session;

        if (session_release(s, handle) < 0)
                return fail(q, -ENOENT, "this connection holds no reference to region %" PRIu64, handle);
        log_debug("RELEASE (%s) of pid %d uid %u: region %" PRIu64, mfb_wire_opcode_name(q->header.opcode),
                  (int) s->peer.creds.pid, s->peer.creds.uid, handle);
        return 0;
}

static int handle_release(struct request *q) {
        struct mfb_wire_release_request req;
        int r;

        memcpy(&req, q->body, sizeof(req));
        r = release_one(q, req.handle);
        if (r < 0)
                return r;
        (void) reply_empty(q->session->connection, &q->header);
        return 0;
}

/*
 * The releases a request carries (MFB_WIRE_FLAG_RELEASES), in order, before
 * it is carried out: each as a RELEASE record would be, but the first that
 * fails fails the request. Each costs a turn, as its own record would.
 */
static int release_carried(struct request *q, const void *record) {
        struct session *s = q->session;
        const void *handles;
        size_t n = mfb_wire_request_releases(record, &q->header, &handles);

        if (n == 0)
                return 0;
        connection_charge(s->connection, (unsigned) n);
        /*
         * A client that carries its releases sends its next request right
         * after reading a reply: woken in between, the broker only preempts it.
         */
        connection_set_drain_wakeups(s->connection, false);
        for (size_t i = 0; i < n; i++) {
                uint64_t handle;
                int r;

                memcpy(&handle, (const uint8_t *) handles + i * sizeof(handle), sizeof(handle));
                r = release_one(q, handle);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int handle_remove(struct request *q) {
        struct session *s = q->session;
        struct region *r;
        int k;

        k = lookup_body(q, false, &r);
        if (k >= 0)
                k = check_owner(q, r, "remove");
        if (k < 0)
                return k;

        log_debug("REMOVE of pid %d uid %u: region %" PRIu64, (int) s->peer.creds.pid, s->peer.creds.uid,
                  r->handle);
        /* While r still has its name, which the waiters are listed by. */
        wait_wake_removed(s->services->waits, r);
        persist_region_removed(s->services->persist, r);
        region_remove(s->services->regions, r);
        (void) reply_empty(s->connection, &q->header);
        return 0;
}

static int handle_set(struct request *q) {
        struct session *s = q->session;
        const uint32_t all = MFB_WIRE_SET_MODE | MFB_WIRE_SET_UID | MFB_WIRE_SET_GID;
        struct mfb_wire_set_request req;
        struct region *r;
        uid_t old_uid;
        gid_t old_gid;
        mode_t old_mode;
        int name_len, k;

        memcpy(&req, q->body, sizeof(req));
        name_len = mfb_wire_name_check(&req.name);
        if (name_len < 0)
                return fail_bad_name(q);
        if (req.fields == 0 || (req.fields & ~all))
                return fail(q, -EINVAL, "fields 0x%" PRIx32 " must be a non-empty set of 0x1 (mode), "
                                   "0x2 (uid) and 0x4 (gid)", req.fields);
        if ((!(req.fields & MFB_WIRE_SET_MODE) && req.mode != 0) || (!(req.fields & MFB_WIRE_SET_UID) && req.uid != 0) ||
            (!(req.fields & MFB_WIRE_SET_GID) && req.gid != 0))
                return fail(q, -EINVAL, "a field not named in fields must be 0");
        if (req.mode & ~0777U)
                return fail(q, -EINVAL, "mode 0%" PRIo32 " has bits outside 0777", req.mode);
        /* The kernel's "no id" value (what chown(2) takes as "unchanged"), never a real owner. */
        if (((req.fields & MFB_WIRE_SET_UID) && req.uid == (uint32_t) -1) ||
            ((req.fields & MFB_WIRE_SET_GID) && req.gid == (uint32_t) -1))
                return fail(q, -EINVAL, "4294967295 is not a valid uid or gid; leave the field out instead");
        k = lookup(q, req.handle, name_len > 0 ? req.name.bytes : NULL, true, &r);
        if (k < 0)
                return k;
        k = check_owner(q, r, "change");
        if (k < 0)
                return k;
        /*
         * chown(2)'s rules, not IPC_SET's: giving a region away would let
         * its creator keep using it while another uid, or none, pays for
         * it, and would fill another uid's quota with regions it never
         * asked for.
         */
        if ((req.fields & MFB_WIRE_SET_UID) && req.uid != r->uid && s->peer.creds.uid != 0)
                return fail(q, -EPERM, "only root may give a region to another uid");
        if ((req.fields & MFB_WIRE_SET_GID) && req.gid != r->gid && s->peer.creds.uid != 0 &&
            !access_in_group(&s->peer, req.gid))
                return fail(q, -EPERM, "uid %u is not in group %" PRIu32 ", so may not give the region to it",
                                   s->peer.creds.uid, req.gid);

        old_uid = r->uid;
        old_gid = r->gid;
        old_mode = r->mode;
        /* The one change that can fail goes first, so that a refused SET changes nothing. */
        if (req.fields & MFB_WIRE_SET_UID) {
                enum mfb_wire_resource refused = MFB_WIRE_RESOURCE_COUNT;

                k = region_set_owner(s->services->regions, r, req.uid, &refused);
                if (k == -EDQUOT || k == -ENOSPC)
                        return fail_quota(q, k, req.uid, refused);
                if (k < 0)
                        return fail_kernel(q, k, "changing the owner failed");
        }
        if (req.fields & MFB_WIRE_SET_GID)
                r->gid = req.gid;
        if (req.fields & MFB_WIRE_SET_MODE)
                r->mode = req.mode;
        region_touched(s->services->regions, r, s->peer.creds.pid, REGION_CHANGED, region_now());

        log_debug("SET of pid %d uid %u: region %" PRIu64 " uid %u gid %u mode 0%o", (int) s->peer.creds.pid,
                  s->peer.creds.uid, r->handle, (unsigned) r->uid, (unsigned) r->gid, (unsigned) r->mode);
        (void) reply_info(s->connection, &q->header, r);
        /* Waiters that could not read the region before may now, if anything changed. */
        if (r->uid != old_uid || r->gid != old_gid || r->mode != old_mode)
                wait_wake_readers(s->services->waits, r);
        return 0;
}

static int handle_wait(struct request *q) {
        struct session *s = q->session;
        struct mfb_wire_wait_request req;
        enum mfb_wire_resource refused = MFB_WIRE_RESOURCE_COUNT;
        struct waiter *w;
        struct region *r;
        int name_len, k;

        memcpy(&req, q->body, sizeof(req));
        if (req.reserved != 0)
                return fail(q, -EBADMSG, "reserved field is not zero");
        name_len = mfb_wire_name_check(&req.name);
        if (name_len < 0)
                return fail_bad_name(q);
        if (name_len == 0)
                return fail(q, -EINVAL, "WAIT needs a name");
        if (req.access != MFB_WIRE_ACCESS_READ)
                return fail(q, -EINVAL, "access must be 0x1 (read-only), not 0x%" PRIx32, req.access);

        /* A region the caller may not see is waited for as if it did not exist. */
        r = region_get_by_name(s->services->regions, req.name.bytes);
        if (r && region_is_sealed(r) && access_may_see(&s->peer, r)) {
                k = check_access(q, r, MFB_WIRE_ACCESS_READ, "open", " read-only");
                if (k < 0)
                        return k;
                return grant(q, r, false);
        }
        if (req.timeout_ns == 0)
                return fail(q, -ETIMEDOUT, "no sealed region is named %s", req.name.bytes);

        k = wait_start(s->services->waits, &s->peer, s, &q->header, req.name.bytes, req.timeout_ns, &refused, &w);
        if (k == -EDQUOT || k == -ENOSPC)
                return fail_quota(q, k, s->peer.creds.uid, refused);
        if (k < 0)
                return fail_kernel(q, k, "waiting failed");
        session_wait(s, w);
        log_debug("WAIT of pid %d uid %u: for %s, %s", (int) s->peer.creds.pid, s->peer.creds.uid, req.name.bytes,
                  req.timeout_ns == MFB_WIRE_WAIT_FOREVER ? "without timeout" : "with a timeout");
        return 0;
}

/* Takes back the first n regions of a batch that could not be made whole, which s holds. */
static void batch_undo(struct session *s, struct region **regions, size_t n) {
        /* Anonymous: the last release closes each. */
        for (size_t i = 0; i < n; i++)
                (void) session_release(s, regions[i]->handle);
}

/*
 * CREATE_BATCH: as count CREATEs of anonymous regions, all or none, in one
 * reply with count fds: the cost of a request and of a reply is paid once.
 */
static int handle_create_batch(struct request *q) {
        struct session *s = q->session;
        struct region_table *t = s->services->regions;
        struct mfb_wire_create_batch_request req;
        enum mfb_wire_resource refused = MFB_WIRE_RESOURCE_COUNT;
        struct region *regions[MFB_WIRE_CREATE_BATCH_MAX];
        int fds[MFB_WIRE_CREATE_BATCH_MAX];
        struct {
                struct mfb_wire_header header;
                struct mfb_wire_create_batch_reply body;
                uint64_t handles[MFB_WIRE_CREATE_BATCH_MAX];
        } rec;
        uint32_t max_holds = s->services->settings->max_holds_per_connection;
        bool hugetlb;
        size_t n = 0;
        int k = 0;

        memcpy(&req, q->body, sizeof(req));
        if (req.count == 0 || req.count > MFB_WIRE_CREATE_BATCH_MAX)
                return fail(q, -EINVAL, "count %" PRIu32 " is not from 1 to %u", req.count,
                                   MFB_WIRE_CREATE_BATCH_MAX);
        if (req.flags & MFB_WIRE_CREATE_TRANSIENT)
                return fail(q, -EINVAL, "MFB_WIRE_CREATE_TRANSIENT needs a name: CREATE_BATCH makes anonymous "
                                   "regions, which go with their last holder anyway");
        if (req.flags & ~MFB_WIRE_CREATE_HUGETLB)
                return fail(q, -EINVAL, "flags 0x%" PRIx32 " has bits other than 0x%x (MFB_WIRE_CREATE_HUGETLB)",
                                   req.flags, MFB_WIRE_CREATE_HUGETLB);
        if (req.mode & ~0777U)
                return fail(q, -EINVAL, "mode 0%" PRIo32 " has bits outside 0777", req.mode);
        if (req.reserved != 0)
                return fail(q, -EINVAL, "reserved is not zero");
        hugetlb = req.flags & MFB_WIRE_CREATE_HUGETLB;
        if (hugetlb) {
                /* Room for all of them, or the batch fails halfway for want of pages. */
                if (req.size > UINT64_MAX / req.count)
                        return fail(q, -EFBIG, "%" PRIu32 " regions of %" PRIu64 " bytes", req.count,
                                           req.size);
                k = check_hugetlb(q, req.size * req.count);
                if (k < 0)
                        return k;
        }
        if (s->n_references > max_holds || max_holds - s->n_references < req.count)
                return fail(q, -ENOSPC, "this connection holds %" PRIu32 " references, and the broker's "
                                   "limit is %" PRIu32, s->n_references, max_holds);
        /* Refused now, rather than the reply failing the connection once the regions exist. */
        if (connection_fds_sendable(s->connection) < req.count)
                return fail(q, -EDQUOT, "uid %u may not have %" PRIu32 " more fds unread in flight now: read "
                                   "the replies sent, or ask for fewer", s->peer.creds.uid, req.count);

        for (; n < req.count; n++) {
                k = region_create(t, req.size, NULL, req.mode ?: MODE_DEFAULT, hugetlb, &s->peer.creds, &regions[n],
                                  &refused);
                if (k < 0)
                        break;
                k = persist_region_created(s->services->persist, regions[n], &refused);
                if (k >= 0)
                        k = session_hold(s, regions[n], true, &refused);
                if (k < 0) {
                        region_remove(t, regions[n]);
                        break;
                }
                /* The broker's own open file description, as for CREATE (see there); sent, not copied. */
                fds[n] = regions[n]->fd;
                rec.handles[n] = regions[n]->handle;
        }
        if (k < 0) {
                batch_undo(s, regions, n);
                switch (k) {
                case -EINVAL:
                        return fail(q, k, "size must not be 0");
                case -EFBIG:
                        return fail(q, k, "size %" PRIu64 " is above the broker's limit of %" PRIu64
                                           " bytes", req.size, region_table_max_region_size(t));
                case -ENOSPC:
                case -EDQUOT:
                        return fail_quota(q, k, s->peer.creds.uid, refused);
                default:
                        return fail_kernel(q, k, "creating the regions failed");
                }
        }

        /* The work of count CREATEs: other uids have as many turns before this one's next. */
        connection_charge(s->connection, req.count);
        log_debug("CREATE_BATCH of pid %d uid %u: %" PRIu32 " regions of %" PRIu64 " bytes from %" PRIu64,
                  (int) s->peer.creds.pid, s->peer.creds.uid, req.count, req.size, rec.handles[0]);
        rec.body = (struct mfb_wire_create_batch_reply) {
                .count = req.count,
                .access = MFB_WIRE_ACCESS_READ | MFB_WIRE_ACCESS_WRITE,
                .size = req.size,
        };
        k = offsetof(__typeof__(rec), handles) + req.count * sizeof(uint64_t);
        mfb_wire_header_init(&rec.header, q->header.opcode | MFB_WIRE_REPLY, q->header.cookie, 0, (uint16_t) req.count,
                             (uint32_t) k);
        k = connection_send_borrowed_fds(s->connection, &rec, (size_t) k, fds, req.count);
        /* Nothing sent: the reply had to wait, and there were no fds to copy for the queue. */
        if (k == -EMFILE || k == -ENFILE) {
                batch_undo(s, regions, req.count);
                return fail_kernel(q, k, "creating the regions failed");
        }
        return 0;
}

/*
 * uid's row of a USAGE reply, laid out as a LIMITS reply for it: its limits,
 * what it holds and what it may take more. told: whether the caller is
 * told what every uid together holds (root and the broker's uid).
 */
static void usage_row(struct request *q, uid_t uid, bool told, struct mfb_wire_limits_reply *ret) {
        const struct services *sv = q->session->services;
        const struct quota *quota = sv->quota;
        const struct quota_limits *limits = quota_limits(quota);
        bool exempt = quota_is_exempt(quota, uid);

        *ret = (struct mfb_wire_limits_reply) { .uid = uid, .count = MFB_WIRE_RESOURCE_COUNT };
        for (unsigned i = 0; i < MFB_WIRE_RESOURCE_COUNT; i++)
                ret->resources[i] = (struct mfb_wire_limit) {
                        .broker_max = limits->broker_max.n[i],
                        .broker_used = told ? quota_used(quota, i) : MFB_WIRE_LIMIT_NONE,
                        .uid_max = exempt ? MFB_WIRE_LIMIT_NONE : limits->uid_max.n[i],
                        .uid_used = quota_held(quota, uid, i),
                        .uid_available = quota_available(quota, uid, i),
                };
        /* As LIMITS says it: without a service manager nothing is kept across restarts. */
        if (!sv->persist)
                ret->resources[MFB_WIRE_RESOURCE_KEPT] = (struct mfb_wire_limit) {
                        .broker_used = told ? 0 : MFB_WIRE_LIMIT_NONE,
                        .uid_max = exempt ? MFB_WIRE_LIMIT_NONE : 0,
                };
}

static int handle_limits(struct request *q) {
        struct session *s = q->session;
        uid_t uid = s->peer.creds.uid;
        struct {
                struct mfb_wire_header header;
                struct mfb_wire_limits_reply body;
        } rec;

        /* How much others hold is not every uid's business: the exempt are told, as they may list it all. */
        usage_row(q, uid, quota_is_exempt(s->services->quota, uid), &rec.body);
        (void) reply_record(s->connection, &q->header, &rec.header, sizeof(rec));
        return 0;
}

/*
 * USAGE: the exempt uids, who are told what everyone holds anyway, page
 * through every uid the quota table counts, MFB_WIRE_USAGE_ROWS_MAX at a
 * time in uid order (a binary search and a page of rows, whatever the
 * broker holds). Any other caller gets its own row and nothing else: not
 * even whether other uids hold anything, which a cursor that stopped
 * short of them, or a count, would tell.
 */
static int handle_usage(struct request *q) {
        struct session *s = q->session;
        const struct quota *quota = s->services->quota;
        uid_t uid = s->peer.creds.uid, uids[MFB_WIRE_USAGE_ROWS_MAX];
        bool all = quota_is_exempt(quota, uid), more = false;
        struct mfb_wire_usage_request req;
        struct {
                struct mfb_wire_header header;
                struct mfb_wire_usage_reply body;
        } rec = {};
        size_t n = 0;

        memcpy(&req, q->body, sizeof(req));
        if (req.reserved != 0)
                return fail(q, -EINVAL, "reserved is not zero");
        if (all)
                n = quota_users(quota, req.first_uid, uids, MFB_WIRE_USAGE_ROWS_MAX, &more);
        else if (uid >= req.first_uid)
                uids[n++] = uid;
        for (size_t i = 0; i < n; i++)
                usage_row(q, uids[i], all, &rec.body.rows[i]);
        rec.body.count = (uint32_t) n;
        /* A uid follows the last row only if it is below UINT32_MAX, so next_uid cannot wrap. */
        rec.body.more = more;
        rec.body.next_uid = more ? uids[n - 1] + 1 : 0;

        log_debug("USAGE of pid %d uid %u: %zu rows from uid %" PRIu32 "%s", (int) s->peer.creds.pid, uid, n,
                  req.first_uid, more ? ", more to come" : "");
        (void) reply_record(s->connection, &q->header, &rec.header, sizeof(rec));
        return 0;
}

/*
 * ALLOCATED: LIST's pages (page_walk(), so that it costs and tells no
 * more), with each region's allocated bytes instead of its info. Only for
 * regions the caller may see, which it can map and measure itself
 * (SEEK_DATA, mincore()) anyway, or owns and is charged for.
 */
static int allocated_take(struct request *q, struct region *r, uint32_t i, void *userdata) {
        struct mfb_wire_allocated_entry *entries = userdata;
        struct stat st;

        if (fstat(r->fd, &st) < 0)
                return fail_kernel(q, negative_errno(), "measuring the region failed");
        entries[i] = (struct mfb_wire_allocated_entry) {
                .handle = r->handle,
                .allocated = (uint64_t) st.st_blocks * 512,
        };
        return 0;
}

static int handle_allocated(struct request *q) {
        struct session *s = q->session;
        struct mfb_wire_allocated_request req;
        struct {
                struct mfb_wire_header header;
                struct mfb_wire_allocated_reply body;
        } rec = {};
        struct page page;
        int k;

        memcpy(&req, q->body, sizeof(req));
        if (req.reserved != 0)
                return fail(q, -EINVAL, "reserved is not zero");
        if (req.max_count > MFB_WIRE_ALLOCATED_ENTRIES_MAX)
                return fail(q, -EINVAL, "max_count %" PRIu32 " is above %u", req.max_count,
                            MFB_WIRE_ALLOCATED_ENTRIES_MAX);
        k = page_walk(q, req.after_handle, req.max_count ?: MFB_WIRE_ALLOCATED_ENTRIES_MAX, allocated_take,
                      rec.body.entries, &page);
        if (k < 0)
                return k;
        rec.body.count = page.count;
        rec.body.more = page.more;
        rec.body.next_after = page.next_after;

        log_debug("ALLOCATED of pid %d uid %u: %" PRIu32 " of %" PRIu32 " regions after %" PRIu64 "%s",
                  (int) s->peer.creds.pid, s->peer.creds.uid, page.count, page.scanned, req.after_handle,
                  page.more ? ", more to come" : "");
        (void) reply_record(s->connection, &q->header, &rec.header, sizeof(rec));
        return 0;
}

/*
 * The hold of the region a NOTIFIER, NOTIFY_WATCH or NOTIFY names (its body
 * read into req), whose flags may have only flags_allowed. Notifications
 * are for holders: the region is found by the caller's hold, never by
 * lookup, so what it may see does not matter. Returns 0 or -errno.
 */
static int notify_hold(struct request *q, uint32_t flags_allowed, struct mfb_wire_notify_request *req,
                       struct hold **ret) {
        struct hold *h;

        memcpy(req, q->body, sizeof(*req));
        if (req->reserved != 0)
                return fail(q, -EINVAL, "reserved is not zero");
        if (req->flags & ~flags_allowed)
                return fail(q, -EINVAL, "flags 0x%" PRIx32 " has bits other than 0x%" PRIx32, req->flags,
                            flags_allowed);
        h = session_get_hold(q->session, req->handle);
        if (!h)
                return fail(q, -ENOENT, "this connection holds no region with handle %" PRIu64, req->handle);
        *ret = h;
        return 0;
}

/*
 * The control page of r, made at its first use, charged to r's owner as an
 * fd, and parked with r when r is kept. Returns 0 or -errno.
 */
static int need_page(struct request *q, struct region *r) {
        struct services *sv = q->session->services;
        enum mfb_wire_resource refused = MFB_WIRE_RESOURCE_COUNT;
        int k;

        if (r->page)
                return 0;
        k = region_make_control_page(sv->regions, r, &refused);
        if (k == -EDQUOT || k == -ENOSPC)
                return fail_quota(q, k, r->uid, refused);
        if (k < 0)
                return fail_kernel(q, k, "making the control page failed");
        /* As a named region's handle (CREATE): a page handed out must be the same after a restart. */
        k = persist_control_page_made(sv->persist, r, &refused);
        if (k == -EDQUOT || k == -ENOSPC) {
                region_drop_control_page(sv->regions, r);
                return fail_quota(q, k, r->uid, refused);
        }
        if (k < 0) {
                region_drop_control_page(sv->regions, r);
                if (k == -ETOOMANYREFS)
                        return fail(q, -ENOSPC, "the kernel refuses the broker more fds in flight (its "
                                    "RLIMIT_NOFILE): no more control pages can be kept across a restart");
                if (k == -E2BIG)
                        return fail(q, -ENOSPC, "the service manager cannot keep more control pages across a "
                                    "restart");
                return fail_kernel(q, k, "keeping the control page failed");
        }
        return 0;
}

static int handle_notifier(struct request *q) {
        struct session *s = q->session;
        struct mfb_wire_notify_request req;
        struct {
                struct mfb_wire_header header;
                struct mfb_wire_notifier_reply body;
        } rec;
        struct hold *h;
        bool writable;
        int k, fd;

        k = notify_hold(q, 0, &req, &h);
        if (k < 0)
                return k;
        k = need_page(q, h->region);
        if (k < 0)
                return k;
        /* A writer's page can advance seq, a reader's cannot: a fresh open of each, so the kernel sees to it. */
        writable = h->writable > 0;
        fd = control_page_open(h->region->page, writable);
        if (fd < 0)
                return fail_kernel(q, fd, "opening the control page failed");
        rec.body = (struct mfb_wire_notifier_reply) {
                .access = MFB_WIRE_ACCESS_READ | (writable ? MFB_WIRE_ACCESS_WRITE : 0),
                .seq = control_page_seq(h->region->page),
        };
        log_debug("NOTIFIER of pid %d uid %u: region %" PRIu64 " %s", (int) s->peer.creds.pid, s->peer.creds.uid,
                  req.handle, writable ? "read-write" : "read-only");
        (void) reply_record_consume_fd(s->connection, &q->header, &rec.header, sizeof(rec), fd);
        return 0;
}

static int handle_notify_watch(struct request *q) {
        struct session *s = q->session;
        enum mfb_wire_resource refused = MFB_WIRE_RESOURCE_COUNT;
        struct mfb_wire_notify_request req;
        struct {
                struct mfb_wire_header header;
                struct mfb_wire_notify_reply body;
        } rec;
        struct hold *h;
        int k, fd;

        k = notify_hold(q, 0, &req, &h);
        if (k < 0)
                return k;
        k = need_page(q, h->region);
        if (k < 0)
                return k;
        /* One per connection and region, for as long as it holds the region: a second asks for a copy. */
        if (!h->watch) {
                k = control_watch(s->services->watches, h->region->page, s->peer.creds.uid, &h->watch, &refused);
                if (k == -EDQUOT || k == -ENOSPC)
                        return fail_quota(q, k, s->peer.creds.uid, refused);
                if (k < 0)
                        return fail_kernel(q, k, "making the pipe failed");
        }
        fd = control_watch_fd(h->watch);
        if (fd < 0)
                return fail_kernel(q, fd, "copying the pipe's read end failed");
        rec.body = (struct mfb_wire_notify_reply) { .seq = control_page_seq(h->region->page) };
        log_debug("NOTIFY_WATCH of pid %d uid %u: region %" PRIu64 ", %" PRIu32 " watchers",
                  (int) s->peer.creds.pid, s->peer.creds.uid, req.handle,
                  control_page_watchers(h->region->page));
        (void) reply_record_consume_fd(s->connection, &q->header, &rec.header, sizeof(rec), fd);
        return 0;
}

static int handle_notify(struct request *q) {
        struct session *s = q->session;
        struct mfb_wire_notify_request req;
        struct {
                struct mfb_wire_header header;
                struct mfb_wire_notify_reply body;
        } rec;
        struct control_page *page;
        struct hold *h;
        uint32_t signalled;
        uint64_t seq;
        int k;

        k = notify_hold(q, MFB_WIRE_NOTIFY_ADVANCE, &req, &h);
        if (k < 0)
                return k;
        /* Readers may wait, not notify: the kernel keeps them from seq, this from the watchers' pipes. */
        if (h->writable == 0)
                return fail(q, -EPERM, "this connection holds region %" PRIu64 " read-only: only writers may "
                            "notify", req.handle);
        k = need_page(q, h->region);
        if (k < 0)
                return k;
        page = h->region->page;
        seq = req.flags & MFB_WIRE_NOTIFY_ADVANCE ? control_page_advance(page) : control_page_seq(page);
        signalled = control_page_signal(s->services->watches, page);
        /* The pipe writes of the next pass are this request's work: many watchers cost turns. */
        if (signalled >= CONTROL_WATCHERS_PER_TURN)
                connection_charge(s->connection, 1 + signalled / CONTROL_WATCHERS_PER_TURN);
        if (q->header.flags & MFB_WIRE_FLAG_QUIET)
                return 0;
        rec.body = (struct mfb_wire_notify_reply) { .seq = seq };
        (void) reply_record(s->connection, &q->header, &rec.header, sizeof(rec));
        return 0;
}

static int handle_release_queue(struct request *q) {
        struct session *s = q->session;
        struct {
                struct mfb_wire_header header;
                struct mfb_wire_release_queue_reply body;
        } rec;
        int fd;

        fd = session_open_queue(s);
        if (fd == -EEXIST)
                return fail(q, fd, "this connection has its release queue already");
        if (fd == -ENOSPC)
                return fail(q, fd, "the broker has %" PRIu32 " release queues, its limit (--max-release-queues)",
                            s->services->n_queues);
        if (fd == -EDQUOT)
                return fail(q, fd, "uid %u has %" PRIu32 " release queues, its share (a quarter of "
                            "--max-release-queues)", s->peer.creds.uid,
                            s->services->settings->max_release_queues_per_uid);
        if (fd < 0)
                return fail_kernel(q, fd, "making the release queue failed");
        rec.body = (struct mfb_wire_release_queue_reply) { .slots = MFB_WIRE_RELEASE_QUEUE_SLOTS };
        log_debug("RELEASE_QUEUE of pid %d uid %u", (int) s->peer.creds.pid, s->peer.creds.uid);
        (void) reply_record_consume_fd(s->connection, &q->header, &rec.header, sizeof(rec), fd);
        return 0;
}

static int handle_sync(struct request *q) {
        if (!(q->header.flags & MFB_WIRE_FLAG_QUIET))
                (void) reply_empty(q->session->connection, &q->header);
        return 0;
}

/*
 * What the connection's release queue holds, taken before a request with
 * MFB_WIRE_FLAG_QUEUED; then, with or without it, the failure of a queued
 * release taken since the last request (here or by the sweep), which fails
 * this one: the client learns of it at its next request, as of one it
 * carried (release_carried()).
 */
static int release_queued(struct request *q) {
        struct session *s = q->session;

        if (q->header.flags & MFB_WIRE_FLAG_QUEUED) {
                if (!s->queue)
                        return fail(q, -EINVAL, "MFB_WIRE_FLAG_QUEUED on a connection without a release queue");
                (void) session_take_queue(s, MFB_WIRE_RELEASE_QUEUE_SLOTS);
                /* As for a client that carries its releases: it reads a reply and sends again at once. */
                connection_set_drain_wakeups(s->connection, false);
        }
        if (s->queue_refusing) {
                s->queue_refusing = false;
                return fail(q, -ENOENT, "the release queue gave back region %" PRIu64 ", which this connection "
                            "holds no reference to", s->queue_refused);
        }
        return 0;
}

/* One handler per request of MFB_WIRE_REQUESTS, by opcode. */
static const request_handler_t handlers[] = {
#define HANDLER(NAME, name, opcode, ...) [opcode] = handle_##name,
        MFB_WIRE_REQUESTS(HANDLER)
#undef HANDLER
};

/* Checks what every request must be, whatever its opcode. Returns 0 or -errno. */
static int check_request(struct request *q, int checked, size_t len, size_t nfds) {
        const struct mfb_wire_request_info *info = mfb_wire_request_info(q->header.opcode);
        struct session *s = q->session;

        if (s->quota == SESSION_REFUSED)
                return fail(q, -EDQUOT, "uid %u may open no more connections: it has %" PRIu64 ", its limit per uid "
                            "or its share of what is left", s->peer.creds.uid,
                            quota_held(s->services->quota, s->peer.creds.uid, MFB_WIRE_RESOURCE_CONNECTIONS));
        if (nfds > 0)
                return fail(q, -EBADMSG, "file descriptors are not accepted from clients");
        /* An unknown opcode is answered as such, HELLO or not. */
        if (checked == -EOPNOTSUPP)
                return fail(q, checked, "unknown opcode 0x%x", (unsigned) q->header.opcode);
        if (checked == -EMSGSIZE && (q->header.flags & MFB_WIRE_FLAG_RELEASES))
                return fail(q, checked, "body of %zu bytes, %s takes %d and then 1 to %u handles of 8 bytes to "
                            "release", len - sizeof(q->header), info->name, info->request_body,
                            MFB_WIRE_RELEASES_CARRIED_MAX);
        if (checked == -EMSGSIZE)
                return fail(q, checked, "body of %zu bytes, %s takes %d", len - sizeof(q->header), info->name,
                            info->request_body);
        if (checked < 0)
                return fail_kernel(q, checked, "reading the request failed");
        if (info->after_hello && !s->hello_done)
                return fail(q, -EPROTO, "HELLO must come first");
        /* Only where success has nothing to say; any other reply would be lost to a client not waiting for it. */
        if ((q->header.flags & MFB_WIRE_FLAG_QUIET) && !info->quiet)
                return fail(q, -EINVAL, "%s cannot be quiet: only RELEASE, REMOVE, NOTIFY and SYNC can", info->name);
        return 0;
}

void request_handle(struct session *s, const void *record, size_t len, size_t nfds) {
        struct request q = {
                .session = s,
                .body = (const uint8_t *) record + sizeof(struct mfb_wire_header),
        };
        int r;

        r = mfb_wire_request_check(record, len, &q.header);
        /* No header to trust, so no cookie to answer with. */
        if (r == -EBADMSG) {
                log_debug("Dropping the connection of pid %d uid %u: a record that is no request",
                          (int) s->peer.creds.pid, s->peer.creds.uid);
                connection_abort(s->connection, r);
                return;
        }
        r = check_request(&q, r, len, nfds);
        if (r >= 0)
                r = release_queued(&q);
        if (r >= 0)
                r = release_carried(&q, record);
        if (r >= 0)
                r = handlers[q.header.opcode](&q);
        answer(&q, r);
        if (s->quota == SESSION_REFUSED)
                connection_close_when_sent(s->connection);
}

void request_wait_answer(void *owner, const struct mfb_wire_header *request, enum wait_outcome outcome,
                         struct region *r, const char *name, uint64_t timeout_ns, void *userdata) {
        struct request q = { .session = owner, .header = *request };
        int k;

        session_wait_done(q.session);
        /*
         * Answered outside the waiter's turns, in whoever's turn or pass woke
         * it: the work (for a region, a reopen and an fd sent) is one request's
         * more of the waiter's uid, which sits out a round for it while
         * another uid has requests waiting. So many WAITs cost those who
         * asked, not the user whose SEAL answered them.
         */
        connection_charge(q.session->connection, 2);
        switch (outcome) {
        case WAIT_SEALED:
                k = grant(&q, r, false);
                break;
        case WAIT_REMOVED:
                k = fail(&q, -EIDRM, "region %s was removed", name);
                break;
        case WAIT_TIMED_OUT:
        default:
                k = fail(&q, -ETIMEDOUT, "no sealed region named %s appeared within %" PRIu64 " ms", name,
                         timeout_ns / 1000000);
                break;
        }
        answer(&q, k);
}
