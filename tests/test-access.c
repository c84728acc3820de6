/* SPDX-License-Identifier: MIT */
/*
 * Access control between users, the SysV way: owner, group and other bits,
 * ownership for SET and REMOVE, and read-only fds that stay read-only.
 * The other user is uid/gid 65534 (nobody/nogroup), in a forked child; run
 * as anyone but root, these tests cannot switch users and say so.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"
#include "macro.h"
#include "memfd-broker.h"
#include "suites.h"

#define OTHER_ID 65534
#define EXTRA_GROUP 4242

static mfb_client *connect_or_fail(void) {
        mfb_client *c = NULL;

        ck_assert_int_eq(mfb_client_connect(test_broker.socket_path, &c), 0);
        return c;
}

/* Returns false, after saying why, when this process cannot become another user. */
static bool can_switch_users(const char *test) {
        if (geteuid() == 0)
                return true;
        fprintf(stderr, "SKIP %s: needs root to switch to uid %d\n", test, OTHER_ID);
        return false;
}

struct as_other {
        int (*fn)(void *arg);
        void *arg;
        gid_t extra_group;      /* a supplementary group, or 0 for none */
};

static int drop_and_run(void *arg) {
        struct as_other *o = arg;
        gid_t groups[1] = { o->extra_group };

        TEST_CHILD_CHECK(setgroups(o->extra_group ? 1 : 0, groups) == 0);
        TEST_CHILD_CHECK(setresgid(OTHER_ID, OTHER_ID, OTHER_ID) == 0);
        TEST_CHILD_CHECK(setresuid(OTHER_ID, OTHER_ID, OTHER_ID) == 0);
        return o->fn(o->arg);
}

/* Runs fn(arg) in a child that is uid and gid 65534 (plus extra_group), and fails the test if it fails. */
static void run_as_other(int (*fn)(void *arg), void *arg, gid_t extra_group) {
        struct as_other o = { .fn = fn, .arg = arg, .extra_group = extra_group };

        test_child_succeeded(test_fork(drop_and_run, &o));
}

static mfb_region *create_with_text(mfb_client *c, const char *name, mode_t mode, const char *text) {
        mfb_region *r = NULL;
        char *mem;

        ck_assert_int_eq(mfb_region_create_with(c, name, 4096, mode, 0, &r), 0);
        ck_assert_int_eq(mfb_region_map(r, (void **) &mem), 0);
        strcpy(mem, text);
        return r;
}

static int private_is_closed(void *arg) {
        mfb_client *c = NULL;
        mfb_region *r = NULL;
        mfb_region_stat st, *entries = NULL;
        size_t n = 99;

        TEST_CHILD_CHECK(mfb_client_connect(test_broker.socket_path, &c) == 0);
        /* A region it may neither read nor own does not exist for it, by any request. */
        TEST_CHILD_CHECK(mfb_region_open(c, "private", O_RDONLY, &r) == -ENOENT);
        TEST_CHILD_CHECK(strcmp(mfb_client_error_message(c), "no region is named private") == 0);
        TEST_CHILD_CHECK(mfb_region_open(c, "private", O_RDWR, &r) == -ENOENT);
        TEST_CHILD_CHECK(mfb_stat(c, "private", &st) == -ENOENT);
        TEST_CHILD_CHECK(mfb_list(c, &entries, &n) == 0 && n == 0);
        TEST_CHILD_CHECK(mfb_remove(c, "private") == -ENOENT);
        TEST_CHILD_CHECK(mfb_chmod(c, "private", 0666) == -ENOENT);
        TEST_CHILD_CHECK(mfb_chown(c, "private", OTHER_ID, OTHER_ID) == -ENOENT);
        mfb_client_free(c);
        return 0;
}

START_TEST(mode_0600_keeps_other_users_out) {
        mfb_client *c;
        mfb_region *r;
        mfb_region_stat *entries = NULL;
        size_t n;

        if (!can_switch_users(__func__))
                return;
        c = connect_or_fail();
        r = create_with_text(c, "private", 0, "secret");
        run_as_other(private_is_closed, NULL, 0);

        /* Root still sees it: the refusals above were about the caller, not the region. */
        ck_assert_int_eq(mfb_list(c, &entries, &n), 0);
        ck_assert_uint_eq(n, 1);
        free(entries);
        mfb_region_free(r);
        mfb_client_free(c);
}
END_TEST

