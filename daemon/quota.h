/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Accounting per uid: what each uid makes the broker hold (regions, bytes,
 * fds, connections, queued replies, waiters, regions kept across restarts),
 * against the broker's limits, so that no one user can starve the others.
 *
 * Every resource has a broker-wide limit, and may have a limit per uid. On
 * top of that, a uid may take only a share of what is left, the rule of
 * dbus-broker: a uid holding `held` may take `charge` more only if
 *
 *     (n + 1) * (held + charge) - held <= left
 *
 * where left is what no one holds and n is the number of uids holding some
 * of the resource, the caller counted. A uid alone can take half of the
 * broker; each further uid gets a share of what the others left, so one
 * user can never lock the others out, however early it came.
 *
 * Root and the broker's own uid are exempt: they are not limited per uid
 * and take no share, but what they hold counts against the broker-wide
 * limit, and they are refused only when nothing is left. A uid's entry
 * exists only while it holds something, so the table is bounded by what
 * the broker holds.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "wire.h"

struct quota;

/* An amount of each resource, indexed by enum mfb_wire_resource. */
struct quota_amount {
        uint64_t n[MFB_WIRE_RESOURCE_COUNT];
};

struct quota_limits {
        struct quota_amount broker_max;
        struct quota_amount uid_max;    /* MFB_WIRE_LIMIT_NONE: no limit per uid */
};

/*
 * Returns 0 and an empty table enforcing limits (copied), under which
 * uid 0 and exempt_uid are exempt, or -ENOMEM.
 */
int quota_new(const struct quota_limits *limits, uid_t exempt_uid, struct quota **ret);

/* Frees the table. Accepts NULL; returns NULL. */
struct quota *quota_free(struct quota *q);

const struct quota_limits *quota_limits(const struct quota *q);

/* Whether uid is exempt from the limits per uid and the shares. */
bool quota_is_exempt(const struct quota *q, uid_t uid);

/*
 * Charges uid with amount, all of it or nothing. Returns 0; -EDQUOT when
 * that would take uid past a limit per uid or its share of what is left;
 * -ENOSPC when the broker-wide limit has no room for it at all; or
 * -ENOMEM. On -EDQUOT and -ENOSPC, *ret_refused (if not NULL) says which
 * resource refused.
 */
int quota_charge(struct quota *q, uid_t uid, const struct quota_amount *amount, enum mfb_wire_resource *ret_refused);

/*
 * Charges uid with amount, which it holds already (regions kept across a
 * restart), even beyond every limit. Returns 0 or -ENOMEM.
 */
int quota_charge_force(struct quota *q, uid_t uid, const struct quota_amount *amount);

/* Undoes a charge of amount to uid. */
void quota_discharge(struct quota *q, uid_t uid, const struct quota_amount *amount);

/*
 * Moves a charge of amount from uid from to uid to, which is checked as
 * quota_charge() checks it, as if from had let go first. Returns 0 or the
 * errors of quota_charge(); nothing is moved on failure.
 */
int quota_move(struct quota *q, uid_t from, uid_t to, const struct quota_amount *amount,
               enum mfb_wire_resource *ret_refused);

/* What uid holds of resource. */
uint64_t quota_held(const struct quota *q, uid_t uid, enum mfb_wire_resource resource);

/* What every uid together holds of resource. */
uint64_t quota_used(const struct quota *q, enum mfb_wire_resource resource);

/* The most of resource that uid may take more right now. */
uint64_t quota_available(const struct quota *q, uid_t uid, enum mfb_wire_resource resource);

/*
 * The uids the table has an entry for (those holding anything, exempt ones
 * included, and those with refused connections waiting to be told), from
 * first_uid up in ascending order: stores up to n of them in ret_uids, the
 * caller's room for n, and returns how many. Sets *ret_more to whether the
 * table has uids after the last one stored (when none is, as with n == 0:
 * any from first_uid up), so that a caller paging through takes the next
 * page from that uid + 1, which cannot wrap, until *ret_more is false.
 * Costs O(log uids + n), whatever the table holds.
 */
size_t quota_users(const struct quota *q, uid_t first_uid, uid_t *ret_uids, size_t n, bool *ret_more);

/* The name of a resource for messages: "regions", "bytes", ... */
const char *quota_resource_name(enum mfb_wire_resource resource);

/*
 * Counts a connection of uid that was refused (over its connections or
 * fds) and waits to be told so. Returns 0, or -EDQUOT when uid has so many
 * of them waiting already that this one is to be closed at once, uncounted;
 * and always -EDQUOT for an exempt uid, which is refused only when the
 * broker is full, and so is never kept waiting to be told.
 */
int quota_add_refused(struct quota *q, uid_t uid);

/* Undoes quota_add_refused() that returned 0. */
void quota_remove_refused(struct quota *q, uid_t uid);
