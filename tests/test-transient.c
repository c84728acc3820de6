/* SPDX-License-Identifier: MIT */
/*
 * Transient regions (MFB_CREATE_TRANSIENT): a name that lives only while
 * some connection holds the region. When the last holder lets go, by
 * release, close, exit or SIGKILL, the name is free and the region gone;
 * while any holder is left, it stays. No one but its own holders can keep
 * it, and its end never takes another region's name with it.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codec.h"
#include "harness.h"
#include "memfd-broker.h"
#include "raw.h"
#include "suites.h"

#define OTHER_ID 65534

static mfb_client *connect_or_fail(void) {
        mfb_client *c = NULL;

        ck_assert_int_eq(mfb_client_connect(test_broker.socket_path, &c), 0);
        return c;
}

/* The regions the caller's uid owns, as the broker counts them. */
static uint64_t regions_owned(mfb_client *c) {
        mfb_limit limits[MFB_LIMIT_COUNT];

        ck_assert_int_eq(mfb_limits(c, MFB_LIMIT_COUNT, limits, NULL), MFB_LIMIT_COUNT);
        return limits[MFB_LIMIT_REGIONS].uid_used;
}

/* That no region has the name any more, by every request that takes one, and that it is free for a new one. */
static void assert_gone(mfb_client *c, const char *name, uint64_t handle) {
        mfb_region *r = NULL;
        mfb_region_stat st;

        ck_assert_int_eq(mfb_stat(c, name, &st), -ENOENT);
        ck_assert_int_eq(mfb_stat_handle(c, handle, &st), -ENOENT);
        ck_assert_int_eq(mfb_region_open(c, name, O_RDONLY, &r), -ENOENT);
        ck_assert_int_eq(mfb_region_open_handle(c, handle, O_RDONLY, &r), -ENOENT);
        ck_assert_int_eq(mfb_region_create(c, name, 4096, &r), 0);
        ck_assert_uint_ne(mfb_region_handle(r), handle);
        ck_assert_int_eq(mfb_region_remove(r), 0);
        mfb_region_free(r);
}

START_TEST(last_release_ends_a_transient_region) {
        unsigned baseline = test_broker_fd_count(&test_broker);
        mfb_client *creator = connect_or_fail(), *other = connect_or_fail();
        mfb_region *r = NULL, *held = NULL;
        mfb_region_stat st;
        uint64_t regions = regions_owned(creator), handle;
        char *mem;
        const char *held_mem;

        ck_assert_int_eq(mfb_region_create_with(creator, "fleeting", 4096, 0, MFB_CREATE_TRANSIENT, &r), 0);
        handle = mfb_region_handle(r);
        ck_assert_int_eq(mfb_region_stat_get(r, &st), 0);
        ck_assert_uint_eq(st.state, MFB_REGION_TRANSIENT);
        ck_assert_str_eq(st.name, "fleeting");
        ck_assert_uint_eq(regions_owned(creator), regions + 1);
        ck_assert_int_eq(mfb_region_map(r, (void **) &mem), 0);
        strcpy(mem, "still held");
        ck_assert_int_eq(mfb_region_open(other, "fleeting", O_RDONLY, &held), 0);
        ck_assert_int_eq(mfb_region_map(held, (void **) &held_mem), 0);

        /* The creator lets go: another holder is left, so the name and the region stay. */
        mfb_region_free(r);
        ck_assert_int_eq(mfb_client_roundtrip(creator), 0);
        ck_assert_int_eq(mfb_stat(creator, "fleeting", &st), 0);
        ck_assert_uint_eq(st.handle, handle);
        ck_assert_uint_eq(st.nattch, 1);
        ck_assert_uint_eq(st.state, MFB_REGION_TRANSIENT);
        ck_assert_int_eq(mfb_region_create(creator, "fleeting", 4096, &r), -EEXIST);
        ck_assert_str_eq(held_mem, "still held");

        /* The last holder lets go: the name is free at once and the region, its fd and its charge gone. */
        mfb_region_free(held);
        ck_assert_int_eq(mfb_client_roundtrip(other), 0);
        ck_assert_uint_eq(regions_owned(creator), regions);
        assert_gone(creator, "fleeting", handle);
        mfb_client_free(other);
        mfb_client_free(creator);
        ck_assert(test_broker_wait_fd_count(&test_broker, baseline));
}
END_TEST

