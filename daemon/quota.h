/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Per-uid accounting: the regions and bytes each uid owns, and the
 * connections it has open, against the broker's limits per uid, so that no
 * one user can take what the broker has for everyone. Root (uid 0) is
 * exempt and not counted. A uid's entry exists only while it has something
 * counted, so the table is bounded by what the broker holds.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct quota;

struct quota_limits {
        uint32_t regions;
        uint64_t bytes;
        uint32_t connections;
};

struct quota_usage {
        uint32_t regions;
        uint64_t bytes;
        uint32_t connections;   /* counted ones: refused connections are not */
};

/* Returns 0 and an empty table enforcing limits (copied), or -ENOMEM. */
int quota_new(const struct quota_limits *limits, struct quota **ret);

/* Frees the table. Accepts NULL; returns NULL. */
struct quota *quota_free(struct quota *q);

const struct quota_limits *quota_limits(const struct quota *q);

/* What uid has counted now (all zero for root). */
void quota_usage(const struct quota *q, uid_t uid, struct quota_usage *ret);

/*
 * Charges uid for one more region of size bytes. Returns 0, -EDQUOT when
 * that would take uid past its region or byte limit (nothing charged), or
 * -ENOMEM.
 */
int quota_add_region(struct quota *q, uid_t uid, uint64_t size);

/*
 * Charges uid for a region of size bytes that exists already (kept across
 * a restart), even beyond its limits. Returns 0 or -ENOMEM.
 */
int quota_charge_region(struct quota *q, uid_t uid, uint64_t size);

/* Undoes quota_add_region() or quota_charge_region(). */
void quota_remove_region(struct quota *q, uid_t uid, uint64_t size);

/*
 * Moves the charge for a region of size bytes from uid from to uid to.
 * Returns 0, -EDQUOT when to has no room for it (nothing moved), or -ENOMEM.
 */
int quota_move_region(struct quota *q, uid_t from, uid_t to, uint64_t size);

/*
 * Counts a new connection of uid. Returns 0 when it is within the limit;
 * 1 when it is not, so it may only be told so and closed (it is counted
 * as refused until quota_remove_connection()); -EDQUOT when uid has so
 * many refused connections already that this one is to be closed at once,
 * uncounted; or -ENOMEM (uncounted).
 */
int quota_add_connection(struct quota *q, uid_t uid);

/* Undoes quota_add_connection() that returned 0 (refused false) or 1 (refused true). */
void quota_remove_connection(struct quota *q, uid_t uid, bool refused);
