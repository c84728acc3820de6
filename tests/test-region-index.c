/* SPDX-License-Identifier: MIT */
/*
 * The region table's handle order on its own (daemon/region.c), which LIST
 * walks: region_next() from any handle, live, freed or never given, and
 * region_after() from a live region, must give exactly the regions the
 * table holds, in ascending handle order, none skipped or repeated, after
 * any mix of creates and frees. The table keeps freed regions' places as
 * dead entries and compacts them away once there are many; the tests free
 * hundreds in many orders so that compaction happens again and again, and
 * walk across it.
 *
 * The expected contents come from a model in this file: every region ever
 * created, in creation order (so ascending handles), and whether the table
 * still holds it. Of a region, the tests read only its handle.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "macro.h"
#include "quota.h"
#include "region.h"
#include "suites.h"

/*
 * For the checks in loops that run many thousand times: Check records
 * every passing ck_assert() (a write each, to its parent process), this
 * only the failures.
 */
#define require(cond, ...)                              \
        do {                                            \
                if (!(cond))                            \
                        ck_abort_msg(__VA_ARGS__);      \
        } while (0)

/* How a region of the model lives, and so how it ends. */
enum kind {
        KIND_ANONYMOUS, /* held by nobody: freed by region_remove() */
        KIND_NAMED,     /* lives by its name: freed by region_remove() */
        KIND_HELD,      /* held: region_remove() leaves it in the table, region_drop_holder() frees it */
        KIND_COUNT,
};

struct entry {
        uint64_t handle;
        struct region *region;
        enum kind kind;
        bool removed;   /* region_remove() done */
        bool freed;     /* no longer in the table */
};

static struct quota *quota;
static struct region_table *table;
static struct entry *entries;
static size_t n_entries, n_allocated, n_held;

static void setup(void) {
        struct quota_limits limits;

        test_fd_leak_setup();
        for (unsigned i = 0; i < MFB_WIRE_RESOURCE_COUNT; i++) {
                limits.broker_max.n[i] = UINT32_MAX;
                limits.uid_max.n[i] = MFB_WIRE_LIMIT_NONE;
        }
        ck_assert_int_eq(quota_new(&limits, 0, &quota), 0);
        ck_assert_int_eq(region_table_new(UINT32_MAX, quota, &table), 0);
        entries = NULL;
        n_entries = n_allocated = n_held = 0;
}

static void teardown(void) {
        table = region_table_free(table);
        quota = quota_free(quota);
        free(entries);
        entries = NULL;
        test_fd_leak_teardown();
}

static uint64_t next_random(uint64_t *state) {
        uint64_t x = (*state += UINT64_C(0x9e3779b97f4a7c15));

        x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
        return x ^ (x >> 31);
}

static void shuffle(size_t *a, size_t n, uint64_t *state) {
        for (size_t i = n; i > 1; i--) {
                size_t j = next_random(state) % i, t = a[i - 1];

                a[i - 1] = a[j];
                a[j] = t;
        }
}

/* Creates a region of kind and adds it to the model; returns its index there. */
static size_t create(enum kind kind) {
        struct ucred creds = { .pid = getpid(), .uid = 1000, .gid = 1000 };
        enum mfb_wire_resource refused;
        struct region *r;
        char name[32];
        int k;

        snprintf(name, sizeof(name), "r%zu", n_entries);
        k = region_create(table, 1, kind == KIND_NAMED ? name : NULL, 0600, false, &creds, &r, &refused);
        require(k == 0, "region_create() #%zu: %s", n_entries, strerror(-k));
        require(n_entries == 0 || r->handle > entries[n_entries - 1].handle, "handle %llu after %llu",
                (unsigned long long) r->handle, (unsigned long long) entries[n_entries - 1].handle);
        require(region_table_last_handle(table) == r->handle, "the last handle is not the new region's");
        if (kind == KIND_HELD) {
                region_add_holder(r);
                n_held++;
        }
        require(GREEDY_REALLOC(entries, n_allocated, n_entries + 1) == 0, "out of memory");
        entries[n_entries] = (struct entry) { .handle = r->handle, .region = r, .kind = kind };
        return n_entries++;
}

/* One step towards freeing entry i: a held region is removed first, and freed when its holder goes. */
static void step_down(size_t i) {
        struct entry *e = &entries[i];

        require(!e->freed, "entry %zu is freed already", i);
        if (!e->removed) {
                region_remove(table, e->region);
                e->removed = true;
                e->freed = e->kind != KIND_HELD;
        } else {
                region_drop_holder(table, e->region);
                n_held--;
                e->freed = true;
        }
}

