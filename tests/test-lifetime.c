/* SPDX-License-Identifier: MIT */
/*
 * How long regions live, what STAT and LIST say about them, and the limits
 * on creating them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "macro.h"
#include "memfd-broker.h"
#include "suites.h"

static mfb_client *connect_or_fail(void) {
        mfb_client *c = NULL;

        ck_assert_int_eq(mfb_client_connect(test_broker.socket_path, &c), 0);
        return c;
}

static int create_and_leave(void *arg) {
        mfb_client *c = NULL;
        mfb_region *r = NULL;
        char *mem;

        TEST_CHILD_CHECK(mfb_client_connect(test_broker.socket_path, &c) == 0);
        TEST_CHILD_CHECK(mfb_region_create(c, "persistent", 4096, &r) == 0);
        TEST_CHILD_CHECK(mfb_region_map(r, (void **) &mem) == 0);
        strcpy(mem, "still here");
        /* Exits without freeing anything: the connection's end releases its reference. */
        return 0;
}

START_TEST(named_region_outlives_its_creator) {
        mfb_client *c;
        mfb_region *r = NULL;
        mfb_region_stat st;
        const char *mem;

        test_child_succeeded(test_fork(create_and_leave, NULL));
        c = connect_or_fail();
        ck_assert_int_eq(mfb_region_open(c, "persistent", O_RDONLY, &r), 0);
        ck_assert_int_eq(mfb_region_map(r, (void **) &mem), 0);
        ck_assert_str_eq(mem, "still here");
        ck_assert_int_eq(mfb_region_stat_get(r, &st), 0);
        ck_assert_uint_eq(st.nattch, 1);
        mfb_region_free(r);
        mfb_client_free(c);
}
END_TEST

START_TEST(anonymous_region_dies_with_its_last_holder) {
        unsigned baseline = test_broker_fd_count(&test_broker);
        mfb_client *c = connect_or_fail(), *other = connect_or_fail();
        mfb_region *r = NULL, *r2 = NULL;
        uint64_t handle;

        ck_assert_int_eq(mfb_region_create(c, NULL, 4096, &r), 0);
        handle = mfb_region_handle(r);
        ck_assert_uint_ne(handle, 0);

        /* Another client can reach it by handle while it lives. */
        ck_assert_int_eq(mfb_region_open_handle(other, handle, O_RDONLY, &r2), 0);
        mfb_region_free(r);
        /* A free does not wait for the broker, and the broker closes what it sent after sending: wait on the count. */
        ck_assert(test_broker_wait_fd_count(&test_broker, baseline + 3));
        mfb_region_free(r2);
        ck_assert(test_broker_wait_fd_count(&test_broker, baseline + 2));
        ck_assert_int_eq(mfb_region_open_handle(other, handle, O_RDONLY, &r2), -ENOENT);
        mfb_client_free(other);
        mfb_client_free(c);
        ck_assert(test_broker_wait_fd_count(&test_broker, baseline));
}
END_TEST

