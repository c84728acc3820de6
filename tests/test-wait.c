/* SPDX-License-Identifier: MIT */
/*
 * WAIT: consumers that ask for a region before it is published get it once
 * it is sealed; timeouts, removal and vanished waiters. Waiters speak the
 * protocol by hand so that the test knows when the broker has their WAIT.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <event2/event.h>

#include "access.h"
#include "codec.h"
#include "harness.h"
#include "macro.h"
#include "memfd-broker.h"
#include "quota.h"
#include "raw.h"
#include "region.h"
#include "suites.h"
#include "wait.h"

#define OTHER_UID 65534

/* More than three passes' worth of answers (WAIT_ANSWERS_PER_PASS), and a few over. */
#define WAITERS ((int) (3 * WAIT_ANSWERS_PER_PASS + 5))

static mfb_client *connect_or_fail(void) {
        mfb_client *c = NULL;

        ck_assert_int_eq(mfb_client_connect(test_broker.socket_path, &c), 0);
        return c;
}

/* Sends WAIT for name and returns once the broker holds it pending. */
static void send_wait(int fd, const char *name, uint64_t timeout_ns) {
        struct mfb_wire_wait_request req = { .timeout_ns = timeout_ns, .access = MFB_WIRE_ACCESS_READ };

        ck_assert_int_eq(mfb_wire_name_set(&req.name, name), 0);
        raw_send(fd, MFB_WIRE_OP_WAIT, &req, sizeof(req), NULL, 0);
        raw_wait_consumed(fd);
}

/* Publishes a sealed region name holding text, and returns it. */
static mfb_region *publish(mfb_client *c, const char *name, const char *text) {
        mfb_region *r = NULL;
        mfb_region_stat st;
        char *mem;

        ck_assert_int_eq(mfb_region_create_with(c, name, 4096, 0644, 0, &r), 0);
        ck_assert_int_eq(mfb_region_map(r, (void **) &mem), 0);
        strcpy(mem, text);
        ck_assert_int_eq(mfb_region_seal(r), 0);
        ck_assert_int_eq(mfb_region_stat_get(r, &st), 0);
        ck_assert_msg(st.seals & F_SEAL_WRITE, "SEAL succeeded but the region is not sealed");
        return r;
}

/* Receives a WAIT's region reply and checks that its fd shows text. */
static void assert_woken_with(int fd, const char *text) {
        struct mfb_wire_region_reply reply;
        const char *mem;
        int region_fd;

        ck_assert_int_eq(raw_reply(fd, MFB_WIRE_OP_WAIT, &reply, sizeof(reply), &region_fd), 0);
        ck_assert_int_ge(region_fd, 0);
        ck_assert_uint_eq(reply.access, MFB_WIRE_ACCESS_READ);
        ck_assert(reply.info.seals & F_SEAL_WRITE);
        ck_assert_int_eq(fcntl(region_fd, F_GETFL) & O_ACCMODE, O_RDONLY);
        mem = mmap(NULL, 4096, PROT_READ, MAP_SHARED, region_fd, 0);
        ck_assert(mem != MAP_FAILED);
        ck_assert_str_eq(mem, text);
        munmap((void *) mem, 4096);
        close(region_fd);
}

START_TEST(a_waiter_gets_the_region_once_it_is_sealed) {
        mfb_client *producer = connect_or_fail();
        mfb_region *r = NULL;
        char *mem;
        int waiter = raw_connect_hello(&test_broker);

        send_wait(waiter, "frame", MFB_WIRE_WAIT_FOREVER);

        /* Existing but unsealed is not enough. */
        ck_assert_int_eq(mfb_region_create_with(producer, "frame", 4096, 0644, 0, &r), 0);
        ck_assert_int_eq(mfb_region_map(r, (void **) &mem), 0);
        strcpy(mem, "frame 1");
        ck_assert_int_eq(poll(&(struct pollfd) { .fd = waiter, .events = POLLIN }, 1, 0), 0);
        ck_assert_int_eq(mfb_region_seal(r), 0);
        assert_woken_with(waiter, "frame 1");

        mfb_region_free(r);
        mfb_client_free(producer);
        close(waiter);
}
END_TEST

