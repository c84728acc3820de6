/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "hashmap.h"

#define CAPACITY_MIN 8U

struct entry {
        const void *key;        /* NULL: the slot is free */
        void *value;
        uint64_t hash;
};

struct hashmap {
        const struct hashmap_ops *ops;
        struct entry *entries;  /* capacity slots, or NULL while empty */
        size_t capacity;        /* a power of two */
        size_t size;
        uint64_t seed[2];
};

static inline uint64_t rotl(uint64_t x, unsigned b) {
        return (x << b) | (x >> (64 - b));
}

#define SIPROUND(v0, v1, v2, v3)                                         \
        do {                                                             \
                v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32); \
                v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;                   \
                v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;                   \
                v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32); \
        } while (0)

/* SipHash-2-4 (Aumasson and Bernstein), as the reference implementation computes it. */
static uint64_t siphash24(const void *data, size_t len, const uint64_t key[2]) {
        const uint8_t *p = data;
        uint64_t v0 = UINT64_C(0x736f6d6570736575) ^ key[0];
        uint64_t v1 = UINT64_C(0x646f72616e646f6d) ^ key[1];
        uint64_t v2 = UINT64_C(0x6c7967656e657261) ^ key[0];
        uint64_t v3 = UINT64_C(0x7465646279746573) ^ key[1];
        uint64_t last = (uint64_t) len << 56;
        size_t i;

        for (; len >= 8; len -= 8, p += 8) {
                uint64_t m = 0;

                for (i = 0; i < 8; i++)
                        m |= (uint64_t) p[i] << (8 * i);
                v3 ^= m;
                SIPROUND(v0, v1, v2, v3);
                SIPROUND(v0, v1, v2, v3);
                v0 ^= m;
        }
        for (i = 0; i < len; i++)
                last |= (uint64_t) p[i] << (8 * i);

        v3 ^= last;
        SIPROUND(v0, v1, v2, v3);
        SIPROUND(v0, v1, v2, v3);
        v0 ^= last;
        v2 ^= 0xff;
        for (i = 0; i < 4; i++)
                SIPROUND(v0, v1, v2, v3);
        return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t string_hash(const void *key, const uint64_t seed[2]) {
        return siphash24(key, strlen(key), seed);
}

static bool string_equal(const void *a, const void *b) {
        return strcmp(a, b) == 0;
}

/* Handles are chosen by the broker, not by clients: a seeded mixer (splitmix64's finalizer) is enough. */
static uint64_t u64_hash(const void *key, const uint64_t seed[2]) {
        uint64_t x = *(const uint64_t *) key ^ seed[0];

        x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
        return x ^ (x >> 31);
}

static bool u64_equal(const void *a, const void *b) {
        return *(const uint64_t *) a == *(const uint64_t *) b;
}

const struct hashmap_ops hashmap_u64_ops = { .hash = u64_hash, .equal = u64_equal };
const struct hashmap_ops hashmap_string_ops = { .hash = string_hash, .equal = string_equal };

static void seed_init(uint64_t seed[2]) {
        struct timespec ts;

        /* GRND_INSECURE never blocks, even early at boot; kernels before 5.6 lack it. */
        if (getrandom(seed, 2 * sizeof(uint64_t), GRND_INSECURE) == 2 * sizeof(uint64_t) ||
            getrandom(seed, 2 * sizeof(uint64_t), GRND_NONBLOCK) == 2 * sizeof(uint64_t))
                return;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed[0] = (uint64_t) ts.tv_nsec ^ ((uint64_t) getpid() << 32) ^ (uint64_t) (uintptr_t) seed;
        seed[1] = (uint64_t) ts.tv_sec ^ (uint64_t) (uintptr_t) &seed_init;
}

int hashmap_new(const struct hashmap_ops *ops, struct hashmap **ret) {
        struct hashmap *h = calloc(1, sizeof(*h));

        if (!h)
                return -ENOMEM;
        h->ops = ops;
        seed_init(h->seed);
        *ret = h;
        return 0;
}

struct hashmap *hashmap_free(struct hashmap *h) {
        if (h) {
                free(h->entries);
                free(h);
        }
        return NULL;
}

size_t hashmap_size(const struct hashmap *h) {
        return h->size;
}

/* The slot holding key, or the free slot where it would go. */
static size_t find_slot(const struct hashmap *h, const void *key, uint64_t hash) {
        size_t mask = h->capacity - 1;

        for (size_t i = hash & mask;; i = (i + 1) & mask) {
                const struct entry *e = &h->entries[i];

                if (!e->key || (e->hash == hash && h->ops->equal(e->key, key)))
                        return i;
        }
}

static int resize(struct hashmap *h, size_t capacity) {
        struct entry *old = h->entries;
        size_t old_capacity = h->capacity;

        h->entries = calloc(capacity, sizeof(struct entry));
        if (!h->entries) {
                h->entries = old;
                return -ENOMEM;
        }
        h->capacity = capacity;
        for (size_t i = 0; i < old_capacity; i++)
                if (old[i].key)
                        h->entries[find_slot(h, old[i].key, old[i].hash)] = old[i];
        free(old);
        return 0;
}

int hashmap_put(struct hashmap *h, const void *key, void *value) {
        uint64_t hash = h->ops->hash(key, h->seed);
        struct entry *e;
        int r;

        assert(key && value);

        /* At most 3/4 full, so that probe sequences stay short. */
        if ((h->size + 1) * 4 > h->capacity * 3) {
                r = resize(h, h->capacity ? h->capacity * 2 : CAPACITY_MIN);
                if (r < 0)
                        return r;
        }

        e = &h->entries[find_slot(h, key, hash)];
        if (e->key)
                return -EEXIST;
        *e = (struct entry) { .key = key, .value = value, .hash = hash };
        h->size++;
        return 0;
}

void *hashmap_get(const struct hashmap *h, const void *key) {
        const struct entry *e;

        if (h->size == 0)
                return NULL;
        e = &h->entries[find_slot(h, key, h->ops->hash(key, h->seed))];
        return e->key ? e->value : NULL;
}

void *hashmap_remove(struct hashmap *h, const void *key) {
        size_t mask, i;
        void *value;

        if (h->size == 0)
                return NULL;
        mask = h->capacity - 1;
        i = find_slot(h, key, h->ops->hash(key, h->seed));
        if (!h->entries[i].key)
                return NULL;
        value = h->entries[i].value;

        /*
         * Backward-shift deletion instead of tombstones: move every later
         * entry of the probe run whose home slot is not after the hole into
         * it, so that no lookup ever stops early at a free slot.
         */
        for (size_t j = (i + 1) & mask; h->entries[j].key; j = (j + 1) & mask) {
                size_t home = h->entries[j].hash & mask;

                if (((j - home) & mask) >= ((j - i) & mask)) {
                        h->entries[i] = h->entries[j];
                        i = j;
                }
        }
        h->entries[i] = (struct entry) {};
        h->size--;

        /* Give memory back after a burst; failing to is harmless. */
        if (h->capacity > CAPACITY_MIN && h->size * 8 < h->capacity)
                (void) resize(h, h->capacity / 2);
        return value;
}

bool hashmap_iterate(const struct hashmap *h, size_t *state, void **ret_value) {
        for (size_t i = *state; i < h->capacity; i++)
                if (h->entries[i].key) {
                        *ret_value = h->entries[i].value;
                        *state = i + 1;
                        return true;
                }
        *state = h->capacity;
        return false;
}
