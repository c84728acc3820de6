/* SPDX-License-Identifier: MIT */
/*
 * daemon/hashmap.c on its own: what hashmap.h promises at any size and in
 * any order of changes. The hard cases of linear probing (long probe runs,
 * runs that wrap around the end of the table, backward-shift deletion
 * moving entries into holes) depend on where keys land, which the seeded
 * hashes of hashmap_u64_ops and hashmap_string_ops hide: those tests use
 * ops of their own whose hash the test chooses. A capacity is always a
 * power of two, so the hashes UINT64_MAX and UINT64_MAX - 1 land in the
 * last two slots of a table of any size, and 0 and 1 in the first two.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "hashmap.h"
#include "macro.h"
#include "suites.h"

/* A key whose hash is what the test says. */
struct probe_key {
        uint64_t id;
        uint64_t hash;
};

static uint64_t probe_hash(const void *key, const uint64_t seed[2]) {
        return ((const struct probe_key *) key)->hash;
}

static bool probe_equal(const void *a, const void *b) {
        return ((const struct probe_key *) a)->id == ((const struct probe_key *) b)->id;
}

static const struct hashmap_ops probe_ops = { .hash = probe_hash, .equal = probe_equal };

/*
 * For the checks in loops that run millions of times: Check records every
 * passing ck_assert() (a write each, to its parent process), this only
 * the failures.
 */
#define require(cond, ...)                              \
        do {                                            \
                if (!(cond))                            \
                        ck_abort_msg(__VA_ARGS__);      \
        } while (0)

/* splitmix64: a fixed sequence, so that a failure repeats. */
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

static struct hashmap *new_map(const struct hashmap_ops *ops) {
        struct hashmap *h = NULL;

        ck_assert_int_eq(hashmap_new(ops, &h), 0);
        ck_assert_ptr_nonnull(h);
        return h;
}

/*
 * Every key of keys[] is found with its own value (values[i]) while present[i],
 * and absent otherwise; looked up through a copy, so that only the ops'
 * equality can find it. The size is the number present.
 */
static void assert_probe_contents(const struct hashmap *h, const struct probe_key *keys, const bool *present,
                                  int *values, size_t n) {
        size_t want = 0;

        for (size_t i = 0; i < n; i++) {
                struct probe_key copy = keys[i];

                if (present[i]) {
                        require(hashmap_get(h, &copy) == &values[i], "key %zu (hash %#llx) not found", i,
                                (unsigned long long) keys[i].hash);
                        want++;
                } else
                        require(!hashmap_get(h, &copy), "removed key %zu still found", i);
        }
        require(hashmap_size(h) == want, "size %zu, %zu keys present", hashmap_size(h), want);
}

/* Iterating visits each value present exactly once, and nothing else. */
static void assert_iterates_once(const struct hashmap *h, const bool *present, int *values, size_t n) {
        unsigned *seen = calloc(n, sizeof(unsigned));
        size_t state = 0, visited = 0;
        void *v;

        require(seen, "out of memory");
        while (hashmap_iterate(h, &state, &v)) {
                int *p = v;

                require(p >= values && p < values + n, "iteration gave a value that was never put");
                seen[p - values]++;
                visited++;
                require(visited <= n, "iteration goes on past %zu values", n);
        }
        /* The end stays the end. */
        require(!hashmap_iterate(h, &state, &v), "iteration goes on after its end");
        for (size_t i = 0; i < n; i++)
                require(seen[i] == (present[i] ? 1 : 0), "value %zu visited %u times", i, seen[i]);
        require(visited == hashmap_size(h), "visited %zu of %zu", visited, hashmap_size(h));
        free(seen);
}

START_TEST(empty_map) {
        struct hashmap *h = new_map(&hashmap_u64_ops), *s = new_map(&hashmap_string_ops);
        uint64_t k = 0;
        size_t state = 0;
        void *v = &k;

        ck_assert_uint_eq(hashmap_size(h), 0);
        ck_assert_ptr_null(hashmap_get(h, &k));
        ck_assert_ptr_null(hashmap_remove(h, &k));
        ck_assert(!hashmap_iterate(h, &state, &v));
        ck_assert_ptr_eq(v, &k);        /* nothing stored at the end */
        ck_assert_ptr_null(hashmap_get(s, ""));
        ck_assert_ptr_null(hashmap_remove(s, "x"));
        ck_assert_uint_eq(hashmap_size(s), 0);

        /* Emptied again, it behaves as new. */
        ck_assert_int_eq(hashmap_put(h, &k, &state), 0);
        ck_assert_ptr_eq(hashmap_remove(h, &k), &state);
        ck_assert_uint_eq(hashmap_size(h), 0);
        ck_assert_ptr_null(hashmap_get(h, &k));
        ck_assert_ptr_null(hashmap_remove(h, &k));
        state = 0;
        ck_assert(!hashmap_iterate(h, &state, &v));

        ck_assert_ptr_null(hashmap_free(h));
        ck_assert_ptr_null(hashmap_free(s));
        ck_assert_ptr_null(hashmap_free(NULL));
}
END_TEST