START_TEST(remove_frees_the_name_and_keeps_holders) {
        unsigned baseline = test_broker_fd_count(&test_broker);
        mfb_client *owner = connect_or_fail(), *holder = connect_or_fail();
        mfb_region *r = NULL, *held = NULL, *again = NULL, *fresh = NULL;
        mfb_region_stat st;
        uint64_t old_handle;
        char *mem;
        const char *held_mem;

        ck_assert_int_eq(mfb_region_create(owner, "rmid", 4096, &r), 0);
        old_handle = mfb_region_handle(r);
        ck_assert_int_eq(mfb_region_map(r, (void **) &mem), 0);
        strcpy(mem, "old data");
        mfb_region_free(r);
        ck_assert_int_eq(mfb_region_open(holder, "rmid", O_RDONLY, &held), 0);
        ck_assert_int_eq(mfb_region_map(held, (void **) &held_mem), 0);

        ck_assert_int_eq(mfb_remove(owner, "rmid"), 0);
        ck_assert_int_eq(mfb_remove(owner, "rmid"), -ENOENT);
        ck_assert_int_eq(mfb_region_open(owner, "rmid", O_RDONLY, &again), -ENOENT);
        ck_assert_int_eq(mfb_region_open_handle(owner, old_handle, O_RDONLY, &again), -ENOENT);

        /* The name is free at once; the holder still reads the old region. */
        ck_assert_int_eq(mfb_region_create(owner, "rmid", 4096, &fresh), 0);
        ck_assert_uint_ne(mfb_region_handle(fresh), old_handle);
        ck_assert_str_eq(held_mem, "old data");
        ck_assert_int_eq(mfb_stat_handle(owner, old_handle, &st), 0);
        ck_assert(st.state & MFB_REGION_REMOVED);
        ck_assert_str_eq(st.name, "");
        ck_assert_uint_eq(st.nattch, 1);

        /* The old memfd closes when the holder lets go. */
        mfb_region_free(fresh);
        mfb_region_free(held);
        /* A free does not wait: the broker has the release once the holder's next answer is in. */
        ck_assert_int_eq(mfb_client_roundtrip(holder), 0);
        ck_assert_int_eq(mfb_stat_handle(owner, old_handle, &st), -ENOENT);
        ck_assert_int_eq(mfb_remove(owner, "rmid"), 0);
        mfb_client_free(holder);
        mfb_client_free(owner);
        ck_assert(test_broker_wait_fd_count(&test_broker, baseline));
}
END_TEST

/* Holds "shared-rmid" from another process across its removal. */
static int hold_across_remove(void *arg) {
        const struct test_steps *p = arg;
        mfb_client *c = NULL;
        mfb_region *r = NULL;
        const char *mem;

        TEST_CHILD_CHECK(mfb_client_connect(test_broker.socket_path, &c) == 0);
        TEST_CHILD_CHECK(mfb_region_open(c, "shared-rmid", O_RDONLY, &r) == 0);
        TEST_CHILD_CHECK(mfb_region_map(r, (void **) &mem) == 0);
        TEST_CHILD_CHECK(test_pipe_signal(p->to_parent) == 0);

        TEST_CHILD_CHECK(test_pipe_wait(p->from_parent) == 0);
        TEST_CHILD_CHECK(strcmp(mem, "before removal") == 0);
        mfb_region_free(r);
        mfb_client_free(c);
        return 0;
}

START_TEST(remove_while_another_process_holds) {
        mfb_client *c = connect_or_fail();
        mfb_region *r = NULL, *fresh = NULL;
        mfb_region_stat st;
        struct test_steps st_pipes;
        uint64_t old;
        unsigned with_old;
        char *mem;
        pid_t pid;

        ck_assert_int_eq(mfb_region_create(c, "shared-rmid", 4096, &r), 0);
        old = mfb_region_handle(r);
        ck_assert_int_eq(mfb_region_map(r, (void **) &mem), 0);
        strcpy(mem, "before removal");
        mfb_region_free(r);

        test_steps_open(&st_pipes);
        pid = test_fork(hold_across_remove, &st_pipes);
        ck_assert_int_eq(test_pipe_wait(st_pipes.from_child), 0);

        ck_assert_int_eq(mfb_remove(c, "shared-rmid"), 0);
        ck_assert_int_eq(mfb_region_create(c, "shared-rmid", 4096, &fresh), 0);
        ck_assert_int_eq(mfb_stat_handle(c, old, &st), 0);
        ck_assert(st.state & MFB_REGION_REMOVED);
        ck_assert_uint_eq(st.nattch, 1);
        with_old = test_broker_fd_count(&test_broker);

        /* The holder reads its data after the removal, then lets go: the old memfd closes. */
        ck_assert_int_eq(test_pipe_signal(st_pipes.to_child), 0);
        test_child_succeeded(pid);
        ck_assert(test_broker_wait_fd_count(&test_broker, with_old - 2));
        ck_assert_int_eq(mfb_stat_handle(c, old, &st), -ENOENT);

        mfb_region_free(fresh);
        test_steps_close(&st_pipes);
        mfb_client_free(c);
}
END_TEST