/* Holds a read-only fd of "public" and tries every way to write through it. */
static int read_only_stays_read_only(void *arg) {
        mfb_client *c = NULL;
        mfb_region *r = NULL, *rw = NULL;
        const char *mem;
        void *w;
        char proc[64];
        int fd;

        TEST_CHILD_CHECK(mfb_client_connect(test_broker.socket_path, &c) == 0);
        TEST_CHILD_CHECK(mfb_region_open(c, "public", O_RDWR, &rw) == -EACCES);
        TEST_CHILD_CHECK(mfb_region_open(c, "public", O_RDONLY, &r) == 0);
        TEST_CHILD_CHECK(mfb_region_map(r, (void **) &mem) == 0);
        TEST_CHILD_CHECK(strcmp(mem, "for everyone") == 0);
        fd = mfb_region_fd(r);

        TEST_CHILD_CHECK(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED);
        TEST_CHILD_CHECK(mfb_region_map_writable(r, &w) < 0);
        TEST_CHILD_CHECK(pwrite(fd, "x", 1, 0) < 0);
        TEST_CHILD_CHECK(ftruncate(fd, 0) < 0);
        TEST_CHILD_CHECK(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE) < 0);
        TEST_CHILD_CHECK(mfb_region_seal(r) == -EPERM);
        /* The inode belongs to the broker with mode 0600: no read-write reopen. */
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        TEST_CHILD_CHECK(open(proc, O_RDWR | O_CLOEXEC) < 0 && errno == EACCES);
        TEST_CHILD_CHECK(mfb_remove(c, "public") == -EPERM);

        mfb_region_free(r);
        mfb_client_free(c);
        return 0;
}

START_TEST(mode_0644_gives_other_users_read_only_fds) {
        mfb_client *c;
        mfb_region *r;
        mfb_region_stat st;

        if (!can_switch_users(__func__))
                return;
        c = connect_or_fail();
        r = create_with_text(c, "public", 0644, "for everyone");
        run_as_other(read_only_stays_read_only, NULL, 0);

        ck_assert_int_eq(mfb_stat(c, "public", &st), 0);
        ck_assert_int_eq(st.seals & F_SEAL_WRITE, 0);
        mfb_region_free(r);
        mfb_client_free(c);
}
END_TEST

struct expectation {
        const char *name;
        int read;       /* what opening read-only must give */
        int write;      /* what opening read-write must give */
};

static int opens_as_expected(void *arg) {
        const struct expectation *e = arg;
        mfb_client *c = NULL;
        mfb_region *r = NULL;
        int k;

        TEST_CHILD_CHECK(mfb_client_connect(test_broker.socket_path, &c) == 0);
        k = mfb_region_open(c, e->name, O_RDONLY, &r);
        if (k != e->read)
                fprintf(stderr, "%s read-only: %d, expected %d\n", e->name, k, e->read);
        TEST_CHILD_CHECK(k == e->read);
        r = mfb_region_free(r);
        k = mfb_region_open(c, e->name, O_RDWR, &r);
        if (k != e->write)
                fprintf(stderr, "%s read-write: %d, expected %d\n", e->name, k, e->write);
        TEST_CHILD_CHECK(k == e->write);
        mfb_region_free(r);
        mfb_client_free(c);
        return 0;
}

START_TEST(group_bits_follow_the_group) {
        struct expectation e = { .name = "grouped" };
        mfb_client *c;
        mfb_region *r;

        if (!can_switch_users(__func__))
                return;
        c = connect_or_fail();
        r = create_with_text(c, "grouped", 0640, "group data");

        /* Another uid in another group: the other bits (none), so the region does not exist for it. */
        e.read = e.write = -ENOENT;
        run_as_other(opens_as_expected, &e, 0);

        /* Its primary group owns the region: the group bits (read). */
        ck_assert_int_eq(mfb_chown(c, "grouped", (uid_t) -1, OTHER_ID), 0);
        e.read = 0;
        e.write = -EACCES;
        run_as_other(opens_as_expected, &e, 0);
        ck_assert_int_eq(mfb_chmod(c, "grouped", 0660), 0);
        e.write = 0;
        run_as_other(opens_as_expected, &e, 0);

        /* A supplementary group counts too. */
        ck_assert_int_eq(mfb_chown(c, "grouped", (uid_t) -1, EXTRA_GROUP), 0);
        ck_assert_int_eq(mfb_chmod(c, "grouped", 0640), 0);
        e.read = 0;
        e.write = -EACCES;
        run_as_other(opens_as_expected, &e, EXTRA_GROUP);
        e.read = e.write = -ENOENT;
        run_as_other(opens_as_expected, &e, 0);

        /* The owner's bits apply to the owner even when the group's would give more. */
        ck_assert_int_eq(mfb_chown(c, "grouped", OTHER_ID, OTHER_ID), 0);
        ck_assert_int_eq(mfb_chmod(c, "grouped", 0060), 0);
        e.read = e.write = -EACCES;
        run_as_other(opens_as_expected, &e, 0);

        mfb_region_free(r);
        mfb_client_free(c);
}
END_TEST

static int owner_rights(void *arg) {
        mfb_client *c = NULL;
        mfb_region_stat st;

        TEST_CHILD_CHECK(mfb_client_connect(test_broker.socket_path, &c) == 0);
        TEST_CHILD_CHECK(mfb_chmod(c, "given", 0604) == 0);
        TEST_CHILD_CHECK(mfb_stat(c, "given", &st) == 0 && st.mode == 0604);
        TEST_CHILD_CHECK(mfb_chmod(c, "given", 01000) == -EINVAL);
        TEST_CHILD_CHECK(mfb_remove(c, "given") == 0);
        mfb_client_free(c);
        return 0;
}

