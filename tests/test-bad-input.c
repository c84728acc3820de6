/* SPDX-License-Identifier: MIT */
/*
 * Hostile and broken clients, speaking the protocol by hand: each gets an
 * error or loses its connection, and the broker goes on serving others
 * without leaking an fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "codec.h"
#include "fdpass.h"
#include "harness.h"
#include "macro.h"
#include "memfd-broker.h"
#include "raw.h"
#include "suites.h"

static unsigned baseline;

static void setup(void) {
        test_broker_setup();
        baseline = test_broker_fd_count(&test_broker);
}

/* After every test: the broker serves a well-behaved client and holds nothing for the bad one. */
static void teardown(void) {
        mfb_client *c = NULL;
        mfb_region *r = NULL;

        ck_assert_int_eq(mfb_client_connect(test_broker.socket_path, &c), 0);
        ck_assert_int_eq(mfb_region_create(c, NULL, 4096, &r), 0);
        mfb_region_free(r);
        mfb_client_free(c);
        ck_assert_msg(test_broker_wait_fd_count(&test_broker, baseline),
                      "broker has %u fds open, %u before the test", test_broker_fd_count(&test_broker), baseline);
        test_broker_teardown();
}

static void send_raw(int fd, const void *buf, size_t len) {
        ck_assert_int_eq(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t) len);
}

static void assert_dropped(int fd) {
        char buf[MFB_WIRE_RECORD_MAX];

        ck_assert_int_eq(raw_recv(fd, buf, sizeof(buf), NULL), 0);
}

static int connect_hello(void) {
        return raw_connect_hello(&test_broker);
}

START_TEST(garbage_drops_the_connection) {
        char garbage[100];
        int fd = test_raw_connect(&test_broker);

        for (size_t i = 0; i < sizeof(garbage); i++)
                garbage[i] = (char) (i * 37 + 11);
        send_raw(fd, garbage, sizeof(garbage));
        assert_dropped(fd);
        close(fd);
}
END_TEST

START_TEST(truncated_header_drops_the_connection) {
        struct mfb_wire_header h;
        int fd = connect_hello();

        mfb_wire_header_init(&h, MFB_WIRE_OP_LIST, 1, 0, 0, sizeof(h));
        send_raw(fd, &h, sizeof(h) - 4);
        assert_dropped(fd);
        close(fd);
}
END_TEST

START_TEST(lying_size_drops_the_connection) {
        struct {
                struct mfb_wire_header h;
                struct mfb_wire_list_request body;
        } rec = { 0 };
        int fd = connect_hello();

        mfb_wire_header_init(&rec.h, MFB_WIRE_OP_LIST, 1, 0, 0, sizeof(rec) + 4096);
        send_raw(fd, &rec, sizeof(rec));
        assert_dropped(fd);
        close(fd);
}
END_TEST

START_TEST(oversized_record_drops_the_connection) {
        static uint8_t big[MFB_WIRE_RECORD_MAX + 4096];
        int fd = connect_hello();

        mfb_wire_header_init((struct mfb_wire_header *) big, MFB_WIRE_OP_LIST, 1, 0, 0, sizeof(big));
        send_raw(fd, big, sizeof(big));
        assert_dropped(fd);
        close(fd);
}
END_TEST

START_TEST(unknown_opcode_and_wrong_body_size) {
        struct mfb_wire_list_request list = { 0 };
        uint8_t body[16] = { 0 };
        int fd = connect_hello();

        ck_assert_int_eq(raw_request(fd, 0x0777, body, sizeof(body), NULL, 0), -EOPNOTSUPP);
        ck_assert_int_eq(raw_request(fd, MFB_WIRE_OP_LIST, body, sizeof(body), NULL, 0), -EMSGSIZE);
        /* The connection is still good. */
        ck_assert_int_eq(raw_request(fd, MFB_WIRE_OP_LIST, &list, sizeof(list), NULL, 0), 0);
        close(fd);
}
END_TEST