/* Steps of the holders in another process: create or open, say so, then wait to be killed or told to exit. */
struct holder {
        const char *name;
        bool create;
        struct test_steps steps;
};

static int hold_until_told(void *arg) {
        struct holder *h = arg;
        mfb_client *c = NULL;
        mfb_region *r = NULL;
        char *mem;

        TEST_CHILD_CHECK(mfb_client_connect(test_broker.socket_path, &c) == 0);
        if (h->create) {
                TEST_CHILD_CHECK(mfb_region_create_with(c, h->name, 4096, 0, MFB_CREATE_TRANSIENT, &r) == 0);
                TEST_CHILD_CHECK(mfb_region_map(r, (void **) &mem) == 0);
                strcpy(mem, "from the child");
        } else {
                TEST_CHILD_CHECK(mfb_region_open(c, h->name, O_RDONLY, &r) == 0);
        }
        TEST_CHILD_CHECK(test_pipe_signal(h->steps.to_parent) == 0);
        TEST_CHILD_CHECK(test_pipe_wait(h->steps.from_parent) == 0);
        /* Exits without freeing anything: only the connection's end lets go. */
        return 0;
}

static pid_t start_holder(struct holder *h, const char *name, bool create) {
        pid_t pid;

        *h = (struct holder) { .name = name, .create = create };
        test_steps_open(&h->steps);
        pid = test_fork(hold_until_told, h);
        ck_assert_int_eq(test_pipe_wait(h->steps.from_child), 0);
        return pid;
}