/* Frees entry i, in one or two steps. */
static void destroy(size_t i) {
        while (!entries[i].freed)
                step_down(i);
}

static size_t live_count(void) {
        size_t n = 0;

        for (size_t i = 0; i < n_entries; i++)
                n += !entries[i].freed;
        return n;
}

/* The index of the first entry at or after i that the table holds, or n_entries. */
static size_t model_next(size_t i) {
        while (i < n_entries && entries[i].freed)
                i++;
        return i;
}

static unsigned long long handle_of(size_t i) {
        return i < n_entries ? (unsigned long long) entries[i].handle : 0;
}

/* Walks the table from region_next(t, 0) on, by region_after() or by region_next() from each handle. */
static void assert_walk(bool by_after) {
        struct region *r = region_next(table, 0);
        size_t i = model_next(0), steps = 0;

        while (i < n_entries) {
                require(r == entries[i].region, "walk %s: step %zu gave %s, not handle %llu",
                        by_after ? "by region_after()" : "by region_next()", steps, r ? "another region" : "NULL",
                        handle_of(i));
                r = by_after ? region_after(table, r) : region_next(table, entries[i].handle);
                i = model_next(i + 1);
                steps++;
        }
        require(!r, "walk %s: a region after the last (handle %llu)",
                by_after ? "by region_after()" : "by region_next()", (unsigned long long) r->handle);
}

/*
 * Everything the table tells about the order agrees with the model: both
 * walks, region_next() after every handle ever given and the one before
 * it (a gap when handles were skipped), after 0 and past the end, lookups
 * by handle, and the count.
 */
static void assert_order(void) {
        struct region_usage usage;
        size_t next = n_entries;

        assert_walk(true);
        assert_walk(false);
        for (size_t i = n_entries; i-- > 0;) {
                struct region *want = next < n_entries ? entries[next].region : NULL;
                struct region *at = entries[i].freed ? want : entries[i].region;

                require(region_next(table, entries[i].handle) == want, "region_next(%llu) should be handle %llu",
                        handle_of(i), handle_of(next));
                require(region_next(table, entries[i].handle - 1) == at, "region_next(%llu) should be handle %llu",
                        handle_of(i) - 1, at == want ? handle_of(next) : handle_of(i));
                require(region_get_by_handle(table, entries[i].handle) == (entries[i].freed ? NULL : entries[i].region),
                        "region_get_by_handle(%llu) wrong", handle_of(i));
                if (!entries[i].freed)
                        next = i;
        }
        require(region_next(table, 0) == (next < n_entries ? entries[next].region : NULL), "region_next(0) wrong");
        require(!region_next(table, region_table_last_handle(table)), "a region after the last handle");
        require(!region_next(table, UINT64_MAX), "a region after UINT64_MAX");
        region_table_usage(table, &usage);
        require(usage.regions == live_count(), "the table holds %zu regions, not %zu", usage.regions, live_count());
}

START_TEST(empty_table) {
        struct region *r;

        ck_assert_ptr_null(region_next(table, 0));
        ck_assert_ptr_null(region_next(table, 1));
        ck_assert_ptr_null(region_next(table, UINT64_MAX));
        ck_assert_uint_eq(region_table_last_handle(table), 0);

        /* One region, then none again: its handle is not given twice, and nothing is listed. */
        create(KIND_ANONYMOUS);
        r = entries[0].region;
        ck_assert_ptr_eq(region_next(table, 0), r);
        ck_assert_ptr_null(region_after(table, r));
        destroy(0);
        ck_assert_ptr_null(region_next(table, 0));
        ck_assert_uint_eq(region_table_last_handle(table), entries[0].handle);
        create(KIND_ANONYMOUS);
        ck_assert_uint_gt(entries[1].handle, entries[0].handle);
        assert_order();
}
END_TEST

/* The orders in which all_freed_in_order frees N regions. */
enum order {
        ORDER_ASCENDING,
        ORDER_DESCENDING,
        ORDER_EVEN_THEN_ODD,
        ORDER_FROM_THE_MIDDLE_OUT,
        ORDER_FROM_BOTH_ENDS_IN,
        ORDER_EVERY_THIRD_THEN_REST,
        ORDER_RANDOM,
        ORDER_RANDOM_AGAIN,
        ORDER_COUNT,
};