/* A holder may seal with fcntl() and then ask: the broker learns of the seal from SEAL all the same. */
START_TEST(a_seal_added_with_fcntl_first_wakes_waiters_at_seal) {
        mfb_client *producer = connect_or_fail();
        mfb_region *r = NULL;
        int waiter = raw_connect_hello(&test_broker);

        ck_assert_int_eq(mfb_region_create_with(producer, "sealed-by-hand", 4096, 0644, 0, &r), 0);
        ck_assert_int_eq(pwrite(mfb_region_fd(r), "by hand", 8, 0), 8);
        send_wait(waiter, "sealed-by-hand", MFB_WIRE_WAIT_FOREVER);
        ck_assert_int_eq(fcntl(mfb_region_fd(r), F_ADD_SEALS, F_SEAL_WRITE), 0);
        /* The broker was not told yet: the waiter still waits. */
        ck_assert_int_eq(poll(&(struct pollfd) { .fd = waiter, .events = POLLIN }, 1, 0), 0);

        ck_assert_int_eq(mfb_region_seal(r), 0);
        assert_woken_with(waiter, "by hand");

        mfb_region_free(r);
        mfb_client_free(producer);
        close(waiter);
}
END_TEST

START_TEST(every_one_of_many_waiters_is_woken) {
        mfb_client *producer = connect_or_fail();
        mfb_region *r;
        int waiters[WAITERS];

        for (int i = 0; i < WAITERS; i++) {
                waiters[i] = raw_connect_hello(&test_broker);
                send_wait(waiters[i], "popular", MFB_WIRE_WAIT_FOREVER);
        }
        r = publish(producer, "popular", "for all");
        for (int i = 0; i < WAITERS; i++) {
                assert_woken_with(waiters[i], "for all");
                close(waiters[i]);
        }
        mfb_region_free(r);
        mfb_client_free(producer);
}
END_TEST

/*
 * Waits without a timeout for "ready", which is published already. In a
 * child: a broker that never answers fails the test at the child's deadline
 * instead of hanging it.
 */
static int wait_forever_for_ready(void *arg) {
        mfb_client *c = NULL;
        mfb_region *got = NULL;
        const char *mem;

        TEST_CHILD_CHECK(mfb_client_connect(test_broker.socket_path, &c) == 0);
        TEST_CHILD_CHECK(mfb_region_wait(c, "ready", -1, &got) == 0);
        TEST_CHILD_CHECK(mfb_region_access(got) == O_RDONLY);
        TEST_CHILD_CHECK(mfb_region_map(got, (void **) &mem) == 0);
        TEST_CHILD_CHECK(strcmp(mem, "at once") == 0);
        mfb_region_free(got);
        mfb_client_free(c);
        return 0;
}

START_TEST(the_library_waits_and_times_out) {
        mfb_client *c = connect_or_fail();
        mfb_region *r = NULL, *got = NULL;

        ck_assert_int_eq(mfb_region_wait(c, "absent", 0, &got), -ETIMEDOUT);
        ck_assert_int_eq(mfb_region_wait(c, "absent", 50, &got), -ETIMEDOUT);
        ck_assert_str_ne(mfb_client_error_message(c), "");

        /* Already published: no waiting at all. */
        r = publish(c, "ready", "at once");
        test_child_succeeded(test_fork(wait_forever_for_ready, NULL));
        mfb_region_free(r);
        mfb_client_free(c);
}
END_TEST

START_TEST(remove_wakes_waiters_with_an_error) {
        mfb_client *c = connect_or_fail();
        mfb_region *r = NULL;
        int waiter = raw_connect_hello(&test_broker);

        ck_assert_int_eq(mfb_region_create(c, "doomed", 4096, &r), 0);
        send_wait(waiter, "doomed", MFB_WIRE_WAIT_FOREVER);
        ck_assert_int_eq(mfb_remove(c, "doomed"), 0);
        ck_assert_int_eq(raw_reply(waiter, MFB_WIRE_OP_WAIT, NULL, 0, NULL), -EIDRM);

        mfb_region_free(r);
        mfb_client_free(c);
        close(waiter);
}
END_TEST

