/* SPDX-License-Identifier: MIT */
/*
 * Quotas at their boundaries: the limits per uid on regions, bytes and
 * connections (the last one that fits succeeds, the next one is refused
 * with EDQUOT, freeing one makes room again), that they bind one uid and
 * not another nor root, and the fair share of what is left that a uid may
 * take of the broker's regions. The other users are uid 65534 and 65533
 * (and 65532 as the broker's own):
 * a child of that uid makes the connections and passes them up, so that
 * the test speaks for that user; run as anyone but root, these tests cannot
 * switch users and say so.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "fdpass.h"
#include "macro.h"
#include "harness.h"
#include "raw.h"
#include "suites.h"

#define USER_A 65534
#define USER_B 65533
#define BROKER_USER 65532      /* a service user for the broker to run as */

#define REGIONS_PER_UID 4
#define BYTES_PER_UID (1U << 20)
#define CONNECTIONS_PER_UID 3
#define PAGE 4096

/* Broker-wide regions enough that no uid's share of them binds before its own limits. */
static const char *const per_uid_args[] = {
        "--max-regions", "100",
        "--max-regions-per-uid", "4",
        "--max-bytes-per-uid", "1M",
        "--max-connections-per-uid", "3",
        NULL,
};

/* Limits per uid above the broker's: only the share binds. */
#define SHARE_MAX_REGIONS 40
static const char *const share_args[] = {
        "--max-regions", "40",
        "--max-regions-per-uid", "100",
        NULL,
};

/* Holds fewer than the regions: what a uid may hold is bound by its share of holds alone. */
#define SHARE_MAX_HOLDS 40
static const char *const holds_args[] = {
        "--max-regions", "100",
        "--max-holds", "40",
        NULL,
};

/* Returns false, after saying why, when this process cannot become another user. */
static bool can_switch_users(const char *test) {
        if (geteuid() == 0)
                return true;
        fprintf(stderr, "SKIP %s: needs root to switch to uids %d and %d\n", test, USER_A, USER_B);
        return false;
}

/* A connection of uid to b that has done HELLO. */
static int connect_as(const struct test_broker *b, uid_t uid) {
        return raw_connect_hello_as(b, uid);
}

/* A reply's body: a region, or the text of a refusal (NUL-terminated, as the body is shorter). */
union reply_body {
        struct mfb_wire_region_reply region;
        char message[MFB_WIRE_ERROR_MESSAGE_MAX + 1];
};

/* Sends req on fd and returns the reply's status, its body in *ret. */
static int32_t request(int fd, uint16_t opcode, const void *req, size_t len, union reply_body *ret) {
        memset(ret, 0, sizeof(*ret));
        raw_send(fd, opcode, req, len, NULL, 0);
        return raw_reply(fd, opcode, ret, sizeof(*ret) - 1, NULL);
}

/* CREATE of an anonymous region of size bytes on fd, which must succeed; returns its handle. */
static uint64_t create(int fd, uint64_t size) {
        struct mfb_wire_create_request req = { .size = size };
        union reply_body body;
        int32_t k = request(fd, MFB_WIRE_OP_CREATE, &req, sizeof(req), &body);

        ck_assert_msg(k == 0, "CREATE of %llu bytes: %s (%s)", (unsigned long long) size, strerror(-k), body.message);
        return body.region.info.handle;
}

/* CREATE of size bytes on fd, which must be refused with status, for a reason that names resource. */
static void create_refused(int fd, uint64_t size, int32_t status, const char *resource) {
        struct mfb_wire_create_request req = { .size = size };
        union reply_body body;
        int32_t k = request(fd, MFB_WIRE_OP_CREATE, &req, sizeof(req), &body);

        ck_assert_msg(k == status, "CREATE of %llu bytes: %s, not %s", (unsigned long long) size,
                      k == 0 ? "success" : strerror(-k), strerror(-status));
        ck_assert_msg(strstr(body.message, resource), "the refusal '%s' does not name %s", body.message, resource);
}

/* A connection of uid to b that creates n regions of a page, the last that fit: the next is refused with EDQUOT. */
static int connect_and_fill(const struct test_broker *b, uid_t uid, unsigned n) {
        int fd = connect_as(b, uid);

        for (unsigned i = 0; i < n; i++)
                create(fd, PAGE);
        create_refused(fd, PAGE, -EDQUOT, "regions");
        return fd;
}

/* RELEASE of a region fd holds: anonymous, it goes, and so does its charge. */
static void release(int fd, uint64_t handle) {
        struct mfb_wire_release_request req = { .handle = handle };

        ck_assert_int_eq(raw_request(fd, MFB_WIRE_OP_RELEASE, &req, sizeof(req), NULL, 0), 0);
}

START_TEST(regions_per_uid_stop_at_the_limit) {
        uint64_t handles[REGIONS_PER_UID];
        int a, b, root;

        if (!can_switch_users(__func__))
                return;
        a = connect_as(&test_broker, USER_A);
        for (int i = 0; i < REGIONS_PER_UID; i++)
                handles[i] = create(a, PAGE);
        create_refused(a, PAGE, -EDQUOT, "regions");

        /* Freeing one makes room for one. */
        release(a, handles[0]);
        create(a, PAGE);
        create_refused(a, PAGE, -EDQUOT, "regions");

        /* Another uid has a limit of its own, and root none, while A is at its limit. */
        b = connect_and_fill(&test_broker, USER_B, REGIONS_PER_UID);
        root = raw_connect_hello(&test_broker);
        for (int i = 0; i < 2 * REGIONS_PER_UID; i++)
                create(root, PAGE);

        close(root);
        close(b);
        close(a);
}
END_TEST

