/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "macro.h"
#include "state.h"
#include "suites.h"

/* The layout daemon/state.c writes, which these tests tear and garble on purpose. */
#define RECORD_SIZE 360
#define SEQ_OFFSET 8
#define VERSION_OFFSET 8

static off_t copy_offset(uint32_t slot, unsigned copy) {
        return (off_t) ((1 + 2 * (uint64_t) slot + copy) * RECORD_SIZE);
}

struct seen {
        struct state_region regions[256];
        uint32_t slots[256];
        size_t n;
};

static int collect(const struct state_region *r, uint32_t slot, void *userdata) {
        struct seen *s = userdata;

        ck_assert_uint_lt(s->n, ELEMENTSOF(s->regions));
        s->regions[s->n] = *r;
        s->slots[s->n] = slot;
        s->n++;
        return 0;
}

static struct state_region example(uint64_t handle, const char *name) {
        struct state_region r = {
                .handle = handle,
                .size = 4096 * handle,
                .uid = 1000,
                .gid = 100,
                .creator_uid = 1001,
                .creator_gid = 101,
                .mode = 0640,
                .creator_pid = 42,
                .last_pid = 43,
                .hugetlb = handle % 2,
                .create_time = 1000 + handle,
                .attach_time = 2000 + handle,
                .detach_time = 3000 + handle,
                .change_time = 4000 + handle,
        };

        snprintf(r.name, sizeof(r.name), "%s", name);
        return r;
}

static void assert_same(const struct state_region *a, const struct state_region *b) {
        ck_assert_uint_eq(a->handle, b->handle);
        ck_assert_uint_eq(a->size, b->size);
        ck_assert_uint_eq(a->uid, b->uid);
        ck_assert_uint_eq(a->gid, b->gid);
        ck_assert_uint_eq(a->creator_uid, b->creator_uid);
        ck_assert_uint_eq(a->creator_gid, b->creator_gid);
        ck_assert_uint_eq(a->mode, b->mode);
        ck_assert_int_eq(a->creator_pid, b->creator_pid);
        ck_assert_int_eq(a->last_pid, b->last_pid);
        ck_assert_int_eq(a->hugetlb, b->hugetlb);
        ck_assert_uint_eq(a->create_time, b->create_time);
        ck_assert_uint_eq(a->attach_time, b->attach_time);
        ck_assert_uint_eq(a->detach_time, b->detach_time);
        ck_assert_uint_eq(a->change_time, b->change_time);
        ck_assert_str_eq(a->name, b->name);
}

/* Loads what s wrote, as the next broker would: from another fd of the same memfd. */
static int reload(const struct state *s, struct seen *seen, struct state **ret) {
        int fd = fcntl(state_fd(s), F_DUPFD_CLOEXEC, 3);

        ck_assert_int_ge(fd, 0);
        memset(seen, 0, sizeof(*seen));
        return state_load(fd, collect, seen, ret);
}

static void reload_ok(const struct state *s, struct seen *seen) {
        struct state *loaded = NULL;

        ck_assert_int_eq(reload(s, seen, &loaded), 0);
        state_free(loaded);
}

static void garble(const struct state *s, off_t offset, size_t len) {
        uint8_t junk[RECORD_SIZE];

        ck_assert_uint_le(len, sizeof(junk));
        for (size_t i = 0; i < len; i++)
                junk[i] = (uint8_t) (0xa5 ^ i);
        ck_assert_int_eq(pwrite(state_fd(s), junk, len, offset), (ssize_t) len);
}

/* The copy of slot that was written last, found by its sequence number. */
static unsigned newest_copy(const struct state *s, uint32_t slot) {
        uint64_t seq[2];

        for (unsigned c = 0; c < 2; c++)
                ck_assert_int_eq(pread(state_fd(s), &seq[c], sizeof(seq[c]), copy_offset(slot, c) + SEQ_OFFSET),
                                 (ssize_t) sizeof(seq[c]));
        return seq[1] > seq[0];
}

START_TEST(test_round_trip) {
        struct state_region a = example(1, "alpha"), b = example(2, "beta");
        uint32_t slot_a = 0, slot_b = 0;
        struct state *s;
        struct seen seen;

        ck_assert_int_eq(state_new(&s), 0);
        ck_assert_int_eq(state_save_region(s, &slot_a, &a), 0);
        ck_assert_int_eq(state_save_region(s, &slot_b, &b), 0);
        ck_assert_uint_gt(slot_a, 0);
        ck_assert_uint_gt(slot_b, 0);
        ck_assert_uint_ne(slot_a, slot_b);

        reload_ok(s, &seen);
        ck_assert_uint_eq(seen.n, 2);
        assert_same(&seen.regions[0], &a);
        assert_same(&seen.regions[1], &b);
        ck_assert_uint_eq(seen.slots[0], slot_a);
        ck_assert_uint_eq(seen.slots[1], slot_b);
        state_free(s);
}
END_TEST