static void assert_recent(struct timespec t, struct timespec since) {
        ck_assert(t.tv_sec > since.tv_sec || (t.tv_sec == since.tv_sec && t.tv_nsec >= since.tv_nsec));
}

START_TEST(stat_describes_the_region) {
        mfb_client *c = connect_or_fail(), *other = connect_or_fail();
        mfb_region *r = NULL, *r2 = NULL;
        mfb_region_stat st;
        struct timespec before;

        clock_gettime(CLOCK_REALTIME, &before);
        ck_assert_int_eq(mfb_region_create(c, "described", 12345, &r), 0);
        ck_assert_int_eq(mfb_stat(other, "described", &st), 0);
        ck_assert_uint_eq(st.handle, mfb_region_handle(r));
        ck_assert_uint_eq(st.size, 12345);
        ck_assert_str_eq(st.name, "described");
        ck_assert_uint_eq(st.uid, getuid());
        ck_assert_uint_eq(st.gid, getgid());
        ck_assert_uint_eq(st.creator_uid, getuid());
        ck_assert_uint_eq(st.mode, 0600);
        ck_assert_int_eq(st.creator_pid, getpid());
        ck_assert_uint_eq(st.nattch, 1);
        ck_assert_int_eq(st.seals & (F_SEAL_SHRINK | F_SEAL_GROW), F_SEAL_SHRINK | F_SEAL_GROW);
        ck_assert_int_eq(st.seals & F_SEAL_WRITE, 0);
        ck_assert_uint_eq(st.state, 0);
        assert_recent(st.create_time, before);

        ck_assert_int_eq(mfb_region_open(other, "described", O_RDONLY, &r2), 0);
        ck_assert_int_eq(mfb_region_stat_get(r2, &st), 0);
        ck_assert_uint_eq(st.nattch, 2);
        assert_recent(st.attach_time, st.create_time);

        mfb_region_free(r2);
        ck_assert_int_eq(mfb_client_roundtrip(other), 0);
        ck_assert_int_eq(mfb_region_stat_get(r, &st), 0);
        ck_assert_uint_eq(st.nattch, 1);
        assert_recent(st.detach_time, st.attach_time);

        ck_assert_int_eq(mfb_stat(other, "nonexistent", &st), -ENOENT);
        mfb_region_free(r);
        mfb_client_free(other);
        mfb_client_free(c);
}
END_TEST

/* More regions than one LIST reply holds, so the library must page. */
#define LISTED 300

START_TEST(list_pages_through_every_region) {
        mfb_client *c = connect_or_fail();
        mfb_region *regions[LISTED];
        mfb_region_stat *entries = NULL;
        size_t n = 0;

        for (int i = 0; i < LISTED; i++)
                ck_assert_int_eq(mfb_region_create(c, NULL, 4096, &regions[i]), 0);
        ck_assert_int_eq(mfb_list(c, &entries, &n), 0);
        ck_assert_uint_eq(n, LISTED);
        for (int i = 0; i < LISTED; i++)
                ck_assert_uint_eq(entries[i].handle, mfb_region_handle(regions[i]));
        free(entries);

        for (int i = 0; i < LISTED; i++)
                mfb_region_free(regions[i]);
        ck_assert_int_eq(mfb_list(c, &entries, &n), 0);
        ck_assert_uint_eq(n, 0);
        ck_assert_ptr_null(entries);
        mfb_client_free(c);
}
END_TEST

