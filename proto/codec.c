/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include "codec.h"

int mfb_wire_name_set(struct mfb_wire_name *ret_name, const char *name) {
        int r;

        if (name && *name) {
                r = mfb_name_check(name);
                if (r < 0)
                        return r;
        }
        memset(ret_name, 0, sizeof(*ret_name));
        if (name)
                memcpy(ret_name->bytes, name, strlen(name));
        return 0;
}

int mfb_wire_name_check(const struct mfb_wire_name *name) {
        size_t len = strnlen(name->bytes, sizeof(name->bytes));

        if (len > MFB_WIRE_NAME_MAX)
                return -EBADMSG;
        for (size_t i = len; i < sizeof(name->bytes); i++)
                if (name->bytes[i] != 0)
                        return -EBADMSG;
        if (len > 0 && mfb_name_check(name->bytes) < 0)
                return -EBADMSG;
        return (int) len;
}

void mfb_wire_header_init(struct mfb_wire_header *ret_header, uint16_t opcode, uint64_t cookie,
                          int32_t status, uint16_t nfds, uint32_t size) {
        *ret_header = (struct mfb_wire_header) {
                .size = size,
                .opcode = opcode,
                .cookie = cookie,
                .status = status,
                .nfds = nfds,
        };
}

int mfb_wire_request_body_size(uint16_t opcode) {
        switch (opcode) {
        case MFB_OP_HELLO:
                return sizeof(struct mfb_wire_hello_request);
        case MFB_OP_CREATE:
                return sizeof(struct mfb_wire_create_request);
        case MFB_OP_OPEN:
                return sizeof(struct mfb_wire_open_request);
        case MFB_OP_SEAL:
                return sizeof(struct mfb_wire_seal_request);
        case MFB_OP_STAT:
        case MFB_OP_REMOVE:
                return sizeof(struct mfb_wire_lookup_request);
        case MFB_OP_LIST:
                return sizeof(struct mfb_wire_list_request);
        case MFB_OP_RELEASE:
                return sizeof(struct mfb_wire_release_request);
        case MFB_OP_SET:
                return sizeof(struct mfb_wire_set_request);
        case MFB_OP_WAIT:
                return sizeof(struct mfb_wire_wait_request);
        case MFB_OP_LIMITS:
                return 0;
        case MFB_OP_CREATE_BATCH:
                return sizeof(struct mfb_wire_create_batch_request);
        default:
                return -EOPNOTSUPP;
        }
}

int mfb_wire_request_check(const void *record, size_t len, struct mfb_wire_header *ret_header) {
        struct mfb_wire_header h;
        int body;

        if (len < sizeof(h) || len > MFB_WIRE_RECORD_MAX)
                return -EBADMSG;
        memcpy(&h, record, sizeof(h));
        if (h.size != len || (h.flags & ~MFB_WIRE_FLAG_QUIET) != 0 || h.status != 0 || h.nfds != 0 ||
            h.reserved != 0)
                return -EBADMSG;

        *ret_header = h;
        body = mfb_wire_request_body_size(h.opcode);
        if (body < 0)
                return body;
        if (len - sizeof(h) != (size_t) body)
                return -EMSGSIZE;
        return 0;
}

/* The body a successful reply to this opcode carries, and how many fds. */
static int reply_shape(uint16_t opcode, size_t *ret_body, size_t *ret_nfds) {
        switch (opcode) {
        case MFB_OP_HELLO:
                *ret_body = sizeof(struct mfb_wire_hello_reply);
                *ret_nfds = 0;
                return 0;
        case MFB_OP_CREATE:
        case MFB_OP_OPEN:
        case MFB_OP_WAIT:
                *ret_body = sizeof(struct mfb_wire_region_reply);
                *ret_nfds = 1;
                return 0;
        case MFB_OP_SEAL:
        case MFB_OP_STAT:
        case MFB_OP_SET:
                *ret_body = sizeof(struct mfb_wire_region_info);
                *ret_nfds = 0;
                return 0;
        case MFB_OP_RELEASE:
        case MFB_OP_REMOVE:
                *ret_body = 0;
                *ret_nfds = 0;
                return 0;
        case MFB_OP_LIMITS:
                *ret_body = sizeof(struct mfb_wire_limits_reply);
                *ret_nfds = 0;
                return 0;
        default:
                return -EBADMSG;
        }
}

int mfb_wire_reply_check(const void *record, size_t len, size_t nfds, struct mfb_wire_header *ret_header) {
        struct mfb_wire_header h;
        size_t body, want_body, want_nfds;
        uint16_t opcode;

        if (len < sizeof(h) || len > MFB_WIRE_RECORD_MAX)
                return -EBADMSG;
        memcpy(&h, record, sizeof(h));
        if (h.size != len || h.nfds != nfds || h.flags != 0 || h.reserved != 0 || !(h.opcode & MFB_WIRE_REPLY))
                return -EBADMSG;
        opcode = h.opcode & ~MFB_WIRE_REPLY;
        body = len - sizeof(h);

        /* 0, or a Linux errno: -4095 to -1. */
        if (h.status > 0 || h.status < -4095)
                return -EBADMSG;
        if (h.status < 0) {
                if (body > MFB_WIRE_ERROR_MESSAGE_MAX || nfds != 0)
                        return -EBADMSG;
        } else if (opcode == MFB_OP_LIST) {
                struct mfb_wire_list_reply l;

                if (body < sizeof(l) || nfds != 0)
                        return -EBADMSG;
                memcpy(&l, (const uint8_t *) record + sizeof(h), sizeof(l));
                if (l.count > MFB_WIRE_LIST_ENTRIES_MAX || l.more > 1 || (l.more && l.next_after == 0) ||
                    body != sizeof(l) + (size_t) l.count * sizeof(struct mfb_wire_region_info))
                        return -EBADMSG;
        } else if (opcode == MFB_OP_CREATE_BATCH) {
                struct mfb_wire_create_batch_reply b;

                if (body < sizeof(b))
                        return -EBADMSG;
                memcpy(&b, (const uint8_t *) record + sizeof(h), sizeof(b));
                if (b.count == 0 || b.count > MFB_WIRE_CREATE_BATCH_MAX || nfds != b.count ||
                    body != sizeof(b) + (size_t) b.count * sizeof(uint64_t))
                        return -EBADMSG;
        } else {
                if (reply_shape(opcode, &want_body, &want_nfds) < 0)
                        return -EBADMSG;
                if (body != want_body || nfds != want_nfds)
                        return -EBADMSG;
        }

        *ret_header = h;
        return 0;
}

const char *mfb_wire_opcode_name(uint16_t opcode) {
        static const char *const names[] = {
                [MFB_OP_HELLO] = "HELLO",
                [MFB_OP_CREATE] = "CREATE",
                [MFB_OP_OPEN] = "OPEN",
                [MFB_OP_SEAL] = "SEAL",
                [MFB_OP_STAT] = "STAT",
                [MFB_OP_LIST] = "LIST",
                [MFB_OP_RELEASE] = "RELEASE",
                [MFB_OP_REMOVE] = "REMOVE",
                [MFB_OP_SET] = "SET",
                [MFB_OP_WAIT] = "WAIT",
                [MFB_OP_LIMITS] = "LIMITS",
                [MFB_OP_CREATE_BATCH] = "CREATE_BATCH",
        };

        opcode &= ~MFB_WIRE_REPLY;
        if (opcode < sizeof(names) / sizeof(names[0]) && names[opcode])
                return names[opcode];
        return "UNKNOWN";
}