START_TEST(test_update_forget_reuse) {
        struct state_region a = example(1, "alpha"), b = example(2, "beta"), c = example(3, "gamma");
        uint32_t slot_a = 0, slot_b = 0, slot_c = 0;
        struct state *s, *loaded;
        struct seen seen;

        ck_assert_int_eq(state_new(&s), 0);
        ck_assert_int_eq(state_save_region(s, &slot_a, &a), 0);
        ck_assert_int_eq(state_save_region(s, &slot_b, &b), 0);
        a.mode = 0600;
        a.uid = 2000;
        ck_assert_int_eq(state_save_region(s, &slot_a, &a), 0);
        ck_assert_int_eq(state_forget_region(s, slot_b), 0);

        /* The loaded state goes on where the first left off: its free slot is used again. */
        ck_assert_int_eq(reload(s, &seen, &loaded), 0);
        ck_assert_uint_eq(seen.n, 1);
        assert_same(&seen.regions[0], &a);
        ck_assert_int_eq(state_save_region(loaded, &slot_c, &c), 0);
        ck_assert_uint_eq(slot_c, slot_b);
        reload_ok(loaded, &seen);
        ck_assert_uint_eq(seen.n, 2);
        assert_same(&seen.regions[1], &c);
        state_free(loaded);
        state_free(s);
}
END_TEST

START_TEST(test_torn_update_keeps_the_previous) {
        struct state_region a = example(1, "alpha"), before;
        uint32_t slot = 0;
        struct state *s;
        struct seen seen;

        ck_assert_int_eq(state_new(&s), 0);
        ck_assert_int_eq(state_save_region(s, &slot, &a), 0);
        before = a;
        a.mode = 0666;
        ck_assert_int_eq(state_save_region(s, &slot, &a), 0);
        /* As if the broker died halfway through writing the update. */
        garble(s, copy_offset(slot, newest_copy(s, slot)) + RECORD_SIZE / 2, RECORD_SIZE / 2);

        reload_ok(s, &seen);
        ck_assert_uint_eq(seen.n, 1);
        assert_same(&seen.regions[0], &before);
        state_free(s);
}
END_TEST

START_TEST(test_torn_first_write_is_free) {
        struct state_region a = example(1, "alpha");
        uint32_t slot = 0;
        struct state *s;
        struct seen seen;

        ck_assert_int_eq(state_new(&s), 0);
        ck_assert_int_eq(state_save_region(s, &slot, &a), 0);
        garble(s, copy_offset(slot, newest_copy(s, slot)), 16);

        reload_ok(s, &seen);
        ck_assert_uint_eq(seen.n, 0);
        state_free(s);
}
END_TEST

START_TEST(test_garbage_is_refused) {
        struct state_region a = example(1, "alpha");
        struct state *s, *loaded = NULL;
        uint32_t slot = 0, version = 2;
        struct seen seen;

        ck_assert_int_eq(state_new(&s), 0);
        ck_assert_int_eq(state_save_region(s, &slot, &a), 0);
        ck_assert_int_eq(state_save_region(s, &slot, &a), 0);

        /* Both copies of a slot: no crash does that. */
        garble(s, copy_offset(slot, 0), 32);
        garble(s, copy_offset(slot, 1), 32);
        ck_assert_int_eq(reload(s, &seen, &loaded), -EBADMSG);
        ck_assert_ptr_null(loaded);

        /* The header. */
        garble(s, 0, 16);
        ck_assert_int_eq(reload(s, &seen, &loaded), -EBADMSG);
        state_free(s);

        /* A file of a newer format. */
        ck_assert_int_eq(state_new(&s), 0);
        ck_assert_int_eq(pwrite(state_fd(s), &version, sizeof(version), VERSION_OFFSET), (ssize_t) sizeof(version));
        ck_assert_int_eq(reload(s, &seen, &loaded), -EPROTONOSUPPORT);
        state_free(s);

        /* A size that is no number of slots. */
        ck_assert_int_eq(state_new(&s), 0);
        ck_assert_int_eq(ftruncate(state_fd(s), 3 * RECORD_SIZE + 1), 0);
        ck_assert_int_eq(reload(s, &seen, &loaded), -EBADMSG);
        state_free(s);
}
END_TEST

START_TEST(test_not_a_file) {
        struct state *loaded = NULL;
        struct seen seen = {};
        int p[2];

        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        ck_assert_int_eq(state_load(p[0], collect, &seen, &loaded), -EBADMSG);
        close(p[1]);
}
END_TEST

START_TEST(test_grows) {
        enum { N = 200 };
        struct state *s;
        struct seen seen;
        char name[16];

        ck_assert_int_eq(state_new(&s), 0);
        for (uint64_t h = 1; h <= N; h++) {
                struct state_region r;
                uint32_t slot = 0;

                snprintf(name, sizeof(name), "r%" PRIu64, h);
                r = example(h, name);
                ck_assert_int_eq(state_save_region(s, &slot, &r), 0);
                ck_assert_uint_eq(slot, h);
        }
        reload_ok(s, &seen);
        ck_assert_uint_eq(seen.n, N);
        for (size_t i = 0; i < N; i++) {
                struct state_region r;

                snprintf(name, sizeof(name), "r%zu", i + 1);
                r = example(i + 1, name);
                assert_same(&seen.regions[i], &r);
        }
        state_free(s);
}
END_TEST

