/* SPDX-License-Identifier: MIT */
/*
 * Two processes share a region through the broker: the bytes are the same
 * memory, seals hold against every holder, and a killed client's regions go.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdpass.h"
#include "harness.h"
#include "macro.h"
#include "memfd-broker.h"
#include "suites.h"

/* Far larger than any record, so the bytes cannot have travelled over the socket. */
#define SHARED_SIZE (16U << 20)

static uint8_t pattern_byte(size_t i) {
        return (uint8_t) (i * 131 + 7);
}

/*
 * Creates and fills "shared", then, when told, changes its first bytes in
 * place: a reader that sees the change has the same memory, not a copy.
 */
static int producer_main(void *arg) {
        const struct test_steps *p = arg;
        mfb_client *c = NULL;
        mfb_region *r = NULL;
        uint8_t *mem;

        TEST_CHILD_CHECK(mfb_client_connect(test_broker.socket_path, &c) == 0);
        TEST_CHILD_CHECK(mfb_region_create(c, "shared", SHARED_SIZE, &r) == 0);
        TEST_CHILD_CHECK(mfb_region_map(r, (void **) &mem) == 0);
        for (size_t i = 0; i < SHARED_SIZE; i++)
                mem[i] = pattern_byte(i);
        TEST_CHILD_CHECK(test_pipe_signal(p->to_parent) == 0);

        TEST_CHILD_CHECK(test_pipe_wait(p->from_parent) == 0);
        memcpy(mem, "LIVE", 4);
        TEST_CHILD_CHECK(test_pipe_signal(p->to_parent) == 0);

        TEST_CHILD_CHECK(test_pipe_wait(p->from_parent) == 0);
        mfb_region_free(r);
        mfb_client_free(c);
        return 0;
}

START_TEST(two_processes_share_memory) {
        struct test_steps st;
        mfb_client *c = NULL;
        mfb_region *r = NULL;
        const uint8_t *mem;
        pid_t pid;

        test_steps_open(&st);
        pid = test_fork(producer_main, &st);

        ck_assert_int_eq(test_pipe_wait(st.from_child), 0);
        ck_assert_int_eq(mfb_client_connect(test_broker.socket_path, &c), 0);
        ck_assert_int_eq(mfb_region_open(c, "shared", O_RDONLY, &r), 0);
        ck_assert_uint_eq(mfb_region_size(r), SHARED_SIZE);
        ck_assert_int_eq(mfb_region_access(r), O_RDONLY);
        ck_assert_int_eq(mfb_region_map(r, (void **) &mem), 0);
        for (size_t i = 0; i < SHARED_SIZE; i++)
                if (mem[i] != pattern_byte(i))
                        ck_abort_msg("byte %zu differs", i);

        /* The producer writes after we mapped: we see it without any further request. */
        ck_assert_int_eq(test_pipe_signal(st.to_child), 0);
        ck_assert_int_eq(test_pipe_wait(st.from_child), 0);
        ck_assert_int_eq(memcmp(mem, "LIVE", 4), 0);
        ck_assert_int_eq(mem[4], pattern_byte(4));

        ck_assert_int_eq(test_pipe_signal(st.to_child), 0);
        test_child_succeeded(pid);
        mfb_region_free(r);
        mfb_client_free(c);
        test_steps_close(&st);
}
END_TEST

