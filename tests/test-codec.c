/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "codec.h"
#include "harness.h"
#include "suites.h"

/* A request record: header plus body, as a client would send it. */
struct create_record {
        struct mfb_wire_header h;
        struct mfb_wire_create_request body;
};

static void init_create(struct create_record *rec) {
        memset(rec, 0, sizeof(*rec));
        mfb_wire_header_init(&rec->h, MFB_WIRE_OP_CREATE, 42, 0, 0, sizeof(*rec));
        rec->body.size = 4096;
}

START_TEST(name_length_boundary) {
        char name[MFB_WIRE_NAME_MAX + 2];

        memset(name, 'a', sizeof(name));
        name[MFB_WIRE_NAME_MAX] = '\0';
        ck_assert_int_eq(mfb_name_check(name), 0);
        name[MFB_WIRE_NAME_MAX] = 'a';
        name[MFB_WIRE_NAME_MAX + 1] = '\0';
        ck_assert_int_eq(mfb_name_check(name), -ENAMETOOLONG);
        ck_assert_int_eq(mfb_name_check(""), -EINVAL);
        ck_assert_int_eq(mfb_name_check(NULL), -EINVAL);
}
END_TEST

START_TEST(name_bytes) {
        ck_assert_int_eq(mfb_name_check("camera/frame-0:rgb_v1~x"), 0);
        ck_assert_int_eq(mfb_name_check("with space"), -EINVAL);
        ck_assert_int_eq(mfb_name_check("tab\there"), -EINVAL);
        ck_assert_int_eq(mfb_name_check("del\x7f"), -EINVAL);
        ck_assert_int_eq(mfb_name_check("utf8-\xc3\xa9"), -EINVAL);
}
END_TEST

START_TEST(wire_name_round_trip) {
        struct mfb_wire_name n;

        ck_assert_int_eq(mfb_wire_name_set(&n, "frames"), 0);
        ck_assert_int_eq(mfb_wire_name_check(&n), 6);
        ck_assert_str_eq(n.bytes, "frames");
        ck_assert_int_eq(mfb_wire_name_set(&n, NULL), 0);
        ck_assert_int_eq(mfb_wire_name_check(&n), 0);

        /* Garbage after the terminating NUL would let two peers disagree on the name. */
        ck_assert_int_eq(mfb_wire_name_set(&n, "frames"), 0);
        n.bytes[100] = 'x';
        ck_assert_int_eq(mfb_wire_name_check(&n), -EBADMSG);

        /* No NUL at all. */
        memset(n.bytes, 'a', sizeof(n.bytes));
        ck_assert_int_eq(mfb_wire_name_check(&n), -EBADMSG);

        memset(&n, 0, sizeof(n));
        n.bytes[0] = ' ';
        ck_assert_int_eq(mfb_wire_name_check(&n), -EBADMSG);
}
END_TEST

START_TEST(request_valid) {
        struct create_record rec;
        struct mfb_wire_header h;

        init_create(&rec);
        ck_assert_int_eq(mfb_wire_request_check(&rec, sizeof(rec), &h), 0);
        ck_assert_uint_eq(h.opcode, MFB_WIRE_OP_CREATE);
        ck_assert_uint_eq(h.cookie, 42);
}
END_TEST

START_TEST(request_bad_header) {
        struct create_record rec;
        struct mfb_wire_header h;

        init_create(&rec);
        ck_assert_int_eq(mfb_wire_request_check(&rec, sizeof(rec.h) - 1, &h), -EBADMSG);

        rec.h.size = sizeof(rec) + 8; /* the size field lies */
        ck_assert_int_eq(mfb_wire_request_check(&rec, sizeof(rec), &h), -EBADMSG);

        /* QUIET, the broker's to refuse on any opcode but RELEASE, REMOVE, NOTIFY and SYNC; RELEASES; QUEUED. */
        init_create(&rec);
        rec.h.flags = MFB_WIRE_FLAG_QUIET;
        ck_assert_int_eq(mfb_wire_request_check(&rec, sizeof(rec), &h), 0);
        rec.h.flags = MFB_WIRE_FLAG_QUEUED;
        ck_assert_int_eq(mfb_wire_request_check(&rec, sizeof(rec), &h), 0);
        rec.h.flags = 0x8;
        ck_assert_int_eq(mfb_wire_request_check(&rec, sizeof(rec), &h), -EBADMSG);
        rec.h.flags = 0x8000;
        ck_assert_int_eq(mfb_wire_request_check(&rec, sizeof(rec), &h), -EBADMSG);

        init_create(&rec);
        rec.h.reserved = 1;
        ck_assert_int_eq(mfb_wire_request_check(&rec, sizeof(rec), &h), -EBADMSG);

        init_create(&rec);
        rec.h.nfds = 1;
        ck_assert_int_eq(mfb_wire_request_check(&rec, sizeof(rec), &h), -EBADMSG);

        init_create(&rec);
        rec.h.status = -1;
        ck_assert_int_eq(mfb_wire_request_check(&rec, sizeof(rec), &h), -EBADMSG);
}
END_TEST

