/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "access.h"
#include "broker.h"
#include "codec.h"
#include "connection.h"
#include "hugetlb.h"
#include "log.h"
#include "macro.h"
#include "persist.h"
#include "quota.h"
#include "region.h"
#include "reply.h"
#include "request.h"
#include "schedule.h"
#include "wait.h"
#include "wire.h"

#define MODE_DEFAULT 0600U

/* What an error message calls a region: "region NAME", or "region HANDLE" when it has no name. */
#define REGION_LABEL_MAX (sizeof("region ") + MFB_WIRE_NAME_MAX)

/*
 * Every handler replies exactly once, an error reply included, and returns
 * what sending the reply returned: 0, or -errno to drop the connection.
 * Helpers that may reply early return 1 when the handler should go on.
 */

static const char *region_label(const struct region *r, char buf[static REGION_LABEL_MAX]) {
        if (r->name)
                snprintf(buf, REGION_LABEL_MAX, "region %s", r->name);
        else
                snprintf(buf, REGION_LABEL_MAX, "region %" PRIu64, r->handle);
        return buf;
}

static int reply_bad_name(struct connection *c, const struct mfb_wire_header *request) {
        return reply_error(c, request, -EBADMSG,
                           "bad name field: 1 to %u printable ASCII bytes without spaces, then zero bytes",
                           MFB_WIRE_NAME_MAX);
}

/*
 * Finds the region a request names by handle or by name (name NULL when
 * the name field is empty): exactly one must be given. Removed regions are
 * found by handle only if removed_ok. A region the caller may not see
 * (access_may_see()) is not found, with the very answer a missing one
 * gets. Returns 1 and the region, or replies with the error.
 */
static int lookup(struct connection *c, const struct mfb_wire_header *request, uint64_t handle, const char *name,
                  bool removed_ok, struct region **ret) {
        const struct region_table *t = c->broker->regions;
        struct region *r;

        if ((handle != 0) == (name != NULL))
                return reply_error(c, request, -EINVAL, "give exactly one of a handle and a name");
        if (name) {
                r = region_get_by_name(t, name);
                if (!r || !access_may_see(&c->peer, r))
                        return reply_error(c, request, -ENOENT, "no region is named %s", name);
        } else {
                r = region_get_by_handle(t, handle);
                if (!r || !access_may_see(&c->peer, r))
                        return reply_error(c, request, -ENOENT, "no region has handle %" PRIu64, handle);
                if (r->removed && !removed_ok)
                        return reply_error(c, request, -ENOENT, "region %" PRIu64 " was removed", handle);
        }
        *ret = r;
        return 1;
}

/*
 * Returns 1 if c may have access (MFB_ACCESS_*) to r, or replies -EACCES
 * saying that it may not "VERB region NAME HOW".
 */
static int check_access(struct connection *c, const struct mfb_wire_header *request, const struct region *r,
                        uint32_t access, const char *verb, const char *how) {
        char label[REGION_LABEL_MAX];

        if (access_may(&c->peer, r, access))
                return 1;
        return reply_error(c, request, -EACCES, "mode 0%03o does not let uid %u %s %s%s", (unsigned) r->mode,
                           c->peer.creds.uid, verb, region_label(r, label), how);
}

/* Returns 1 if c owns r (may change or remove it), or replies -EPERM saying that it may not do what. */
static int check_owner(struct connection *c, const struct mfb_wire_header *request, const struct region *r,
                       const char *what) {
        char label[REGION_LABEL_MAX];

        if (access_owns(&c->peer, r))
                return 1;
        return reply_error(c, request, -EPERM, "only the owner (uid %u), the creator (uid %u) or root may %s %s",
                           (unsigned) r->uid, (unsigned) r->creator_uid, what, region_label(r, label));
}

