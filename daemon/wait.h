/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Pending WAIT requests: clients waiting for a region of some name to be
 * sealed, by name, each with its timeout. A connection has at most one
 * (it is not read while it waits), so they are bounded by the connections.
 *
 * A WAIT is answered exactly once: with a read-only open when a region of
 * its name is sealed and readable by the waiter, with -EIDRM when that
 * region is removed, with -ETIMEDOUT when its time is up; or it is
 * forgotten, unanswered, when its connection goes.
 */

#include <stdint.h>

#include "wire.h"

struct connection;
struct event_base;
struct quota;
struct region;
struct wait_table;

/*
 * Returns 0 and an empty table whose timers run on base, which charges
 * each pending WAIT to its uid in quota (both borrowed), or -ENOMEM.
 */
int wait_table_new(struct event_base *base, struct quota *quota, struct wait_table **ret);

/* Frees the table, which must be empty (free the connections first). Accepts NULL; returns NULL. */
struct wait_table *wait_table_free(struct wait_table *t);

/*
 * Holds request, a WAIT of c for name (borrowed, copied) with timeout_ns
 * (MFB_WAIT_FOREVER for none, else above 0), pending: c is not read until
 * it is answered. c must have no WAIT pending. Returns 0, -ENOMEM, or
 * -EDQUOT / -ENOSPC when c's uid may not have one more pending WAIT
 * (*ret_refused is MFB_RESOURCE_WAITERS then).
 */
int wait_start(struct wait_table *t, struct connection *c, const struct mfb_wire_header *request, const char *name,
               uint64_t timeout_ns, enum mfb_wire_resource *ret_refused);

/* Forgets c's pending WAIT, if any, without answering it: c is going away. */
void wait_forget(struct connection *c);

/*
 * If r is named and sealed (seals read live), answers the WAITs pending on
 * its name whose connections may read r with a read-only open of it; the
 * others keep waiting. Call it when r was sealed or its owner or mode
 * changed. Connections whose answer fails are dropped.
 */
void wait_wake_readers(struct wait_table *t, struct region *r);

/*
 * If r is named, answers the WAITs pending on its name whose connections
 * may see r (access_may_see()) with -EIDRM; the others go on waiting, as
 * they would had r never existed. Call it when r is about to be removed.
 * Connections whose answer fails are dropped.
 */
void wait_wake_removed(struct wait_table *t, const struct region *r);