START_TEST(hello_comes_first_and_once) {
        struct mfb_wire_hello_request hello = { .version_min = MFB_WIRE_VERSION, .version_max = MFB_WIRE_VERSION };
        struct mfb_wire_hello_request future = { .version_min = MFB_WIRE_VERSION + 1, .version_max = 9 };
        struct mfb_wire_list_request list = { 0 };
        int fd = test_raw_connect(&test_broker);

        ck_assert_int_eq(raw_request(fd, MFB_WIRE_OP_LIST, &list, sizeof(list), NULL, 0), -EPROTO);
        ck_assert_int_eq(raw_request(fd, MFB_WIRE_OP_HELLO, &future, sizeof(future), NULL, 0), -EPROTONOSUPPORT);
        ck_assert_int_eq(raw_request(fd, MFB_WIRE_OP_HELLO, &hello, sizeof(hello), NULL, 0), 0);
        ck_assert_int_eq(raw_request(fd, MFB_WIRE_OP_HELLO, &hello, sizeof(hello), NULL, 0), -EPROTO);
        close(fd);
}
END_TEST

START_TEST(attached_fds_are_refused_and_closed) {
        struct mfb_wire_create_request create = { .size = 4096 };
        int p[2], fd = connect_hello();
        int attached[3];

        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        attached[0] = p[0];
        attached[1] = p[1];
        attached[2] = p[0];
        ck_assert_int_eq(raw_request(fd, MFB_WIRE_OP_CREATE, &create, sizeof(create), attached, 3), -EBADMSG);
        mfb_close_fds(p, 2);
        /* Our end of the connection is the only extra fd the broker may hold. */
        ck_assert(test_broker_wait_fd_count(&test_broker, baseline + 1));
        close(fd);
}
END_TEST

START_TEST(bad_sizes_are_refused) {
        struct mfb_wire_create_request create = { .size = 0 };
        int fd = connect_hello();

        ck_assert_int_eq(raw_request(fd, MFB_WIRE_OP_CREATE, &create, sizeof(create), NULL, 0), -EINVAL);
        create.size = UINT64_MAX;
        ck_assert_int_eq(raw_request(fd, MFB_WIRE_OP_CREATE, &create, sizeof(create), NULL, 0), -EFBIG);
        create.size = 4096;
        create.mode = 01777;
        ck_assert_int_eq(raw_request(fd, MFB_WIRE_OP_CREATE, &create, sizeof(create), NULL, 0), -EINVAL);
        create.mode = 0;
        create.flags = 0x80;
        ck_assert_int_eq(raw_request(fd, MFB_WIRE_OP_CREATE, &create, sizeof(create), NULL, 0), -EINVAL);
        close(fd);
}
END_TEST

START_TEST(bad_names_are_refused) {
        struct mfb_wire_create_request create = { .size = 4096 };
        struct mfb_wire_open_request open_req = { .access = MFB_WIRE_ACCESS_READ };
        int fd = connect_hello();

        /* 256 name bytes and no terminating NUL. */
        memset(create.name.bytes, 'x', sizeof(create.name.bytes));
        ck_assert_int_eq(raw_request(fd, MFB_WIRE_OP_CREATE, &create, sizeof(create), NULL, 0), -EBADMSG);

        memset(&create.name, 0, sizeof(create.name));
        memcpy(create.name.bytes, "bad name", 8);
        ck_assert_int_eq(raw_request(fd, MFB_WIRE_OP_CREATE, &create, sizeof(create), NULL, 0), -EBADMSG);

        /* Both a handle and a name, then neither. */
        open_req.handle = 1;
        memcpy(open_req.name.bytes, "x", 1);
        ck_assert_int_eq(raw_request(fd, MFB_WIRE_OP_OPEN, &open_req, sizeof(open_req), NULL, 0), -EINVAL);
        memset(&open_req, 0, sizeof(open_req));
        open_req.access = MFB_WIRE_ACCESS_READ;
        ck_assert_int_eq(raw_request(fd, MFB_WIRE_OP_OPEN, &open_req, sizeof(open_req), NULL, 0), -EINVAL);
        open_req.handle = 1;
        open_req.access = MFB_WIRE_ACCESS_WRITE;
        ck_assert_int_eq(raw_request(fd, MFB_WIRE_OP_OPEN, &open_req, sizeof(open_req), NULL, 0), -EINVAL);
        close(fd);
}
END_TEST