/*
 * Hundreds of regions of every kind, freed in one order, the order
 * checked in full after each step; then as many again, which come after
 * them all.
 */
START_TEST(all_freed_in_order) {
        enum { N = 300 };
        size_t order[N];
        uint64_t rnd = 1000 + _i;

        for (size_t i = 0; i < N; i++)
                create((enum kind) (i % KIND_COUNT));
        assert_order();

        for (size_t i = 0; i < N; i++)
                switch ((enum order) _i) {
                case ORDER_ASCENDING:
                        order[i] = i;
                        break;
                case ORDER_DESCENDING:
                        order[i] = N - 1 - i;
                        break;
                case ORDER_EVEN_THEN_ODD:
                        order[i] = i < N / 2 ? 2 * i : 2 * (i - N / 2) + 1;
                        break;
                case ORDER_FROM_THE_MIDDLE_OUT:
                        order[i] = i % 2 ? N / 2 + i / 2 : N / 2 - 1 - i / 2;
                        break;
                case ORDER_FROM_BOTH_ENDS_IN:
                        order[i] = i % 2 ? N - 1 - i / 2 : i / 2;
                        break;
                case ORDER_EVERY_THIRD_THEN_REST:
                        order[i] = i < N / 3 ? 3 * i : 0;
                        break;
                default:
                        order[i] = i;
                }
        if (_i == ORDER_EVERY_THIRD_THEN_REST)
                for (size_t i = N / 3, j = 0; i < N; j++)
                        if (j % 3 != 0)
                                order[i++] = j;
        if (_i == ORDER_RANDOM || _i == ORDER_RANDOM_AGAIN)
                shuffle(order, N, &rnd);
        /* Each region once: the orders above are permutations. */
        {
                bool picked[N] = {};

                for (size_t i = 0; i < N; i++) {
                        ck_assert_uint_lt(order[i], N);
                        ck_assert(!picked[order[i]]);
                        picked[order[i]] = true;
                }
        }

        for (size_t i = 0; i < N; i++) {
                size_t k = order[i];

                /* The held ones stay listed between their removal and their end, checked there too. */
                step_down(k);
                assert_order();
                if (!entries[k].freed) {
                        step_down(k);
                        assert_order();
                }
        }
        ck_assert_ptr_null(region_next(table, 0));
        ck_assert_uint_eq(n_held, 0);

        for (size_t i = 0; i < N; i++)
                create((enum kind) (i % KIND_COUNT));
        assert_order();
        ck_assert_uint_gt(entries[N].handle, entries[N - 1].handle);
}
END_TEST

/* Creates and frees mixed at random, the live count rising and falling between 0 and a few hundred. */
START_TEST(churn) {
        uint64_t rnd = 5;
        size_t live = 0;

        for (unsigned step = 0; step < 6000; step++) {
                /* Waves: mostly creating in one phase, mostly freeing in the next. */
                bool growing = (step / 500) % 2 == 0;
                unsigned roll = next_random(&rnd) % 100;

                if (live == 0 || (live < 400 && roll < (growing ? 70U : 30U))) {
                        create((enum kind) (next_random(&rnd) % KIND_COUNT));
                        live++;
                } else {
                        /* A random live entry: most are recent, so look back from the end. */
                        size_t k;

                        do
                                k = n_entries - 1 - next_random(&rnd) % (n_entries < 800 ? n_entries : 800);
                        while (entries[k].freed);
                        step_down(k);
                        live -= entries[k].freed;
                }
                if (step % 37 == 0)
                        assert_order();
                else {
                        /* Between full checks, the walk that LIST does. */
                        assert_walk(true);
                }
        }
        assert_order();
        for (size_t i = 0; i < n_entries; i++)
                if (!entries[i].freed)
                        destroy(i);
        assert_order();
}
END_TEST

/*
 * A walk as LIST does it: from one region to the next, while regions are
 * freed around the one it stands on, enough of them for the dead entries
 * to be compacted away under it. It goes on from where it stood to exactly
 * the regions still held above it.
 */
