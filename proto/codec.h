/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Validation and construction of wire records (proto/wire.h), shared by the
 * daemon and the client library so that both sides agree on what is valid.
 * Nothing here does I/O or allocates.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "name.h"  /* mfb_name_check(), which the names below follow */
#include "wire.h"

/*
 * Fills a wire name from a C string (NULL or "" gives the empty name, which
 * means "anonymous" or "by handle"). Returns 0 or the errors of
 * mfb_name_check(); ret_name is untouched on failure.
 */
int mfb_wire_name_set(struct mfb_wire_name *ret_name, const char *name);

/*
 * Checks a received wire name: valid bytes, NUL-terminated, zero padding.
 * Returns its length (0 for the empty name) or -EBADMSG.
 */
int mfb_wire_name_check(const struct mfb_wire_name *name);

/* Fills a header. size is the whole record's size, header included. */
void mfb_wire_header_init(struct mfb_wire_header *ret_header, uint16_t opcode, uint64_t cookie,
                          int32_t status, uint16_t nfds, uint32_t size);

/* One row of MFB_WIRE_REQUESTS (wire.h). */
struct mfb_wire_request_info {
        const char *name;       /* "CREATE" */
        int request_body;       /* exact bytes of the request's body */
        int reply_body;         /* exact bytes of a success reply's body; -1 when it varies (LIST, CREATE_BATCH) */
        unsigned reply_fds;     /* fds of a success reply, when fixed */
        bool quiet;             /* may carry MFB_WIRE_FLAG_QUIET */
        bool after_hello;       /* only after a successful HELLO */
};

/*
 * What the protocol says of opcode (a request's, or a reply's with
 * MFB_WIRE_REPLY set): a static row, or NULL for an opcode that is not
 * part of this protocol version.
 */
const struct mfb_wire_request_info *mfb_wire_request_info(uint16_t opcode);

/*
 * The exact body size a request with this opcode must have, or -EOPNOTSUPP
 * for an opcode that is not a request of this protocol version.
 */
int mfb_wire_request_body_size(uint16_t opcode);

/*
 * Checks a received request record of len bytes: a well-formed header (size
 * matches len; flags only MFB_WIRE_FLAG_QUIET, MFB_WIRE_FLAG_RELEASES and
 * MFB_WIRE_FLAG_QUEUED; status, nfds and reserved zero) whose body size fits
 * its opcode, followed by 1 to MFB_WIRE_RELEASES_CARRIED_MAX handles with
 * MFB_WIRE_FLAG_RELEASES and by nothing without. On success copies the header
 * to ret_header and returns 0. Errors: -EBADMSG when no trustworthy header
 * could be read (ret_header untouched); -EOPNOTSUPP for an unknown opcode and
 * -EMSGSIZE for a body of the wrong size, or carried handles of the wrong size,
 * in both cases with ret_header filled so that the caller can answer with the
 * request's cookie.
 */
int mfb_wire_request_check(const void *record, size_t len, struct mfb_wire_header *ret_header);

/*
 * The handles a request record that passed mfb_wire_request_check() carries
 * to release (MFB_WIRE_FLAG_RELEASES): returns their number, 0 without the
 * flag, and points *ret at the first, inside record: u64 after u64, to be
 * read with memcpy() whatever the alignment of record.
 */
size_t mfb_wire_request_releases(const void *record, const struct mfb_wire_header *header, const void **ret);

/*
 * Checks a received reply record of len bytes that came with nfds file
 * descriptors: the reply bit, size matching len, nfds matching, and a body
 * that fits its opcode (any text of at most MFB_WIRE_ERROR_MESSAGE_MAX bytes
 * for an error; count entries for LIST). Returns 0 and fills ret_header,
 * or -EBADMSG.
 */
int mfb_wire_reply_check(const void *record, size_t len, size_t nfds, struct mfb_wire_header *ret_header);

/* Human-readable opcode name for logs ("CREATE"), "UNKNOWN" for others. */
const char *mfb_wire_opcode_name(uint16_t opcode);
