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

/* What the codec knows of each opcode: MFB_WIRE_REQUESTS, indexed by opcode. */
static const struct mfb_wire_request_info requests[] = {
#define REQUEST_INFO(NAME, name, opcode, request_body, reply_body, reply_fds, quiet, after_hello) \
        [opcode] = { #NAME, request_body, reply_body, reply_fds, quiet, after_hello },
        MFB_WIRE_REQUESTS(REQUEST_INFO)
#undef REQUEST_INFO
};

const struct mfb_wire_request_info *mfb_wire_request_info(uint16_t opcode) {
        opcode &= ~MFB_WIRE_REPLY;
        if (opcode < sizeof(requests) / sizeof(requests[0]) && requests[opcode].name)
                return &requests[opcode];
        return NULL;
}

int mfb_wire_request_body_size(uint16_t opcode) {
        const struct mfb_wire_request_info *info = mfb_wire_request_info(opcode);

        return info && !(opcode & MFB_WIRE_REPLY) ? info->request_body : -EOPNOTSUPP;
}

int mfb_wire_request_check(const void *record, size_t len, struct mfb_wire_header *ret_header) {
        struct mfb_wire_header h;
        size_t carried;
        int body;

        if (len < sizeof(h) || len > MFB_WIRE_RECORD_MAX)
                return -EBADMSG;
        memcpy(&h, record, sizeof(h));
        if (h.size != len || (h.flags & ~(MFB_WIRE_FLAG_QUIET | MFB_WIRE_FLAG_RELEASES | MFB_WIRE_FLAG_QUEUED)) != 0 ||
            h.status != 0 || h.nfds != 0 || h.reserved != 0)
                return -EBADMSG;

        *ret_header = h;
        body = mfb_wire_request_body_size(h.opcode);
        if (body < 0)
                return body;
        if (!(h.flags & MFB_WIRE_FLAG_RELEASES))
                return len - sizeof(h) == (size_t) body ? 0 : -EMSGSIZE;
        if (len - sizeof(h) < (size_t) body)
                return -EMSGSIZE;
        carried = len - sizeof(h) - (size_t) body;
        if (carried % sizeof(uint64_t) != 0 || carried == 0 ||
            carried > MFB_WIRE_RELEASES_CARRIED_MAX * sizeof(uint64_t))
                return -EMSGSIZE;
        return 0;
}

size_t mfb_wire_request_releases(const void *record, const struct mfb_wire_header *header, const void **ret) {
        size_t start;

        if (!(header->flags & MFB_WIRE_FLAG_RELEASES))
                return 0;
        start = sizeof(*header) + (size_t) mfb_wire_request_body_size(header->opcode);
        *ret = (const uint8_t *) record + start;
        return (header->size - start) / sizeof(uint64_t);
}

int mfb_wire_reply_check(const void *record, size_t len, size_t nfds, struct mfb_wire_header *ret_header) {
        struct mfb_wire_header h;
        size_t body;
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
        } else if (opcode == MFB_WIRE_OP_LIST) {
                struct mfb_wire_list_reply l;

                if (body < sizeof(l) || nfds != 0)
                        return -EBADMSG;
                memcpy(&l, (const uint8_t *) record + sizeof(h), sizeof(l));
                if (l.count > MFB_WIRE_LIST_ENTRIES_MAX || l.more > 1 || (l.more && l.next_after == 0) ||
                    body != sizeof(l) + (size_t) l.count * sizeof(struct mfb_wire_region_info))
                        return -EBADMSG;
        } else if (opcode == MFB_WIRE_OP_CREATE_BATCH) {
                struct mfb_wire_create_batch_reply b;

                if (body < sizeof(b))
                        return -EBADMSG;
                memcpy(&b, (const uint8_t *) record + sizeof(h), sizeof(b));
                if (b.count == 0 || b.count > MFB_WIRE_CREATE_BATCH_MAX || nfds != b.count ||
                    body != sizeof(b) + (size_t) b.count * sizeof(uint64_t))
                        return -EBADMSG;
        } else {
                const struct mfb_wire_request_info *info = mfb_wire_request_info(opcode);

                if (!info || info->reply_body < 0 || body != (size_t) info->reply_body || nfds != info->reply_fds)
                        return -EBADMSG;
        }

        *ret_header = h;
        return 0;
}

const char *mfb_wire_opcode_name(uint16_t opcode) {
        const struct mfb_wire_request_info *info = mfb_wire_request_info(opcode);

        return info ? info->name : "UNKNOWN";
}
