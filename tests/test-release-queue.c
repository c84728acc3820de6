/* SPDX-License-Identifier: MIT */
/*
 * The release queue (PROTOCOL.md, "Release queue"), spoken by hand: the
 * page RELEASE_QUEUE gives, the entries the broker takes before a request
 * with MFB_WIRE_FLAG_QUEUED or on its own once the connection is quiet,
 * what it makes of entries that are not complete or not held, across uids,
 * and --max-release-queues at its boundary.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "harness.h"
#include "macro.h"
#include "raw.h"
#include "suites.h"

static unsigned baseline;

static void setup(void) {
        test_broker_setup();
        baseline = test_broker_fd_count(&test_broker);
}

static void teardown(void) {
        ck_assert_msg(test_broker_wait_fd_count(&test_broker, baseline),
                      "broker has %u fds open, %u before the test", test_broker_fd_count(&test_broker), baseline);
        test_broker_teardown();
}

/* A connection's queue as its client writes it. */
struct queue {
        void *page;
        struct mfb_wire_release_queue_entry *slots;
        uint64_t written;
};

/* Asks for fd's queue: RELEASE_QUEUE's status; on success the page, checked as PROTOCOL.md says, is mapped. */
static int32_t queue_open(int fd, struct queue *ret) {
        struct mfb_wire_release_queue_reply reply;
        struct stat st;
        int32_t status;
        int page_fd;

        raw_send(fd, MFB_WIRE_OP_RELEASE_QUEUE, NULL, 0, NULL, 0);
        status = raw_reply(fd, MFB_WIRE_OP_RELEASE_QUEUE, &reply, sizeof(reply), &page_fd);
        if (status < 0)
                return status;
        ck_assert_uint_eq(reply.slots, MFB_WIRE_RELEASE_QUEUE_SLOTS);
        ck_assert_int_ge(page_fd, 0);
        ck_assert_int_eq(fstat(page_fd, &st), 0);
        ck_assert_int_eq(st.st_size, MFB_WIRE_RELEASE_QUEUE_SIZE);
        ck_assert_int_eq(fcntl(page_fd, F_GETFL) & O_ACCMODE, O_RDWR);
        ck_assert_int_eq(fcntl(page_fd, F_GET_SEALS) & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
                         F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
        /* Nobody can shrink it under the broker's mapping. */
        ck_assert_int_eq(ftruncate(page_fd, 0), -1);
        *ret = (struct queue) {
                .page = mmap(NULL, MFB_WIRE_RELEASE_QUEUE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, page_fd, 0),
        };
        ck_assert_ptr_ne(ret->page, MAP_FAILED);
        ret->slots = (struct mfb_wire_release_queue_entry *) ((uint8_t *) ret->page + MFB_WIRE_RELEASE_QUEUE_HEADER);
        close(page_fd);
        return 0;
}

static void queue_close(struct queue *q) {
        ck_assert_int_eq(munmap(q->page, MFB_WIRE_RELEASE_QUEUE_SIZE), 0);
}

/* Writes the next entry, as a client does: the handle, then its seq. */
static void queue_put(struct queue *q, uint64_t handle) {
        struct mfb_wire_release_queue_entry *e = &q->slots[q->written % MFB_WIRE_RELEASE_QUEUE_SLOTS];

        e->handle = handle;
        __atomic_store_n(&e->seq, q->written + 1, __ATOMIC_RELEASE);
        q->written++;
}

/* STAT of handle, flags on the request: its status, and the region's holders in *ret_nattch if found. */
static int32_t stat_flagged(int fd, uint16_t flags, uint64_t handle, uint32_t *ret_nattch) {
        struct mfb_wire_lookup_request stat = { .handle = handle };
        struct mfb_wire_region_info info = {};
        int32_t status;

        raw_send_flags(fd, MFB_WIRE_OP_STAT, flags, &stat, sizeof(stat), NULL, 0);
        status = raw_reply(fd, MFB_WIRE_OP_STAT, &info, sizeof(info), NULL);
        if (ret_nattch)
                *ret_nattch = info.nattch;
        return status;
}

static uint64_t create_anonymous(int fd) {
        raw_send_create(fd);
        return raw_created_handle(fd);
}

/* A named region of fd's, readable by all (0644): its handle. */
static uint64_t create_named(int fd, const char *name) {
        struct mfb_wire_create_request create = { .size = 4096, .mode = 0644 };
        struct mfb_wire_region_reply region;
        int memfd;

        ck_assert_int_eq(mfb_wire_name_set(&create.name, name), 0);
        raw_send(fd, MFB_WIRE_OP_CREATE, &create, sizeof(create), NULL, 0);
        ck_assert_int_eq(raw_reply(fd, MFB_WIRE_OP_CREATE, &region, sizeof(region), &memfd), 0);
        close(memfd);
        return region.info.handle;
}

static void remove_named(int fd, const char *name) {
        struct mfb_wire_lookup_request by_name = {};

        ck_assert_int_eq(mfb_wire_name_set(&by_name.name, name), 0);
        ck_assert_int_eq(raw_request(fd, MFB_WIRE_OP_REMOVE, &by_name, sizeof(by_name), NULL, 0), 0);
}

START_TEST(the_queue_is_a_sealed_page_of_its_connection) {
        struct mfb_wire_hello_request hello = { .version_min = MFB_WIRE_VERSION, .version_max = MFB_WIRE_VERSION };
        struct mfb_wire_hello_reply hello_reply;
        int fd = test_raw_connect(&test_broker), other = raw_connect_hello(&test_broker);
        struct queue q;
        uint8_t record[MFB_WIRE_RECORD_MAX];

        ck_assert_int_ge(fd, 0);
        raw_send(fd, MFB_WIRE_OP_HELLO, &hello, sizeof(hello), NULL, 0);
        ck_assert_int_eq(raw_reply(fd, MFB_WIRE_OP_HELLO, &hello_reply, sizeof(hello_reply), NULL), 0);
        ck_assert(hello_reply.capabilities & MFB_WIRE_CAP_RELEASE_QUEUE);

        ck_assert_int_eq(queue_open(fd, &q), 0);
        /* One per connection. */
        ck_assert_int_eq(queue_open(fd, &(struct queue) {}), -EEXIST);
        /* The flag asks for a queue the connection has not: refused, and the connection goes on. */
        ck_assert_int_eq(stat_flagged(other, MFB_WIRE_FLAG_QUEUED, 1, NULL), -EINVAL);
        ck_assert_int_eq(raw_request(other, MFB_WIRE_OP_SYNC, NULL, 0, NULL, 0), 0);

        /* SYNC is answered, empty; quiet, not at all: the next reply is the STAT's. */
        raw_send(fd, MFB_WIRE_OP_SYNC, NULL, 0, NULL, 0);
        ck_assert_int_eq(raw_recv(fd, record, sizeof(record), NULL), (ssize_t) sizeof(struct mfb_wire_header));
        raw_send_flags(fd, MFB_WIRE_OP_SYNC, MFB_WIRE_FLAG_QUIET | MFB_WIRE_FLAG_QUEUED, NULL, 0, NULL, 0);
        ck_assert_int_eq(stat_flagged(fd, 0, create_anonymous(fd), NULL), 0);
        queue_close(&q);
        close(other);
        close(fd);
}
END_TEST

/*
 * Before a request with MFB_WIRE_FLAG_QUEUED, the broker takes every
 * complete entry, a whole page of them included, in order, and wraps
 * round; an entry whose seq is not yet its number + 1 is not taken until
 * it is.
 */
START_TEST(queued_releases_come_before_a_flagged_request) {
        int fd = raw_connect_hello(&test_broker);
        uint64_t handles[MFB_WIRE_RELEASE_QUEUE_SLOTS], more, kept = create_anonymous(fd);
        struct mfb_wire_release_queue_entry *e;
        struct queue q;

        ck_assert_int_eq(queue_open(fd, &q), 0);
        for (size_t i = 0; i < ELEMENTSOF(handles); i++)
                handles[i] = create_anonymous(fd);
        for (size_t i = 0; i < ELEMENTSOF(handles); i++)
                queue_put(&q, handles[i]);
        ck_assert_int_eq(stat_flagged(fd, MFB_WIRE_FLAG_QUEUED, kept, NULL), 0);
        for (size_t i = 0; i < ELEMENTSOF(handles); i++)
                ck_assert_int_eq(stat_flagged(fd, 0, handles[i], NULL), -ENOENT);

        /* Slot 0 again, entry 252. */
        more = create_anonymous(fd);
        queue_put(&q, more);
        ck_assert_int_eq(stat_flagged(fd, MFB_WIRE_FLAG_QUEUED, more, NULL), -ENOENT);

        /* Entry 253 written but for its seq: not taken, and nothing after it is. */
        more = create_anonymous(fd);
        e = &q.slots[q.written % MFB_WIRE_RELEASE_QUEUE_SLOTS];
        e->handle = more;
        ck_assert_int_eq(stat_flagged(fd, MFB_WIRE_FLAG_QUEUED, more, NULL), 0);
        __atomic_store_n(&e->seq, q.written + 1, __ATOMIC_RELEASE);
        q.written++;
        ck_assert_int_eq(stat_flagged(fd, MFB_WIRE_FLAG_QUEUED, more, NULL), -ENOENT);
        ck_assert_int_eq(stat_flagged(fd, 0, kept, NULL), 0);
        queue_close(&q);
        close(fd);
}
END_TEST

/*
 * An entry of a handle the connection does not hold fails the next request
 * after it was taken, naming it; the entries around it are released all
 * the same, and the request after that one is served.
 */
START_TEST(a_queued_release_of_what_is_not_held_fails_the_next_request) {
        int fd = raw_connect_hello(&test_broker);
        uint64_t before = create_anonymous(fd), after = create_anonymous(fd), kept = create_anonymous(fd);
        char reply[MFB_WIRE_RECORD_MAX];
        struct mfb_wire_lookup_request stat = { .handle = kept };
        struct mfb_wire_header h;
        struct queue q;
        ssize_t n;

        ck_assert_int_eq(queue_open(fd, &q), 0);
        queue_put(&q, before);
        queue_put(&q, 999999);
        queue_put(&q, after);
        raw_send_flags(fd, MFB_WIRE_OP_STAT, MFB_WIRE_FLAG_QUEUED, &stat, sizeof(stat), NULL, 0);
        n = raw_recv(fd, reply, sizeof(reply) - 1, NULL);
        ck_assert_int_ge(n, (ssize_t) sizeof(h));
        memcpy(&h, reply, sizeof(h));
        ck_assert_int_eq(h.status, -ENOENT);
        reply[n] = '\0';
        ck_assert_ptr_nonnull(strstr(reply + sizeof(h), "999999"));

        ck_assert_int_eq(stat_flagged(fd, 0, before, NULL), -ENOENT);
        ck_assert_int_eq(stat_flagged(fd, 0, after, NULL), -ENOENT);
        ck_assert_int_eq(stat_flagged(fd, 0, kept, NULL), 0);
        queue_close(&q);
        close(fd);
}
END_TEST

/* Polls name's holders on fd until there are want, failing after TEST_TIMEOUT_MS. */
static void wait_for_nattch(int fd, uint64_t handle, uint32_t want) {
        uint32_t nattch = 0;

        for (int i = 0; i < TEST_TIMEOUT_MS; i++) {
                ck_assert_int_eq(stat_flagged(fd, 0, handle, &nattch), 0);
                if (nattch == want)
                        return;
                (void) poll(NULL, 0, 1);
        }
        ck_abort_msg("region %llu still has %u holders, not %u", (unsigned long long) handle, nattch, want);
}

/*
 * An entry written after the connection's last request is taken with no
 * request more: the broker sweeps the queue of a connection that has been
 * quiet for MFB_WIRE_RELEASE_QUEUE_SWEEP_MS. Here another connection sees
 * its holder go.
 */
START_TEST(the_broker_takes_a_quiet_connection_s_queue) {
        struct mfb_wire_open_request open_req = { .access = MFB_WIRE_ACCESS_READ };
        int owner = raw_connect_hello(&test_broker), fd = raw_connect_hello(&test_broker), memfd;
        uint64_t handle = create_named(owner, "swept");
        struct queue q;

        ck_assert_int_eq(queue_open(fd, &q), 0);
        ck_assert_int_eq(mfb_wire_name_set(&open_req.name, "swept"), 0);
        raw_send(fd, MFB_WIRE_OP_OPEN, &open_req, sizeof(open_req), NULL, 0);
        ck_assert_int_eq(raw_reply(fd, MFB_WIRE_OP_OPEN, NULL, 0, &memfd), 0);
        close(memfd);
        ck_assert_int_eq(stat_flagged(owner, 0, handle, NULL), 0);

        queue_put(&q, handle);
        wait_for_nattch(owner, handle, 1);

        remove_named(owner, "swept");
        queue_close(&q);
        close(fd);
        close(owner);
}
END_TEST

/* Regions the caller's uid owns, as LIMITS says. */
static uint64_t regions_used(int fd) {
        struct mfb_wire_limits_reply limits;

        raw_send(fd, MFB_WIRE_OP_LIMITS, NULL, 0, NULL, 0);
        ck_assert_int_eq(raw_reply(fd, MFB_WIRE_OP_LIMITS, &limits, sizeof(limits), NULL), 0);
        return limits.resources[MFB_WIRE_RESOURCE_REGIONS].uid_used;
}

#define FULL_QUEUES 5U

/*
 * A sweep takes at most 1024 entries in all; what is left over, the next
 * one takes. With the broker stopped, 5 connections each send a SYNC and
 * then fill their page with releases (1260 in all): their queues fall due
 * together, once the broker has read the SYNCs, and every region is
 * released with no request more.
 */
START_TEST(the_sweep_takes_what_is_due_a_budget_at_a_time) {
        uint64_t handles[FULL_QUEUES][MFB_WIRE_RELEASE_QUEUE_SLOTS];
        int fds[FULL_QUEUES], control = raw_connect_hello(&test_broker);
        struct queue q[FULL_QUEUES];
        uint64_t before = regions_used(control), used = 0;

        for (size_t i = 0; i < FULL_QUEUES; i++) {
                fds[i] = raw_connect_hello(&test_broker);
                ck_assert_int_eq(queue_open(fds[i], &q[i]), 0);
                for (size_t k = 0; k < MFB_WIRE_RELEASE_QUEUE_SLOTS; k++)
                        handles[i][k] = create_anonymous(fds[i]);
        }
        ck_assert_uint_eq(regions_used(control), before + FULL_QUEUES * MFB_WIRE_RELEASE_QUEUE_SLOTS);

        ck_assert_int_eq(kill(test_broker.pid, SIGSTOP), 0);
        for (size_t i = 0; i < FULL_QUEUES; i++) {
                raw_send(fds[i], MFB_WIRE_OP_SYNC, NULL, 0, NULL, 0);
                for (size_t k = 0; k < MFB_WIRE_RELEASE_QUEUE_SLOTS; k++)
                        queue_put(&q[i], handles[i][k]);
        }
        ck_assert_int_eq(kill(test_broker.pid, SIGCONT), 0);
        for (size_t i = 0; i < FULL_QUEUES; i++)
                ck_assert_int_eq(raw_reply(fds[i], MFB_WIRE_OP_SYNC, NULL, 0, NULL), 0);
        for (int i = 0; i < TEST_TIMEOUT_MS; i++) {
                used = regions_used(control);
                if (used == before)
                        break;
                (void) poll(NULL, 0, 1);
        }
        ck_assert_uint_eq(used, before);
        for (size_t i = 0; i < FULL_QUEUES; i++) {
                queue_close(&q[i]);
                close(fds[i]);
        }
        close(control);
}
END_TEST

/*
 * A queue lets go only of what its own connection holds: uid 65534, having
 * opened root's region, puts its handle in its queue twice; it gives back
 * its own reference, and the second entry fails its next request, while
 * root keeps its own.
 */
START_TEST(queued_releases_let_go_only_of_the_caller_s_own) {
        struct mfb_wire_open_request open_req = { .access = MFB_WIRE_ACCESS_READ };
        int owner, other, memfd;
        uint64_t handle;
        uint32_t nattch;
        struct queue q;

        if (geteuid() != 0) {
                fprintf(stderr, "SKIP %s: needs root to connect as uid 65534\n", __func__);
                return;
        }
        owner = raw_connect_hello(&test_broker);
        handle = create_named(owner, "queued-shared");
        other = raw_connect_hello_as(&test_broker, 65534);
        ck_assert_int_eq(queue_open(other, &q), 0);
        ck_assert_int_eq(mfb_wire_name_set(&open_req.name, "queued-shared"), 0);
        raw_send(other, MFB_WIRE_OP_OPEN, &open_req, sizeof(open_req), NULL, 0);
        ck_assert_int_eq(raw_reply(other, MFB_WIRE_OP_OPEN, NULL, 0, &memfd), 0);
        close(memfd);
        ck_assert_int_eq(stat_flagged(owner, 0, handle, &nattch), 0);
        ck_assert_uint_eq(nattch, 2);

        queue_put(&q, handle);
        queue_put(&q, handle);
        ck_assert_int_eq(stat_flagged(other, MFB_WIRE_FLAG_QUEUED, handle, NULL), -ENOENT);
        ck_assert_int_eq(stat_flagged(owner, 0, handle, &nattch), 0);
        ck_assert_uint_eq(nattch, 1);

        remove_named(owner, "queued-shared");
        queue_close(&q);
        close(other);
        close(owner);
}
END_TEST

/* Asks for fd's queue until the broker stops refusing it for refused, which it does once it saw a connection end. */
static int32_t queue_open_once_freed(int fd, struct queue *ret, int32_t refused) {
        int32_t status = refused;

        for (int i = 0; i < TEST_TIMEOUT_MS && status == refused; i++) {
                status = queue_open(fd, ret);
                if (status == refused)
                        (void) poll(NULL, 0, 1);
        }
        return status;
}

/*
 * --max-release-queues: with 2, a third connection is refused one with
 * ENOSPC, and gets one once another connection with a queue has ended.
 */
START_TEST(release_queues_are_limited) {
        static const char *const args[] = { "--max-release-queues", "2", NULL };
        struct test_broker b;
        struct queue q[3];
        int fds[3];

        test_broker_start(&b, args);
        for (size_t i = 0; i < ELEMENTSOF(fds); i++)
                fds[i] = raw_connect_hello(&b);
        ck_assert_int_eq(queue_open(fds[0], &q[0]), 0);
        ck_assert_int_eq(queue_open(fds[1], &q[1]), 0);
        ck_assert_int_eq(queue_open(fds[2], &q[2]), -ENOSPC);

        queue_close(&q[0]);
        close(fds[0]);
        /* The broker sees the end of that connection in its own time. */
        ck_assert_int_eq(queue_open_once_freed(fds[2], &q[2], -ENOSPC), 0);
        queue_close(&q[1]);
        queue_close(&q[2]);
        close(fds[1]);
        close(fds[2]);
        test_broker_stop(&b);
}
END_TEST

#define SHARED_QUEUES 4

/*
 * One uid cannot take the others' queues: with --max-release-queues 4,
 * uid 65534 gets one, a quarter, and its second connection is refused
 * -EDQUOT, while root (exempt from the shares) takes the rest, up to the
 * broker's limit. Once uid 65534's first connection ends, its second gets
 * one.
 */
START_TEST(one_uid_takes_only_its_share_of_queues) {
        static const char *const args[] = { "--max-release-queues", "4", NULL };
        struct queue q[2], root_q[SHARED_QUEUES];
        int other[2], root[SHARED_QUEUES];
        struct test_broker b;

        if (geteuid() != 0) {
                fprintf(stderr, "SKIP %s: needs root to connect as uid 65534\n", __func__);
                return;
        }
        test_broker_start(&b, args);
        for (size_t i = 0; i < ELEMENTSOF(other); i++)
                other[i] = raw_connect_hello_as(&b, 65534);
        ck_assert_int_eq(queue_open(other[0], &q[0]), 0);
        ck_assert_int_eq(queue_open(other[1], &q[1]), -EDQUOT);
        for (size_t i = 0; i < ELEMENTSOF(root); i++)
                root[i] = raw_connect_hello(&b);
        for (size_t i = 0; i + 1 < ELEMENTSOF(root); i++)
                ck_assert_int_eq(queue_open(root[i], &root_q[i]), 0);
        ck_assert_int_eq(queue_open(root[SHARED_QUEUES - 1], &root_q[SHARED_QUEUES - 1]), -ENOSPC);

        queue_close(&q[0]);
        close(other[0]);
        ck_assert_int_eq(queue_open_once_freed(other[1], &q[1], -EDQUOT), 0);
        queue_close(&q[1]);
        close(other[1]);
        for (size_t i = 0; i + 1 < ELEMENTSOF(root); i++)
                queue_close(&root_q[i]);
        for (size_t i = 0; i < ELEMENTSOF(root); i++)
                close(root[i]);
        test_broker_stop(&b);
}
END_TEST

static void send_flagged_stat(int fd, void *userdata) {
        const struct mfb_wire_lookup_request *stat = userdata;

        raw_send_flags(fd, MFB_WIRE_OP_STAT, MFB_WIRE_FLAG_QUEUED, stat, sizeof(*stat), NULL, 0);
}

/*
 * Each queued release costs its uid a turn, as a RELEASE record would:
 * uid 65534's STAT that has 16 queued releases taken makes it sit out the
 * rounds they cost, and root's CREATEs come first
 * (raw_assert_root_served_first()).
 */
START_TEST(queued_releases_cost_their_uid_turns) {
        struct mfb_wire_lookup_request stat = {};
        struct queue q;
        int root, other;

        if (geteuid() != 0) {
                fprintf(stderr, "SKIP %s: needs root to connect as uid 65534\n", __func__);
                return;
        }
        root = raw_connect_hello(&test_broker);
        other = raw_connect_hello_as(&test_broker, 65534);
        ck_assert_int_eq(queue_open(other, &q), 0);
        for (int i = 0; i < 16; i++)
                queue_put(&q, create_anonymous(other));
        stat.handle = create_anonymous(other);
        raw_assert_root_served_first(&test_broker, root, other, MFB_WIRE_OP_STAT, send_flagged_stat, &stat);
        queue_close(&q);
        close(other);
        close(root);
}
END_TEST

Suite *release_queue_suite(void) {
        Suite *s = suite_create("release-queue");
        TCase *tc = tcase_create("release-queue");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, the_queue_is_a_sealed_page_of_its_connection);
        tcase_add_test(tc, queued_releases_come_before_a_flagged_request);
        tcase_add_test(tc, a_queued_release_of_what_is_not_held_fails_the_next_request);
        tcase_add_test(tc, the_broker_takes_a_quiet_connection_s_queue);
        tcase_add_test(tc, the_sweep_takes_what_is_due_a_budget_at_a_time);
        tcase_add_test(tc, queued_releases_let_go_only_of_the_caller_s_own);
        tcase_add_test(tc, release_queues_are_limited);
        tcase_add_test(tc, one_uid_takes_only_its_share_of_queues);
        tcase_add_test(tc, queued_releases_cost_their_uid_turns);
        suite_add_tcase(s, tc);
        return s;
}
