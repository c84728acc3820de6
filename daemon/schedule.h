/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Fair turns between users: whose request the broker handles next.
 *
 * A connection with input waiting is ready. The broker handles requests in
 * rounds: in each, every uid with a ready connection has one request
 * handled, taking its ready connections in turn. Between two rounds the
 * event loop looks for new input. So a client that sends a request waits
 * for at most one round, one request of each other uid, however many
 * connections and requests those have in flight: the time a request takes
 * to be answered does not grow with what other users do. A uid that is the
 * only one with input when a round starts has up to alone_turns_max
 * requests handled in it, its ready connections in turn, as long as no
 * other uid's connection becomes ready and the round has taken less than
 * alone_usec_max microseconds: a client that pipelines cheap requests does
 * not pay a poll of the loop for each, and one that arrives meanwhile waits
 * for at most that long and one request more, however costly the lone
 * user's requests are. A request that does the work of many (a batch) is
 * charged as many turns (scheduler_charge()).
 *
 * The scheduler knows nothing of connections: each has a struct
 * scheduler_entry, and the scheduler calls back with it when its turn
 * comes.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#define SCHEDULER_ALONE_TURNS_MAX 16U
/* ... and only while the round has taken less than this: a user that arrives never waits for more. */
#define SCHEDULER_ALONE_USEC_MAX 10U

struct event_base;
struct scheduler;
struct scheduler_user;

struct scheduler_entry {
        TAILQ_ENTRY(scheduler_entry) link;      /* in its user's ready entries, while ready */
        struct scheduler_user *user;
        bool ready;
};

/*
 * Called for the entry whose turn it is, to handle one request. It may make
 * the entry not ready, or leave, and free what holds it.
 */
typedef void (*scheduler_serve_t)(struct scheduler_entry *e);

/*
 * Returns 0 and a scheduler whose rounds run on base (borrowed), where a uid
 * alone in a round from its start has up to alone_turns_max requests handled
 * in it while the round has taken less than alone_usec_max microseconds (the
 * broker's are SCHEDULER_ALONE_TURNS_MAX and SCHEDULER_ALONE_USEC_MAX); or
 * -ENOMEM.
 */
int scheduler_new(struct event_base *base, scheduler_serve_t serve, unsigned alone_turns_max,
                  uint64_t alone_usec_max, struct scheduler **ret);

/* Frees s, which no entry may have joined any more. Accepts NULL; returns NULL. */
struct scheduler *scheduler_free(struct scheduler *s);

/* Makes e take its turns as one of uid's. Returns 0 or -ENOMEM. */
int scheduler_join(struct scheduler *s, struct scheduler_entry *e, uid_t uid);

/* Undoes scheduler_join(); e no longer gets turns. */
void scheduler_leave(struct scheduler *s, struct scheduler_entry *e);

/* e has input: give it turns until scheduler_unready(). Nothing happens if it has them already. */
void scheduler_ready(struct scheduler *s, struct scheduler_entry *e);

/*
 * The turn e is having costs as much as turns ordinary ones (a request that
 * does the work of many): its uid sits out turns - 1 of the next rounds in
 * which another uid is ready, so that the others are not kept waiting by
 * what is one request but many requests' work. The debt is the uid's: it
 * stays when e, or every entry of the uid, leaves, until paid.
 */
void scheduler_charge(struct scheduler *s, struct scheduler_entry *e, unsigned turns);

/* e has no input to handle now (none waiting, or it is not to be read). */
void scheduler_unready(struct scheduler *s, struct scheduler_entry *e);