/* A CREATE that carries handles to release after its body: 1 to MFB_WIRE_RELEASES_CARRIED_MAX of them. */
START_TEST(request_carried_releases) {
        struct {
                struct create_record r;
                uint64_t handles[MFB_WIRE_RELEASES_CARRIED_MAX + 1];
        } rec;
        struct mfb_wire_header h;
        const void *at;
        uint64_t first, last;

        for (size_t n = 1; n <= MFB_WIRE_RELEASES_CARRIED_MAX; n++) {
                size_t len = sizeof(rec.r) + n * sizeof(uint64_t);

                init_create(&rec.r);
                rec.r.h.flags = MFB_WIRE_FLAG_RELEASES;
                rec.r.h.size = (uint32_t) len;
                for (size_t i = 0; i < n; i++)
                        rec.handles[i] = 100 + i;
                ck_assert_int_eq(mfb_wire_request_check(&rec, len, &h), 0);
                ck_assert_uint_eq(mfb_wire_request_releases(&rec, &h, &at), n);
                memcpy(&first, at, sizeof(first));
                memcpy(&last, (const uint8_t *) at + (n - 1) * sizeof(last), sizeof(last));
                ck_assert_uint_eq(first, 100);
                ck_assert_uint_eq(last, 100 + n - 1);
        }

        /* Without the flag, nothing is carried: extra bytes are a body of the wrong size. */
        init_create(&rec.r);
        ck_assert_int_eq(mfb_wire_request_check(&rec, sizeof(rec.r), &h), 0);
        ck_assert_uint_eq(mfb_wire_request_releases(&rec, &h, &at), 0);
        rec.r.h.size = sizeof(rec.r) + 8;
        ck_assert_int_eq(mfb_wire_request_check(&rec, sizeof(rec.r) + 8, &h), -EMSGSIZE);

        /* With it: none, one too many, a part of one, or a body cut short are all the wrong size. */
        init_create(&rec.r);
        rec.r.h.flags = MFB_WIRE_FLAG_RELEASES;
        ck_assert_int_eq(mfb_wire_request_check(&rec, sizeof(rec.r), &h), -EMSGSIZE);
        rec.r.h.size = sizeof(rec.r) + (MFB_WIRE_RELEASES_CARRIED_MAX + 1) * 8;
        ck_assert_int_eq(mfb_wire_request_check(&rec, rec.r.h.size, &h), -EMSGSIZE);
        rec.r.h.size = sizeof(rec.r) + 4;
        ck_assert_int_eq(mfb_wire_request_check(&rec, rec.r.h.size, &h), -EMSGSIZE);
        rec.r.h.size = sizeof(rec.r.h) + 8;
        ck_assert_int_eq(mfb_wire_request_check(&rec, rec.r.h.size, &h), -EMSGSIZE);
        ck_assert_uint_eq(h.cookie, 42);
}
END_TEST

START_TEST(request_bad_opcode_or_body) {
        struct create_record rec;
        struct mfb_wire_header h;

        init_create(&rec);
        rec.h.opcode = 0x7777;
        ck_assert_int_eq(mfb_wire_request_check(&rec, sizeof(rec), &h), -EOPNOTSUPP);
        ck_assert_uint_eq(h.cookie, 42);

        /* A reply opcode is not a request. */
        init_create(&rec);
        rec.h.opcode = MFB_WIRE_OP_CREATE | MFB_WIRE_REPLY;
        ck_assert_int_eq(mfb_wire_request_check(&rec, sizeof(rec), &h), -EOPNOTSUPP);

        init_create(&rec);
        rec.h.size = sizeof(rec) - 8;
        ck_assert_int_eq(mfb_wire_request_check(&rec, sizeof(rec) - 8, &h), -EMSGSIZE);
        ck_assert_uint_eq(h.cookie, 42);
}
END_TEST

