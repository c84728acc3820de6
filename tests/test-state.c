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
#include "wire.h"

/* The layout daemon/state.c writes, which these tests tear and garble on purpose. */
#define RECORD_SIZE 360
#define SEQ_OFFSET 8
#define VERSION_OFFSET 8

static off_t copy_offset(uint32_t slot, unsigned copy) {
        return (off_t) ((1 + 2 * (uint64_t) slot + copy) * RECORD_SIZE);
}

/* A region as the state saves it: its meta, and its name. */
struct saved {
        struct region_meta meta;
        char name[MFB_WIRE_NAME_MAX + 1];
};

struct seen {
        struct saved regions[256];
        uint32_t slots[256];
        size_t n;
};

static int collect(const struct region_meta *meta, const char *name, uint32_t slot, void *userdata) {
        struct seen *s = userdata;

        ck_assert_uint_lt(s->n, ELEMENTSOF(s->regions));
        ck_assert_uint_le(strlen(name), MFB_WIRE_NAME_MAX);
        s->regions[s->n].meta = *meta;
        snprintf(s->regions[s->n].name, sizeof(s->regions[s->n].name), "%s", name);
        s->slots[s->n] = slot;
        s->n++;
        return 0;
}

static struct saved example(uint64_t handle, const char *name) {
        struct saved r = { .meta = {
                .handle = handle,
                .size = 4096 * handle,
                .uid = 1000,
                .gid = 100,
                .creator_uid = 1001,
                .creator_gid = 101,
                .mode = 0640,
                .creator_pid = 42,
                .last_pid = 43,
                .flags = handle % 2 ? REGION_HUGETLB : 0,
                .create_time = 1000 + handle,
                .attach_time = 2000 + handle,
                .detach_time = 3000 + handle,
                .change_time = 4000 + handle,
        } };

        snprintf(r.name, sizeof(r.name), "%s", name);
        return r;
}

static int save(struct state *s, uint32_t *slot, const struct saved *r) {
        return state_save_region(s, slot, &r->meta, r->name);
}

static void assert_same(const struct saved *a, const struct saved *b) {
        ck_assert_uint_eq(a->meta.handle, b->meta.handle);
        ck_assert_uint_eq(a->meta.size, b->meta.size);
        ck_assert_uint_eq(a->meta.uid, b->meta.uid);
        ck_assert_uint_eq(a->meta.gid, b->meta.gid);
        ck_assert_uint_eq(a->meta.creator_uid, b->meta.creator_uid);
        ck_assert_uint_eq(a->meta.creator_gid, b->meta.creator_gid);
        ck_assert_uint_eq(a->meta.mode, b->meta.mode);
        ck_assert_int_eq(a->meta.creator_pid, b->meta.creator_pid);
        ck_assert_int_eq(a->meta.last_pid, b->meta.last_pid);
        ck_assert_uint_eq(a->meta.flags, b->meta.flags);
        ck_assert_uint_eq(a->meta.create_time, b->meta.create_time);
        ck_assert_uint_eq(a->meta.attach_time, b->meta.attach_time);
        ck_assert_uint_eq(a->meta.detach_time, b->meta.detach_time);
        ck_assert_uint_eq(a->meta.change_time, b->meta.change_time);
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
        struct saved a = example(1, "alpha"), b = example(2, "beta");
        uint32_t slot_a = 0, slot_b = 0;
        struct state *s;
        struct seen seen;

        ck_assert_int_eq(state_new(&s), 0);
        ck_assert_int_eq(save(s, &slot_a, &a), 0);
        ck_assert_int_eq(save(s, &slot_b, &b), 0);
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
        struct saved a = example(1, "alpha"), b = example(2, "beta"), c = example(3, "gamma");
        uint32_t slot_a = 0, slot_b = 0, slot_c = 0;
        struct state *s, *loaded;
        struct seen seen;

        ck_assert_int_eq(state_new(&s), 0);
        ck_assert_int_eq(save(s, &slot_a, &a), 0);
        ck_assert_int_eq(save(s, &slot_b, &b), 0);
        a.meta.mode = 0600;
        a.meta.uid = 2000;
        ck_assert_int_eq(save(s, &slot_a, &a), 0);
        ck_assert_int_eq(state_forget_region(s, slot_b), 0);

        /* The loaded state goes on where the first left off: its free slot is used again. */
        ck_assert_int_eq(reload(s, &seen, &loaded), 0);
        ck_assert_uint_eq(seen.n, 1);
        assert_same(&seen.regions[0], &a);
        ck_assert_int_eq(save(loaded, &slot_c, &c), 0);
        ck_assert_uint_eq(slot_c, slot_b);
        reload_ok(loaded, &seen);
        ck_assert_uint_eq(seen.n, 2);
        assert_same(&seen.regions[1], &c);
        state_free(loaded);
        state_free(s);
}
END_TEST