START_TEST(put_get_remove_u64) {
        /* The extremes and values that differ only in their top or bottom bit. */
        static const uint64_t keys[] = { 0, 1, UINT64_MAX, UINT64_MAX - 1, UINT64_C(1) << 63, (UINT64_C(1) << 63) | 1,
                                         4096, 42 };
        int values[ELEMENTSOF(keys)];
        struct hashmap *h = new_map(&hashmap_u64_ops);

        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                ck_assert_int_eq(hashmap_put(h, &keys[i], &values[i]), 0);
                ck_assert_uint_eq(hashmap_size(h), i + 1);
        }
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                uint64_t copy = keys[i];

                ck_assert_ptr_eq(hashmap_get(h, &copy), &values[i]);
        }
        for (uint64_t absent = 2; absent < 64; absent++)
                if (absent != 42)
                        ck_assert_ptr_null(hashmap_get(h, &absent));

        /* A duplicate, by the same pointer or an equal key, changes nothing. */
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                uint64_t copy = keys[i];
                int other;

                ck_assert_int_eq(hashmap_put(h, &keys[i], &other), -EEXIST);
                ck_assert_int_eq(hashmap_put(h, &copy, &other), -EEXIST);
                ck_assert_ptr_eq(hashmap_get(h, &copy), &values[i]);
        }
        ck_assert_uint_eq(hashmap_size(h), ELEMENTSOF(keys));

        for (size_t i = 0; i < ELEMENTSOF(keys); i += 2) {
                uint64_t copy = keys[i];

                ck_assert_ptr_eq(hashmap_remove(h, &copy), &values[i]);
                ck_assert_ptr_null(hashmap_remove(h, &copy));
        }
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                ck_assert_ptr_eq(hashmap_get(h, &keys[i]), i % 2 ? &values[i] : NULL);
        ck_assert_uint_eq(hashmap_size(h), ELEMENTSOF(keys) / 2);

        /* A removed key may be put again, with another value. */
        ck_assert_int_eq(hashmap_put(h, &keys[0], &values[1]), 0);
        ck_assert_ptr_eq(hashmap_get(h, &keys[0]), &values[1]);
        hashmap_free(h);
}
END_TEST

START_TEST(put_get_remove_string) {
        /* The empty string, prefixes of each other, and lengths around SipHash's 8-byte blocks. */
        static const char *const keys[] = { "", "a", "ab", "abc", "abcdefg", "abcdefgh", "abcdefghi",
                                            "abcdefghijklmnop", "abcdefghijklmnopq", "b", "A", "a b",
                                            "region-with-a-rather-long-name-0123456789" };
        int values[ELEMENTSOF(keys)];
        struct hashmap *h = new_map(&hashmap_string_ops);
        char copy[64];

        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                ck_assert_int_eq(hashmap_put(h, keys[i], &values[i]), 0);
        ck_assert_uint_eq(hashmap_size(h), ELEMENTSOF(keys));

        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                int other;

                /* By content, not by pointer. */
                snprintf(copy, sizeof(copy), "%s", keys[i]);
                ck_assert_ptr_eq(hashmap_get(h, copy), &values[i]);
                ck_assert_int_eq(hashmap_put(h, copy, &other), -EEXIST);
        }
        ck_assert_ptr_null(hashmap_get(h, "abcd"));
        ck_assert_ptr_null(hashmap_get(h, "abcdefghijklmno"));
        ck_assert_ptr_null(hashmap_get(h, "B"));
        ck_assert_ptr_null(hashmap_get(h, " "));

        snprintf(copy, sizeof(copy), "%s", "");
        ck_assert_ptr_eq(hashmap_remove(h, copy), &values[0]);
        ck_assert_ptr_null(hashmap_get(h, ""));
        /* Its neighbours by content are untouched. */
        ck_assert_ptr_eq(hashmap_get(h, "a"), &values[1]);
        ck_assert_ptr_eq(hashmap_remove(h, "abcdefgh"), &values[5]);
        ck_assert_ptr_eq(hashmap_get(h, "abcdefg"), &values[4]);
        ck_assert_ptr_eq(hashmap_get(h, "abcdefghi"), &values[6]);
        ck_assert_uint_eq(hashmap_size(h), ELEMENTSOF(keys) - 2);
        hashmap_free(h);
}
END_TEST