START_TEST(bytes_per_uid_stop_at_the_limit) {
        const uint64_t first = 600000, rest = BYTES_PER_UID - first;
        uint64_t handle;
        int a, b, root;

        if (!can_switch_users(__func__))
                return;
        a = connect_as(&test_broker, USER_A);
        handle = create(a, first);
        create_refused(a, rest + 1, -EDQUOT, "bytes");
        create(a, rest);
        /* Exactly at the limit now: not one byte more. */
        create_refused(a, 1, -EDQUOT, "bytes");

        release(a, handle);
        create(a, first);
        create_refused(a, 1, -EDQUOT, "bytes");

        b = connect_as(&test_broker, USER_B);
        create(b, BYTES_PER_UID);
        create_refused(b, 1, -EDQUOT, "bytes");
        root = raw_connect_hello(&test_broker);
        create(root, 2 * BYTES_PER_UID);
        create(root, BYTES_PER_UID);

        close(root);
        close(b);
        close(a);
}
END_TEST

/* HELLO on a fresh connection: its status, and the text of a refusal in *ret. */
static int32_t hello(int fd, union reply_body *ret) {
        struct mfb_wire_hello_request req = { .version_min = MFB_WIRE_VERSION, .version_max = MFB_WIRE_VERSION };

        return request(fd, MFB_WIRE_OP_HELLO, &req, sizeof(req), ret);
}

START_TEST(connections_per_uid_stop_at_the_limit) {
        int a[CONNECTIONS_PER_UID + 1], b[CONNECTIONS_PER_UID], root[CONNECTIONS_PER_UID + 2], again;
        unsigned baseline = test_broker_fd_count(&test_broker), held;
        union reply_body body;
        char byte;

        if (!can_switch_users(__func__))
                return;
        /* Made in this order, so the broker counts the last one over the limit. */
        raw_connect_as(&test_broker, USER_A, 0, CONNECTIONS_PER_UID + 1, a);
        for (int i = 0; i < CONNECTIONS_PER_UID; i++)
                ck_assert_int_eq(hello(a[i], &body), 0);
        ck_assert_int_eq(hello(a[CONNECTIONS_PER_UID], &body), -EDQUOT);
        ck_assert_msg(strstr(body.message, "connections"), "the refusal '%s' does not name connections",
                      body.message);
        /* Then the broker closes it. */
        ck_assert_int_eq(raw_recv(a[CONNECTIONS_PER_UID], &byte, 1, NULL), 0);
        close(a[CONNECTIONS_PER_UID]);
        ck_assert(test_broker_wait_fd_count(&test_broker, baseline + CONNECTIONS_PER_UID));

        /* Another uid and root get theirs while A is at its limit. */
        raw_connect_as(&test_broker, USER_B, 0, CONNECTIONS_PER_UID, b);
        for (int i = 0; i < CONNECTIONS_PER_UID; i++) {
                ck_assert_int_eq(hello(b[i], &body), 0);
                create(b[i], PAGE);
        }
        for (int i = 0; i < CONNECTIONS_PER_UID + 2; i++) {
                root[i] = raw_connect_hello(&test_broker);
                create(root[i], PAGE);
        }

        /*
         * Once the broker has seen one of A's go, A may have another. The
         * broker holds an fd for every connection and region (and, for a
         * moment after each CREATE reply, the copy it sent): A's
         * connections, B's and root's with a region each.
         */
        held = baseline + CONNECTIONS_PER_UID + 2 * CONNECTIONS_PER_UID + 2 * (CONNECTIONS_PER_UID + 2);
        ck_assert(test_broker_wait_fd_count(&test_broker, held));
        close(a[0]);
        ck_assert(test_broker_wait_fd_count(&test_broker, held - 1));
        raw_connect_as(&test_broker, USER_A, 0, 1, &again);
        ck_assert_int_eq(hello(again, &body), 0);
        create(again, PAGE);

        close(again);
        for (int i = 0; i < CONNECTIONS_PER_UID + 2; i++)
                close(root[i]);
        for (int i = 0; i < CONNECTIONS_PER_UID; i++)
                close(b[i]);
        for (int i = 1; i < CONNECTIONS_PER_UID; i++)
                close(a[i]);
}
END_TEST

/* Refused connections of one uid that the broker keeps until they send their first request. */
#define REFUSED_WAITING_MAX 8

/*
 * Connections refused over the limit hold an fd each until they are told
 * why, so only a few may wait silently; the next is told at once, with the
 * refusal record (cookie 0), and closed: silent connections cannot pile up.
 */