START_TEST(test_torn_update_keeps_the_previous) {
        struct saved a = example(1, "alpha"), before;
        uint32_t slot = 0;
        struct state *s;
        struct seen seen;

        ck_assert_int_eq(state_new(&s), 0);
        ck_assert_int_eq(save(s, &slot, &a), 0);
        before = a;
        a.meta.mode = 0666;
        ck_assert_int_eq(save(s, &slot, &a), 0);
        /* As if the broker died halfway through writing the update. */
        garble(s, copy_offset(slot, newest_copy(s, slot)) + RECORD_SIZE / 2, RECORD_SIZE / 2);

        reload_ok(s, &seen);
        ck_assert_uint_eq(seen.n, 1);
        assert_same(&seen.regions[0], &before);
        state_free(s);
}
END_TEST

START_TEST(test_torn_first_write_is_free) {
        struct saved a = example(1, "alpha");
        uint32_t slot = 0;
        struct state *s;
        struct seen seen;

        ck_assert_int_eq(state_new(&s), 0);
        ck_assert_int_eq(save(s, &slot, &a), 0);
        garble(s, copy_offset(slot, newest_copy(s, slot)), 16);

        reload_ok(s, &seen);
        ck_assert_uint_eq(seen.n, 0);
        state_free(s);
}
END_TEST

START_TEST(test_garbage_is_refused) {
        struct saved a = example(1, "alpha");
        struct state *s, *loaded = NULL;
        uint32_t slot = 0, version = 2;
        struct seen seen;

        ck_assert_int_eq(state_new(&s), 0);
        ck_assert_int_eq(save(s, &slot, &a), 0);
        ck_assert_int_eq(save(s, &slot, &a), 0);

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
                struct saved r;
                uint32_t slot = 0;

                snprintf(name, sizeof(name), "r%" PRIu64, h);
                r = example(h, name);
                ck_assert_int_eq(save(s, &slot, &r), 0);
                ck_assert_uint_eq(slot, h);
        }
        reload_ok(s, &seen);
        ck_assert_uint_eq(seen.n, N);
        for (size_t i = 0; i < N; i++) {
                struct saved r;

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
                struct saved r;

                snprintf(name, sizeof(name), "r%" PRIu64, h);
                r = example(h, name);
                slots[h] = 0;
                ck_assert_int_eq(save(s, &slots[h], &r), 0);
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
                struct saved r;

                snprintf(name, sizeof(name), "r%zu", (i + 1) * KEPT_EVERY);
                r = example((i + 1) * KEPT_EVERY, name);
                assert_same(&seen.regions[i], &r);
        }
        /* Slots in pages given back are written again as any free slot. */
        for (uint64_t h = 1; h <= AGAIN; h++) {
                struct saved r = example(N + h, "again");
                uint32_t slot = 0;

                snprintf(r.name, sizeof(r.name), "again%" PRIu64, h);
                ck_assert_int_eq(save(s, &slot, &r), 0);
        }
        reload_ok(s, &seen);
        ck_assert_uint_eq(seen.n, N / KEPT_EVERY + AGAIN);
        state_free(s);
}
END_TEST