START_TEST(release_of_what_is_not_held) {
        struct mfb_wire_release_request release = { .handle = 999999 };
        int fd = connect_hello();

        ck_assert_int_eq(raw_request(fd, MFB_WIRE_OP_RELEASE, &release, sizeof(release), NULL, 0), -ENOENT);
        close(fd);
}
END_TEST

/* The opcode of the next record, a reply, and its status. */
static uint16_t next_reply(int fd, int32_t *ret_status) {
        union {
                struct mfb_wire_header h;
                uint8_t bytes[MFB_WIRE_RECORD_MAX];
        } rec;

        ck_assert_int_ge(raw_recv(fd, rec.bytes, sizeof(rec), NULL), (ssize_t) sizeof(rec.h));
        *ret_status = rec.h.status;
        return rec.h.opcode & ~MFB_WIRE_REPLY;
}

/*
 * A quiet RELEASE or REMOVE (MFB_WIRE_FLAG_QUIET) is answered only when it
 * fails; the reply to the next request tells it was carried out.
 */
START_TEST(quiet_requests_answer_only_failures) {
        struct mfb_wire_hello_request hello = { .version_min = MFB_WIRE_VERSION, .version_max = MFB_WIRE_VERSION };
        struct mfb_wire_create_request create = { .size = 4096 };
        struct mfb_wire_lookup_request by_name = {};
        struct mfb_wire_hello_reply hello_reply;
        struct mfb_wire_region_reply region;
        struct mfb_wire_release_request release;
        int fd = test_raw_connect(&test_broker), memfd;
        int32_t status;

        ck_assert_int_ge(fd, 0);
        raw_send(fd, MFB_WIRE_OP_HELLO, &hello, sizeof(hello), NULL, 0);
        ck_assert_int_eq(raw_reply(fd, MFB_WIRE_OP_HELLO, &hello_reply, sizeof(hello_reply), NULL), 0);
        ck_assert(hello_reply.capabilities & MFB_WIRE_CAP_QUIET);

        /* Released quietly: the region is gone by the time STAT is answered, and STAT's is the next reply. */
        raw_send(fd, MFB_WIRE_OP_CREATE, &create, sizeof(create), NULL, 0);
        ck_assert_int_eq(raw_reply(fd, MFB_WIRE_OP_CREATE, &region, sizeof(region), &memfd), 0);
        safe_close(memfd);
        release.handle = region.info.handle;
        raw_send_flags(fd, MFB_WIRE_OP_RELEASE, MFB_WIRE_FLAG_QUIET, &release, sizeof(release), NULL, 0);
        by_name.handle = region.info.handle;
        raw_send(fd, MFB_WIRE_OP_STAT, &by_name, sizeof(by_name), NULL, 0);
        ck_assert_uint_eq(next_reply(fd, &status), MFB_WIRE_OP_STAT);
        ck_assert_int_eq(status, -ENOENT);

        /* A quiet request that fails is answered, before the next. */
        raw_send_flags(fd, MFB_WIRE_OP_RELEASE, MFB_WIRE_FLAG_QUIET, &release, sizeof(release), NULL, 0);
        raw_send(fd, MFB_WIRE_OP_STAT, &by_name, sizeof(by_name), NULL, 0);
        ck_assert_uint_eq(next_reply(fd, &status), MFB_WIRE_OP_RELEASE);
        ck_assert_int_eq(status, -ENOENT);
        ck_assert_uint_eq(next_reply(fd, &status), MFB_WIRE_OP_STAT);

        /* A quiet REMOVE: the name is free when the next reply comes. */
        ck_assert_int_eq(mfb_wire_name_set(&create.name, "quiet"), 0);
        raw_send(fd, MFB_WIRE_OP_CREATE, &create, sizeof(create), NULL, 0);
        ck_assert_int_eq(raw_reply(fd, MFB_WIRE_OP_CREATE, &region, sizeof(region), &memfd), 0);
        safe_close(memfd);
        by_name = (struct mfb_wire_lookup_request) {};
        ck_assert_int_eq(mfb_wire_name_set(&by_name.name, "quiet"), 0);
        raw_send_flags(fd, MFB_WIRE_OP_REMOVE, MFB_WIRE_FLAG_QUIET, &by_name, sizeof(by_name), NULL, 0);
        raw_send(fd, MFB_WIRE_OP_STAT, &by_name, sizeof(by_name), NULL, 0);
        ck_assert_uint_eq(next_reply(fd, &status), MFB_WIRE_OP_STAT);
        ck_assert_int_eq(status, -ENOENT);

        /* Other requests have something to say on success: they may not be quiet. */
        raw_send_flags(fd, MFB_WIRE_OP_STAT, MFB_WIRE_FLAG_QUIET, &by_name, sizeof(by_name), NULL, 0);
        ck_assert_uint_eq(next_reply(fd, &status), MFB_WIRE_OP_STAT);
        ck_assert_int_eq(status, -EINVAL);

        /* A flag this broker does not know breaks the protocol. */
        raw_send_flags(fd, MFB_WIRE_OP_STAT, 0x8, &by_name, sizeof(by_name), NULL, 0);
        assert_dropped(fd);
        close(fd);
}
END_TEST