START_TEST(silent_refused_connections_do_not_pile_up) {
        int counted[CONNECTIONS_PER_UID], silent[REFUSED_WAITING_MAX], late;
        unsigned baseline = test_broker_fd_count(&test_broker);
        union {
                struct mfb_wire_header h;
                char bytes[sizeof(struct mfb_wire_header) + MFB_WIRE_ERROR_MESSAGE_MAX];
        } rec;
        ssize_t n;

        if (!can_switch_users(__func__))
                return;
        raw_connect_as(&test_broker, USER_A, 0, CONNECTIONS_PER_UID, counted);
        raw_connect_as(&test_broker, USER_A, 0, REFUSED_WAITING_MAX, silent);
        ck_assert(test_broker_wait_fd_count(&test_broker, baseline + CONNECTIONS_PER_UID + REFUSED_WAITING_MAX));

        raw_connect_as(&test_broker, USER_A, 0, 1, &late);
        n = raw_recv(late, &rec, sizeof(rec), NULL);
        ck_assert_int_gt(n, (ssize_t) sizeof(rec.h));
        ck_assert_uint_eq(rec.h.opcode, MFB_WIRE_OP_HELLO | MFB_WIRE_REPLY);
        ck_assert_uint_eq(rec.h.cookie, 0);
        ck_assert_int_eq(rec.h.status, -EDQUOT);
        ck_assert_int_eq(raw_recv(late, &rec, sizeof(rec), NULL), 0);
        close(late);
        ck_assert(test_broker_wait_fd_count(&test_broker, baseline + CONNECTIONS_PER_UID + REFUSED_WAITING_MAX));

        for (int i = 0; i < REFUSED_WAITING_MAX; i++)
                close(silent[i]);
        for (int i = 0; i < CONNECTIONS_PER_UID; i++)
                close(counted[i]);
        ck_assert(test_broker_wait_fd_count(&test_broker, baseline));
}
END_TEST

/*
 * How many regions, one after another, a non-exempt uid that holds none may
 * create when others hold used of broker_max, holders of them non-exempt:
 * it may take one more while, holding held, (n + 1) * (held + 1) - held <=
 * broker_max - used - held, with n the non-exempt holders, itself counted.
 */
static unsigned fair_share(unsigned broker_max, unsigned used, unsigned holders) {
        unsigned held = 0, n = holders + 1;

        while ((n + 1) * (held + 1) - held <= broker_max - used - held)
                held++;
        return held;
}

START_TEST(a_uid_gets_its_fair_share_of_regions) {
        unsigned share_a = fair_share(SHARE_MAX_REGIONS, 0, 0);
        unsigned share_b = fair_share(SHARE_MAX_REGIONS, share_a, 1);
        int a, b, root;

        if (!can_switch_users(__func__))
                return;
        /* Half for a uid alone; for the next, a share of what the first left. */
        ck_assert_uint_eq(share_a, SHARE_MAX_REGIONS / 2);
        ck_assert_uint_gt(share_b, 0);

        a = connect_and_fill(&test_broker, USER_A, share_a);
        b = connect_and_fill(&test_broker, USER_B, share_b);

        /* Root takes no share: it gets everything that is left, and is refused only then. */
        root = raw_connect_hello(&test_broker);
        for (unsigned i = share_a + share_b; i < SHARE_MAX_REGIONS; i++)
                create(root, PAGE);
        create_refused(root, PAGE, -ENOSPC, "regions");

        close(root);
        close(b);
        close(a);
}
END_TEST

/* OPEN read-only of the region named name on fd: its status, and the refusal's text in *ret. */
static int32_t open_named(int fd, const char *name, union reply_body *ret) {
        struct mfb_wire_open_request req = { .access = MFB_WIRE_ACCESS_READ };

        ck_assert_int_eq(mfb_wire_name_set(&req.name, name), 0);
        return request(fd, MFB_WIRE_OP_OPEN, &req, sizeof(req), ret);
}

/*
 * References are shared too: a uid that opens the regions others let it
 * read, each from its connection, takes holds, and may take only its share
 * of them, so that it cannot make the broker keep a record for every region
 * in every one of its connections.
 */