static int handle_hello(struct connection *c, const struct mfb_wire_header *h, const void *body) {
        const struct region_table *t = c->broker->regions;
        struct mfb_wire_hello_request req;
        struct {
                struct mfb_wire_header header;
                struct mfb_wire_hello_reply body;
        } rec;

        memcpy(&req, body, sizeof(req));
        if (c->hello_done)
                return reply_error(c, h, -EPROTO, "HELLO was sent already");
        if (req.version_min > req.version_max || req.version_min > MFB_WIRE_VERSION ||
            req.version_max < MFB_WIRE_VERSION)
                return reply_error(c, h, -EPROTONOSUPPORT,
                                   "versions %" PRIu32 " to %" PRIu32 " asked for, this broker speaks version %u",
                                   req.version_min, req.version_max, MFB_WIRE_VERSION);

        c->hello_done = true;
        rec.body = (struct mfb_wire_hello_reply) {
                .version = MFB_WIRE_VERSION,
                .capabilities = region_table_capabilities(t) | MFB_CAP_QUIET | MFB_CAP_CREATE_BATCH,
                .region_size_max = region_table_max_region_size(t),
                .record_max = MFB_WIRE_RECORD_MAX,
                .name_max = MFB_WIRE_NAME_MAX,
                .fds_per_record_max = MFB_WIRE_FDS_PER_RECORD_MAX,
                .requests_in_flight_max = MFB_WIRE_REQUESTS_IN_FLIGHT_MAX,
                .list_entries_max = MFB_WIRE_LIST_ENTRIES_MAX,
        };
        log_debug("HELLO of pid %d uid %u: version %u", (int) c->peer.creds.pid, c->peer.creds.uid, MFB_WIRE_VERSION);
        return reply_record(c, h, &rec.header, sizeof(rec));
}

/*
 * Returns 1 if a hugetlb region of size bytes can be made, or replies why
 * not. Free huge pages are checked now, so that a shortage is an error
 * here rather than a SIGBUS in whichever client touches the pages first;
 * it is only a check, nothing is reserved.
 */
static int check_hugetlb(struct connection *c, const struct mfb_wire_header *h, uint64_t size) {
        uint64_t page_size = region_table_hugetlb_page_size(c->broker->regions), free_bytes;
        int k;

        if (page_size == 0)
                return reply_error(c, h, -EOPNOTSUPP, "the broker's kernel cannot make hugetlb memfds");
        if (size % page_size != 0)
                return reply_error(c, h, -EINVAL, "size %" PRIu64 " is not a multiple of the huge page size, %" PRIu64
                                   " KiB", size, page_size / 1024);
        k = hugetlb_free_bytes(&free_bytes);
        if (k < 0)
                return reply_failure(c, h, k, "reading the free huge pages from /proc/meminfo failed");
        if (free_bytes < size)
                return reply_error(c, h, -ENOMEM,
                                   "not enough huge pages: %" PRIu64 " KiB free and not reserved by a mapping, of the %"
                                   PRIu64 " KiB needed; see vm.nr_hugepages", free_bytes / 1024, size / 1024);
        return 1;
}

static int handle_create(struct connection *c, const struct mfb_wire_header *h, const void *body) {
        struct region_table *t = c->broker->regions;
        struct mfb_wire_create_request req;
        enum mfb_wire_resource refused = MFB_RESOURCE_COUNT;
        struct region *r;
        bool hugetlb;
        int name_len, k, fd;

        memcpy(&req, body, sizeof(req));
        name_len = mfb_wire_name_check(&req.name);
        if (name_len < 0)
                return reply_bad_name(c, h);
        if (req.flags & ~MFB_CREATE_HUGETLB)
                return reply_error(c, h, -EINVAL, "flags 0x%" PRIx32 " has bits other than 0x%x (MFB_CREATE_HUGETLB)",
                                   req.flags, MFB_CREATE_HUGETLB);
        if (req.mode & ~0777U)
                return reply_error(c, h, -EINVAL, "mode 0%" PRIo32 " has bits outside 0777", req.mode);
        hugetlb = req.flags & MFB_CREATE_HUGETLB;
        if (hugetlb) {
                k = check_hugetlb(c, h, req.size);
                if (k <= 0)
                        return k;
        }
        k = reply_unless_hold_allowed(c, h);
        if (k <= 0)
                return k;

        k = region_create(t, req.size, name_len > 0 ? req.name.bytes : NULL, req.mode ?: MODE_DEFAULT, hugetlb,
                          &c->peer.creds, &r, &refused);
        switch (k) {
        case 0:
                break;
        case -EINVAL:
                return reply_error(c, h, k, "size must not be 0");
        case -EFBIG:
                return reply_error(c, h, k, "size %" PRIu64 " is above the broker's limit of %" PRIu64 " bytes",
                                   req.size, region_table_max_region_size(t));
        case -EEXIST:
                return reply_error(c, h, k, "a region named %s exists", req.name.bytes);
        case -ENOSPC:
        case -EDQUOT:
                return reply_quota(c, h, k, c->peer.creds.uid, refused);
        default:
                return reply_failure(c, h, k, "creating the region failed");
        }

        /*
         * The creator gets the broker's own open file description, which no
         * other holder shares (each OPEN is a fresh open) and through which the
         * broker does no I/O, so no flag or offset the creator sets matters to
         * anyone: a dup() rather than a reopen through /proc, a path walk on
         * every CREATE.
         */
        fd = region_dup(r);
        if (fd < 0) {
                region_remove(t, r);
                return reply_failure(c, h, fd, "opening the region failed");
        }
        /* Before the handle leaves: a client that got it can rely on it after a restart. */
        k = persist_region_created(c->broker->persist, r, &refused);
        if (k >= 0) {
                k = connection_hold(c, r, true, &refused);
                if (k < 0)
                        persist_region_removed(c->broker->persist, r);
        }
        if (k < 0) {
                safe_close(fd);
                region_remove(t, r);
                if (k == -EDQUOT || k == -ENOSPC)
                        return reply_quota(c, h, k, c->peer.creds.uid, refused);
                if (k == -ETOOMANYREFS)
                        return reply_error(c, h, -ENOSPC, "the kernel refuses the broker more fds in flight (its "
                                           "RLIMIT_NOFILE): no more named regions can be kept across a restart");
                if (k == -E2BIG)
                        return reply_error(c, h, -ENOSPC, "the service manager cannot keep more named regions "
                                           "across a restart");
                return reply_failure(c, h, k, "saving or holding the region failed");
        }

        log_debug("CREATE of pid %d uid %u: region %" PRIu64 ", %" PRIu64 " bytes, name %s, mode 0%o%s",
                  (int) c->peer.creds.pid, c->peer.creds.uid, r->handle, r->size, r->name ?: "(none)",
                  (unsigned) r->mode, hugetlb ? ", huge pages" : "");
        return reply_region_consume_fd(c, h, r, MFB_ACCESS_READ | MFB_ACCESS_WRITE, fd);
}

