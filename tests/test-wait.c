/* SPDX-License-Identifier: MIT */
/*
 * WAIT: consumers that ask for a region before it is published get it once
 * it is sealed; timeouts, removal and vanished waiters. Waiters speak the
 * protocol by hand so that the test knows when the broker has their WAIT.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "codec.h"
#include "harness.h"
#include "macro.h"
#include "memfd-broker.h"
#include "raw.h"
#include "suites.h"

#define WAITERS 100

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
        suite_add_tcase(s, tc);
        return s;
}