START_TEST(a_uid_gets_its_fair_share_of_holds) {
        unsigned share_a = fair_share(SHARE_MAX_HOLDS, 0, 0);
        unsigned share_b = fair_share(SHARE_MAX_HOLDS, share_a, 1);
        struct mfb_wire_create_request create_req = { .size = PAGE, .mode = 0644 };
        union reply_body body;
        char name[32];
        int root, a, b;
        int32_t k;

        if (!can_switch_users(__func__))
                return;
        /* Named regions that everyone may read, which root creates and lets go of: nobody holds them. */
        root = raw_connect_hello(&test_broker);
        for (unsigned i = 0; i < SHARE_MAX_HOLDS + 1; i++) {
                snprintf(name, sizeof(name), "public-%u", i);
                ck_assert_int_eq(mfb_wire_name_set(&create_req.name, name), 0);
                ck_assert_int_eq(request(root, MFB_WIRE_OP_CREATE, &create_req, sizeof(create_req), &body), 0);
                release(root, body.region.info.handle);
        }

        a = connect_as(&test_broker, USER_A);
        for (unsigned i = 0; i < share_a; i++) {
                snprintf(name, sizeof(name), "public-%u", i);
                ck_assert_int_eq(open_named(a, name, &body), 0);
        }
        /* The same region again costs nothing more; another one is refused. */
        ck_assert_int_eq(open_named(a, "public-0", &body), 0);
        snprintf(name, sizeof(name), "public-%u", share_a);
        k = open_named(a, name, &body);
        ck_assert_msg(k == -EDQUOT, "OPEN past the share: %s", k == 0 ? "success" : strerror(-k));
        ck_assert_msg(strstr(body.message, "region references"), "the refusal '%s' names no references",
                      body.message);

        b = connect_as(&test_broker, USER_B);
        for (unsigned i = 0; i < share_b; i++) {
                snprintf(name, sizeof(name), "public-%u", i);
                ck_assert_int_eq(open_named(b, name, &body), 0);
        }
        snprintf(name, sizeof(name), "public-%u", share_b);
        ck_assert_int_eq(open_named(b, name, &body), -EDQUOT);

        /* Letting go makes room again. */
        close(a);
        a = connect_as(&test_broker, USER_A);
        ck_assert_int_eq(open_named(a, name, &body), 0);

        /* Root takes no share: what is left is its own, and then it is refused. */
        for (unsigned i = 0, left = SHARE_MAX_HOLDS - share_b - 1; i < left; i++) {
                snprintf(name, sizeof(name), "public-%u", i);
                ck_assert_int_eq(open_named(root, name, &body), 0);
        }
        snprintf(name, sizeof(name), "public-%u", SHARE_MAX_HOLDS);
        ck_assert_int_eq(open_named(root, name, &body), -ENOSPC);

        close(b);
        close(a);
        close(root);
}
END_TEST

START_TEST(root_and_the_brokers_own_uid_are_exempt) {
        struct test_broker b;
        int a, exempt[2], connections[CONNECTIONS_PER_UID + 2];
        union reply_body body;

        if (!can_switch_users(__func__))
                return;
        if (!test_uid_can_run_broker(BROKER_USER)) {
                fprintf(stderr, "SKIP %s: uid %d cannot reach the built broker (a private folder on its path)\n",
                        __func__, BROKER_USER);
                return;
        }
        /* Running as a user of its own, as a system service does, the broker exempts that user and root. */
        test_broker_start_as(&b, per_uid_args, BROKER_USER);
        a = connect_and_fill(&b, USER_A, REGIONS_PER_UID);

        exempt[0] = raw_connect_hello(&b);
        exempt[1] = connect_as(&b, BROKER_USER);
        for (int e = 0; e < 2; e++) {
                for (int i = 0; i < 2 * REGIONS_PER_UID; i++)
                        create(exempt[e], PAGE);
                create(exempt[e], 2 * BYTES_PER_UID);
        }
        raw_connect_as(&b, BROKER_USER, 0, CONNECTIONS_PER_UID + 2, connections);
        for (int i = 0; i < CONNECTIONS_PER_UID + 2; i++) {
                ck_assert_int_eq(hello(connections[i], &body), 0);
                close(connections[i]);
        }

        close(exempt[1]);
        close(exempt[0]);
        close(a);
        test_broker_stop(&b);
}
END_TEST

/*
 * CREATE_BATCH of count regions of size bytes on fd: returns the reply's
 * status; on success the handles and fds (checked: sealed against
 * resizing, of that size, read-write, one per handle) are the caller's.
 */
static int32_t create_batch_reply(int fd, uint32_t count, uint64_t size, uint64_t *ret_handles, int *ret_fds);

static int32_t create_batch(int fd, uint32_t count, uint64_t size, uint64_t *ret_handles, int *ret_fds) {
        struct mfb_wire_create_batch_request req = { .size = size, .count = count };

        raw_send(fd, MFB_WIRE_OP_CREATE_BATCH, &req, sizeof(req), NULL, 0);
        return create_batch_reply(fd, count, size, ret_handles, ret_fds);
}

/* The reply to a CREATE_BATCH of count regions of size bytes, checked as create_batch() says. */
static int32_t create_batch_reply(int fd, uint32_t count, uint64_t size, uint64_t *ret_handles, int *ret_fds) {
        union {
                struct mfb_wire_header h;
                uint8_t bytes[MFB_WIRE_RECORD_MAX];
        } rec;
        struct mfb_wire_create_batch_reply reply;
        int fds[MFB_FDS_RECV_MAX];
        size_t nfds = 0;
        ssize_t n;

        n = mfb_record_recv(fd, rec.bytes, sizeof(rec), fds, &nfds, 0);
        ck_assert_int_gt(n, 0);
        ck_assert_int_eq(mfb_wire_reply_check(rec.bytes, (size_t) n, nfds, &rec.h), 0);
        ck_assert_uint_eq(rec.h.opcode, MFB_WIRE_OP_CREATE_BATCH | MFB_WIRE_REPLY);
        if (rec.h.status < 0)
                return rec.h.status;
        memcpy(&reply, rec.bytes + sizeof(rec.h), sizeof(reply));
        ck_assert_uint_eq(reply.count, count);
        ck_assert_uint_eq(reply.size, size);
        ck_assert_uint_eq(reply.access, MFB_WIRE_ACCESS_READ | MFB_WIRE_ACCESS_WRITE);
        for (uint32_t i = 0; i < count; i++) {
                struct stat st;

                memcpy(&ret_handles[i], rec.bytes + sizeof(rec.h) + sizeof(reply) + i * sizeof(uint64_t),
                       sizeof(uint64_t));
                ck_assert_int_eq(fstat(fds[i], &st), 0);
                ck_assert_int_eq(st.st_size, (off_t) size);
                ck_assert_int_eq(fcntl(fds[i], F_GET_SEALS) & (F_SEAL_SHRINK | F_SEAL_GROW),
                                 F_SEAL_SHRINK | F_SEAL_GROW);
                ck_assert_int_eq(fcntl(fds[i], F_GETFL) & O_ACCMODE, O_RDWR);
                for (uint32_t j = 0; j < i; j++)
                        ck_assert_uint_ne(ret_handles[j], ret_handles[i]);
                ret_fds[i] = fds[i];
        }
        return 0;
}

