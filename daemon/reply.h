/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Answering requests: reply records, error replies, and giving a client a
 * reference to a region with its fd (the answer to OPEN and WAIT).
 *
 * Every function here sends exactly one reply to request, a copy of the
 * request's header (for its opcode and cookie), and returns what sending
 * it returned: 0, or -errno when the connection is broken and must be
 * dropped. The ones that may reply early return 1 when nothing was sent.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "wire.h"

struct connection;
struct region;

/* Sends record (len bytes, header first) as the reply, filling in its header; it carries no fd. */
int reply_record(struct connection *c, const struct mfb_wire_header *request, struct mfb_wire_header *record,
                 size_t len);

/* Replies with status error (a negative errno) and a message for a human, cut at MFB_WIRE_ERROR_MESSAGE_MAX bytes. */
int reply_error(struct connection *c, const struct mfb_wire_header *request, int error, const char *format, ...)
        __attribute__((format(printf, 4, 5)));

/*
 * Replies with a kernel or memory error PROTOCOL.md has no specific answer
 * for: out of fds becomes -ENOSPC; what says what failed.
 */
int reply_failure(struct connection *c, const struct mfb_wire_header *request, int error, const char *what);

/*
 * Replies error, -EDQUOT or -ENOSPC from quota_charge(), saying which
 * resource of uid's refused (MFB_RESOURCE_COUNT when none did: the kernel's
 * own error then).
 */
int reply_quota(struct connection *c, const struct mfb_wire_header *request, int error, uid_t uid,
                enum mfb_wire_resource resource);

/* A reply without a body; none at all to a request that asked for quiet (MFB_WIRE_FLAG_QUIET). */
int reply_empty(struct connection *c, const struct mfb_wire_header *request);

/* A region info reply. */
int reply_info(struct connection *c, const struct mfb_wire_header *request, const struct region *r);

/* A region reply granting access with fd attached, which it takes (closed once sent, or on failure). */
int reply_region_consume_fd(struct connection *c, const struct mfb_wire_header *request, const struct region *r,
                            uint32_t access, int fd);

/* Returns 1 when c may hold one more reference, or replies -ENOSPC. */
int reply_unless_hold_allowed(struct connection *c, const struct mfb_wire_header *request);

/*
 * Answers an OPEN or a WAIT whose checks passed: gives c one more
 * reference to r and replies with a fresh open of r, read-write if
 * writable, else read-only (region_open()). Errors (the hold limit, out
 * of fds or memory) are replies too.
 */
int reply_open(struct connection *c, const struct mfb_wire_header *request, struct region *r, bool writable);