/* As many waiters as the broker answers over several passes, and a removal: each hears -EIDRM, once. */
START_TEST(remove_wakes_many_waiters_with_an_error) {
        mfb_client *c = connect_or_fail();
        mfb_region *r = NULL;
        int waiters[WAITERS];

        ck_assert_int_eq(mfb_region_create(c, "doomed", 4096, &r), 0);
        for (int i = 0; i < WAITERS; i++) {
                waiters[i] = raw_connect_hello(&test_broker);
                send_wait(waiters[i], "doomed", MFB_WIRE_WAIT_FOREVER);
        }
        ck_assert_int_eq(mfb_remove(c, "doomed"), 0);
        for (int i = 0; i < WAITERS; i++) {
                struct pollfd p = { .fd = waiters[i], .events = POLLIN };

                ck_assert_int_eq(raw_reply(waiters[i], MFB_WIRE_OP_WAIT, NULL, 0, NULL), -EIDRM);
                /* Once: nothing follows, and the connection serves again. */
                ck_assert_int_eq(poll(&p, 1, 0), 0);
                close(waiters[i]);
        }
        mfb_region_free(r);
        mfb_client_free(c);
}
END_TEST

#define PAYING_WAITERS 4

/*
 * A WAIT answered after it pended is answered outside its uid's turns, in
 * the turn of the SEAL that woke it: its uid pays a round for each. The
 * broker stands still while root SEALs a region that uid OTHER_UID waits
 * for, and then another connection of each uid sends a CREATE, OTHER_UID's
 * first: root's is handled first, OTHER_UID sitting out the rounds its
 * answers cost. (Without the charge, the SEAL's round handles OTHER_UID's
 * CREATE, and the next root's: handles tell the order.)
 */
START_TEST(answered_waits_cost_the_waiters_uid_turns) {
        struct mfb_wire_hello_request hello = { .version_min = MFB_WIRE_VERSION, .version_max = MFB_WIRE_VERSION };
        struct mfb_wire_create_request create = { .size = 4096, .mode = 0644 };
        struct mfb_wire_seal_request seal = { .seals = F_SEAL_WRITE };
        struct mfb_wire_region_reply reply;
        int others[PAYING_WAITERS + 1], sealer, root, region_fd = -1;
        uint64_t other_handle, root_handle;

        if (geteuid() != 0) {
                fprintf(stderr, "SKIP %s: needs root to be uid %d\n", __func__, OTHER_UID);
                return;
        }
        sealer = raw_connect_hello(&test_broker);
        root = raw_connect_hello(&test_broker);
        ck_assert_int_eq(mfb_wire_name_set(&create.name, "paid"), 0);
        raw_send(sealer, MFB_WIRE_OP_CREATE, &create, sizeof(create), NULL, 0);
        ck_assert_int_eq(raw_reply(sealer, MFB_WIRE_OP_CREATE, &reply, sizeof(reply), &region_fd), 0);
        close(region_fd);
        seal.handle = reply.info.handle;
        raw_connect_as(&test_broker, OTHER_UID, 0, PAYING_WAITERS + 1, others);
        for (int i = 0; i <= PAYING_WAITERS; i++)
                ck_assert_int_eq(raw_request(others[i], MFB_WIRE_OP_HELLO, &hello, sizeof(hello), NULL, 0), 0);
        for (int i = 0; i < PAYING_WAITERS; i++)
                send_wait(others[i], "paid", MFB_WIRE_WAIT_FOREVER);

        ck_assert_int_eq(kill(test_broker.pid, SIGSTOP), 0);
        raw_send(sealer, MFB_WIRE_OP_SEAL, &seal, sizeof(seal), NULL, 0);
        raw_send_create(others[PAYING_WAITERS]);
        raw_send_create(root);
        ck_assert_int_eq(kill(test_broker.pid, SIGCONT), 0);

        ck_assert_int_eq(raw_reply(sealer, MFB_WIRE_OP_SEAL, NULL, 0, NULL), 0);
        for (int i = 0; i < PAYING_WAITERS; i++)
                assert_woken_with(others[i], "");
        other_handle = raw_created_handle(others[PAYING_WAITERS]);
        root_handle = raw_created_handle(root);
        ck_assert_uint_lt(root_handle, other_handle);

        for (int i = 0; i <= PAYING_WAITERS; i++)
                close(others[i]);
        close(root);
        close(sealer);
}
END_TEST