/*
 * A batch is made whole or not at all: one that does not fit in what is
 * left of the uid's regions leaves none of its regions behind.
 */
START_TEST(a_batch_is_made_all_or_none) {
        uint64_t handles[MFB_WIRE_CREATE_BATCH_MAX];
        int fds[MFB_WIRE_CREATE_BATCH_MAX], fd, root;
        union reply_body body;

        /*
         * As root, a user the limits bind. Anyone else runs the broker as
         * itself, which makes it the broker's own uid, exempt from them:
         * only the checks of the request are left to try then.
         */
        fd = geteuid() == 0 ? connect_as(&test_broker, USER_A) : raw_connect_hello(&test_broker);
        if (can_switch_users(__func__)) {
                struct mfb_wire_create_batch_request two = { .size = PAGE, .count = 2 };
                int32_t k;

                ck_assert_int_eq(create_batch(fd, REGIONS_PER_UID - 1, PAGE, handles, fds), 0);
                mfb_close_fds(fds, REGIONS_PER_UID - 1);
                /* Two do not fit where one does: the refusal names what ran out, and the one is still free. */
                memset(&body, 0, sizeof(body));
                ck_assert_int_eq(create_batch(fd, 2, PAGE, handles + REGIONS_PER_UID, fds), -EDQUOT);
                k = request(fd, MFB_WIRE_OP_CREATE_BATCH, &two, sizeof(two), &body);
                ck_assert_int_eq(k, -EDQUOT);
                ck_assert_msg(strstr(body.message, "regions"), "the refusal '%s' does not name regions",
                              body.message);
                create(fd, PAGE);
                create_refused(fd, PAGE, -EDQUOT, "regions");
                /* Giving back a batch's region makes room for one. */
                release(fd, handles[0]);
                create(fd, PAGE);
        }

        /* Counts out of range, and reserved bits, are refused. */
        {
                struct mfb_wire_create_batch_request bad[] = {
                        { .size = PAGE, .count = 0 },
                        { .size = PAGE, .count = MFB_WIRE_CREATE_BATCH_MAX + 1 },
                        { .size = PAGE, .count = 1, .reserved = 1 },
                        { .size = PAGE, .count = 1, .flags = 0x80 },
                        { .size = PAGE, .count = 1, .mode = 01000 },
                };

                for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                        ck_assert_int_eq(raw_request(fd, MFB_WIRE_OP_CREATE_BATCH, &bad[i], sizeof(bad[i]), NULL, 0),
                                         -EINVAL);
        }
        close(fd);

        /* The most one batch makes, one fd each in one reply, from a broker with room for them. */
        {
                struct test_broker big;

                test_broker_start(&big, NULL);
                root = raw_connect_hello(&big);
                ck_assert_int_eq(create_batch(root, MFB_WIRE_CREATE_BATCH_MAX, PAGE, handles, fds), 0);
                mfb_close_fds(fds, MFB_WIRE_CREATE_BATCH_MAX);

                /*
                 * Replies the client leaves unread fill its socket, and a batch's
                 * reply waits in the broker's queue then, with copies of its fds
                 * there: they come whole once the client reads.
                 */
                {
                        struct mfb_wire_list_request list = { .after_handle = 0 };
                        struct mfb_wire_create_batch_request batch = { .size = PAGE, .count = 10 };
                        static uint8_t buf[MFB_WIRE_RECORD_MAX];

                        for (int i = 0; i < 12; i++)
                                raw_send(root, MFB_WIRE_OP_LIST, &list, sizeof(list), NULL, 0);
                        raw_send(root, MFB_WIRE_OP_CREATE_BATCH, &batch, sizeof(batch), NULL, 0);
                        raw_wait_consumed(root);
                        for (int i = 0; i < 12; i++)
                                ck_assert_int_gt(raw_recv(root, buf, sizeof(buf), NULL), (ssize_t) MFB_WIRE_RECORD_MAX / 2);
                        ck_assert_int_eq(create_batch_reply(root, 10, PAGE, handles, fds), 0);
                        mfb_close_fds(fds, 10);
                }
                close(root);
                test_broker_stop(&big);
        }
}
END_TEST

/*
 * A batch takes its regions from its uid's share as CREATEs one after
 * another would: a uid that asks for far more than its share in one batch
 * is refused, holds nothing of it, and takes nothing from the share of
 * another uid that creates regions one by one next to it.
 */