static void kill_holder(pid_t pid) {
        int status;

        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        status = test_wait_child(pid);
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

START_TEST(killed_holders_end_a_transient_region) {
        unsigned baseline = test_broker_fd_count(&test_broker);
        mfb_client *c = connect_or_fail();
        struct holder creator, reader;
        uint64_t regions = regions_owned(c), handle;
        mfb_region_stat st;
        pid_t creator_pid, reader_pid;

        creator_pid = start_holder(&creator, "crashing", true);
        reader_pid = start_holder(&reader, "crashing", false);
        ck_assert_int_eq(mfb_stat(c, "crashing", &st), 0);
        handle = st.handle;
        ck_assert_uint_eq(st.nattch, 2);
        ck_assert_uint_eq(regions_owned(c), regions + 1);

        /* SIGKILL of every holder, one after the other: the first leaves the region to the second. */
        kill_holder(creator_pid);
        /* The region's memfd and the reader's connection are left, besides the test's own connection. */
        ck_assert(test_broker_wait_fd_count(&test_broker, baseline + 3));
        ck_assert_int_eq(mfb_stat(c, "crashing", &st), 0);
        ck_assert_uint_eq(st.handle, handle);
        ck_assert_uint_eq(st.nattch, 1);
        kill_holder(reader_pid);
        ck_assert(test_broker_wait_fd_count(&test_broker, baseline + 1));
        ck_assert_uint_eq(regions_owned(c), regions);
        assert_gone(c, "crashing", handle);
        test_steps_close(&creator.steps);
        test_steps_close(&reader.steps);

        mfb_client_free(c);
        ck_assert(test_broker_wait_fd_count(&test_broker, baseline));
}
END_TEST

START_TEST(exit_then_crash_ends_a_transient_region) {
        unsigned baseline = test_broker_fd_count(&test_broker);
        mfb_client *c = connect_or_fail();
        struct holder creator, reader;
        uint64_t regions = regions_owned(c), handle;
        mfb_region_stat st;
        pid_t creator_pid, reader_pid;
        mfb_region *r = NULL;
        const char *mem;

        creator_pid = start_holder(&creator, "exiting", true);
        reader_pid = start_holder(&reader, "exiting", false);
        ck_assert_int_eq(mfb_stat(c, "exiting", &st), 0);
        handle = st.handle;

        /* The creator exits without a word: the reader still holds the region, which anyone may open meanwhile. */
        ck_assert_int_eq(test_pipe_signal(creator.steps.to_child), 0);
        test_child_succeeded(creator_pid);
        ck_assert(test_broker_wait_fd_count(&test_broker, baseline + 3));
        ck_assert_int_eq(mfb_region_open(c, "exiting", O_RDONLY, &r), 0);
        ck_assert_int_eq(mfb_region_map(r, (void **) &mem), 0);
        ck_assert_str_eq(mem, "from the child");
        ck_assert_int_eq(mfb_region_stat_get(r, &st), 0);
        ck_assert_uint_eq(st.nattch, 2);

        /* The reader crashes: this client is the last holder, and its release ends it. */
        kill_holder(reader_pid);
        ck_assert(test_broker_wait_fd_count(&test_broker, baseline + 2));
        ck_assert_int_eq(mfb_stat(c, "exiting", &st), 0);
        ck_assert_uint_eq(st.nattch, 1);
        mfb_region_free(r);
        ck_assert_int_eq(mfb_client_roundtrip(c), 0);
        ck_assert_uint_eq(regions_owned(c), regions);
        assert_gone(c, "exiting", handle);
        test_steps_close(&creator.steps);
        test_steps_close(&reader.steps);

        mfb_client_free(c);
        ck_assert(test_broker_wait_fd_count(&test_broker, baseline));
}
END_TEST

START_TEST(transient_needs_a_name) {
        mfb_client *c = connect_or_fail();
        struct mfb_wire_create_request create = { .size = 4096, .flags = MFB_WIRE_CREATE_TRANSIENT };
        struct mfb_wire_create_batch_request batch = { .size = 4096, .count = 1,
                                                       .flags = MFB_WIRE_CREATE_TRANSIENT };
        struct mfb_wire_hello_request hello = { .version_min = MFB_WIRE_VERSION, .version_max = MFB_WIRE_VERSION };
        struct mfb_wire_hello_reply hello_reply;
        uint64_t regions = regions_owned(c);
        mfb_region *r = NULL;
        int fd;

        /* An anonymous region goes with its last holder anyway: asking for more is a mistake, said so. */
        ck_assert_int_eq(mfb_region_create_with(c, NULL, 4096, 0, MFB_CREATE_TRANSIENT, &r), -EINVAL);

        fd = test_raw_connect(&test_broker);
        ck_assert_int_ge(fd, 0);
        raw_send(fd, MFB_WIRE_OP_HELLO, &hello, sizeof(hello), NULL, 0);
        ck_assert_int_eq(raw_reply(fd, MFB_WIRE_OP_HELLO, &hello_reply, sizeof(hello_reply), NULL), 0);
        ck_assert(hello_reply.capabilities & MFB_WIRE_CAP_TRANSIENT);
        ck_assert_int_eq(raw_request(fd, MFB_WIRE_OP_CREATE, &create, sizeof(create), NULL, 0), -EINVAL);
        ck_assert_int_eq(raw_request(fd, MFB_WIRE_OP_CREATE_BATCH, &batch, sizeof(batch), NULL, 0), -EINVAL);
        /* A bit beside it is still unknown. */
        ck_assert_int_eq(mfb_wire_name_set(&create.name, "named"), 0);
        create.flags = MFB_WIRE_CREATE_TRANSIENT | 0x4U;
        ck_assert_int_eq(raw_request(fd, MFB_WIRE_OP_CREATE, &create, sizeof(create), NULL, 0), -EINVAL);
        ck_assert_uint_eq(regions_owned(c), regions);
        close(fd);
        mfb_client_free(c);
}
END_TEST

START_TEST(removed_transient_region_leaves_the_next_name_alone) {
        mfb_client *c = connect_or_fail(), *other = connect_or_fail();
        mfb_region *old = NULL, *next = NULL, *held = NULL;
        mfb_region_stat st;
        uint64_t old_handle;

        /* REMOVE works as on any region: the name is free at once, the holders keep the region. */
        ck_assert_int_eq(mfb_region_create_with(c, "reused", 4096, 0, MFB_CREATE_TRANSIENT, &old), 0);
        old_handle = mfb_region_handle(old);
        ck_assert_int_eq(mfb_region_open(other, "reused", O_RDONLY, &held), 0);
        ck_assert_int_eq(mfb_remove(c, "reused"), 0);
        ck_assert_int_eq(mfb_stat_handle(c, old_handle, &st), 0);
        ck_assert_uint_eq(st.state, MFB_REGION_REMOVED | MFB_REGION_TRANSIENT);
        ck_assert_str_eq(st.name, "");

        /* A new region takes the name; the old one's last holders going must not take it along. */
        ck_assert_int_eq(mfb_region_create(c, "reused", 4096, &next), 0);
        mfb_region_free(old);
        mfb_region_free(held);
        ck_assert_int_eq(mfb_client_roundtrip(c), 0);
        ck_assert_int_eq(mfb_client_roundtrip(other), 0);
        ck_assert_int_eq(mfb_stat_handle(c, old_handle, &st), -ENOENT);
        ck_assert_int_eq(mfb_stat(c, "reused", &st), 0);
        ck_assert_uint_eq(st.handle, mfb_region_handle(next));
        ck_assert_uint_eq(st.state, 0);

        ck_assert_int_eq(mfb_region_remove(next), 0);
        mfb_region_free(next);
        mfb_client_free(other);
        mfb_client_free(c);
}
END_TEST

/* A WAIT pending on a transient name outlives the region: the next region of that name answers it. */
START_TEST(wait_outlives_an_ended_transient_region) {
        mfb_client *c = connect_or_fail();
        struct mfb_wire_wait_request wait = { .timeout_ns = MFB_WIRE_WAIT_FOREVER, .access = MFB_WIRE_ACCESS_READ };
        struct mfb_wire_region_reply reply;
        mfb_region *first = NULL, *second = NULL;
        int fd = raw_connect_hello(&test_broker), region_fd = -1;

        ck_assert_int_eq(mfb_region_create_with(c, "awaited", 4096, 0, MFB_CREATE_TRANSIENT, &first), 0);
        ck_assert_int_eq(mfb_wire_name_set(&wait.name, "awaited"), 0);
        raw_send(fd, MFB_WIRE_OP_WAIT, &wait, sizeof(wait), NULL, 0);
        raw_wait_consumed(fd);

        /* The unsealed region ends with its creator; the WAIT goes on, as for a name no region has. */
        mfb_region_free(first);
        ck_assert_int_eq(mfb_client_roundtrip(c), 0);
        ck_assert_int_eq(mfb_region_create_with(c, "awaited", 4096, 0, MFB_CREATE_TRANSIENT, &second), 0);
        ck_assert_int_eq(mfb_region_seal(second), 0);
        ck_assert_int_eq(raw_reply(fd, MFB_WIRE_OP_WAIT, &reply, sizeof(reply), &region_fd), 0);
        ck_assert_uint_eq(reply.info.handle, mfb_region_handle(second));
        ck_assert(reply.info.state & MFB_WIRE_STATE_TRANSIENT);
        ck_assert_uint_eq(reply.info.nattch, 2);
        close(region_fd);

        /* The waiter is a holder now: the creator's going leaves it the region. */
        mfb_region_free(second);
        ck_assert_int_eq(mfb_client_roundtrip(c), 0);
        ck_assert_int_eq(mfb_region_open(c, "awaited", O_RDONLY, &second), 0);
        mfb_region_free(second);
        close(fd);
        mfb_client_free(c);
}
END_TEST

/* Returns false, after saying why, when this process cannot become another user. */
static bool can_switch_users(const char *test) {
        if (geteuid() == 0)
                return true;
        fprintf(stderr, "SKIP %s: needs root to switch to uid %d\n", test, OTHER_ID);
        return false;
}

static int32_t raw_create(int fd, const char *name, uint32_t mode, uint32_t flags) {
        struct mfb_wire_create_request req = { .size = 4096, .mode = mode, .flags = flags };

        ck_assert_int_eq(mfb_wire_name_set(&req.name, name), 0);
        return raw_request(fd, MFB_WIRE_OP_CREATE, &req, sizeof(req), NULL, 0);
}

static int32_t raw_by_name(int fd, uint16_t opcode, const char *name) {
        struct mfb_wire_open_request open_req = { .access = MFB_WIRE_ACCESS_READ };
        struct mfb_wire_lookup_request lookup = {};

        if (opcode == MFB_WIRE_OP_OPEN) {
                ck_assert_int_eq(mfb_wire_name_set(&open_req.name, name), 0);
                return raw_request(fd, opcode, &open_req, sizeof(open_req), NULL, 0);
        }
        ck_assert_int_eq(mfb_wire_name_set(&lookup.name, name), 0);
        return raw_request(fd, opcode, &lookup, sizeof(lookup), NULL, 0);
}

/*
 * Another uid can neither keep a transient region alive without the access
 * to hold it, nor end it, nor take its name while it is held; with read
 * access it keeps it alive as any holder does, and its owner can still
 * remove it.
 */
START_TEST(other_users_cannot_keep_end_or_take_it) {
        mfb_client *c;
        mfb_region *r = NULL;
        mfb_region_stat st;
        int other;

        if (!can_switch_users("other_users_cannot_keep_end_or_take_it"))
                return;
        c = connect_or_fail();
        other = raw_connect_hello_as(&test_broker, OTHER_ID);

        /* Private: the other uid cannot hold it, remove it or create over it. */
        ck_assert_int_eq(mfb_region_create_with(c, "guarded", 4096, 0600, MFB_CREATE_TRANSIENT, &r), 0);
        ck_assert_int_eq(raw_by_name(other, MFB_WIRE_OP_OPEN, "guarded"), -ENOENT);
        ck_assert_int_eq(raw_by_name(other, MFB_WIRE_OP_REMOVE, "guarded"), -ENOENT);
        ck_assert_int_eq(raw_create(other, "guarded", 0, MFB_WIRE_CREATE_TRANSIENT), -EEXIST);
        ck_assert_int_eq(mfb_stat(c, "guarded", &st), 0);
        ck_assert_uint_eq(st.nattch, 1);
        mfb_region_free(r);
        ck_assert_int_eq(mfb_client_roundtrip(c), 0);
        ck_assert_int_eq(mfb_stat(c, "guarded", &st), -ENOENT);

        /* Readable: the other uid's hold keeps it, but it may not remove it; its owner may, at any time. */
        ck_assert_int_eq(mfb_region_create_with(c, "shared", 4096, 0644, MFB_CREATE_TRANSIENT, &r), 0);
        ck_assert_int_eq(raw_by_name(other, MFB_WIRE_OP_OPEN, "shared"), 0);
        ck_assert_int_eq(raw_by_name(other, MFB_WIRE_OP_REMOVE, "shared"), -EPERM);
        mfb_region_free(r);
        ck_assert_int_eq(mfb_client_roundtrip(c), 0);
        ck_assert_int_eq(mfb_stat(c, "shared", &st), 0);
        ck_assert_uint_eq(st.nattch, 1);
        ck_assert_int_eq(mfb_remove(c, "shared"), 0);
        ck_assert_int_eq(mfb_stat(c, "shared", &st), -ENOENT);

        close(other);
        mfb_client_free(c);
}
END_TEST

Suite *transient_suite(void) {
        Suite *s = suite_create("transient");
        TCase *tc = tcase_create("transient");

        tcase_set_timeout(tc, 60);
        tcase_add_checked_fixture(tc, test_broker_setup, test_broker_teardown);
        tcase_add_test(tc, last_release_ends_a_transient_region);
        tcase_add_test(tc, killed_holders_end_a_transient_region);
        tcase_add_test(tc, exit_then_crash_ends_a_transient_region);
        tcase_add_test(tc, transient_needs_a_name);
        tcase_add_test(tc, removed_transient_region_leaves_the_next_name_alone);
        tcase_add_test(tc, wait_outlives_an_ended_transient_region);
        tcase_add_test(tc, other_users_cannot_keep_end_or_take_it);
        suite_add_tcase(s, tc);
        return s;
}