START_TEST(walk_across_compaction) {
        enum { N = 400 };
        uint64_t rnd = 77;
        struct region *r;
        size_t at, seen = 0;

        for (size_t i = 0; i < N; i++)
                create(KIND_ANONYMOUS);

        r = region_next(table, 0);
        at = 0;
        while (r) {
                require(r == entries[at].region, "the walk is at another region than handle %llu", handle_of(at));
                seen++;
                /* At every tenth step, free a random quarter of the other regions held, before and after it. */
                if (seen % 10 == 0) {
                        size_t live = live_count(), n = live / 4;

                        for (size_t j = 0; j < n; j++) {
                                size_t k = next_random(&rnd) % n_entries;

                                if (k != at && !entries[k].freed)
                                        destroy(k);
                        }
                        assert_order();
                }
                r = region_after(table, r);
                at = model_next(at + 1);
                require(r == (at < n_entries ? entries[at].region : NULL), "region_after() should give handle %llu",
                        handle_of(at));
        }
        ck_assert_uint_gt(seen, 10);
        ck_assert_uint_lt(seen, N);
}
END_TEST

/*
 * Pages of LIST resume after the last handle of the previous page, which
 * may be freed, and compacted away, meanwhile: region_next() from it
 * gives the next one held, whatever was freed around it.
 */
START_TEST(resume_after_a_freed_handle) {
        enum { N = 300, PAGE = 7 };
        uint64_t rnd = 3;
        uint64_t after = 0;
        size_t pages = 0;

        for (size_t i = 0; i < N; i++)
                create(KIND_ANONYMOUS);

        for (;;) {
                struct region *r = region_next(table, after);
                size_t i = 0, last = n_entries;

                /* Where the model says the page starts: the first held above after. */
                while (i < n_entries && (entries[i].handle <= after || entries[i].freed))
                        i++;
                require(r == (i < n_entries ? entries[i].region : NULL), "page %zu should start at handle %llu",
                        pages, handle_of(i));
                if (!r)
                        break;
                for (size_t n = 0; r && n < PAGE; n++) {
                        require(r == entries[i].region, "page %zu, entry %zu: not handle %llu", pages, n, handle_of(i));
                        last = i;
                        r = region_after(table, r);
                        i = model_next(i + 1);
                }
                after = entries[last].handle;
                pages++;

                /* Between pages: the page's last region goes, and a random third of what is left. */
                destroy(last);
                for (size_t n = live_count() / 3; n > 0; n--) {
                        size_t k = next_random(&rnd) % n_entries;

                        if (!entries[k].freed)
                                destroy(k);
                }
                if (pages % 3 == 0)
                        create(KIND_ANONYMOUS);
        }
        ck_assert_uint_gt(pages, 3);
        assert_order();
}
END_TEST

/* Handles skipped (as after a restart) leave a gap that region_next() steps over from anywhere inside it. */
START_TEST(gaps_from_skipped_handles) {
        uint64_t gap_start, gap_end;

        for (size_t i = 0; i < 100; i++)
                create(KIND_ANONYMOUS);
        gap_start = region_table_last_handle(table);
        region_table_skip_handles(table, gap_start + 1000);
        /* Skipping backwards changes nothing. */
        region_table_skip_handles(table, gap_start);
        ck_assert_uint_eq(region_table_last_handle(table), gap_start + 1000);
        create(KIND_ANONYMOUS);
        gap_end = entries[100].handle;
        ck_assert_uint_gt(gap_end, gap_start + 1000);

        for (uint64_t h = gap_start; h < gap_end; h += 37)
                ck_assert_ptr_eq(region_next(table, h), entries[100].region);
        ck_assert_ptr_eq(region_next(table, gap_end - 1), entries[100].region);
        ck_assert_ptr_eq(region_after(table, entries[99].region), entries[100].region);
        assert_order();

        /* The regions before the gap go; the gap stays stepped over. */
        for (size_t i = 0; i < 100; i++) {
                destroy(i);
                if (i % 10 == 0)
                        assert_order();
        }
        for (uint64_t h = 0; h < gap_end; h += 41)
                ck_assert_ptr_eq(region_next(table, h), entries[100].region);
        assert_order();
}
END_TEST

Suite *region_index_suite(void) {
        Suite *s = suite_create("region-index");
        TCase *tc = tcase_create("region-index");

        tcase_set_timeout(tc, 120);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, empty_table);
        tcase_add_loop_test(tc, all_freed_in_order, 0, ORDER_COUNT);
        tcase_add_test(tc, churn);
        tcase_add_test(tc, walk_across_compaction);
        tcase_add_test(tc, resume_after_a_freed_handle);
        tcase_add_test(tc, gaps_from_skipped_handles);
        suite_add_tcase(s, tc);
        return s;
}