START_TEST(a_batch_takes_no_more_than_its_uids_share) {
        unsigned share_a = fair_share(SHARE_MAX_REGIONS, 0, 0);
        unsigned share_b = fair_share(SHARE_MAX_REGIONS, share_a, 1);
        struct mfb_wire_create_batch_request most = { .size = PAGE, .count = MFB_WIRE_CREATE_BATCH_MAX };
        uint64_t handles[MFB_WIRE_CREATE_BATCH_MAX];
        int fds[MFB_WIRE_CREATE_BATCH_MAX], a, b, root;
        union reply_body body;

        if (!can_switch_users(__func__))
                return;
        a = connect_as(&test_broker, USER_A);
        b = connect_as(&test_broker, USER_B);

        /* The most a batch may ask for, and one more than A's share: refused for the share, nothing kept. */
        ck_assert_int_eq(request(a, MFB_WIRE_OP_CREATE_BATCH, &most, sizeof(most), &body), -EDQUOT);
        ck_assert_msg(strstr(body.message, "regions"), "the refusal '%s' does not name regions", body.message);
        ck_assert_int_eq(create_batch(a, share_a + 1, PAGE, handles, fds), -EDQUOT);

        /* B creates one and gives it back between A's batches, while A holds nothing. */
        release(b, create(b, PAGE));

        /* A's share in one batch, then not one region more, by batch or by CREATE. */
        ck_assert_int_eq(create_batch(a, share_a, PAGE, handles, fds), 0);
        mfb_close_fds(fds, share_a);
        ck_assert_int_eq(create_batch(a, 1, PAGE, handles, fds), -EDQUOT);
        create_refused(a, PAGE, -EDQUOT, "regions");

        /* B has all the share that A's regions leave it, and not one region more, batch or not. */
        ck_assert_int_eq(request(b, MFB_WIRE_OP_CREATE_BATCH, &most, sizeof(most), &body), -EDQUOT);
        ck_assert_int_eq(create_batch(b, share_b + 1, PAGE, handles, fds), -EDQUOT);
        for (unsigned i = 0; i < share_b; i++)
                create(b, PAGE);
        create_refused(b, PAGE, -EDQUOT, "regions");

        /* No refused batch left a region behind: root gets exactly what the two shares leave. */
        root = raw_connect_hello(&test_broker);
        for (unsigned i = share_a + share_b; i < SHARE_MAX_REGIONS; i++)
                create(root, PAGE);
        create_refused(root, PAGE, -ENOSPC, "regions");

        close(root);
        close(b);
        close(a);
}
END_TEST

/*
 * A quiet REMOVE or RELEASE (answered only when it fails) is checked as a
 * loud one: another uid's is refused, and says so, and what the owner holds
 * stays charged to it. The owner's own quiet REMOVE gives the charge back
 * before its next request is handled.
 */
START_TEST(a_quiet_remove_of_another_uids_region_is_refused_aloud) {
        struct mfb_wire_create_request create_req = { .size = PAGE, .mode = 0644 };
        struct mfb_wire_lookup_request by_name = {};
        struct mfb_wire_release_request rel = {};
        uint64_t handles[REGIONS_PER_UID];
        union reply_body body;
        char name[32];
        int a, b;
        int32_t k;

        if (!can_switch_users(__func__))
                return;
        a = connect_as(&test_broker, USER_A);
        b = connect_as(&test_broker, USER_B);
        /* A at its limit, with named regions that B may read. */
        for (int i = 0; i < REGIONS_PER_UID; i++) {
                snprintf(name, sizeof(name), "a-%d", i);
                ck_assert_int_eq(mfb_wire_name_set(&create_req.name, name), 0);
                ck_assert_int_eq(request(a, MFB_WIRE_OP_CREATE, &create_req, sizeof(create_req), &body), 0);
                handles[i] = body.region.info.handle;
        }
        create_refused(a, PAGE, -EDQUOT, "regions");

        /* B's quiet REMOVE of A's region, by name: refused, answered, and A still holds it. */
        ck_assert_int_eq(mfb_wire_name_set(&by_name.name, "a-0"), 0);
        memset(&body, 0, sizeof(body));
        raw_send_flags(b, MFB_WIRE_OP_REMOVE, MFB_WIRE_FLAG_QUIET, &by_name, sizeof(by_name), NULL, 0);
        k = raw_reply(b, MFB_WIRE_OP_REMOVE, &body, sizeof(body) - 1, NULL);
        ck_assert_msg(k == -EPERM, "uid %d's quiet REMOVE of uid %d's region: %s", USER_B, USER_A,
                      k == 0 ? "success" : strerror(-k));
        ck_assert_msg(strstr(body.message, "owner"), "the refusal '%s' does not name the owner", body.message);
        /* B's quiet RELEASE of the handle of A's region: B holds no such region, and is told. */
        rel.handle = handles[0];
        raw_send_flags(b, MFB_WIRE_OP_RELEASE, MFB_WIRE_FLAG_QUIET, &rel, sizeof(rel), NULL, 0);
        ck_assert_int_lt(raw_reply(b, MFB_WIRE_OP_RELEASE, &body, sizeof(body) - 1, NULL), 0);
        ck_assert_int_eq(open_named(b, "a-0", &body), 0);
        release(b, body.region.info.handle);
        create_refused(a, PAGE, -EDQUOT, "regions");

        /*
         * A's own quiet REMOVE of the name and RELEASE of its hold: no answer
         * to either, and its next CREATE, the next answered, has the room.
         */
        raw_send_flags(a, MFB_WIRE_OP_REMOVE, MFB_WIRE_FLAG_QUIET, &by_name, sizeof(by_name), NULL, 0);
        raw_send_flags(a, MFB_WIRE_OP_RELEASE, MFB_WIRE_FLAG_QUIET, &rel, sizeof(rel), NULL, 0);
        create(a, PAGE);
        create_refused(a, PAGE, -EDQUOT, "regions");

        close(b);
        close(a);
}
END_TEST

