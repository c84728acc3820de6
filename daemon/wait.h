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
 * forgotten, unanswered, when its connection goes. The table decides
 * which; answering is its owner's (wait_answer_t).
 *
 * A wake-up answers at most WAIT_ANSWERS_PER_PASS WAITs at once, and the
 * passes of the event loop after it as many each, oldest first: a WAIT
 * costs a reopen and a reply with an fd, and one uid may have one pending
 * on each of its connections, so a SEAL that answered them all in its
 * turn would hold every other user up for milliseconds. A region removed
 * before its readers were all answered answers the rest -EIDRM, as though
 * the removal had come first. Answering is work outside the waiter's
 * turns: its owner charges it to the waiter's uid (wait_answer_t).
 */

#include <stdint.h>

#include "wire.h"

struct event_base;
struct peer;
struct quota;
struct region;
struct region_table;
struct wait_table;
struct waiter;

/*
 * WAITs answered by one wake-up, and then by each pass of the event loop,
 * until all are: each is a reopen and a reply with an fd. Measured with
 * bench-fairness (1000 WAITs a SEAL, the victim on the broker's CPU): all
 * at once left the victim a p99 of 45x its idle one, 16 a pass about 10x,
 * 4 a pass 1.4-1.7x, at the cost of a pass of the loop per 4 answers.
 */
#define WAIT_ANSWERS_PER_PASS 4U

/* Why a WAIT is answered. */
enum wait_outcome {
        WAIT_SEALED,            /* a region of its name is sealed and the waiter may read it */
        WAIT_REMOVED,           /* the region of its name, which the waiter may see, is being removed */
        WAIT_TIMED_OUT,
};

/*
 * Answers one WAIT, which left the table already, outside its owner's
 * turns: owner is what wait_start() was given, which must forget its
 * waiter now, and should charge the work to it; request is
 * the WAIT's header (for its cookie); r is the region for WAIT_SEALED,
 * NULL for the others (a removed region may be gone by the answer); name
 * and timeout_ns are what was waited for. The table hands every wake-up back this way and answers no
 * client itself.
 */
typedef void (*wait_answer_t)(void *owner, const struct mfb_wire_header *request, enum wait_outcome outcome,
                              struct region *r, const char *name, uint64_t timeout_ns, void *userdata);

/*
 * Returns 0 and an empty table whose timers and later passes run on base,
 * which charges each pending WAIT to its uid in quota, finds again in
 * regions the sealed regions whose readers a wake-up left for later (all
 * three borrowed), and hands its wake-ups to answer with userdata; or
 * -ENOMEM.
 */
int wait_table_new(struct event_base *base, struct quota *quota, const struct region_table *regions,
                   wait_answer_t answer, void *userdata, struct wait_table **ret);

/* Frees the table, which must be empty (forget every waiter first). Accepts NULL; returns NULL. */
struct wait_table *wait_table_free(struct wait_table *t);

/*
 * Holds request, a WAIT for name (borrowed, copied) with timeout_ns
 * (MFB_WIRE_WAIT_FOREVER for none, else above 0), pending on behalf of owner,
 * whose credentials peer (borrowed: it must outlive the waiter) decide
 * what it may see and read. Returns 0 and the waiter, which stays the
 * table's: it ends when answered or with wait_forget(). Errors: -ENOMEM,
 * or -EDQUOT / -ENOSPC when the uid may not have one more pending WAIT
 * (*ret_refused is MFB_WIRE_RESOURCE_WAITERS then).
 */
int wait_start(struct wait_table *t, const struct peer *peer, void *owner, const struct mfb_wire_header *request,
               const char *name, uint64_t timeout_ns, enum mfb_wire_resource *ret_refused, struct waiter **ret);

/* Ends w without answering it: its owner is going away. Accepts NULL. */
void wait_forget(struct waiter *w);

/*
 * If r is named and sealed (seals read live), hands back the WAITs pending
 * on its name whose owners may read r (WAIT_SEALED), up to
 * WAIT_ANSWERS_PER_PASS now and the rest in later passes; the others keep
 * waiting. Call it when r was sealed or its owner or mode changed.
 */
void wait_wake_readers(struct wait_table *t, struct region *r);

/*
 * If r is named, hands back the WAITs pending on its name whose owners
 * may see r (access_may_see()) as WAIT_REMOVED, up to
 * WAIT_ANSWERS_PER_PASS now and the rest, taken out of the table already,
 * in later passes; the others go on waiting, as they would had r never
 * existed. Call it when r is about to be removed, while it still has its
 * name.
 */
void wait_wake_removed(struct wait_table *t, struct region *r);
