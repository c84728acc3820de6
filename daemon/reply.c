/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "codec.h"
#include "connection.h"
#include "region.h"
#include "reply.h"

int reply_record(struct connection *c, const struct mfb_wire_header *request, struct mfb_wire_header *record,
                 size_t len) {
        mfb_wire_header_init(record, request->opcode | MFB_WIRE_REPLY, request->cookie, 0, 0, (uint32_t) len);
        return connection_send(c, record, len);
}

int reply_error(struct connection *c, const struct mfb_wire_header *request, int error, const char *message) {
        struct {
                struct mfb_wire_header header;
                char message[MFB_WIRE_ERROR_MESSAGE_MAX];
        } rec;
        size_t len = strnlen(message, sizeof(rec.message));

        memcpy(rec.message, message, len);
        mfb_wire_header_init(&rec.header, request->opcode | MFB_WIRE_REPLY, request->cookie, error, 0,
                             (uint32_t) (sizeof(rec.header) + len));
        return connection_send(c, &rec, sizeof(rec.header) + len);
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

int reply_region_consume_fd(struct connection *c, const struct mfb_wire_header *request, const struct region *r,
                            uint32_t access, int fd) {
        struct {
                struct mfb_wire_header header;
                struct mfb_wire_region_reply body;
        } rec;

        rec.body = (struct mfb_wire_region_reply) { .access = access };
        region_info(r, &rec.body.info);
        mfb_wire_header_init(&rec.header, request->opcode | MFB_WIRE_REPLY, request->cookie, 0, 1, sizeof(rec));
        /* Handed over, not copied: a queued reply then needs no second fd, which the broker may not have. */
        return connection_send_consume_fds(c, &rec, sizeof(rec), &fd, 1);
}

int reply_record_consume_fd(struct connection *c, const struct mfb_wire_header *request,
                            struct mfb_wire_header *record, size_t len, int fd) {
        mfb_wire_header_init(record, request->opcode | MFB_WIRE_REPLY, request->cookie, 0, 1, (uint32_t) len);
        return connection_send_consume_fds(c, record, len, &fd, 1);
}