/*
 * The broker-wide limits, met by root, which takes no share: it gets exactly
 * the limit, and is refused only past it, with ENOSPC (EDQUOT for a
 * connection), while the broker goes on serving the connections it has.
 */
START_TEST(the_brokers_bytes_stop_at_the_limit) {
        static const char *const args[] = { "--max-bytes", "1M", NULL };
        const uint64_t first = 600000, rest = BYTES_PER_UID - first;
        struct test_broker limited;
        uint64_t handle;
        int a, b;

        test_broker_start(&limited, args);
        a = raw_connect_hello(&limited);
        handle = create(a, first);
        create_refused(a, rest + 1, -ENOSPC, "bytes");
        create(a, rest);
        /* Exactly at the limit now: not one byte more, for this connection or another. */
        create_refused(a, 1, -ENOSPC, "bytes");
        b = raw_connect_hello(&limited);
        create_refused(b, 1, -ENOSPC, "bytes");

        /* Freeing some makes room for as much. */
        release(a, handle);
        create(b, first);
        create_refused(b, 1, -ENOSPC, "bytes");

        close(b);
        close(a);
        test_broker_stop(&limited);
}
END_TEST

#define MAX_CONNECTIONS 3
START_TEST(the_brokers_connections_stop_at_the_limit) {
        static const char *const args[] = { "--max-connections", "3", NULL };
        struct test_broker limited;
        int fds[MAX_CONNECTIONS], late;
        union {
                struct mfb_wire_header h;
                char bytes[sizeof(struct mfb_wire_header) + MFB_WIRE_ERROR_MESSAGE_MAX];
        } rec;
        unsigned baseline;

        test_broker_start(&limited, args);
        baseline = test_broker_fd_count(&limited);
        for (int i = 0; i < MAX_CONNECTIONS; i++)
                fds[i] = raw_connect_hello(&limited);

        /*
         * One more is turned away: root is never kept waiting to be told, so
         * it gets the refusal record (cookie 0) at once, and is closed.
         */
        late = test_raw_connect(&limited);
        ck_assert_int_ge(late, 0);
        ck_assert_int_gt(raw_recv(late, &rec, sizeof(rec), NULL), (ssize_t) sizeof(rec.h));
        ck_assert_uint_eq(rec.h.opcode, MFB_WIRE_OP_HELLO | MFB_WIRE_REPLY);
        ck_assert_uint_eq(rec.h.cookie, 0);
        ck_assert_int_eq(rec.h.status, -EDQUOT);
        ck_assert_int_eq(raw_recv(late, &rec, sizeof(rec), NULL), 0);
        close(late);

        /* Those it has are served; once one goes, another may come. */
        for (int i = 0; i < MAX_CONNECTIONS; i++)
                release(fds[i], create(fds[i], PAGE));
        ck_assert(test_broker_wait_fd_count(&limited, baseline + MAX_CONNECTIONS));
        close(fds[0]);
        ck_assert(test_broker_wait_fd_count(&limited, baseline + MAX_CONNECTIONS - 1));
        fds[0] = raw_connect_hello(&limited);
        release(fds[0], create(fds[0], PAGE));

        for (int i = 0; i < MAX_CONNECTIONS; i++)
                close(fds[i]);
        test_broker_stop(&limited);
}
END_TEST

/*
 * --max-holds-per-connection counts every reference a connection holds,
 * whether it came from CREATE, CREATE_BATCH or OPEN, the same region opened
 * twice counting twice; past it, ENOSPC, for that connection only.
 */
#define HOLDS_PER_CONNECTION 3
START_TEST(holds_per_connection_stop_at_the_limit) {
        static const char *const args[] = { "--max-holds-per-connection", "3", NULL };
        struct mfb_wire_create_request create_req = { .size = PAGE, .mode = 0644 };
        struct test_broker limited;
        uint64_t handles[2];
        int fds[2], a, b;
        union reply_body body;

        test_broker_start(&limited, args);
        a = raw_connect_hello(&limited);
        ck_assert_int_eq(mfb_wire_name_set(&create_req.name, "held"), 0);
        ck_assert_int_eq(request(a, MFB_WIRE_OP_CREATE, &create_req, sizeof(create_req), &body), 0);
        ck_assert_int_eq(open_named(a, "held", &body), 0);

        /* One left: a batch of two is refused whole, one of one fits, and then nothing more. */
        ck_assert_int_eq(create_batch(a, 2, PAGE, handles, fds), -ENOSPC);
        ck_assert_int_eq(create_batch(a, 1, PAGE, handles, fds), 0);
        close(fds[0]);
        create_refused(a, PAGE, -ENOSPC, "references");
        ck_assert_int_eq(open_named(a, "held", &body), -ENOSPC);
        ck_assert_msg(strstr(body.message, "references"), "the refusal '%s' names no references", body.message);

        /* Another connection has a limit of its own. */
        b = raw_connect_hello(&limited);
        for (int i = 0; i < HOLDS_PER_CONNECTION; i++)
                ck_assert_int_eq(open_named(b, "held", &body), 0);
        ck_assert_int_eq(open_named(b, "held", &body), -ENOSPC);

        /* Letting go of one makes room for one. */
        release(a, handles[0]);
        create(a, PAGE);
        create_refused(a, PAGE, -ENOSPC, "references");

        close(b);
        close(a);
        test_broker_stop(&limited);
}
END_TEST