/* A request of opcode with body (len bytes), carrying n handles to release (MFB_WIRE_FLAG_RELEASES). */
static void send_carrying(int fd, uint16_t opcode, const void *body, size_t len, const uint64_t *released,
                          size_t n) {
        uint8_t record[sizeof(struct mfb_wire_create_request) + (MFB_WIRE_RELEASES_CARRIED_MAX + 1) * 8];

        ck_assert_uint_le(len, sizeof(struct mfb_wire_create_request));
        ck_assert_uint_le(n, MFB_WIRE_RELEASES_CARRIED_MAX + 1);
        memcpy(record, body, len);
        memcpy(record + len, released, n * sizeof(uint64_t));
        raw_send_flags(fd, opcode, MFB_WIRE_FLAG_RELEASES, record, len + n * sizeof(uint64_t), NULL, 0);
}

/* A STAT of a handle, carrying n handles to release. */
static void send_stat_carrying(int fd, uint64_t handle, const uint64_t *released, size_t n) {
        struct mfb_wire_lookup_request stat = { .handle = handle };

        send_carrying(fd, MFB_WIRE_OP_STAT, &stat, sizeof(stat), released, n);
}

/* STAT of a handle, or of a name when name is not NULL: its status, its info in *ret_info (may be NULL). */
static int32_t stat_of(int fd, uint64_t handle, const char *name, struct mfb_wire_region_info *ret_info) {
        struct mfb_wire_lookup_request stat = { .handle = handle };
        struct mfb_wire_region_info info;

        if (name)
                ck_assert_int_eq(mfb_wire_name_set(&stat.name, name), 0);
        raw_send(fd, MFB_WIRE_OP_STAT, &stat, sizeof(stat), NULL, 0);
        return raw_reply(fd, MFB_WIRE_OP_STAT, ret_info ?: &info, sizeof(info), NULL);
}

/* A new anonymous region of the connection's, its fd closed: its handle. */
static uint64_t create_anonymous(int fd) {
        raw_send_create(fd);
        return raw_created_handle(fd);
}

/*
 * Handles carried after a request's body (MFB_WIRE_FLAG_RELEASES) are
 * released, in order, before the request is carried out; the first that
 * fails fails the request, which is then not carried out, and the ones
 * before it stand.
 */
