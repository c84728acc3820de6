/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Reply records: a reply to request (a copy of the request's header, for
 * its opcode and cookie) built and sent on a connection. Each function
 * sends exactly one record and returns what sending returned: 0, or
 * -errno when the connection failed (the transport ends it; see
 * connection.h). Deciding what to answer is request.c's.
 */

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

struct connection;
struct region;

/* Sends record (len bytes, header first) as the reply, filling in its header; it carries no fd. */
int reply_record(struct connection *c, const struct mfb_wire_header *request, struct mfb_wire_header *record,
                 size_t len);

/*
 * Replies with status error (a negative errno) and message (borrowed), a
 * text for a human, cut at MFB_WIRE_ERROR_MESSAGE_MAX bytes.
 */
int reply_error(struct connection *c, const struct mfb_wire_header *request, int error, const char *message);

/* A reply without a body; none at all to a request that asked for quiet (MFB_WIRE_FLAG_QUIET). */
int reply_empty(struct connection *c, const struct mfb_wire_header *request);

/* A region info reply. */
int reply_info(struct connection *c, const struct mfb_wire_header *request, const struct region *r);

/* A region reply granting access with fd attached, which it takes (closed once sent, or on failure). */
int reply_region_consume_fd(struct connection *c, const struct mfb_wire_header *request, const struct region *r,
                            uint32_t access, int fd);

/*
 * As reply_record(), with fd attached, which it takes (closed once sent,
 * or at once on failure).
 */
int reply_record_consume_fd(struct connection *c, const struct mfb_wire_header *request,
                            struct mfb_wire_header *record, size_t len, int fd);