/* FNV-1a, 64 bits, as format 1 checksums its header and records. */
static uint64_t fnv1a(const uint8_t *p, size_t len) {
        uint64_t h = UINT64_C(0xcbf29ce484222325);

        for (size_t i = 0; i < len; i++) {
                h ^= p[i];
                h *= UINT64_C(0x100000001b3);
        }
        return h;
}

static void put32(uint8_t *rec, size_t offset, uint32_t v) {
        memcpy(rec + offset, &v, sizeof(v));
}

static void put64(uint8_t *rec, size_t offset, uint64_t v) {
        memcpy(rec + offset, &v, sizeof(v));
}

/*
 * A region record of format 1, field by field at its offsets, as brokers
 * before the meta was one struct wrote it: what a broker finds after an
 * upgrade, and what it must write for one after a downgrade.
 */
static void format_1_record(const struct saved *r, uint64_t seq, uint8_t rec[static RECORD_SIZE]) {
        memset(rec, 0, RECORD_SIZE);
        put64(rec, SEQ_OFFSET, seq);
        put32(rec, 16, 2);                              /* type: region */
        put32(rec, 20, r->meta.flags);                  /* flags: 0x1 for huge pages */
        put64(rec, 24, r->meta.handle);
        put64(rec, 32, r->meta.size);
        put32(rec, 40, r->meta.uid);
        put32(rec, 44, r->meta.gid);
        put32(rec, 48, r->meta.creator_uid);
        put32(rec, 52, r->meta.creator_gid);
        put32(rec, 56, r->meta.mode);
        put32(rec, 60, (uint32_t) r->meta.creator_pid);
        put32(rec, 64, (uint32_t) r->meta.last_pid);
        /* 68: reserved, 0 */
        put64(rec, 72, r->meta.create_time);
        put64(rec, 80, r->meta.attach_time);
        put64(rec, 88, r->meta.detach_time);
        put64(rec, 96, r->meta.change_time);
        memcpy(rec + 104, r->name, strlen(r->name));
        put64(rec, 0, fnv1a(rec + 8, RECORD_SIZE - 8));
}

/* Saved states of format 1 load, and what is saved is format 1, byte for byte: upgrades and downgrades keep regions. */
START_TEST(test_format_1) {
        struct saved a = example(1, "alpha"), b = example(2, "beta");
        uint8_t want[RECORD_SIZE], got[RECORD_SIZE];
        struct state *s;
        struct seen seen;
        uint64_t seq;
        uint32_t slot = 0;

        ck_assert_uint_eq(a.meta.flags, REGION_HUGETLB);
        ck_assert_uint_eq(b.meta.flags, 0);
        ck_assert_int_eq(state_new(&s), 0);
        ck_assert_int_eq(save(s, &slot, &a), 0);
        ck_assert_int_eq(pread(state_fd(s), got, RECORD_SIZE, copy_offset(slot, newest_copy(s, slot))), RECORD_SIZE);
        memcpy(&seq, got + SEQ_OFFSET, sizeof(seq));
        format_1_record(&a, seq, want);
        ck_assert_mem_eq(got, want, RECORD_SIZE);

        /* Written by an older broker, in the next slot, as the newer copy of it. */
        format_1_record(&b, seq + 1, want);
        ck_assert_int_eq(pwrite(state_fd(s), want, RECORD_SIZE, copy_offset(slot + 1, 1)), RECORD_SIZE);
        reload_ok(s, &seen);
        ck_assert_uint_eq(seen.n, 2);
        assert_same(&seen.regions[0], &a);
        assert_same(&seen.regions[1], &b);
        ck_assert_uint_eq(seen.slots[1], slot + 1);
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
        tcase_add_test(tc, test_format_1);
        suite_add_tcase(s, tc);
        return s;
}