START_TEST(carried_releases_come_before_their_request) {
        struct mfb_wire_hello_request hello = { .version_min = MFB_WIRE_VERSION, .version_max = MFB_WIRE_VERSION };
        struct mfb_wire_create_request create = { .size = 4096 };
        struct mfb_wire_hello_reply hello_reply;
        struct mfb_wire_region_info info;
        uint64_t a, b, kept, released[MFB_WIRE_RELEASES_CARRIED_MAX + 1];
        int fd = test_raw_connect(&test_broker);
        int32_t status;

        ck_assert_int_ge(fd, 0);
        raw_send(fd, MFB_WIRE_OP_HELLO, &hello, sizeof(hello), NULL, 0);
        ck_assert_int_eq(raw_reply(fd, MFB_WIRE_OP_HELLO, &hello_reply, sizeof(hello_reply), NULL), 0);
        ck_assert(hello_reply.capabilities & MFB_WIRE_CAP_CARRIED_RELEASES);

        /* Released before the STAT that carries it is answered: the region is gone for it. */
        a = create_anonymous(fd);
        send_stat_carrying(fd, a, &a, 1);
        ck_assert_int_eq(raw_reply(fd, MFB_WIRE_OP_STAT, &info, sizeof(info), NULL), -ENOENT);

        /* Carried by a STAT of another region: that one answers for itself, the carried one is gone. */
        kept = create_anonymous(fd);
        b = create_anonymous(fd);
        send_stat_carrying(fd, kept, &b, 1);
        ck_assert_int_eq(raw_reply(fd, MFB_WIRE_OP_STAT, &info, sizeof(info), NULL), 0);
        ck_assert_uint_eq(info.handle, kept);
        ck_assert_uint_eq(info.nattch, 1);
        ck_assert_int_eq(stat_of(fd, b, NULL, NULL), -ENOENT);

        /* A handle not held fails the request, a CREATE here, which makes nothing; the release before stands. */
        a = create_anonymous(fd);
        released[0] = a;
        released[1] = 999999;
        ck_assert_int_eq(mfb_wire_name_set(&create.name, "not-made"), 0);
        send_carrying(fd, MFB_WIRE_OP_CREATE, &create, sizeof(create), released, 2);
        ck_assert_uint_eq(next_reply(fd, &status), MFB_WIRE_OP_CREATE);
        ck_assert_int_eq(status, -ENOENT);
        ck_assert_int_eq(stat_of(fd, 0, "not-made", NULL), -ENOENT);
        ck_assert_int_eq(stat_of(fd, a, NULL, NULL), -ENOENT);
        ck_assert_int_eq(stat_of(fd, kept, NULL, NULL), 0);

        /* More than a record may carry is the wrong size, answered as such. */
        for (size_t i = 0; i < ELEMENTSOF(released); i++)
                released[i] = create_anonymous(fd);
        send_stat_carrying(fd, released[0], released, ELEMENTSOF(released));
        ck_assert_uint_eq(next_reply(fd, &status), MFB_WIRE_OP_STAT);
        ck_assert_int_eq(status, -EMSGSIZE);
        /* Nothing of it was released, and the connection goes on. */
        send_stat_carrying(fd, released[0], released + 1, MFB_WIRE_RELEASES_CARRIED_MAX);
        ck_assert_int_eq(raw_reply(fd, MFB_WIRE_OP_STAT, &info, sizeof(info), NULL), 0);
        ck_assert_uint_eq(info.nattch, 1);
        close(fd);
}
END_TEST

/*
 * Carried releases let go only of what the caller's own connection holds:
 * uid 65534, carrying the handle of root's region twice, gives back its own
 * reference and fails on the second, and root keeps its own.
 */
START_TEST(carried_releases_let_go_only_of_the_caller_s_own) {
        struct mfb_wire_create_request create = { .size = 4096, .mode = 0644 };
        struct mfb_wire_open_request open_req = { .access = MFB_WIRE_ACCESS_READ };
        struct mfb_wire_lookup_request by_handle = {};
        struct mfb_wire_region_reply region;
        struct mfb_wire_region_info info;
        uint64_t twice[2];
        int owner, other, memfd;
        int32_t status;

        if (geteuid() != 0) {
                fprintf(stderr, "SKIP %s: needs root to connect as uid 65534\n", __func__);
                return;
        }
        owner = raw_connect_hello(&test_broker);
        ck_assert_int_eq(mfb_wire_name_set(&create.name, "carried-shared"), 0);
        raw_send(owner, MFB_WIRE_OP_CREATE, &create, sizeof(create), NULL, 0);
        ck_assert_int_eq(raw_reply(owner, MFB_WIRE_OP_CREATE, &region, sizeof(region), &memfd), 0);
        safe_close(memfd);

        other = raw_connect_hello_as(&test_broker, 65534);
        open_req.name = create.name;
        raw_send(other, MFB_WIRE_OP_OPEN, &open_req, sizeof(open_req), NULL, 0);
        ck_assert_int_eq(raw_reply(other, MFB_WIRE_OP_OPEN, NULL, 0, &memfd), 0);
        safe_close(memfd);

        twice[0] = twice[1] = region.info.handle;
        send_stat_carrying(other, region.info.handle, twice, 2);
        ck_assert_uint_eq(next_reply(other, &status), MFB_WIRE_OP_STAT);
        ck_assert_int_eq(status, -ENOENT);

        by_handle.handle = region.info.handle;
        raw_send(owner, MFB_WIRE_OP_STAT, &by_handle, sizeof(by_handle), NULL, 0);
        ck_assert_int_eq(raw_reply(owner, MFB_WIRE_OP_STAT, &info, sizeof(info), NULL), 0);
        ck_assert_uint_eq(info.nattch, 1);

        by_handle = (struct mfb_wire_lookup_request) { .name = create.name };
        ck_assert_int_eq(raw_request(owner, MFB_WIRE_OP_REMOVE, &by_handle, sizeof(by_handle), NULL, 0), 0);
        close(other);
        close(owner);
}
END_TEST