/*
 * Many u64 keys: growth from empty, then removal down to nothing (the
 * table shrinks on the way), with every key present found and every key
 * removed gone at each power of two of the size and at every size below
 * 64, where a resize is due. Then refilled, to grow again from a table
 * that shrank.
 */
START_TEST(grows_and_shrinks) {
        enum { N = 20000 };
        uint64_t *keys = calloc(N, sizeof(uint64_t));
        size_t *order = calloc(N, sizeof(size_t));
        bool *present = calloc(N, sizeof(bool));
        int *values = calloc(N, sizeof(int));
        struct hashmap *h = new_map(&hashmap_u64_ops);
        uint64_t rnd = 12;

        ck_assert(keys && order && present && values);
        for (size_t i = 0; i < N; i++) {
                /* Handles come in sequence; spread ones too. */
                keys[i] = i % 2 ? i : next_random(&rnd);
                order[i] = i;
        }

        for (size_t i = 0; i < N; i++) {
                require(hashmap_put(h, &keys[i], &values[i]) == 0, "put of key %zu failed", i);
                present[i] = true;
                require(hashmap_size(h) == i + 1, "size %zu after %zu puts", hashmap_size(h), i + 1);
        }
        for (size_t i = 0; i < N; i++) {
                uint64_t copy = keys[i];

                require(hashmap_get(h, &copy) == &values[i], "key %zu not found", i);
        }

        shuffle(order, N, &rnd);
        for (size_t i = 0; i < N; i++) {
                size_t k = order[i], size = N - i - 1;

                require(hashmap_remove(h, &keys[k]) == &values[k], "key %zu not removed at size %zu", k, size);
                present[k] = false;
                require(hashmap_size(h) == size, "size %zu, not %zu", hashmap_size(h), size);
                if (size < 64 || (size & (size - 1)) == 0 || ((size + 1) & size) == 0)
                        for (size_t j = 0; j < N; j++)
                                require(hashmap_get(h, &keys[j]) == (present[j] ? &values[j] : NULL),
                                        "key %zu wrong at size %zu", j, size);
        }
        ck_assert_uint_eq(hashmap_size(h), 0);

        for (size_t i = 0; i < N; i++) {
                require(hashmap_put(h, &keys[order[i]], &values[order[i]]) == 0, "put of key %zu failed", order[i]);
                present[order[i]] = true;
        }
        for (size_t i = 0; i < N; i++)
                require(hashmap_get(h, &keys[i]) == &values[i], "key %zu not found after refilling", i);
        hashmap_free(h);
        free(keys);
        free(order);
        free(present);
        free(values);
}
END_TEST

/* Removing half of a large table, and half again: every remaining string is found, and iterated once. */
START_TEST(shrinks_keeping_strings) {
        enum { N = 5000 };
        char (*names)[16] = calloc(N, sizeof(*names));
        bool *present = calloc(N, sizeof(bool));
        int *values = calloc(N, sizeof(int));
        struct hashmap *h = new_map(&hashmap_string_ops);

        ck_assert(names && present && values);
        for (size_t i = 0; i < N; i++) {
                snprintf(names[i], sizeof(names[i]), "name-%zu", i);
                require(hashmap_put(h, names[i], &values[i]) == 0, "put of %s failed", names[i]);
                present[i] = true;
        }
        assert_iterates_once(h, present, values, N);

        for (unsigned step = 2; step <= 64; step *= 2) {
                for (size_t i = 0; i < N; i++)
                        if (present[i] && i % step != 0) {
                                require(hashmap_remove(h, names[i]) == &values[i], "%s not removed", names[i]);
                                present[i] = false;
                        }
                for (size_t i = 0; i < N; i++) {
                        char copy[16];

                        snprintf(copy, sizeof(copy), "name-%zu", i);
                        require(hashmap_get(h, copy) == (present[i] ? &values[i] : NULL), "%s wrong", copy);
                }
                assert_iterates_once(h, present, values, N);
        }
        ck_assert_uint_eq(hashmap_size(h), (N + 63) / 64);
        hashmap_free(h);
        free(names);
        free(present);
        free(values);
}
END_TEST