START_TEST(reply_shapes) {
        struct {
                struct mfb_wire_header h;
                char text[MFB_WIRE_ERROR_MESSAGE_MAX + 1];
        } err;
        struct {
                struct mfb_wire_header h;
                struct mfb_wire_region_reply body;
        } region = { 0 };
        struct mfb_wire_header h;

        mfb_wire_header_init(&region.h, MFB_WIRE_OP_OPEN | MFB_WIRE_REPLY, 7, 0, 1, sizeof(region));
        ck_assert_int_eq(mfb_wire_reply_check(&region, sizeof(region), 1, &h), 0);
        ck_assert_uint_eq(h.cookie, 7);
        /* The header must announce exactly the fds that arrived. */
        ck_assert_int_eq(mfb_wire_reply_check(&region, sizeof(region), 0, &h), -EBADMSG);
        /* A request opcode is not a reply. */
        region.h.opcode = MFB_WIRE_OP_OPEN;
        ck_assert_int_eq(mfb_wire_reply_check(&region, sizeof(region), 1, &h), -EBADMSG);

        memset(&err, 'e', sizeof(err));
        mfb_wire_header_init(&err.h, MFB_WIRE_OP_SEAL | MFB_WIRE_REPLY, 8, -EBUSY, 0,
                             sizeof(err.h) + MFB_WIRE_ERROR_MESSAGE_MAX);
        ck_assert_int_eq(mfb_wire_reply_check(&err, err.h.size, 0, &h), 0);
        ck_assert_int_eq(h.status, -EBUSY);
        err.h.size++;
        ck_assert_int_eq(mfb_wire_reply_check(&err, err.h.size, 0, &h), -EBADMSG);
        /* A status is 0 or a Linux errno, -4095 to -1. */
        mfb_wire_header_init(&err.h, MFB_WIRE_OP_SEAL | MFB_WIRE_REPLY, 8, -4095, 0, sizeof(err.h));
        ck_assert_int_eq(mfb_wire_reply_check(&err, err.h.size, 0, &h), 0);
        err.h.status = -4096;
        ck_assert_int_eq(mfb_wire_reply_check(&err, err.h.size, 0, &h), -EBADMSG);
}
END_TEST

START_TEST(reply_list_count) {
        struct {
                struct mfb_wire_header h;
                struct mfb_wire_list_reply l;
                struct mfb_wire_region_info e[2];
        } rec = { 0 };
        struct mfb_wire_header h;

        mfb_wire_header_init(&rec.h, MFB_WIRE_OP_LIST | MFB_WIRE_REPLY, 1, 0, 0, sizeof(rec));
        rec.l.count = 2;
        ck_assert_int_eq(mfb_wire_reply_check(&rec, sizeof(rec), 0, &h), 0);
        rec.l.count = 3; /* more entries announced than sent */
        ck_assert_int_eq(mfb_wire_reply_check(&rec, sizeof(rec), 0, &h), -EBADMSG);
}
END_TEST

/* Version 2's header: count, more, next_after; a page may examine regions and list none. */
START_TEST(reply_list_cursor) {
        struct {
                struct mfb_wire_header h;
                struct mfb_wire_list_reply l;
        } rec = { 0 };
        struct mfb_wire_header h;

        ck_assert_uint_eq(offsetof(struct mfb_wire_list_reply, next_after), 8);
        mfb_wire_header_init(&rec.h, MFB_WIRE_OP_LIST | MFB_WIRE_REPLY, 1, 0, 0, sizeof(rec));
        rec.l = (struct mfb_wire_list_reply) { .count = 0, .more = 1, .next_after = 1024 };
        ck_assert_int_eq(mfb_wire_reply_check(&rec, sizeof(rec), 0, &h), 0);
        rec.l = (struct mfb_wire_list_reply) { .count = 0, .more = 0, .next_after = 0 };
        ck_assert_int_eq(mfb_wire_reply_check(&rec, sizeof(rec), 0, &h), 0);

        /* Going on from handle 0 would start over: a client following it would ask forever. */
        rec.l = (struct mfb_wire_list_reply) { .count = 0, .more = 1, .next_after = 0 };
        ck_assert_int_eq(mfb_wire_reply_check(&rec, sizeof(rec), 0, &h), -EBADMSG);
        rec.l = (struct mfb_wire_list_reply) { .count = 0, .more = 2, .next_after = 5 };
        ck_assert_int_eq(mfb_wire_reply_check(&rec, sizeof(rec), 0, &h), -EBADMSG);

        /* Version 1's 8-byte header is too short now. */
        rec.h.size = sizeof(rec.h) + 8;
        ck_assert_int_eq(mfb_wire_reply_check(&rec, sizeof(rec.h) + 8, 0, &h), -EBADMSG);
}
END_TEST