/* A STAT of the region kept, carrying the releases of those held. */
struct carrying {
        uint64_t kept, held[MFB_WIRE_RELEASES_CARRIED_MAX];
};

static void send_carrying_stat(int fd, void *userdata) {
        struct carrying *c = userdata;

        send_stat_carrying(fd, c->kept, c->held, ELEMENTSOF(c->held));
}

/*
 * Each carried release costs its uid a turn, as a RELEASE record of its own
 * would: uid 65534's STAT carrying 16 releases makes it sit out the rounds
 * they cost, and root's CREATEs come first (raw_assert_root_served_first()).
 */
START_TEST(carried_releases_cost_their_uid_turns) {
        struct carrying carrying;
        int root, other;

        if (geteuid() != 0) {
                fprintf(stderr, "SKIP %s: needs root to connect as uid 65534\n", __func__);
                return;
        }
        root = raw_connect_hello(&test_broker);
        other = raw_connect_hello_as(&test_broker, 65534);
        for (size_t i = 0; i < ELEMENTSOF(carrying.held); i++)
                carrying.held[i] = create_anonymous(other);
        carrying.kept = create_anonymous(other);
        raw_assert_root_served_first(&test_broker, root, other, MFB_WIRE_OP_STAT, send_carrying_stat, &carrying);
        close(other);
        close(root);
}
END_TEST

/*
 * Replies with an fd that one connection can hold unread at most: its send
 * buffer of 128 KiB (SO_SNDBUF 64 KiB, which the kernel doubles), each
 * reply taking over 1 KiB of it. The default buffer would let through more.
 */
#define FDS_IN_FLIGHT_PER_CONNECTION_MAX 128

/*
 * A client that asks for fds and never reads the replies holds only so many
 * of them in flight: the kernel counts those against the broker's
 * RLIMIT_NOFILE, with the memfds it parks, so one connection must not be
 * able to take much of that room. Counted with the broker stopped, so that
 * it sends nothing while the socket is read.
 */