static int handle_open(struct connection *c, const struct mfb_wire_header *h, const void *body) {
        struct mfb_wire_open_request req;
        struct region *r;
        bool writable;
        int name_len, k;

        memcpy(&req, body, sizeof(req));
        if (req.reserved != 0)
                return reply_error(c, h, -EBADMSG, "reserved field is not zero");
        name_len = mfb_wire_name_check(&req.name);
        if (name_len < 0)
                return reply_bad_name(c, h);
        if (req.access != MFB_ACCESS_READ && req.access != (MFB_ACCESS_READ | MFB_ACCESS_WRITE))
                return reply_error(c, h, -EINVAL, "access must be 0x1 (read-only) or 0x3 (read-write), not 0x%" PRIx32,
                                   req.access);
        k = lookup(c, h, req.handle, name_len > 0 ? req.name.bytes : NULL, false, &r);
        if (k <= 0)
                return k;
        writable = req.access & MFB_ACCESS_WRITE;
        k = check_access(c, h, r, req.access, "open", writable ? " read-write" : " read-only");
        if (k <= 0)
                return k;

        /* After the permission check, so that a refused caller learns nothing of the seals. */
        if (writable) {
                int seals = region_get_seals(r);

                if (seals < 0)
                        return reply_failure(c, h, seals, "reading the region's seals failed");
                if (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE))
                        return reply_error(c, h, -EPERM, "region is sealed");
        }
        return reply_open(c, h, r, writable);
}

