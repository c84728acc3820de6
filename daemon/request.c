/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "broker.h"
#include "codec.h"
#include "connection.h"
#include "log.h"
#include "macro.h"
#include "region.h"
#include "request.h"
#include "wire.h"

#define MODE_DEFAULT 0600U

/*
 * Every handler replies exactly once, an error reply included, and returns
 * what sending the reply returned: 0, or -errno to drop the connection.
 * Helpers that may reply early return 1 when the handler should go on.
 */

/* Sends record (len bytes, header first) as the reply to request, filling in its header. */
static int reply(struct connection *c, const struct mfb_wire_header *request, struct mfb_wire_header *record,
                 size_t len, int fd) {
        mfb_wire_header_init(record, request->opcode | MFB_WIRE_REPLY, request->cookie, 0, fd >= 0 ? 1 : 0,
                             (uint32_t) len);
        return connection_reply(c, record, len, fd);
}

static int reply_error(struct connection *c, const struct mfb_wire_header *request, int error,
                       const char *format, ...) __attribute__((format(printf, 4, 5)));

/* Replies with status error (a negative errno) and a message for a human, cut at MFB_WIRE_ERROR_MESSAGE_MAX bytes. */
static int reply_error(struct connection *c, const struct mfb_wire_header *request, int error,
                       const char *format, ...) {
        struct {
                struct mfb_wire_header header;
                char message[MFB_WIRE_ERROR_MESSAGE_MAX + 1];
        } rec;
        size_t len;
        va_list ap;
        int n;

        va_start(ap, format);
        n = vsnprintf(rec.message, sizeof(rec.message), format, ap);
        va_end(ap);
        len = n < 0 ? 0 : (size_t) n < MFB_WIRE_ERROR_MESSAGE_MAX ? (size_t) n : MFB_WIRE_ERROR_MESSAGE_MAX;

        log_debug_errno(error, "%s of pid %d uid %u refused: %.*s (%m)", mfb_wire_opcode_name(request->opcode),
                        (int) c->creds.pid, c->creds.uid, (int) len, rec.message);
        mfb_wire_header_init(&rec.header, request->opcode | MFB_WIRE_REPLY, request->cookie, error, 0,
                             (uint32_t) (sizeof(rec.header) + len));
        return connection_reply(c, &rec, sizeof(rec.header) + len, -1);
}

/* The errors of the kernel or of memory that PROTOCOL.md has no specific answer for. */
static int reply_failure(struct connection *c, const struct mfb_wire_header *request, int error, const char *what) {
        if (error == -EMFILE || error == -ENFILE)
                return reply_error(c, request, -ENOSPC, "the broker is out of file descriptors");
        if (error == -ENOMEM)
                return reply_error(c, request, error, "the broker is out of memory");
        return reply_error(c, request, error, "%s: %s", what, strerror(-error));
}

static int reply_bad_name(struct connection *c, const struct mfb_wire_header *request) {
        return reply_error(c, request, -EBADMSG,
                           "bad name field: 1 to %u printable ASCII bytes without spaces, then zero bytes",
                           MFB_WIRE_NAME_MAX);
}

static int reply_info(struct connection *c, const struct mfb_wire_header *request, const struct region *r) {
        struct {
                struct mfb_wire_header header;
                struct mfb_wire_region_info body;
        } rec;

        region_info(r, &rec.body);
        return reply(c, request, &rec.header, sizeof(rec), -1);
}

/* fd is borrowed. */
static int reply_region(struct connection *c, const struct mfb_wire_header *request, const struct region *r,
                        uint32_t access, int fd) {
        struct {
                struct mfb_wire_header header;
                struct mfb_wire_region_reply body;
        } rec = {};

        rec.body.access = access;
        region_info(r, &rec.body.info);
        return reply(c, request, &rec.header, sizeof(rec), fd);
}

static int reply_empty(struct connection *c, const struct mfb_wire_header *request) {
        struct mfb_wire_header rec;

        return reply(c, request, &rec, sizeof(rec), -1);
}

/*
 * Finds the region a request names by handle or by name (name NULL when
 * the name field is empty): exactly one must be given. Removed regions are
 * found by handle only if removed_ok. Returns 1 and the region, or replies
 * with the error.
 */
