/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A hash table from keys to values, both borrowed pointers: a key usually
 * points into its value (&region->handle, region->name) and must stay valid
 * and unchanged while the entry is in the table. Open addressing with
 * linear probing; it grows and shrinks with its contents, so lookups stay
 * O(1) at any size. Hashes are seeded per table, so that names a client
 * chooses cannot be made to collide.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hashmap_ops {
        uint64_t (*hash)(const void *key, const uint64_t seed[2]);
        bool (*equal)(const void *a, const void *b);
};

/* Keys point to a uint64_t. */
extern const struct hashmap_ops hashmap_u64_ops;
/* Keys are NUL-terminated strings. */
extern const struct hashmap_ops hashmap_string_ops;

struct hashmap;

/* Returns 0 and a new empty table, or -ENOMEM. ops is borrowed (a static). */
int hashmap_new(const struct hashmap_ops *ops, struct hashmap **ret);

/* Frees the table, not the keys or values. Accepts NULL; returns NULL. */
struct hashmap *hashmap_free(struct hashmap *h);

/* Adds key → value (value not NULL). Returns 0, -EEXIST if key is present, or -ENOMEM. */
int hashmap_put(struct hashmap *h, const void *key, void *value);

/* The value for key, or NULL. */
void *hashmap_get(const struct hashmap *h, const void *key);

/* Removes key and returns its value, or NULL if absent. */
void *hashmap_remove(struct hashmap *h, const void *key);

size_t hashmap_size(const struct hashmap *h);

/*
 * Iterates: start with *state = 0; each call stores the next value in
 * *ret_value and returns true, or returns false at the end. The table must
 * not change during the iteration.
 */
bool hashmap_iterate(const struct hashmap *h, size_t *state, void **ret_value);