START_TEST(a_vanished_waiter_is_forgotten) {
        unsigned baseline = test_broker_fd_count(&test_broker);
        mfb_client *c;
        mfb_region *r;
        int waiter = raw_connect_hello(&test_broker);

        send_wait(waiter, "later", MFB_WIRE_WAIT_FOREVER);
        close(waiter);
        ck_assert(test_broker_wait_fd_count(&test_broker, baseline));

        c = connect_or_fail();
        r = publish(c, "later", "nobody waits");
        mfb_region_free(r);
        ck_assert_int_eq(mfb_remove(c, "later"), 0);
        mfb_client_free(c);
        ck_assert(test_broker_wait_fd_count(&test_broker, baseline));
}
END_TEST

START_TEST(a_waiter_times_out) {
        int waiter = raw_connect_hello(&test_broker);

        send_wait(waiter, "never", 20 * 1000 * 1000);
        ck_assert_int_eq(raw_reply(waiter, MFB_WIRE_OP_WAIT, NULL, 0, NULL), -ETIMEDOUT);
        /* The connection serves requests again. */
        send_wait(waiter, "never", 0);
        ck_assert_int_eq(raw_reply(waiter, MFB_WIRE_OP_WAIT, NULL, 0, NULL), -ETIMEDOUT);
        close(waiter);
}
END_TEST

/*
 * --max-waiters bounds the pending WAITs of the whole broker: exactly that
 * many wait, the next is refused at once (ENOSPC for root, which takes no
 * share), the broker goes on serving the others, and an answered WAIT gives
 * its place back.
 */
#define MAX_WAITERS 2
START_TEST(waiters_stop_at_the_limit) {
        static const char *const args[] = { "--max-waiters", "2", NULL };
        struct mfb_wire_wait_request req = { .timeout_ns = MFB_WIRE_WAIT_FOREVER, .access = MFB_WIRE_ACCESS_READ };
        struct test_broker limited;
        int waiters[MAX_WAITERS], late;
        char message[MFB_WIRE_ERROR_MESSAGE_MAX + 1] = "";
        mfb_region *r;
        mfb_client *c = NULL;

        test_broker_start(&limited, args);
        for (int i = 0; i < MAX_WAITERS; i++) {
                waiters[i] = raw_connect_hello(&limited);
                send_wait(waiters[i], "later", MFB_WIRE_WAIT_FOREVER);
        }
        late = raw_connect_hello(&limited);
        ck_assert_int_eq(mfb_wire_name_set(&req.name, "later"), 0);
        raw_send(late, MFB_WIRE_OP_WAIT, &req, sizeof(req), NULL, 0);
        ck_assert_int_eq(raw_reply(late, MFB_WIRE_OP_WAIT, message, sizeof(message) - 1, NULL), -ENOSPC);
        ck_assert_msg(strstr(message, "WAIT"), "the refusal '%s' does not name WAITs", message);

        /* The broker serves everyone else, and the pending WAITs are answered as ever. */
        ck_assert_int_eq(mfb_client_connect(limited.socket_path, &c), 0);
        r = publish(c, "later", "at last");
        for (int i = 0; i < MAX_WAITERS; i++)
                assert_woken_with(waiters[i], "at last");

        /* Their places are free again: the refused connection's WAIT now pends, until its timeout. */
        send_wait(late, "never", 1000 * 1000);
        ck_assert_int_eq(raw_reply(late, MFB_WIRE_OP_WAIT, NULL, 0, NULL), -ETIMEDOUT);

        mfb_region_free(r);
        mfb_client_free(c);
        close(late);
        for (int i = 0; i < MAX_WAITERS; i++)
                close(waiters[i]);
        test_broker_stop(&limited);
}
END_TEST

/*
 * The wait table alone (daemon/wait.h), on an event loop of the test's
 * own, for what a socket cannot show exactly: how many WAITs a wake-up and
 * each pass after it answer, and in what order.
 */