static int lookup(struct connection *c, const struct mfb_wire_header *request, uint64_t handle, const char *name,
                  bool removed_ok, struct region **ret) {
        const struct region_table *t = c->broker->regions;
        struct region *r;

        if ((handle != 0) == (name != NULL))
                return reply_error(c, request, -EINVAL, "give exactly one of a handle and a name");
        if (name) {
                r = region_get_by_name(t, name);
                if (!r)
                        return reply_error(c, request, -ENOENT, "no region is named %s", name);
        } else {
                r = region_get_by_handle(t, handle);
                if (!r)
                        return reply_error(c, request, -ENOENT, "no region has handle %" PRIu64, handle);
                if (r->removed && !removed_ok)
                        return reply_error(c, request, -ENOENT, "region %" PRIu64 " was removed", handle);
        }
        *ret = r;
        return 1;
}

/* Returns 1 if the connection may hold one more reference, or replies with the error. */
static int check_hold_limit(struct connection *c, const struct mfb_wire_header *request) {
        uint32_t max = c->broker->config->max_holds_per_connection;

        if (c->n_references < max)
                return 1;
        return reply_error(c, request, -ENOSPC, "this connection holds %" PRIu32 " references, the broker's limit",
                           max);
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
                .capabilities = region_table_capabilities(t),
                .region_size_max = region_table_max_region_size(t),
                .record_max = MFB_WIRE_RECORD_MAX,
                .name_max = MFB_WIRE_NAME_MAX,
                .fds_per_record_max = MFB_WIRE_FDS_PER_RECORD_MAX,
                .requests_in_flight_max = MFB_WIRE_REQUESTS_IN_FLIGHT_MAX,
                .list_entries_max = MFB_WIRE_LIST_ENTRIES_MAX,
        };
        log_debug("HELLO of pid %d uid %u: version %u", (int) c->creds.pid, c->creds.uid, MFB_WIRE_VERSION);
        return reply(c, h, &rec.header, sizeof(rec), -1);
}

static int handle_create(struct connection *c, const struct mfb_wire_header *h, const void *body) {
        struct region_table *t = c->broker->regions;
        struct mfb_wire_create_request req;
        struct region *r;
        int name_len, k;

        memcpy(&req, body, sizeof(req));
        name_len = mfb_wire_name_check(&req.name);
        if (name_len < 0)
                return reply_bad_name(c, h);
        if (req.flags != 0)
                return reply_error(c, h, -EINVAL, "flags must be 0, not 0x%" PRIx32, req.flags);
        if (req.mode & ~0777U)
                return reply_error(c, h, -EINVAL, "mode 0%" PRIo32 " has bits outside 0777", req.mode);
        k = check_hold_limit(c, h);
        if (k <= 0)
                return k;

        k = region_create(t, req.size, name_len > 0 ? req.name.bytes : NULL, req.mode ?: MODE_DEFAULT,
                          &c->creds, &r);
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
                return reply_error(c, h, k, "the broker's limit of %" PRIu32 " regions is reached",
                                   region_table_max_regions(t));
        default:
                return reply_failure(c, h, k, "creating the region failed");
        }

        k = connection_hold(c, r, true);
        if (k < 0) {
                region_remove(t, r);
                return reply_failure(c, h, k, "holding the region failed");
        }

        log_debug("CREATE of pid %d uid %u: region %" PRIu64 ", %" PRIu64 " bytes, name %s, mode 0%o",
                  (int) c->creds.pid, c->creds.uid, r->handle, r->size, r->name ?: "(none)", (unsigned) r->mode);
        return reply_region(c, h, r, MFB_ACCESS_READ | MFB_ACCESS_WRITE, r->fd);
}

static int handle_open(struct connection *c, const struct mfb_wire_header *h, const void *body) {
        _cleanup_(closep) int read_only_fd = -1;
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
        if (writable) {
                int seals = region_get_seals(r);

                if (seals < 0)
                        return reply_failure(c, h, seals, "reading the region's seals failed");
                if (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE))
                        return reply_error(c, h, -EPERM, "region is sealed");
        }
        k = check_hold_limit(c, h);
        if (k <= 0)
                return k;

        if (!writable) {
                read_only_fd = region_open_read_only(r);
                if (read_only_fd < 0)
                        return reply_failure(c, h, read_only_fd, "opening the region failed");
        }
        k = connection_hold(c, r, writable);
        if (k < 0)
                return reply_failure(c, h, k, "holding the region failed");
        r->attach_time = region_now();
        r->last_pid = c->creds.pid;

        log_debug("OPEN of pid %d uid %u: region %" PRIu64 " %s", (int) c->creds.pid, c->creds.uid, r->handle,
                  writable ? "read-write" : "read-only");
        return reply_region(c, h, r, req.access, writable ? r->fd : read_only_fd);
}