/* Memory the state file takes, in bytes: the pages it has, not its size. */
static uint64_t memory_of(const struct state *s) {
        struct stat st;

        ck_assert_int_eq(fstat(state_fd(s), &st), 0);
        return (uint64_t) st.st_blocks * 512;
}

/*
 * After many regions come and go, the file takes memory for the pages with
 * regions in them, not for the most it ever held; and it loads as before.
 */
START_TEST(test_forgotten_regions_give_pages_back) {
        enum { N = 2000, KEPT_EVERY = 500, AGAIN = 100 };
        uint32_t slots[N + 1];
        struct state *s;
        struct seen seen;
        char name[16];
        uint64_t full;

        ck_assert_int_eq(state_new(&s), 0);
        for (uint64_t h = 1; h <= N; h++) {
                struct state_region r;

                snprintf(name, sizeof(name), "r%" PRIu64, h);
                r = example(h, name);
                slots[h] = 0;
                ck_assert_int_eq(state_save_region(s, &slots[h], &r), 0);
        }
        full = memory_of(s);
        ck_assert_uint_ge(full, (uint64_t) N * 2 * RECORD_SIZE);
        for (uint64_t h = 1; h <= N; h++)
                if (h % KEPT_EVERY != 0)
                        ck_assert_int_eq(state_forget_region(s, slots[h]), 0);
        /* The header's page, and at most two pages around each region kept. */
        ck_assert_uint_le(memory_of(s), (1 + 2 * N / KEPT_EVERY) * (uint64_t) sysconf(_SC_PAGESIZE));

        reload_ok(s, &seen);
        ck_assert_uint_eq(seen.n, N / KEPT_EVERY);
        for (size_t i = 0; i < seen.n; i++) {
                struct state_region r;

                snprintf(name, sizeof(name), "r%zu", (i + 1) * KEPT_EVERY);
                r = example((i + 1) * KEPT_EVERY, name);
                assert_same(&seen.regions[i], &r);
        }
        /* Slots in pages given back are written again as any free slot. */
        for (uint64_t h = 1; h <= AGAIN; h++) {
                struct state_region r = example(N + h, "again");
                uint32_t slot = 0;

                snprintf(r.name, sizeof(r.name), "again%" PRIu64, h);
                ck_assert_int_eq(state_save_region(s, &slot, &r), 0);
        }
        reload_ok(s, &seen);
        ck_assert_uint_eq(seen.n, N / KEPT_EVERY + AGAIN);
        state_free(s);
}
END_TEST

START_TEST(test_handle_mark) {
        struct state *s, *loaded;
        struct seen seen;

        ck_assert_int_eq(state_new(&s), 0);
        ck_assert_uint_eq(state_handle_mark(s), 0);
        ck_assert_int_eq(state_reserve_handle(s, 1), 0);
        ck_assert_uint_eq(state_handle_mark(s), STATE_HANDLE_RESERVE);
        ck_assert_int_eq(state_reserve_handle(s, STATE_HANDLE_RESERVE), 0);
        ck_assert_uint_eq(state_handle_mark(s), STATE_HANDLE_RESERVE);
        ck_assert_int_eq(state_reserve_handle(s, STATE_HANDLE_RESERVE + 1), 0);
        ck_assert_uint_eq(state_handle_mark(s), 2 * STATE_HANDLE_RESERVE);
        ck_assert_int_eq(state_reserve_handle(s, UINT64_MAX - 1), 0);
        ck_assert_uint_eq(state_handle_mark(s), UINT64_MAX);

        ck_assert_int_eq(reload(s, &seen, &loaded), 0);
        ck_assert_uint_eq(state_handle_mark(loaded), UINT64_MAX);
        state_free(loaded);
        state_free(s);
}
END_TEST

Suite *state_suite(void) {
        Suite *s = suite_create("state");
        TCase *tc = tcase_create("format");

        tcase_add_checked_fixture(tc, test_fd_leak_setup, test_fd_leak_teardown);
        tcase_add_test(tc, test_round_trip);
        tcase_add_test(tc, test_update_forget_reuse);
        tcase_add_test(tc, test_torn_update_keeps_the_previous);
        tcase_add_test(tc, test_torn_first_write_is_free);
        tcase_add_test(tc, test_garbage_is_refused);
        tcase_add_test(tc, test_not_a_file);
        tcase_add_test(tc, test_grows);
        tcase_add_test(tc, test_forgotten_regions_give_pages_back);
        tcase_add_test(tc, test_handle_mark);
        suite_add_tcase(s, tc);
        return s;
}