START_TEST(names_are_unique_and_checked) {
        mfb_client *c = connect_or_fail();
        mfb_region *r = NULL, *r2 = NULL;
        char long_name[MFB_NAME_MAX + 2];

        ck_assert_int_eq(mfb_region_create(c, "unique", 4096, &r), 0);
        ck_assert_int_eq(mfb_region_create(c, "unique", 4096, &r2), -EEXIST);
        ck_assert_int_eq(mfb_region_create(c, "has space", 4096, &r2), -EINVAL);

        memset(long_name, 'n', sizeof(long_name));
        long_name[MFB_NAME_MAX] = '\0';
        ck_assert_int_eq(mfb_region_create(c, long_name, 4096, &r2), 0);
        mfb_region_free(r2);
        long_name[MFB_NAME_MAX] = 'n';
        long_name[MFB_NAME_MAX + 1] = '\0';
        ck_assert_int_eq(mfb_region_create(c, long_name, 4096, &r2), -ENAMETOOLONG);

        /* A sealed region cannot be opened for writing, and the broker says why. */
        ck_assert_int_eq(mfb_region_seal(r), 0);
        ck_assert_int_eq(mfb_region_open(c, "unique", O_RDWR, &r2), -EPERM);
        ck_assert_str_ne(mfb_client_error_message(c), "");
        ck_assert_int_eq(mfb_region_open(c, "unique", O_WRONLY, &r2), -EINVAL);
        mfb_region_free(r);
        mfb_client_free(c);
}
END_TEST

START_TEST(client_freed_before_its_regions) {
        mfb_client *c = connect_or_fail();
        mfb_region *r = NULL;
        char *mem;

        ck_assert_int_eq(mfb_region_create(c, NULL, 4096, &r), 0);
        ck_assert_int_eq(mfb_region_map(r, (void **) &mem), 0);
        mfb_client_free(c);
        /* The mapping stays usable; requests report the lost connection. */
        strcpy(mem, "usable");
        ck_assert_int_eq(mfb_region_seal(r), -ENOTCONN);
        mfb_region_free(r);
}
END_TEST

START_TEST(region_count_limit) {
        static const char *const args[] = { "--max-regions", "3", "--max-region-size", "1M", NULL };
        struct test_broker limited;
        mfb_client *c = NULL;
        mfb_region *r[4] = { NULL };

        test_broker_start(&limited, args);
        ck_assert_int_eq(mfb_client_connect(limited.socket_path, &c), 0);
        for (int i = 0; i < 3; i++)
                ck_assert_int_eq(mfb_region_create(c, NULL, 4096, &r[i]), 0);
        ck_assert_int_eq(mfb_region_create(c, NULL, 4096, &r[3]), -ENOSPC);
        mfb_region_free(r[2]);
        ck_assert_int_eq(mfb_region_create(c, NULL, 1 << 20, &r[2]), 0);
        mfb_region_free(r[2]);
        ck_assert_int_eq(mfb_region_create(c, NULL, (1 << 20) + 1, &r[2]), -EFBIG);
        ck_assert_int_eq(mfb_region_create(c, NULL, 0, &r[2]), -EINVAL);
        mfb_region_free(r[0]);
        mfb_region_free(r[1]);
        mfb_client_free(c);
        test_broker_stop(&limited);
}
END_TEST

Suite *lifetime_suite(void) {
        Suite *s = suite_create("lifetime");
        TCase *tc = tcase_create("lifetime");

        tcase_set_timeout(tc, 60);
        tcase_add_checked_fixture(tc, test_broker_setup, test_broker_teardown);
        tcase_add_test(tc, named_region_outlives_its_creator);
        tcase_add_test(tc, anonymous_region_dies_with_its_last_holder);
        tcase_add_test(tc, remove_frees_the_name_and_keeps_holders);
        tcase_add_test(tc, remove_while_another_process_holds);
        tcase_add_test(tc, stat_describes_the_region);
        tcase_add_test(tc, list_pages_through_every_region);
        tcase_add_test(tc, names_are_unique_and_checked);
        tcase_add_test(tc, client_freed_before_its_regions);
        tcase_add_test(tc, region_count_limit);
        suite_add_tcase(s, tc);
        return s;
}
