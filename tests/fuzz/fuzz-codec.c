/* SPDX-License-Identifier: MIT */
/*
 * The record decoder on arbitrary bytes: mfb_wire_request_check(),
 * mfb_wire_reply_check() and mfb_wire_name_check(), each against what
 * PROTOCOL.md says a valid record or name is.
 *
 * Input: one byte of fd count (for the reply check), then the record. The
 * first 256 bytes of the record are also checked as a name field.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "fuzz-check.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HEADER_SIZE sizeof(struct mfb_wire_header)

/* Any byte pattern the decoder would not write: shows that a header was left untouched. */
#define POISON 0xa5

static bool poisoned(const struct mfb_wire_header *h) {
        const uint8_t *p = (const uint8_t *) h;

        for (size_t i = 0; i < sizeof(*h); i++)
                if (p[i] != POISON)
                        return false;
        return true;
}

/* Whether the header fields a request must have zero are zero, and size is len: a header to trust. */
static bool request_header_trustworthy(const struct mfb_wire_header *h, size_t len) {
        uint16_t flags = MFB_WIRE_FLAG_QUIET | MFB_WIRE_FLAG_RELEASES | MFB_WIRE_FLAG_QUEUED;

        return h->size == len && (h->flags & ~flags) == 0 && h->status == 0 && h->nfds == 0 && h->reserved == 0;
}

static void fuzz_request(const uint8_t *record, size_t len) {
        struct mfb_wire_header h, in;
        size_t carried = 0;
        bool carried_ok;
        int r, body;

        memset(&h, POISON, sizeof(h));
        r = mfb_wire_request_check(record, len, &h);
        if (len < HEADER_SIZE || len > MFB_WIRE_RECORD_MAX) {
                check(r == -EBADMSG, "a request of impossible length was not refused -EBADMSG");
                check(poisoned(&h), "a refused request filled the header");
                return;
        }
        memcpy(&in, record, sizeof(in));
        if (!request_header_trustworthy(&in, len)) {
                check(r == -EBADMSG, "a request with a bad header was not refused -EBADMSG");
                check(poisoned(&h), "a request refused -EBADMSG filled the header");
                return;
        }
        /* From here on the caller answers with the request's cookie, so the header is the record's. */
        check(memcmp(&h, &in, sizeof(h)) == 0, "the header returned is not the record's");
        body = mfb_wire_request_body_size(in.opcode);
        /* The bytes after the body: with MFB_WIRE_FLAG_RELEASES, 1 to MFB_WIRE_RELEASES_CARRIED_MAX handles. */
        if (body >= 0 && len - HEADER_SIZE >= (size_t) body)
                carried = len - HEADER_SIZE - (size_t) body;
        carried_ok = body >= 0 && len - HEADER_SIZE >= (size_t) body &&
                     ((in.flags & MFB_WIRE_FLAG_RELEASES) ?
                              carried > 0 && carried % 8 == 0 && carried / 8 <= MFB_WIRE_RELEASES_CARRIED_MAX :
                              carried == 0);
        switch (r) {
        case 0:
                check(carried_ok, "a request passed with a wrong body size");
                check(in.opcode != 0 && !(in.opcode & MFB_WIRE_REPLY), "a request passed with a reply opcode");
                check(strcmp(mfb_wire_opcode_name(in.opcode), "UNKNOWN") != 0, "a request passed with no name");
                {
                        const void *at = NULL;
                        size_t n = mfb_wire_request_releases(record, &h, &at);

                        check(n == carried / 8, "the carried handles miscounted");
                        check(n == 0 || at == record + HEADER_SIZE + body, "the carried handles misplaced");
                }
                break;
        case -EOPNOTSUPP:
                check(body == -EOPNOTSUPP, "a known opcode was refused -EOPNOTSUPP");
                break;
        case -EMSGSIZE:
                check(body >= 0 && !carried_ok, "a body of the right size was refused");
                break;
        default:
                fuzz_fail("mfb_wire_request_check() returned an error it does not document");
        }
}

/* The body and fds a successful reply to opcode has, by PROTOCOL.md; false for opcodes with no fixed shape. */
static bool reply_shape(uint16_t opcode, size_t *ret_body, size_t *ret_nfds) {
        switch (opcode) {
        case MFB_WIRE_OP_HELLO:
                *ret_body = sizeof(struct mfb_wire_hello_reply);
                *ret_nfds = 0;
                return true;
        case MFB_WIRE_OP_CREATE:
        case MFB_WIRE_OP_OPEN:
        case MFB_WIRE_OP_WAIT:
                *ret_body = sizeof(struct mfb_wire_region_reply);
                *ret_nfds = 1;
                return true;
        case MFB_WIRE_OP_SEAL:
        case MFB_WIRE_OP_STAT:
        case MFB_WIRE_OP_SET:
                *ret_body = sizeof(struct mfb_wire_region_info);
                *ret_nfds = 0;
                return true;
        case MFB_WIRE_OP_RELEASE:
        case MFB_WIRE_OP_REMOVE:
        case MFB_WIRE_OP_SYNC:
                *ret_body = 0;
                *ret_nfds = 0;
                return true;
        case MFB_WIRE_OP_RELEASE_QUEUE:
                /* slots, reserved; the page */
                *ret_body = 8;
                *ret_nfds = 1;
                return true;
        case MFB_WIRE_OP_LIMITS:
                *ret_body = sizeof(struct mfb_wire_limits_reply);
                *ret_nfds = 0;
                return true;
        case MFB_WIRE_OP_NOTIFIER:
                /* access, reserved, seq; the control page */
                *ret_body = 16;
                *ret_nfds = 1;
                return true;
        case MFB_WIRE_OP_NOTIFY_WATCH:
                /* seq; the pipe's read end */
                *ret_body = 8;
                *ret_nfds = 1;
                return true;
        case MFB_WIRE_OP_NOTIFY:
                /* seq */
                *ret_body = 8;
                *ret_nfds = 0;
                return true;
        case MFB_WIRE_OP_USAGE:
                /* count, more, next_uid, reserved; 16 rows of a LIMITS reply's 328 bytes, whatever count says */
                *ret_body = 16 + 16 * 328;
                *ret_nfds = 0;
                return true;
        case MFB_WIRE_OP_ALLOCATED:
                /* count, more, next_after; 128 entries of handle and allocated bytes, whatever count says */
                *ret_body = 16 + 128 * 16;
                *ret_nfds = 0;
                return true;
        default:
                return false;
        }
}