static int handle_seal(struct connection *c, const struct mfb_wire_header *h, const void *body) {
        struct mfb_wire_seal_request req;
        struct hold *hold;
        struct region *r;
        bool was_sealed;
        int k;

        memcpy(&req, body, sizeof(req));
        if (req.reserved != 0)
                return reply_error(c, h, -EBADMSG, "reserved field is not zero");
        if (req.seals != F_SEAL_WRITE && req.seals != F_SEAL_FUTURE_WRITE)
                return reply_error(c, h, -EINVAL,
                                   "seals must be 0x%x (F_SEAL_WRITE) or 0x%x (F_SEAL_FUTURE_WRITE), not 0x%" PRIx32,
                                   (unsigned) F_SEAL_WRITE, (unsigned) F_SEAL_FUTURE_WRITE, req.seals);
        if (req.seals == F_SEAL_FUTURE_WRITE &&
            !(region_table_capabilities(c->broker->regions) & MFB_CAP_SEAL_FUTURE_WRITE))
                return reply_error(c, h, -EOPNOTSUPP, "the broker's kernel has no F_SEAL_FUTURE_WRITE");
        hold = connection_get_hold(c, req.handle);
        if (!hold)
                return reply_error(c, h, -ENOENT, "this connection does not hold region %" PRIu64, req.handle);
        if (hold->writable == 0)
                return reply_error(c, h, -EPERM, "this connection holds region %" PRIu64 " read-only", req.handle);
        r = hold->region;
        was_sealed = region_is_sealed(r);

        k = region_seal(r, (int) req.seals);
        if (k == -EBUSY)
                return reply_error(c, h, k, "a writable mapping of the region still exists; unmap it first");
        if (k == -EPERM)
                return reply_error(c, h, k, "the region's seals were sealed (F_SEAL_SEAL)");
        if (k < 0)
                return reply_failure(c, h, k, "sealing the region failed");
        region_touched(c->broker->regions, r, c->peer.creds.pid, REGION_CHANGED, region_now());

        log_debug("SEAL of pid %d uid %u: region %" PRIu64 " with 0x%" PRIx32, (int) c->peer.creds.pid,
                  c->peer.creds.uid, r->handle, req.seals);
        /* The sealer's reply first: it asked first, and the waiters may be many. */
        k = reply_info(c, h, r);
        /* Only on a change: the waiters that stay are walked again at each wake-up. */
        if (!was_sealed)
                wait_wake_readers(c->broker->waits, r);
        return k;
}

static int handle_stat(struct connection *c, const struct mfb_wire_header *h, const void *body) {
        struct mfb_wire_lookup_request req;
        struct region *r;
        int name_len, k;

        memcpy(&req, body, sizeof(req));
        name_len = mfb_wire_name_check(&req.name);
        if (name_len < 0)
                return reply_bad_name(c, h);
        k = lookup(c, h, req.handle, name_len > 0 ? req.name.bytes : NULL, true, &r);
        if (k <= 0)
                return k;
        k = check_access(c, h, r, MFB_ACCESS_READ, "stat", "");
        if (k <= 0)
                return k;

        log_debug("STAT of pid %d uid %u: region %" PRIu64, (int) c->peer.creds.pid, c->peer.creds.uid, r->handle);
        return reply_info(c, h, r);
}

/*
 * A LIST must cost the same whatever others hold, and must not tell a
 * caller anything about the regions it may not see, not even that they
 * exist. So a caller other than root is given the regions of the next
 * MFB_WIRE_LIST_SCAN_MAX handle values, whichever of them are live, and
 * the cursor moves on by that range: a cursor that stopped at the last
 * region examined would say where hidden regions are. Whether there is
 * more depends only on the highest handle given, which any CREATE tells.
 * Root sees every region, so its pages are dense: the next
 * MFB_WIRE_LIST_SCAN_MAX live regions, however sparse their handles.
 */
static int handle_list(struct connection *c, const struct mfb_wire_header *h, const void *body) {
        struct region_table *t = c->broker->regions;
        uint64_t last_handle = region_table_last_handle(t), end;
        bool dense = c->peer.creds.uid == 0;
        struct mfb_wire_list_request req;
        struct {
                struct mfb_wire_header header;
                struct mfb_wire_list_reply body;
                struct mfb_wire_region_info entries[MFB_WIRE_LIST_ENTRIES_MAX];
        } rec;
        struct region *r;
        uint32_t n = 0, scanned = 0;

        memcpy(&req, body, sizeof(req));
        if (dense || req.after_handle > UINT64_MAX - MFB_WIRE_LIST_SCAN_MAX)
                end = UINT64_MAX;
        else
                end = req.after_handle + MFB_WIRE_LIST_SCAN_MAX;
        for (r = region_next(t, req.after_handle); r && r->handle <= end; r = region_after(t, r)) {
                if (n == MFB_WIRE_LIST_ENTRIES_MAX || scanned == MFB_WIRE_LIST_SCAN_MAX)
                        break;
                scanned++;
                if (access_may_see(&c->peer, r))
                        region_info(r, &rec.entries[n++]);
        }
        rec.body.count = n;
        if (n == MFB_WIRE_LIST_ENTRIES_MAX) {
                /*
                 * A full page: on from its last entry, which the caller may
                 * see; whether anything follows it is the next page's to say.
                 */
                rec.body.more = 1;
                rec.body.next_after = rec.entries[n - 1].handle;
        } else if (dense) {
                /* Root sees every region it examined, so the last one examined may say where it stopped. */
                rec.body.more = r != NULL;
                rec.body.next_after = n > 0 ? rec.entries[n - 1].handle : req.after_handle;
        } else {
                rec.body.more = end < last_handle;
                rec.body.next_after = end < last_handle ? end : last_handle;
        }

        log_debug("LIST of pid %d uid %u: %" PRIu32 " of %" PRIu32 " regions after %" PRIu64 "%s",
                  (int) c->peer.creds.pid, c->peer.creds.uid, n, scanned, req.after_handle,
                  rec.body.more ? ", more to come" : "");
        return reply_record(c, h, &rec.header, offsetof(__typeof__(rec), entries) + n * sizeof(rec.entries[0]));
}