/* Calls fn with every permutation of 0..n-1 in a, by Heap's algorithm; a holds the identity at first. */
static void each_permutation(size_t *a, size_t n, void (*fn)(const size_t *a, void *userdata), void *userdata) {
        size_t c[16] = {};

        ck_assert_uint_le(n, ELEMENTSOF(c));
        fn(a, userdata);
        for (size_t i = 1; i < n;) {
                if (c[i] < i) {
                        size_t j = i % 2 ? c[i] : 0, t = a[j];

                        a[j] = a[i];
                        a[i] = t;
                        fn(a, userdata);
                        c[i]++;
                        i = 1;
                } else {
                        c[i] = 0;
                        i++;
                }
        }
}

/*
 * Six keys that crowd the end and the start of any table: two at home in
 * the last slot, one in the one before, two in the first, one in the
 * second. Their probe runs wrap around the end and merge with the run at
 * the start. At most 3/4 full, a table of eight slots holds them.
 */
static const struct probe_key crowded[] = {
        { .id = 0, .hash = UINT64_MAX },
        { .id = 1, .hash = UINT64_MAX },
        { .id = 2, .hash = UINT64_MAX - 1 },
        { .id = 3, .hash = 0 },
        { .id = 4, .hash = 0 },
        { .id = 5, .hash = 1 },
};

struct crowd_run {
        const size_t *insert_order;
        unsigned runs;
};

/* Puts crowded[] in insert_order, then removes them in remove_order, checking every key after each step. */
static void crowd_remove(const size_t *remove_order, void *userdata) {
        struct crowd_run *run = userdata;
        int values[ELEMENTSOF(crowded)];
        bool present[ELEMENTSOF(crowded)] = {};
        struct hashmap *h = NULL;

        require(hashmap_new(&probe_ops, &h) == 0, "out of memory");
        for (size_t i = 0; i < ELEMENTSOF(crowded); i++) {
                size_t k = run->insert_order[i];

                require(hashmap_put(h, &crowded[k], &values[k]) == 0, "put of key %zu failed", k);
                present[k] = true;
        }
        assert_probe_contents(h, crowded, present, values, ELEMENTSOF(crowded));
        assert_iterates_once(h, present, values, ELEMENTSOF(crowded));

        for (size_t i = 0; i < ELEMENTSOF(crowded); i++) {
                size_t k = remove_order[i];
                struct probe_key copy = crowded[k];

                require(hashmap_remove(h, &copy) == &values[k], "key %zu not removed", k);
                present[k] = false;
                assert_probe_contents(h, crowded, present, values, ELEMENTSOF(crowded));
                assert_iterates_once(h, present, values, ELEMENTSOF(crowded));

                /* Putting it back and removing it again leaves the same. */
                require(hashmap_put(h, &crowded[k], &values[k]) == 0, "put of removed key %zu failed", k);
                require(hashmap_remove(h, &copy) == &values[k], "key %zu put back not removed", k);
                assert_probe_contents(h, crowded, present, values, ELEMENTSOF(crowded));
        }
        hashmap_free(h);
        run->runs++;
}

static void crowd_insert(const size_t *insert_order, void *userdata) {
        unsigned *runs = userdata;
        struct crowd_run run = { .insert_order = insert_order };
        size_t remove_order[ELEMENTSOF(crowded)];

        for (size_t i = 0; i < ELEMENTSOF(crowded); i++)
                remove_order[i] = i;
        each_permutation(remove_order, ELEMENTSOF(crowded), crowd_remove, &run);
        *runs += run.runs;
}

/*
 * Backward-shift deletion: every order of removal, for every order of
 * insertion (which decides who sits where in the runs), keeps each
 * remaining key reachable and each removed one gone.
 */
START_TEST(removal_in_every_order_keeps_wrapped_runs_reachable) {
        size_t insert_order[ELEMENTSOF(crowded)];
        unsigned runs = 0;

        for (size_t i = 0; i < ELEMENTSOF(crowded); i++)
                insert_order[i] = i;
        each_permutation(insert_order, ELEMENTSOF(crowded), crowd_insert, &runs);
        ck_assert_uint_eq(runs, 720 * 720);
}
END_TEST

/*
 * Many keys of one hash: a single probe run around the whole table, across
 * growth and shrinking, removed in random orders; and many keys in a few
 * clusters at the end and the start, so that runs wrap and meet.
 */