/* A broker whose fd limit leaves the replies a quarter of it unread in flight: fewer than a batch of 253. */
#define IN_FLIGHT_FD_LIMIT 600U
#define IN_FLIGHT_ROOM (IN_FLIGHT_FD_LIMIT / 4)

/*
 * A batch whose fds would go beyond what its uid may leave unread in flight
 * is refused, whole and before any region is made, rather than its reply
 * failing the connection; one of exactly that many is sent, and read, the
 * room is there again.
 */
START_TEST(a_batch_takes_no_more_fds_in_flight_than_there_is_room_for) {
        uint64_t handles[MFB_WIRE_CREATE_BATCH_MAX];
        int fds[MFB_WIRE_CREATE_BATCH_MAX], fd;
        struct test_broker limited;
        union reply_body body;
        struct mfb_wire_create_batch_request over = { .size = PAGE, .count = IN_FLIGHT_ROOM + 1 };

        test_broker_start_unwrapped(&limited, NULL, geteuid(), IN_FLIGHT_FD_LIMIT);
        fd = raw_connect_hello(&limited);
        for (int round = 0; round < 2; round++) {
                ck_assert_int_eq(request(fd, MFB_WIRE_OP_CREATE_BATCH, &over, sizeof(over), &body), -EDQUOT);
                ck_assert_msg(strstr(body.message, "in flight"), "the refusal '%s' says nothing of fds in flight",
                              body.message);
                ck_assert_int_eq(create_batch(fd, IN_FLIGHT_ROOM, PAGE, handles, fds), 0);
                mfb_close_fds(fds, IN_FLIGHT_ROOM);
                for (unsigned i = 0; i < IN_FLIGHT_ROOM; i++)
                        release(fd, handles[i]);
        }
        /* The connection goes on. */
        create(fd, PAGE);
        close(fd);
        test_broker_stop(&limited);
}
END_TEST

static void per_uid_setup(void) {
        test_fd_leak_setup();
        test_broker_start(&test_broker, per_uid_args);
}

static void share_setup(void) {
        test_fd_leak_setup();
        test_broker_start(&test_broker, share_args);
}

static void holds_setup(void) {
        test_fd_leak_setup();
        test_broker_start(&test_broker, holds_args);
}

Suite *quota_suite(void) {
        Suite *s = suite_create("quota");
        TCase *per_uid = tcase_create("per-uid"), *share = tcase_create("share"), *holds = tcase_create("holds");
        TCase *exempt = tcase_create("exempt");

        tcase_set_timeout(per_uid, 60);
        tcase_add_checked_fixture(per_uid, per_uid_setup, test_broker_teardown);
        tcase_add_test(per_uid, regions_per_uid_stop_at_the_limit);
        tcase_add_test(per_uid, bytes_per_uid_stop_at_the_limit);
        tcase_add_test(per_uid, connections_per_uid_stop_at_the_limit);
        tcase_add_test(per_uid, silent_refused_connections_do_not_pile_up);
        tcase_add_test(per_uid, a_batch_is_made_all_or_none);
        tcase_add_test(per_uid, a_quiet_remove_of_another_uids_region_is_refused_aloud);
        suite_add_tcase(s, per_uid);

        tcase_set_timeout(share, 60);
        tcase_add_checked_fixture(share, share_setup, test_broker_teardown);
        tcase_add_test(share, a_uid_gets_its_fair_share_of_regions);
        tcase_add_test(share, a_batch_takes_no_more_than_its_uids_share);
        suite_add_tcase(s, share);

        tcase_set_timeout(holds, 60);
        tcase_add_checked_fixture(holds, holds_setup, test_broker_teardown);
        tcase_add_test(holds, a_uid_gets_its_fair_share_of_holds);
        suite_add_tcase(s, holds);

        /* A broker of its own for each test: one that runs as another user, or with one broker-wide limit. */
        tcase_set_timeout(exempt, 60);
        tcase_add_checked_fixture(exempt, test_fd_leak_setup, test_fd_leak_teardown);
        tcase_add_test(exempt, root_and_the_brokers_own_uid_are_exempt);
        tcase_add_test(exempt, the_brokers_bytes_stop_at_the_limit);
        tcase_add_test(exempt, the_brokers_connections_stop_at_the_limit);
        tcase_add_test(exempt, holds_per_connection_stop_at_the_limit);
        tcase_add_test(exempt, a_batch_takes_no_more_fds_in_flight_than_there_is_room_for);
        suite_add_tcase(s, exempt);
        return s;
}