static int handle_release(struct connection *c, const struct mfb_wire_header *h, const void *body) {
        struct mfb_wire_release_request req;

        memcpy(&req, body, sizeof(req));
        if (connection_release(c, req.handle) < 0)
                return reply_error(c, h, -ENOENT, "this connection holds no reference to region %" PRIu64,
                                   req.handle);

        log_debug("RELEASE of pid %d uid %u: region %" PRIu64, (int) c->peer.creds.pid, c->peer.creds.uid,
                  req.handle);
        return reply_empty(c, h);
}

static int handle_remove(struct connection *c, const struct mfb_wire_header *h, const void *body) {
        struct mfb_wire_lookup_request req;
        struct region *r;
        int name_len, k;

        memcpy(&req, body, sizeof(req));
        name_len = mfb_wire_name_check(&req.name);
        if (name_len < 0)
                return reply_bad_name(c, h);
        k = lookup(c, h, req.handle, name_len > 0 ? req.name.bytes : NULL, false, &r);
        if (k <= 0)
                return k;
        k = check_owner(c, h, r, "remove");
        if (k <= 0)
                return k;

        log_debug("REMOVE of pid %d uid %u: region %" PRIu64, (int) c->peer.creds.pid, c->peer.creds.uid,
                  r->handle);
        /* While r still has its name, which the waiters are listed by. */
        wait_wake_removed(c->broker->waits, r);
        persist_region_removed(c->broker->persist, r);
        region_remove(c->broker->regions, r);
        return reply_empty(c, h);
}

static int handle_set(struct connection *c, const struct mfb_wire_header *h, const void *body) {
        const uint32_t all = MFB_SET_MODE | MFB_SET_UID | MFB_SET_GID;
        struct mfb_wire_set_request req;
        struct region *r;
        uid_t old_uid;
        gid_t old_gid;
        mode_t old_mode;
        int name_len, k;

        memcpy(&req, body, sizeof(req));
        name_len = mfb_wire_name_check(&req.name);
        if (name_len < 0)
                return reply_bad_name(c, h);
        if (req.fields == 0 || (req.fields & ~all))
                return reply_error(c, h, -EINVAL, "fields 0x%" PRIx32 " must be a non-empty set of 0x1 (mode), "
                                   "0x2 (uid) and 0x4 (gid)", req.fields);
        if ((!(req.fields & MFB_SET_MODE) && req.mode != 0) || (!(req.fields & MFB_SET_UID) && req.uid != 0) ||
            (!(req.fields & MFB_SET_GID) && req.gid != 0))
                return reply_error(c, h, -EINVAL, "a field not named in fields must be 0");
        if (req.mode & ~0777U)
                return reply_error(c, h, -EINVAL, "mode 0%" PRIo32 " has bits outside 0777", req.mode);
        /* The kernel's "no id" value (what chown(2) takes as "unchanged"), never a real owner. */
        if (((req.fields & MFB_SET_UID) && req.uid == (uint32_t) -1) ||
            ((req.fields & MFB_SET_GID) && req.gid == (uint32_t) -1))
                return reply_error(c, h, -EINVAL, "4294967295 is not a valid uid or gid; leave the field out instead");
        k = lookup(c, h, req.handle, name_len > 0 ? req.name.bytes : NULL, true, &r);
        if (k <= 0)
                return k;
        k = check_owner(c, h, r, "change");
        if (k <= 0)
                return k;
        /*
         * chown(2)'s rules, not IPC_SET's: giving a region away would let
         * its creator keep using it while another uid, or none, pays for
         * it, and would fill another uid's quota with regions it never
         * asked for.
         */
        if ((req.fields & MFB_SET_UID) && req.uid != r->uid && c->peer.creds.uid != 0)
                return reply_error(c, h, -EPERM, "only root may give a region to another uid");
        if ((req.fields & MFB_SET_GID) && req.gid != r->gid && c->peer.creds.uid != 0 &&
            !access_in_group(&c->peer, req.gid))
                return reply_error(c, h, -EPERM, "uid %u is not in group %" PRIu32 ", so may not give the region to it",
                                   c->peer.creds.uid, req.gid);

        old_uid = r->uid;
        old_gid = r->gid;
        old_mode = r->mode;
        /* The one change that can fail goes first, so that a refused SET changes nothing. */
        if (req.fields & MFB_SET_UID) {
                enum mfb_wire_resource refused = MFB_RESOURCE_COUNT;

                k = region_set_owner(c->broker->regions, r, req.uid, &refused);
                if (k == -EDQUOT || k == -ENOSPC)
                        return reply_quota(c, h, k, req.uid, refused);
                if (k < 0)
                        return reply_failure(c, h, k, "changing the owner failed");
        }
        if (req.fields & MFB_SET_GID)
                r->gid = req.gid;
        if (req.fields & MFB_SET_MODE)
                r->mode = req.mode;
        region_touched(c->broker->regions, r, c->peer.creds.pid, REGION_CHANGED, region_now());

        log_debug("SET of pid %d uid %u: region %" PRIu64 " uid %u gid %u mode 0%o", (int) c->peer.creds.pid,
                  c->peer.creds.uid, r->handle, (unsigned) r->uid, (unsigned) r->gid, (unsigned) r->mode);
        k = reply_info(c, h, r);
        /* Waiters that could not read the region before may now, if anything changed. */
        if (r->uid != old_uid || r->gid != old_gid || r->mode != old_mode)
                wait_wake_readers(c->broker->waits, r);
        return k;
}