/* Whether a reply is valid by PROTOCOL.md, written from the document rather than from codec.c. */
static bool reply_valid(const uint8_t *record, size_t len, size_t nfds) {
        struct mfb_wire_header h;
        size_t body, want_body, want_nfds;
        uint16_t opcode;

        if (len < HEADER_SIZE || len > MFB_WIRE_RECORD_MAX)
                return false;
        memcpy(&h, record, sizeof(h));
        if (h.size != len || h.nfds != nfds || h.flags != 0 || h.reserved != 0 || !(h.opcode & MFB_WIRE_REPLY) ||
            h.status > 0 || h.status < -4095)
                return false;
        opcode = h.opcode & ~MFB_WIRE_REPLY;
        body = len - HEADER_SIZE;
        if (h.status < 0)
                return nfds == 0 && body <= MFB_WIRE_ERROR_MESSAGE_MAX;
        if (opcode == MFB_WIRE_OP_LIST) {
                struct mfb_wire_list_reply l;

                if (nfds != 0 || body < sizeof(l))
                        return false;
                memcpy(&l, record + HEADER_SIZE, sizeof(l));
                return l.count <= MFB_WIRE_LIST_ENTRIES_MAX && l.more <= 1 && !(l.more && l.next_after == 0) &&
                       body == sizeof(l) + l.count * sizeof(struct mfb_wire_region_info);
        }
        if (opcode == MFB_WIRE_OP_CREATE_BATCH) {
                uint32_t count;

                /* 16 bytes (count first), then count handles, with count fds: 1 to MFB_WIRE_CREATE_BATCH_MAX. */
                if (body < 16)
                        return false;
                memcpy(&count, record + HEADER_SIZE, sizeof(count));
                return count >= 1 && count <= MFB_WIRE_CREATE_BATCH_MAX && nfds == count &&
                       body == 16 + (size_t) count * sizeof(uint64_t);
        }
        return reply_shape(opcode, &want_body, &want_nfds) && body == want_body && nfds == want_nfds;
}

static void fuzz_reply(const uint8_t *record, size_t len, size_t nfds) {
        struct mfb_wire_header h;
        bool valid = reply_valid(record, len, nfds);
        int r;

        memset(&h, POISON, sizeof(h));
        r = mfb_wire_reply_check(record, len, nfds, &h);
        check(r == 0 || r == -EBADMSG, "mfb_wire_reply_check() returned an error it does not document");
        if (r < 0) {
                check(!valid, "a valid reply was refused");
                check(poisoned(&h), "a refused reply filled the header");
                return;
        }
        check(valid, "an invalid reply passed");
        check(memcmp(&h, record, sizeof(h)) == 0, "the header returned is not the record's");
}

/* A name field: 1 to 255 bytes 0x21..0x7e, then zero bytes; or all zero, the empty name. */
static void fuzz_name(const uint8_t *data, size_t size) {
        struct mfb_wire_name name = {}, again;
        size_t len = 0;
        bool valid = true;
        int r;

        memcpy(name.bytes, data, size < sizeof(name.bytes) ? size : sizeof(name.bytes));
        while (len < sizeof(name.bytes) && name.bytes[len] != 0) {
                if (name.bytes[len] < 0x21 || name.bytes[len] > 0x7e)
                        valid = false;
                len++;
        }
        if (len > MFB_WIRE_NAME_MAX)
                valid = false;
        for (size_t i = len; i < sizeof(name.bytes); i++)
                if (name.bytes[i] != 0)
                        valid = false;

        r = mfb_wire_name_check(&name);
        if (!valid) {
                check(r == -EBADMSG, "a bad name field was not refused -EBADMSG");
                return;
        }
        check(r >= 0 && (size_t) r == len, "a valid name field was refused, or its length is wrong");
        if (len > 0)
                check(mfb_name_check(name.bytes) == 0, "a valid wire name is not a valid name");
        /* What a client builds from the name is the same field. */
        check(mfb_wire_name_set(&again, name.bytes) == 0, "a valid name cannot be set");
        check(memcmp(&again, &name, sizeof(name)) == 0, "a name does not survive a round trip");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        size_t nfds;

        if (size < 1)
                return 0;
        /* Mostly 0 or 1, the counts a reply may have; sometimes more, as a peer could send. */
        nfds = data[0] < 0xf0 ? data[0] & 1 : data[0] & 0xf;
        data++;
        size--;

        fuzz_request(data, size);
        fuzz_reply(data, size, nfds);
        fuzz_name(data, size);
        return 0;
}