struct unit {
        struct event_base *base;
        struct quota *quota;
        struct region_table *regions;
        struct wait_table *waits;
        struct peer peer;                       /* every waiter's: uid 1000, who may read a region of mode 0644 */
        struct waiter *waiter[WAITERS];
        unsigned answered[WAITERS];             /* per waiter: how many times */
        enum wait_outcome outcome[WAITERS];
        unsigned order[WAITERS], n_answered;    /* waiters in the order answered */
};

static void unit_answer(void *owner, const struct mfb_wire_header *request, enum wait_outcome outcome,
                        struct region *r, const char *name, uint64_t timeout_ns, void *userdata) {
        struct unit *u = userdata;
        unsigned i = (unsigned) (uintptr_t) owner;

        ck_assert_uint_lt(i, WAITERS);
        ck_assert_str_eq(name, "many");
        ck_assert(outcome == WAIT_SEALED ? r != NULL : r == NULL);
        u->waiter[i] = NULL;
        u->answered[i]++;
        u->outcome[i] = outcome;
        u->order[u->n_answered++] = i;
}

static void unit_setup(struct unit *u, struct region **ret) {
        struct quota_limits limits = {};
        struct ucred creator = { .pid = getpid(), .uid = 0, .gid = 0 };
        struct mfb_wire_header request = { .opcode = MFB_WIRE_OP_WAIT };
        enum mfb_wire_resource refused;

        *u = (struct unit) { .peer.creds = { .pid = getpid(), .uid = 1000, .gid = 1000 } };
        for (unsigned i = 0; i < MFB_WIRE_RESOURCE_COUNT; i++)
                limits.broker_max.n[i] = limits.uid_max.n[i] = MFB_WIRE_LIMIT_NONE;
        u->base = event_base_new();
        ck_assert_ptr_nonnull(u->base);
        ck_assert_int_eq(quota_new(&limits, 0, &u->quota), 0);
        ck_assert_int_eq(region_table_new(UINT64_MAX, u->quota, &u->regions), 0);
        ck_assert_int_eq(wait_table_new(u->base, u->quota, u->regions, unit_answer, u, &u->waits), 0);
        ck_assert_int_eq(region_create(u->regions, 4096, "many", 0644, false, &creator, ret, &refused), 0);
        for (unsigned i = 0; i < WAITERS; i++) {
                request.cookie = i;
                ck_assert_int_eq(wait_start(u->waits, &u->peer, (void *) (uintptr_t) i, &request, "many",
                                            MFB_WIRE_WAIT_FOREVER, &refused, &u->waiter[i]), 0);
        }
        ck_assert_uint_eq(quota_held(u->quota, 1000, MFB_WIRE_RESOURCE_WAITERS), WAITERS);
}

/* One pass of the loop, which must not block: what a wake-up left is due at once. */
static void unit_pass(struct unit *u) {
        ck_assert_int_ge(event_base_loop(u->base, EVLOOP_ONCE | EVLOOP_NONBLOCK), 0);
}

static void unit_teardown(struct unit *u) {
        for (unsigned i = 0; i < WAITERS; i++)
                wait_forget(u->waiter[i]);
        ck_assert_uint_eq(quota_held(u->quota, 1000, MFB_WIRE_RESOURCE_WAITERS), 0);
        wait_table_free(u->waits);
        region_table_free(u->regions);
        quota_free(u->quota);
        event_base_free(u->base);
}

START_TEST(a_seal_answers_a_pass_worth_at_a_time) {
        struct unit u;
        struct region *r;
        unsigned passes = 0;

        unit_setup(&u, &r);
        ck_assert_int_eq(region_seal(r, F_SEAL_WRITE), 0);
        wait_wake_readers(u.waits, r);
        ck_assert_uint_eq(u.n_answered, WAIT_ANSWERS_PER_PASS);
        while (u.n_answered < WAITERS) {
                unsigned before = u.n_answered;

                unit_pass(&u);
                passes++;
                /* Each pass as many as it may, until the last, which has what is left. */
                ck_assert_uint_eq(u.n_answered - before, (WAITERS - before < WAIT_ANSWERS_PER_PASS ? WAITERS - before : WAIT_ANSWERS_PER_PASS));
        }
        ck_assert_uint_eq(passes, (WAITERS - 1) / WAIT_ANSWERS_PER_PASS);
        /* Oldest first, each once, each with the region. */
        for (unsigned i = 0; i < WAITERS; i++) {
                ck_assert_uint_eq(u.order[i], i);
                ck_assert_uint_eq(u.answered[i], 1);
                ck_assert_int_eq(u.outcome[i], WAIT_SEALED);
        }
        /* Nothing is left for a pass to do. */
        unit_pass(&u);
        ck_assert_uint_eq(u.n_answered, WAITERS);
        unit_teardown(&u);
}
END_TEST