static int handle_wait(struct connection *c, const struct mfb_wire_header *h, const void *body) {
        struct mfb_wire_wait_request req;
        enum mfb_wire_resource refused = MFB_RESOURCE_COUNT;
        struct region *r;
        int name_len, k;

        memcpy(&req, body, sizeof(req));
        if (req.reserved != 0)
                return reply_error(c, h, -EBADMSG, "reserved field is not zero");
        name_len = mfb_wire_name_check(&req.name);
        if (name_len < 0)
                return reply_bad_name(c, h);
        if (name_len == 0)
                return reply_error(c, h, -EINVAL, "WAIT needs a name");
        if (req.access != MFB_ACCESS_READ)
                return reply_error(c, h, -EINVAL, "access must be 0x1 (read-only), not 0x%" PRIx32, req.access);

        /* A region the caller may not see is waited for as if it did not exist. */
        r = region_get_by_name(c->broker->regions, req.name.bytes);
        if (r && region_is_sealed(r) && access_may_see(&c->peer, r)) {
                k = check_access(c, h, r, MFB_ACCESS_READ, "open", " read-only");
                if (k <= 0)
                        return k;
                return reply_open(c, h, r, false);
        }
        if (req.timeout_ns == 0)
                return reply_error(c, h, -ETIMEDOUT, "no sealed region is named %s", req.name.bytes);

        k = wait_start(c->broker->waits, c, h, req.name.bytes, req.timeout_ns, &refused);
        if (k == -EDQUOT || k == -ENOSPC)
                return reply_quota(c, h, k, c->peer.creds.uid, refused);
        if (k < 0)
                return reply_failure(c, h, k, "waiting failed");
        log_debug("WAIT of pid %d uid %u: for %s, %s", (int) c->peer.creds.pid, c->peer.creds.uid, req.name.bytes,
                  req.timeout_ns == MFB_WAIT_FOREVER ? "without timeout" : "with a timeout");
        return 0;
}

/* Takes back the first n regions of a batch that could not be made whole, which this connection holds. */
static void batch_undo(struct connection *c, struct region **regions, size_t n) {
        /* Anonymous: the last release closes each. */
        for (size_t i = 0; i < n; i++)
                (void) connection_release(c, regions[i]->handle);
}

/*
 * CREATE_BATCH: as count CREATEs of anonymous regions, all or none, in one
 * reply with count fds: the cost of a request and of a reply is paid once.
 */