START_TEST(fds_in_flight_to_a_client_that_never_reads_are_bounded) {
        struct mfb_wire_create_request create = { .size = 4096 };
        struct mfb_wire_open_request open_req = { .access = MFB_WIRE_ACCESS_READ };
        struct mfb_wire_region_reply region;
        uint8_t buf[MFB_WIRE_RECORD_MAX];
        struct mfb_wire_header h;
        mfb_limit limits[MFB_LIMIT_COUNT];
        mfb_client *c = NULL;
        int fd = connect_hello(), memfd, fds[MFB_FDS_RECV_MAX], in_flight = 0;
        size_t nfds;
        ssize_t n;

        ck_assert_int_eq(mfb_wire_name_set(&create.name, "many-opens"), 0);
        raw_send(fd, MFB_WIRE_OP_CREATE, &create, sizeof(create), NULL, 0);
        ck_assert_int_eq(raw_reply(fd, MFB_WIRE_OP_CREATE, &region, sizeof(region), &memfd), 0);
        safe_close(memfd);
        ck_assert_int_eq(mfb_wire_name_set(&open_req.name, "many-opens"), 0);

        /*
         * Opens, without reading a reply, until the broker has one it cannot
         * send queued (LIMITS counts queued bytes): the socket holds all it can.
         */
        ck_assert_int_eq(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
        ck_assert_int_eq(mfb_client_connect(test_broker.socket_path, &c), 0);
        mfb_wire_header_init(&h, MFB_WIRE_OP_OPEN, 1, 0, 0, sizeof(h) + sizeof(open_req));
        memcpy(buf, &h, sizeof(h));
        memcpy(buf + sizeof(h), &open_req, sizeof(open_req));
        for (int waited_ms = 0;;) {
                struct pollfd p = { .fd = fd, .events = POLLOUT };

                if (send(fd, buf, sizeof(h) + sizeof(open_req), MSG_NOSIGNAL) >= 0)
                        continue;
                ck_assert_int_eq(errno, EAGAIN);
                ck_assert_int_eq(mfb_limits(c, MFB_LIMIT_COUNT, limits, NULL), MFB_LIMIT_COUNT);
                if (limits[MFB_LIMIT_QUEUED_BYTES].uid_used > 0)
                        break;
                /* The broker reads on until it has to queue, or stops just then: room to send, or look again. */
                if (poll(&p, 1, 10) == 0)
                        waited_ms += 10;
                ck_assert_int_lt(waited_ms, TEST_TIMEOUT_MS);
        }
        /* Its name gone now, the region goes with the last reference, when fd closes. */
        ck_assert_int_eq(mfb_remove(c, "many-opens"), 0);
        mfb_client_free(c);

        ck_assert_int_eq(kill(test_broker.pid, SIGSTOP), 0);
        while ((n = mfb_record_recv(fd, buf, sizeof(buf), fds, &nfds, MSG_DONTWAIT)) > 0) {
                in_flight += (int) nfds;
                mfb_close_fds(fds, nfds);
        }
        ck_assert_int_eq(kill(test_broker.pid, SIGCONT), 0);
        ck_assert_int_eq(n, -EAGAIN);
        ck_assert_int_gt(in_flight, 0);
        ck_assert_msg(in_flight <= FDS_IN_FLIGHT_PER_CONNECTION_MAX, "%d fds in flight to one connection", in_flight);
        close(fd);
}
END_TEST

/* A client that sends requests and never reads the replies only stalls itself. */
START_TEST(a_client_that_never_reads) {
        struct {
                struct mfb_wire_header h;
                struct mfb_wire_list_request body;
        } rec = { 0 };
        mfb_client *c = NULL;
        mfb_region_stat *entries = NULL;
        size_t n;
        int fd = connect_hello();

        mfb_wire_header_init(&rec.h, MFB_WIRE_OP_LIST, 1, 0, 0, sizeof(rec));
        /* Enough requests to fill the socket buffer with replies; the rest wait in the kernel. */
        ck_assert_int_eq(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
        for (int i = 0; i < 10000; i++)
                if (send(fd, &rec, sizeof(rec), MSG_NOSIGNAL) < 0) {
                        ck_assert_int_eq(errno, EAGAIN);
                        break;
                }

        ck_assert_int_eq(mfb_client_connect(test_broker.socket_path, &c), 0);
        ck_assert_int_eq(mfb_list(c, &entries, &n), 0);
        mfb_client_free(c);
        close(fd);
}
END_TEST

Suite *bad_input_suite(void) {
        Suite *s = suite_create("bad-input");
        TCase *tc = tcase_create("bad-input");

        tcase_set_timeout(tc, 60);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, garbage_drops_the_connection);
        tcase_add_test(tc, truncated_header_drops_the_connection);
        tcase_add_test(tc, lying_size_drops_the_connection);
        tcase_add_test(tc, oversized_record_drops_the_connection);
        tcase_add_test(tc, unknown_opcode_and_wrong_body_size);
        tcase_add_test(tc, hello_comes_first_and_once);
        tcase_add_test(tc, attached_fds_are_refused_and_closed);
        tcase_add_test(tc, bad_sizes_are_refused);
        tcase_add_test(tc, bad_names_are_refused);
        tcase_add_test(tc, release_of_what_is_not_held);
        tcase_add_test(tc, quiet_requests_answer_only_failures);
        tcase_add_test(tc, carried_releases_come_before_their_request);
        tcase_add_test(tc, carried_releases_let_go_only_of_the_caller_s_own);
        tcase_add_test(tc, carried_releases_cost_their_uid_turns);
        tcase_add_test(tc, fds_in_flight_to_a_client_that_never_reads_are_bounded);
        tcase_add_test(tc, a_client_that_never_reads);
        suite_add_tcase(s, tc);
        return s;
}
