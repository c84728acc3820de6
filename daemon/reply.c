/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "broker.h"
#include "codec.h"
#include "connection.h"
#include "log.h"
#include "macro.h"
#include "persist.h"
#include "quota.h"
#include "region.h"
#include "reply.h"

int reply_record(struct connection *c, const struct mfb_wire_header *request, struct mfb_wire_header *record,
                 size_t len) {
        mfb_wire_header_init(record, request->opcode | MFB_WIRE_REPLY, request->cookie, 0, 0, (uint32_t) len);
        return connection_reply(c, record, len);
}

int reply_error(struct connection *c, const struct mfb_wire_header *request, int error, const char *format, ...) {
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
                        (int) c->peer.creds.pid, c->peer.creds.uid, (int) len, rec.message);
        mfb_wire_header_init(&rec.header, request->opcode | MFB_WIRE_REPLY, request->cookie, error, 0,
                             (uint32_t) (sizeof(rec.header) + len));
        return connection_reply(c, &rec, sizeof(rec.header) + len);
}

int reply_quota(struct connection *c, const struct mfb_wire_header *request, int error, uid_t uid,
                enum mfb_wire_resource resource) {
        const struct quota *q = c->broker->quota;
        const char *what = quota_resource_name(resource);

        /* The kernel's own -ENOSPC, say, with no resource of ours to blame. */
        if ((unsigned) resource >= MFB_RESOURCE_COUNT)
                return reply_failure(c, request, error, "the kernel refused");
        if (error == -ENOSPC)
                return reply_error(c, request, error, "the broker's limit of %" PRIu64 " %s is reached",
                                   quota_limits(q)->broker_max.n[resource], what);
        return reply_error(c, request, error,
                           "uid %u holds %" PRIu64 " %s and may take only %" PRIu64 " more: its limit per uid, "
                           "or its share of what is left", (unsigned) uid, quota_held(q, uid, resource), what,
                           quota_available(q, uid, resource));
}

int reply_failure(struct connection *c, const struct mfb_wire_header *request, int error, const char *what) {
        if (error == -EMFILE || error == -ENFILE)
                return reply_error(c, request, -ENOSPC, "the broker is out of file descriptors");
        if (error == -ENOMEM)
                return reply_error(c, request, error, "the broker is out of memory");
        return reply_error(c, request, error, "%s: %s", what, strerror(-error));
}

int reply_empty(struct connection *c, const struct mfb_wire_header *request) {
        struct mfb_wire_header rec;

        /* Asked to answer only a failure: nothing written, nothing for the client to read. */
        if (request->flags & MFB_WIRE_FLAG_QUIET)
                return 0;
        return reply_record(c, request, &rec, sizeof(rec));
}

int reply_info(struct connection *c, const struct mfb_wire_header *request, const struct region *r) {
        struct {
                struct mfb_wire_header header;
                struct mfb_wire_region_info body;
        } rec;

        region_info(r, &rec.body);
        return reply_record(c, request, &rec.header, sizeof(rec));
}

/* Fills a region reply record, header aside. */
static void region_reply_init(const struct region *r, uint32_t access, struct mfb_wire_region_reply *ret) {
        *ret = (struct mfb_wire_region_reply) { .access = access };
        region_info(r, &ret->info);
}

int reply_region_consume_fd(struct connection *c, const struct mfb_wire_header *request, const struct region *r,
                            uint32_t access, int fd) {
        struct {
                struct mfb_wire_header header;
                struct mfb_wire_region_reply body;
        } rec;

        region_reply_init(r, access, &rec.body);
        mfb_wire_header_init(&rec.header, request->opcode | MFB_WIRE_REPLY, request->cookie, 0, 1, sizeof(rec));
        /* Handed over, not copied: a queued reply then needs no second fd, which the broker may not have. */
        return connection_reply_consume_fd(c, &rec, sizeof(rec), fd);
}

int reply_unless_hold_allowed(struct connection *c, const struct mfb_wire_header *request) {
        uint32_t max = c->broker->config->max_holds_per_connection;

        if (c->n_references < max)
                return 1;
        return reply_error(c, request, -ENOSPC, "this connection holds %" PRIu32 " references, the broker's limit",
                           max);
}

int reply_open(struct connection *c, const struct mfb_wire_header *request, struct region *r, bool writable) {
        _cleanup_(closep) int fd = -1;
        uint32_t access = MFB_ACCESS_READ | (writable ? MFB_ACCESS_WRITE : 0);
        enum mfb_wire_resource refused = MFB_RESOURCE_COUNT;
        int k;

        k = reply_unless_hold_allowed(c, request);
        if (k <= 0)
                return k;
        fd = region_open(r, writable);
        if (fd < 0)
                return reply_failure(c, request, fd, "opening the region failed");
        k = connection_hold(c, r, writable, &refused);
        if (k == -EDQUOT || k == -ENOSPC)
                return reply_quota(c, request, k, c->peer.creds.uid, refused);
        if (k < 0)
                return reply_failure(c, request, k, "holding the region failed");
        region_touched(c->broker->regions, r, c->peer.creds.pid, REGION_ATTACHED, region_now());

        log_debug("%s of pid %d uid %u: region %" PRIu64 " %s", mfb_wire_opcode_name(request->opcode),
                  (int) c->peer.creds.pid, c->peer.creds.uid, r->handle, writable ? "read-write" : "read-only");
        return reply_region_consume_fd(c, request, r, access, TAKE_FD(fd));
}