static int handle_create_batch(struct connection *c, const struct mfb_wire_header *h, const void *body) {
        struct region_table *t = c->broker->regions;
        struct mfb_wire_create_batch_request req;
        enum mfb_wire_resource refused = MFB_RESOURCE_COUNT;
        struct region *regions[MFB_WIRE_CREATE_BATCH_MAX];
        int fds[MFB_WIRE_CREATE_BATCH_MAX];
        struct {
                struct mfb_wire_header header;
                struct mfb_wire_create_batch_reply body;
                uint64_t handles[MFB_WIRE_CREATE_BATCH_MAX];
        } rec;
        uint32_t max_holds = c->broker->config->max_holds_per_connection;
        bool hugetlb;
        size_t n = 0;
        int k = 0;

        memcpy(&req, body, sizeof(req));
        if (req.count == 0 || req.count > MFB_WIRE_CREATE_BATCH_MAX)
                return reply_error(c, h, -EINVAL, "count %" PRIu32 " is not from 1 to %u", req.count,
                                   MFB_WIRE_CREATE_BATCH_MAX);
        if (req.flags & ~MFB_CREATE_HUGETLB)
                return reply_error(c, h, -EINVAL, "flags 0x%" PRIx32 " has bits other than 0x%x (MFB_CREATE_HUGETLB)",
                                   req.flags, MFB_CREATE_HUGETLB);
        if (req.mode & ~0777U)
                return reply_error(c, h, -EINVAL, "mode 0%" PRIo32 " has bits outside 0777", req.mode);
        if (req.reserved != 0)
                return reply_error(c, h, -EINVAL, "reserved is not zero");
        hugetlb = req.flags & MFB_CREATE_HUGETLB;
        if (hugetlb) {
                /* Room for all of them, or the batch fails halfway for want of pages. */
                if (req.size > UINT64_MAX / req.count)
                        return reply_error(c, h, -EFBIG, "%" PRIu32 " regions of %" PRIu64 " bytes", req.count,
                                           req.size);
                k = check_hugetlb(c, h, req.size * req.count);
                if (k <= 0)
                        return k;
        }
        if (c->n_references > max_holds || max_holds - c->n_references < req.count)
                return reply_error(c, h, -ENOSPC, "this connection holds %" PRIu32 " references, and the broker's "
                                   "limit is %" PRIu32, c->n_references, max_holds);

        for (; n < req.count; n++) {
                k = region_create(t, req.size, NULL, req.mode ?: MODE_DEFAULT, hugetlb, &c->peer.creds, &regions[n],
                                  &refused);
                if (k < 0)
                        break;
                k = persist_region_created(c->broker->persist, regions[n], &refused);
                if (k >= 0)
                        k = connection_hold(c, regions[n], true, &refused);
                if (k < 0) {
                        region_remove(t, regions[n]);
                        break;
                }
                /* The broker's own open file description, as for CREATE (see there); sent, not copied. */
                fds[n] = regions[n]->fd;
                rec.handles[n] = regions[n]->handle;
        }
        if (k < 0) {
                batch_undo(c, regions, n);
                switch (k) {
                case -EINVAL:
                        return reply_error(c, h, k, "size must not be 0");
                case -EFBIG:
                        return reply_error(c, h, k, "size %" PRIu64 " is above the broker's limit of %" PRIu64
                                           " bytes", req.size, region_table_max_region_size(t));
                case -ENOSPC:
                case -EDQUOT:
                        return reply_quota(c, h, k, c->peer.creds.uid, refused);
                default:
                        return reply_failure(c, h, k, "creating the regions failed");
                }
        }

        /* The work of count CREATEs: other uids have as many turns before this one's next. */
        scheduler_charge(c->broker->scheduler, &c->turn, req.count);
        log_debug("CREATE_BATCH of pid %d uid %u: %" PRIu32 " regions of %" PRIu64 " bytes from %" PRIu64,
                  (int) c->peer.creds.pid, c->peer.creds.uid, req.count, req.size, rec.handles[0]);
        rec.body = (struct mfb_wire_create_batch_reply) {
                .count = req.count,
                .access = MFB_ACCESS_READ | MFB_ACCESS_WRITE,
                .size = req.size,
        };
        k = offsetof(__typeof__(rec), handles) + req.count * sizeof(uint64_t);
        mfb_wire_header_init(&rec.header, h->opcode | MFB_WIRE_REPLY, h->cookie, 0, (uint16_t) req.count,
                             (uint32_t) k);
        k = connection_reply_borrowed_fds(c, &rec, (size_t) k, fds, req.count);
        /* Nothing sent: the reply had to wait, and there were no fds to copy for the queue. */
        if (k == -EMFILE || k == -ENFILE) {
                batch_undo(c, regions, req.count);
                return reply_failure(c, h, k, "creating the regions failed");
        }
        return k;
}