/* Holds the region read-only from before the seal and tries every way to write it after. */
static int reader_main(void *arg) {
        const struct test_steps *p = arg;
        mfb_client *c = NULL;
        mfb_region *r = NULL, *rw = NULL;
        char proc[64];
        void *mem;
        int fd, reopened;

        TEST_CHILD_CHECK(mfb_client_connect(test_broker.socket_path, &c) == 0);
        TEST_CHILD_CHECK(mfb_region_open(c, "sealed", O_RDONLY, &r) == 0);
        fd = mfb_region_fd(r);
        TEST_CHILD_CHECK(test_pipe_signal(p->to_parent) == 0);
        TEST_CHILD_CHECK(test_pipe_wait(p->from_parent) == 0);

        TEST_CHILD_CHECK(mfb_region_open(c, "sealed", O_RDWR, &rw) == -EPERM);
        TEST_CHILD_CHECK(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED);
        TEST_CHILD_CHECK(ftruncate(fd, 0) < 0);
        TEST_CHILD_CHECK(mfb_region_map(r, &mem) == 0);
        TEST_CHILD_CHECK(memcmp(mem, "final", 5) == 0);

        /* Even a read-write reopen (possible for root or the same uid) cannot write a sealed region. */
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        reopened = open(proc, O_RDWR | O_CLOEXEC);
        if (reopened >= 0) {
                TEST_CHILD_CHECK(pwrite(reopened, "x", 1, 0) < 0 && errno == EPERM);
                TEST_CHILD_CHECK(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, reopened, 0) == MAP_FAILED);
                close(reopened);
        }
        mfb_region_free(r);
        mfb_client_free(c);
        return 0;
}

START_TEST(seal_stops_every_writer) {
        int fd;
        struct test_steps st;
        mfb_client *c = NULL;
        mfb_region *r = NULL;
        mfb_region_stat info;
        char *mem;
        pid_t pid;

        ck_assert_int_eq(mfb_client_connect(test_broker.socket_path, &c), 0);
        ck_assert_int_eq(mfb_region_create(c, "sealed", 65536, &r), 0);
        ck_assert_int_eq(mfb_region_map(r, (void **) &mem), 0);
        memcpy(mem, "final", 5);

        test_steps_open(&st);
        pid = test_fork(reader_main, &st);
        ck_assert_int_eq(test_pipe_wait(st.from_child), 0);

        ck_assert_int_eq(mfb_region_seal(r), 0);
        ck_assert_int_eq(mfb_region_stat_get(r, &info), 0);
        ck_assert(info.seals & F_SEAL_WRITE);
        ck_assert_int_eq(test_pipe_signal(st.to_child), 0);

        /* The creator is bound as well: no writable mapping, no writes, no resizing. */
        fd = mfb_region_fd(r);
        ck_assert(mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED);
        ck_assert_int_eq(errno, EPERM);
        ck_assert_int_lt(pwrite(fd, "x", 1, 0), 0);
        ck_assert_int_eq(errno, EPERM);
        ck_assert_int_lt(ftruncate(fd, 4096), 0);
        ck_assert_int_eq(errno, EPERM);
        ck_assert_int_lt(ftruncate(fd, 1 << 20), 0);
        ck_assert_int_eq(errno, EPERM);
        ck_assert_int_eq(mfb_region_map(r, (void **) &mem), 0);
        ck_assert_int_eq(memcmp(mem, "final", 5), 0);

        test_child_succeeded(pid);
        mfb_region_free(r);
        mfb_client_free(c);
        test_steps_close(&st);
}
END_TEST

START_TEST(size_is_sealed_before_the_fd_leaves) {
        mfb_client *c = NULL;
        mfb_region *r = NULL;
        int seals;

        ck_assert_int_eq(mfb_client_connect(test_broker.socket_path, &c), 0);
        ck_assert_int_eq(mfb_region_create(c, NULL, 8192, &r), 0);
        seals = fcntl(mfb_region_fd(r), F_GET_SEALS);
        ck_assert_int_ge(seals, 0);
        ck_assert_int_eq(seals & (F_SEAL_SHRINK | F_SEAL_GROW), F_SEAL_SHRINK | F_SEAL_GROW);
        ck_assert_int_lt(ftruncate(mfb_region_fd(r), 0), 0);
        ck_assert_int_lt(ftruncate(mfb_region_fd(r), 16384), 0);
        mfb_region_free(r);
        mfb_client_free(c);
}
END_TEST