START_TEST(limits_shape) {
        struct {
                struct mfb_wire_header h;
                struct mfb_wire_limits_reply l;
        } rec = { 0 };
        struct {
                struct mfb_wire_header h;
        } request;
        struct mfb_wire_header h;

        /* The offsets PROTOCOL.md states. */
        ck_assert_uint_eq(sizeof(struct mfb_wire_limits_reply), 328);
        ck_assert_uint_eq(offsetof(struct mfb_wire_limits_reply, resources), 8);
        ck_assert_uint_eq(offsetof(struct mfb_wire_limit, uid_available), 32);
        ck_assert_uint_eq(offsetof(struct mfb_wire_limits_reply, resources[MFB_WIRE_RESOURCE_KEPT]), 8 + 40 * 6);
        ck_assert_uint_eq(offsetof(struct mfb_wire_limits_reply, resources[MFB_WIRE_RESOURCE_HOLDS]), 8 + 40 * 7);

        /* The request has no body; one with a body is the wrong size. */
        ck_assert_int_eq(mfb_wire_request_body_size(MFB_WIRE_OP_LIMITS), 0);
        mfb_wire_header_init(&request.h, MFB_WIRE_OP_LIMITS, 3, 0, 0, sizeof(request));
        ck_assert_int_eq(mfb_wire_request_check(&request, sizeof(request), &h), 0);
        ck_assert_uint_eq(h.opcode, MFB_WIRE_OP_LIMITS);
        mfb_wire_header_init(&rec.h, MFB_WIRE_OP_LIMITS, 3, 0, 0, sizeof(rec));
        ck_assert_int_eq(mfb_wire_request_check(&rec, sizeof(rec), &h), -EMSGSIZE);

        mfb_wire_header_init(&rec.h, MFB_WIRE_OP_LIMITS | MFB_WIRE_REPLY, 3, 0, 0, sizeof(rec));
        rec.l.count = MFB_WIRE_RESOURCE_COUNT;
        ck_assert_int_eq(mfb_wire_reply_check(&rec, sizeof(rec), 0, &h), 0);
        /* Exactly its size, and no fd. */
        ck_assert_int_eq(mfb_wire_reply_check(&rec, sizeof(rec), 1, &h), -EBADMSG);
        rec.h.size -= 8;
        ck_assert_int_eq(mfb_wire_reply_check(&rec, sizeof(rec) - 8, 0, &h), -EBADMSG);
        ck_assert_str_eq(mfb_wire_opcode_name(MFB_WIRE_OP_LIMITS | MFB_WIRE_REPLY), "LIMITS");
}
END_TEST

Suite *codec_suite(void) {
        Suite *s = suite_create("codec");
        TCase *tc = tcase_create("codec");

        tcase_add_checked_fixture(tc, test_fd_leak_setup, test_fd_leak_teardown);
        tcase_add_test(tc, name_length_boundary);
        tcase_add_test(tc, name_bytes);
        tcase_add_test(tc, wire_name_round_trip);
        tcase_add_test(tc, request_valid);
        tcase_add_test(tc, request_bad_header);
        tcase_add_test(tc, request_bad_opcode_or_body);
        tcase_add_test(tc, request_carried_releases);
        tcase_add_test(tc, reply_shapes);
        tcase_add_test(tc, reply_list_count);
        tcase_add_test(tc, reply_list_cursor);
        tcase_add_test(tc, limits_shape);
        suite_add_tcase(s, tc);
        return s;
}