static int handle_seal(struct connection *c, const struct mfb_wire_header *h, const void *body) {
        struct mfb_wire_seal_request req;
        struct hold *hold;
        struct region *r;
        int k;

        memcpy(&req, body, sizeof(req));
        if (req.reserved != 0)
                return reply_error(c, h, -EBADMSG, "reserved field is not zero");
        if (req.seals != F_SEAL_WRITE)
                return reply_error(c, h, -EINVAL, "seals must be 0x%x (F_SEAL_WRITE), not 0x%" PRIx32,
                                   (unsigned) F_SEAL_WRITE, req.seals);
        hold = connection_get_hold(c, req.handle);
        if (!hold)
                return reply_error(c, h, -ENOENT, "this connection does not hold region %" PRIu64, req.handle);
        if (hold->writable == 0)
                return reply_error(c, h, -EPERM, "this connection holds region %" PRIu64 " read-only", req.handle);
        r = hold->region;

        k = region_seal_write(r);
        if (k == -EBUSY)
                return reply_error(c, h, k, "a writable mapping of the region still exists; unmap it first");
        if (k == -EPERM)
                return reply_error(c, h, k, "the region's seals were sealed (F_SEAL_SEAL)");
        if (k < 0)
                return reply_failure(c, h, k, "sealing the region failed");
        r->change_time = region_now();
        r->last_pid = c->creds.pid;

        log_debug("SEAL of pid %d uid %u: region %" PRIu64, (int) c->creds.pid, c->creds.uid, r->handle);
        return reply_info(c, h, r);
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

        log_debug("STAT of pid %d uid %u: region %" PRIu64, (int) c->creds.pid, c->creds.uid, r->handle);
        return reply_info(c, h, r);
}

static int handle_list(struct connection *c, const struct mfb_wire_header *h, const void *body) {
        struct region_table *t = c->broker->regions;
        struct mfb_wire_list_request req;
        struct {
                struct mfb_wire_header header;
                struct mfb_wire_list_reply body;
                struct mfb_wire_region_info entries[MFB_WIRE_LIST_ENTRIES_MAX];
        } rec;
        struct region *r;
        uint32_t n = 0;

        memcpy(&req, body, sizeof(req));
        for (r = region_next(t, req.after_handle); r && n < MFB_WIRE_LIST_ENTRIES_MAX; r = region_next(t, r->handle))
                region_info(r, &rec.entries[n++]);
        rec.body = (struct mfb_wire_list_reply) { .count = n, .more = r != NULL };

        log_debug("LIST of pid %d uid %u: %" PRIu32 " regions after %" PRIu64 "%s", (int) c->creds.pid,
                  c->creds.uid, n, req.after_handle, r ? ", more to come" : "");
        return reply(c, h, &rec.header, offsetof(__typeof__(rec), entries) + n * sizeof(rec.entries[0]), -1);
}

static int handle_release(struct connection *c, const struct mfb_wire_header *h, const void *body) {
        struct mfb_wire_release_request req;

        memcpy(&req, body, sizeof(req));
        if (connection_release(c, req.handle) < 0)
                return reply_error(c, h, -ENOENT, "this connection holds no reference to region %" PRIu64,
                                   req.handle);

        log_debug("RELEASE of pid %d uid %u: region %" PRIu64, (int) c->creds.pid, c->creds.uid, req.handle);
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

        log_debug("REMOVE of pid %d uid %u: region %" PRIu64, (int) c->creds.pid, c->creds.uid, r->handle);
        region_remove(c->broker->regions, r);
        return reply_empty(c, h);
}

int request_handle(struct connection *c, const void *record, size_t len, size_t nfds) {
        const void *body = (const uint8_t *) record + sizeof(struct mfb_wire_header);
        struct mfb_wire_header h;
        int r;

        r = mfb_wire_request_check(record, len, &h);
        /* No header to trust, so no cookie to answer with. */
        if (r == -EBADMSG)
                return r;
        if (nfds > 0)
                return reply_error(c, &h, -EBADMSG, "file descriptors are not accepted from clients");
        if (r == -EMSGSIZE)
                return reply_error(c, &h, r, "body of %zu bytes, %s takes %d", len - sizeof(h),
                                   mfb_wire_opcode_name(h.opcode), mfb_wire_request_body_size(h.opcode));
        /* An unknown opcode (-EOPNOTSUPP) is answered below, HELLO or not. */
        if (r == 0 && h.opcode != MFB_OP_HELLO && !c->hello_done)
                return reply_error(c, &h, -EPROTO, "HELLO must come first");

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
        default:
                return reply_error(c, &h, -EOPNOTSUPP, "unknown opcode 0x%x", (unsigned) h.opcode);
        }
}