/* A process that keeps a writable mapping blocks the seal until it lets go. */
static int writer_main(void *arg) {
        const struct test_steps *p = arg;
        mfb_client *c = NULL;
        mfb_region *r = NULL;
        void *mem;

        TEST_CHILD_CHECK(mfb_client_connect(test_broker.socket_path, &c) == 0);
        TEST_CHILD_CHECK(mfb_region_open(c, "busy", O_RDWR, &r) == 0);
        TEST_CHILD_CHECK(mfb_region_map(r, &mem) == 0);
        TEST_CHILD_CHECK(test_pipe_signal(p->to_parent) == 0);
        TEST_CHILD_CHECK(test_pipe_wait(p->from_parent) == 0);
        mfb_region_free(r);
        TEST_CHILD_CHECK(test_pipe_signal(p->to_parent) == 0);
        mfb_client_free(c);
        return 0;
}

START_TEST(seal_refused_while_another_writer_maps) {
        struct test_steps st;
        mfb_client *c = NULL;
        mfb_region *r = NULL;
        pid_t pid;

        ck_assert_int_eq(mfb_client_connect(test_broker.socket_path, &c), 0);
        ck_assert_int_eq(mfb_region_create(c, "busy", 4096, &r), 0);
        test_steps_open(&st);
        pid = test_fork(writer_main, &st);
        ck_assert_int_eq(test_pipe_wait(st.from_child), 0);

        ck_assert_int_eq(mfb_region_seal(r), -EBUSY);
        ck_assert_msg(strlen(mfb_client_error_message(c)) > 0, "EBUSY comes with an explanation");

        ck_assert_int_eq(test_pipe_signal(st.to_child), 0);
        ck_assert_int_eq(test_pipe_wait(st.from_child), 0);
        ck_assert_int_eq(mfb_region_seal(r), 0);

        test_child_succeeded(pid);
        mfb_region_free(r);
        mfb_client_free(c);
        test_steps_close(&st);
}
END_TEST

#define HELD_REGIONS 10

/* Creates anonymous regions, maps them, says so and waits to be killed. */
static int holder_main(void *arg) {
        const struct test_steps *p = arg;
        mfb_client *c = NULL;
        mfb_region *r;
        void *mem;

        TEST_CHILD_CHECK(mfb_client_connect(test_broker.socket_path, &c) == 0);
        for (int i = 0; i < HELD_REGIONS; i++) {
                TEST_CHILD_CHECK(mfb_region_create(c, NULL, 1 << 20, &r) == 0);
                TEST_CHILD_CHECK(mfb_region_map(r, &mem) == 0);
                memset(mem, 0xab, 4096);
        }
        TEST_CHILD_CHECK(test_pipe_signal(p->to_parent) == 0);
        for (;;)
                pause();
}

START_TEST(killed_client_releases_its_regions) {
        unsigned baseline = test_broker_fd_count(&test_broker);
        int status;
        struct test_steps st;
        pid_t pid;

        test_steps_open(&st);
        pid = test_fork(holder_main, &st);
        ck_assert_int_eq(test_pipe_wait(st.from_child), 0);
        /*
         * One fd per region and one for the connection; waited for, since the
         * broker closes the fd it sent with the last reply only after sending it.
         */
        ck_assert_msg(test_broker_wait_fd_count(&test_broker, baseline + HELD_REGIONS + 1),
                      "broker has %u fds, want %u", test_broker_fd_count(&test_broker), baseline + HELD_REGIONS + 1);

        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        status = test_wait_child(pid);
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        ck_assert_msg(test_broker_wait_fd_count(&test_broker, baseline),
                      "broker still has %u fds, baseline %u", test_broker_fd_count(&test_broker), baseline);
        test_steps_close(&st);
}
END_TEST

Suite *sharing_suite(void) {
        Suite *s = suite_create("sharing");
        TCase *tc = tcase_create("sharing");

        tcase_set_timeout(tc, 60);
        tcase_add_checked_fixture(tc, test_broker_setup, test_broker_teardown);
        tcase_add_test(tc, two_processes_share_memory);
        tcase_add_test(tc, seal_stops_every_writer);
        tcase_add_test(tc, size_is_sealed_before_the_fd_leaves);
        tcase_add_test(tc, seal_refused_while_another_writer_maps);
        tcase_add_test(tc, killed_client_releases_its_regions);
        suite_add_tcase(s, tc);
        return s;
}