/*
 * Removed before its readers were all answered: the rest hear -EIDRM, as
 * though the removal had come first, a pass's worth at a time; a waiter
 * that goes meanwhile is never answered, and gives back its charge.
 */
START_TEST(a_removal_between_passes_answers_the_rest_with_an_error) {
        struct unit u;
        struct region *r;
        unsigned gone = WAITERS - 1;

        unit_setup(&u, &r);
        ck_assert_int_eq(region_seal(r, F_SEAL_WRITE), 0);
        wait_wake_readers(u.waits, r);
        ck_assert_uint_eq(u.n_answered, WAIT_ANSWERS_PER_PASS);
        wait_wake_removed(u.waits, r);
        ck_assert_uint_eq(u.n_answered, 2 * WAIT_ANSWERS_PER_PASS);
        /* Taken out of the table to be answered later, and gone first. */
        wait_forget(u.waiter[gone]);
        u.waiter[gone] = NULL;
        ck_assert_uint_eq(quota_held(u.quota, 1000, MFB_WIRE_RESOURCE_WAITERS),
                          WAITERS - 2 * WAIT_ANSWERS_PER_PASS - 1);
        while (u.n_answered < WAITERS - 1) {
                unsigned before = u.n_answered;

                unit_pass(&u);
                ck_assert_uint_gt(u.n_answered, before);
                ck_assert_uint_le(u.n_answered - before, WAIT_ANSWERS_PER_PASS);
        }
        unit_pass(&u);
        ck_assert_uint_eq(u.n_answered, WAITERS - 1);
        for (unsigned i = 0; i < WAITERS; i++) {
                ck_assert_uint_eq(u.answered[i], i == gone ? 0 : 1);
                if (i != gone)
                        ck_assert_int_eq(u.outcome[i], i < WAIT_ANSWERS_PER_PASS ? WAIT_SEALED : WAIT_REMOVED);
        }
        ck_assert_uint_eq(quota_held(u.quota, 1000, MFB_WIRE_RESOURCE_WAITERS), 0);
        unit_teardown(&u);
}
END_TEST

Suite *wait_suite(void) {
        Suite *s = suite_create("wait");
        TCase *tc = tcase_create("wait");

        tcase_set_timeout(tc, 60);
        tcase_add_checked_fixture(tc, test_broker_setup, test_broker_teardown);
        tcase_add_test(tc, a_waiter_gets_the_region_once_it_is_sealed);
        tcase_add_test(tc, a_seal_added_with_fcntl_first_wakes_waiters_at_seal);
        tcase_add_test(tc, every_one_of_many_waiters_is_woken);
        tcase_add_test(tc, the_library_waits_and_times_out);
        tcase_add_test(tc, remove_wakes_waiters_with_an_error);
        tcase_add_test(tc, a_vanished_waiter_is_forgotten);
        tcase_add_test(tc, a_waiter_times_out);
        tcase_add_test(tc, waiters_stop_at_the_limit);
        tcase_add_test(tc, remove_wakes_many_waiters_with_an_error);
        tcase_add_test(tc, answered_waits_cost_the_waiters_uid_turns);
        suite_add_tcase(s, tc);

        TCase *unit = tcase_create("wait-unit");
        tcase_add_checked_fixture(unit, test_fd_leak_setup, test_fd_leak_teardown);
        tcase_add_test(unit, a_seal_answers_a_pass_worth_at_a_time);
        tcase_add_test(unit, a_removal_between_passes_answers_the_rest_with_an_error);
        suite_add_tcase(s, unit);
        return s;
}