START_TEST(long_colliding_runs) {
        enum { N = 300 };
        struct probe_key *keys = calloc(N, sizeof(*keys));
        size_t *order = calloc(N, sizeof(size_t));
        bool *present = calloc(N, sizeof(bool));
        int *values = calloc(N, sizeof(int));
        uint64_t rnd = 7;

        ck_assert(keys && order && present && values);
        for (unsigned layout = 0; layout < 3; layout++)
                for (unsigned round = 0; round < 4; round++) {
                        struct hashmap *h = new_map(&probe_ops);

                        for (size_t i = 0; i < N; i++) {
                                static const uint64_t clusters[] = { UINT64_MAX, UINT64_MAX - 3, 0, 2, 5 };

                                keys[i].id = i;
                                if (layout == 0)
                                        keys[i].hash = UINT64_MAX;
                                else if (layout == 1)
                                        keys[i].hash = clusters[i % ELEMENTSOF(clusters)];
                                else
                                        /* Home slots near the end of whatever capacity the table has. */
                                        keys[i].hash = UINT64_MAX - next_random(&rnd) % 8;
                                order[i] = i;
                        }
                        shuffle(order, N, &rnd);
                        for (size_t i = 0; i < N; i++) {
                                require(hashmap_put(h, &keys[order[i]], &values[order[i]]) == 0,
                                        "put of key %zu failed", order[i]);
                                present[order[i]] = true;
                        }
                        assert_probe_contents(h, keys, present, values, N);
                        assert_iterates_once(h, present, values, N);

                        shuffle(order, N, &rnd);
                        for (size_t i = 0; i < N; i++) {
                                struct probe_key copy = keys[order[i]];

                                require(hashmap_remove(h, &copy) == &values[order[i]], "key %zu not removed",
                                        order[i]);
                                present[order[i]] = false;
                                assert_probe_contents(h, keys, present, values, N);
                        }
                        assert_iterates_once(h, present, values, N);
                        hashmap_free(h);
                }
        free(keys);
        free(order);
        free(present);
        free(values);
}
END_TEST

/* Iteration sees entries put after removals (which moved others) once each, at every size on the way. */
START_TEST(iterate_visits_each_entry_once) {
        enum { N = 1000 };
        uint64_t *keys = calloc(N, sizeof(uint64_t));
        bool *present = calloc(N, sizeof(bool));
        int *values = calloc(N, sizeof(int));
        struct hashmap *h = new_map(&hashmap_u64_ops);
        uint64_t rnd = 99;

        ck_assert(keys && present && values);
        for (size_t i = 0; i < N; i++) {
                keys[i] = i * 3;
                require(hashmap_put(h, &keys[i], &values[i]) == 0, "put of key %zu failed", i);
                present[i] = true;
                if (i % 37 == 0)
                        assert_iterates_once(h, present, values, N);
        }
        for (size_t i = 0; i < 4 * N; i++) {
                size_t k = next_random(&rnd) % N;

                if (present[k])
                        require(hashmap_remove(h, &keys[k]) == &values[k], "key %zu not removed", k);
                else
                        require(hashmap_put(h, &keys[k], &values[k]) == 0, "put of key %zu failed", k);
                present[k] = !present[k];
                if (i % 97 == 0)
                        assert_iterates_once(h, present, values, N);
        }
        assert_iterates_once(h, present, values, N);
        hashmap_free(h);
        free(keys);
        free(present);
        free(values);
}
END_TEST

Suite *hashmap_suite(void) {
        Suite *s = suite_create("hashmap");
        TCase *tc = tcase_create("hashmap");

        /* Every order of six crowded keys is half a million small tables: slow under valgrind. */
        tcase_set_timeout(tc, 300);
        tcase_add_checked_fixture(tc, test_fd_leak_setup, test_fd_leak_teardown);
        tcase_add_test(tc, empty_map);
        tcase_add_test(tc, put_get_remove_u64);
        tcase_add_test(tc, put_get_remove_string);
        tcase_add_test(tc, grows_and_shrinks);
        tcase_add_test(tc, shrinks_keeping_strings);
        tcase_add_test(tc, removal_in_every_order_keeps_wrapped_runs_reachable);
        tcase_add_test(tc, long_colliding_runs);
        tcase_add_test(tc, iterate_visits_each_entry_once);
        suite_add_tcase(s, tc);
        return s;
}