static int handle_limits(struct connection *c, const struct mfb_wire_header *h) {
        const struct quota *q = c->broker->quota;
        const struct quota_limits *limits = quota_limits(q);
        uid_t uid = c->peer.creds.uid;
        bool exempt = quota_is_exempt(q, uid);
        struct {
                struct mfb_wire_header header;
                struct mfb_wire_limits_reply body;
        } rec = { .body = { .uid = uid, .count = MFB_RESOURCE_COUNT } };

        for (unsigned i = 0; i < MFB_RESOURCE_COUNT; i++)
                rec.body.resources[i] = (struct mfb_wire_limit) {
                        .broker_max = limits->broker_max.n[i],
                        /* How much others hold is not every uid's business. */
                        .broker_used = exempt ? quota_used(q, i) : MFB_LIMIT_NONE,
                        .uid_max = exempt ? MFB_LIMIT_NONE : limits->uid_max.n[i],
                        .uid_used = quota_held(q, uid, i),
                        .uid_available = quota_available(q, uid, i),
                };
        /* Without a service manager nothing is kept across restarts. */
        if (!c->broker->persist)
                rec.body.resources[MFB_RESOURCE_KEPT] = (struct mfb_wire_limit) {
                        .broker_used = exempt ? 0 : MFB_LIMIT_NONE,
                        .uid_max = exempt ? MFB_LIMIT_NONE : 0,
                };
        return reply_record(c, h, &rec.header, sizeof(rec));
}

int request_handle(struct connection *c, const void *record, size_t len, size_t nfds) {
        const void *body = (const uint8_t *) record + sizeof(struct mfb_wire_header);
        struct mfb_wire_header h;
        int r;

        r = mfb_wire_request_check(record, len, &h);
        /* No header to trust, so no cookie to answer with. */
        if (r == -EBADMSG)
                return r;
        if (c->quota == CONNECTION_REFUSED) {
                r = reply_error(c, &h, -EDQUOT, "uid %u may open no more connections: it has %" PRIu64 ", its "
                                "limit per uid or its share of what is left", c->peer.creds.uid,
                                quota_held(c->broker->quota, c->peer.creds.uid, MFB_RESOURCE_CONNECTIONS));
                connection_close_when_sent(c);
                return r;
        }
        if (nfds > 0)
                return reply_error(c, &h, -EBADMSG, "file descriptors are not accepted from clients");
        if (r == -EMSGSIZE)
                return reply_error(c, &h, r, "body of %zu bytes, %s takes %d", len - sizeof(h),
                                   mfb_wire_opcode_name(h.opcode), mfb_wire_request_body_size(h.opcode));
        /* An unknown opcode (-EOPNOTSUPP) is answered below, HELLO or not. */
        if (r == 0 && h.opcode != MFB_OP_HELLO && !c->hello_done)
                return reply_error(c, &h, -EPROTO, "HELLO must come first");
        /* Only where success has nothing to say; any other reply would be lost to a client not waiting for it. */
        if ((h.flags & MFB_WIRE_FLAG_QUIET) && h.opcode != MFB_OP_RELEASE && h.opcode != MFB_OP_REMOVE)
                return reply_error(c, &h, -EINVAL, "%s cannot be quiet: only RELEASE and REMOVE can",
                                   mfb_wire_opcode_name(h.opcode));

        switch (h.opcode) {
        case MFB_OP_HELLO:
                return handle_hello(c, &h, body);
        case MFB_OP_CREATE:
                return handle_create(c, &h, body);
        case MFB_OP_OPEN:
                return handle_open(c, &h, body);
        case MFB_OP_SEAL:
                return handle_seal(c, &h, body);
        case MFB_OP_STAT:
                return handle_stat(c, &h, body);
        case MFB_OP_LIST:
                return handle_list(c, &h, body);
        case MFB_OP_RELEASE:
                return handle_release(c, &h, body);
        case MFB_OP_REMOVE:
                return handle_remove(c, &h, body);
        case MFB_OP_SET:
                return handle_set(c, &h, body);
        case MFB_OP_WAIT:
                return handle_wait(c, &h, body);
        case MFB_OP_LIMITS:
                return handle_limits(c, &h);
        case MFB_OP_CREATE_BATCH:
                return handle_create_batch(c, &h, body);
        default:
                return reply_error(c, &h, -EOPNOTSUPP, "unknown opcode 0x%x", (unsigned) h.opcode);
        }
}