START_TEST(an_owner_may_change_and_remove) {
        mfb_client *c;
        mfb_region *r;
        mfb_region_stat st;

        if (!can_switch_users(__func__))
                return;
        c = connect_or_fail();
        r = create_with_text(c, "given", 0600, "a gift");
        ck_assert_int_eq(mfb_chown(c, "given", OTHER_ID, OTHER_ID), 0);
        ck_assert_int_eq(mfb_region_stat_get(r, &st), 0);
        ck_assert_uint_eq(st.uid, OTHER_ID);
        ck_assert_uint_eq(st.gid, OTHER_ID);
        ck_assert_uint_eq(st.creator_uid, getuid());
        run_as_other(owner_rights, NULL, 0);

        ck_assert_int_eq(mfb_region_stat_get(r, &st), 0);
        ck_assert(st.state & MFB_REGION_REMOVED);
        mfb_region_free(r);
        mfb_client_free(c);
}
END_TEST

static int open_and_report(void *arg) {
        const struct test_steps *p = arg;
        mfb_client *c = NULL;
        mfb_region *r = NULL;

        TEST_CHILD_CHECK(mfb_client_connect(test_broker.socket_path, &c) == 0);
        TEST_CHILD_CHECK(mfb_region_open(c, "watched", O_RDONLY, &r) == 0);
        TEST_CHILD_CHECK(test_pipe_signal(p->to_parent) == 0);
        TEST_CHILD_CHECK(test_pipe_wait(p->from_parent) == 0);
        mfb_region_free(r);
        /* A free does not wait for the broker: this does, before the parent looks. */
        TEST_CHILD_CHECK(mfb_client_roundtrip(c) == 0);
        TEST_CHILD_CHECK(test_pipe_signal(p->to_parent) == 0);
        TEST_CHILD_CHECK(test_pipe_wait(p->from_parent) == 0);
        mfb_client_free(c);
        return 0;
}

static bool later(struct timespec a, struct timespec b) {
        return a.tv_sec > b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec > b.tv_nsec);
}

START_TEST(stat_follows_create_open_release_and_chmod) {
        mfb_client *c = connect_or_fail();
        mfb_region *r = NULL;
        mfb_region_stat created, opened, released, changed;
        struct test_steps st;
        pid_t pid;

        ck_assert_int_eq(mfb_region_create_with(c, "watched", 4096, 0644, 0, &r), 0);
        ck_assert_int_eq(mfb_region_stat_get(r, &created), 0);
        ck_assert_int_eq(created.creator_pid, getpid());
        ck_assert_int_eq(created.last_pid, getpid());
        ck_assert_uint_eq(created.nattch, 1);
        ck_assert_uint_eq(created.mode, 0644);
        ck_assert_int_eq(created.attach_time.tv_sec, 0);
        ck_assert_int_eq(created.detach_time.tv_sec, 0);

        test_steps_open(&st);
        pid = test_fork(open_and_report, &st);

        ck_assert_int_eq(test_pipe_wait(st.from_child), 0);
        ck_assert_int_eq(mfb_region_stat_get(r, &opened), 0);
        ck_assert_uint_eq(opened.nattch, 2);
        ck_assert_int_eq(opened.last_pid, pid);
        ck_assert_int_eq(opened.creator_pid, getpid());
        ck_assert(later(opened.attach_time, created.create_time));

        ck_assert_int_eq(test_pipe_signal(st.to_child), 0);
        ck_assert_int_eq(test_pipe_wait(st.from_child), 0);
        ck_assert_int_eq(mfb_region_stat_get(r, &released), 0);
        ck_assert_uint_eq(released.nattch, 1);
        ck_assert_int_eq(released.last_pid, pid);
        ck_assert(later(released.detach_time, opened.attach_time));
        ck_assert_int_eq(test_pipe_signal(st.to_child), 0);
        test_child_succeeded(pid);

        ck_assert_int_eq(mfb_chmod(c, "watched", 0600), 0);
        ck_assert_int_eq(mfb_region_stat_get(r, &changed), 0);
        ck_assert_uint_eq(changed.mode, 0600);
        ck_assert_int_eq(changed.last_pid, getpid());
        ck_assert(later(changed.change_time, released.detach_time));
        ck_assert(changed.create_time.tv_sec == created.create_time.tv_sec &&
                  changed.create_time.tv_nsec == created.create_time.tv_nsec);

        mfb_region_free(r);
        mfb_client_free(c);
        test_steps_close(&st);
}
END_TEST

Suite *access_suite(void) {
        Suite *s = suite_create("access");
        TCase *tc = tcase_create("access");

        tcase_set_timeout(tc, 60);
        tcase_add_checked_fixture(tc, test_broker_setup, test_broker_teardown);
        tcase_add_test(tc, mode_0600_keeps_other_users_out);
        tcase_add_test(tc, mode_0644_gives_other_users_read_only_fds);
        tcase_add_test(tc, group_bits_follow_the_group);
        tcase_add_test(tc, an_owner_may_change_and_remove);
        tcase_add_test(tc, stat_follows_create_open_release_and_chmod);
        suite_add_tcase(s, tc);
        return s;
}
