/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <event2/event.h>

#include "hashmap.h"
#include "schedule.h"

/* The entries of one uid, while any has joined. */
struct scheduler_user {
        uint64_t uid;                           /* the key: hashmap_u64_ops wants 64 bits */
        unsigned n_entries;                     /* joined */
        TAILQ_HEAD(, scheduler_entry) ready;    /* in turn order */
        TAILQ_ENTRY(scheduler_user) link;       /* in the round, while it has ready entries */
        bool in_round;
        uint64_t served_in;                     /* the number of the last round that served it */
        unsigned debt;                          /* rounds it sits out: turns that cost more than one */
};

struct scheduler {
        struct hashmap *users;                  /* uid → struct scheduler_user */
        TAILQ_HEAD(, scheduler_user) round;     /* users with ready entries, in turn order */
        struct event *run_event;
        bool scheduled;                         /* run_event is active or pending */
        bool running;                           /* in a round: it asks for the next itself */
        uint64_t rounds;                        /* the number of the current or last round */
        unsigned alone_turns_max;               /* turns in a round for a uid alone in it */
        uint64_t alone_usec_max;                /* ... while the round has taken less than this */
        scheduler_serve_t serve;
};

/* CLOCK_MONOTONIC in microseconds: a vDSO call, no syscall. */
static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

/* Asks for a round. The first in a while runs in this pass of the loop; later ones after it polls again. */
static void schedule(struct scheduler *s, bool after_poll) {
        static const struct timeval now = { 0, 0 };

        if (s->scheduled || s->running)
                return;
        s->scheduled = true;
        /* A zero timeout fires only after the loop has looked for new input: that is what makes rounds fair. */
        if (after_poll)
                evtimer_add(s->run_event, &now);
        else
                event_active(s->run_event, EV_TIMEOUT, 0);
}

/*
 * One request for every user that had a ready entry when the round began.
 * Users move to the back as they are served, so the round is over when the
 * first in line was served in it already; one that became ready during the
 * round counts as served in it, and waits for the next. Serving one entry may
 * remove others (a SEAL that answers WAITs drops a connection whose answer
 * fails): the round takes whoever is first at each step.
 */
static void on_run(evutil_socket_t fd, short what, void *userdata) {
        struct scheduler *s = userdata;
        struct scheduler_user *u;
        unsigned turns = 0;
        uint64_t start = 0;
        bool alone;

        s->scheduled = false;
        s->running = true;
        s->rounds++;
        u = TAILQ_FIRST(&s->round);
        alone = u && !TAILQ_NEXT(u, link);
        if (alone && s->alone_turns_max > 1)
                start = now_usec();
        for (;;) {
                struct scheduler_entry *e;

                u = TAILQ_FIRST(&s->round);
                if (!u)
                        break;
                /*
                 * A uid alone in the round from its start, and still alone, has more
                 * turns in it, rather than a poll of the loop for each.
                 */
                if (u->served_in == s->rounds &&
                    (!alone || TAILQ_NEXT(u, link) || ++turns >= s->alone_turns_max ||
                     now_usec() - start >= s->alone_usec_max))
                        break;
                e = TAILQ_FIRST(&u->ready);
                u->served_in = s->rounds;
                TAILQ_REMOVE(&s->round, u, link);
                TAILQ_INSERT_TAIL(&s->round, u, link);
                /* A costly turn is paid for in rounds sat out, while others wait; alone, nobody waits. */
                if (u->debt > 0 && TAILQ_FIRST(&s->round) != u) {
                        u->debt--;
                        continue;
                }
                u->debt = 0;
                TAILQ_REMOVE(&u->ready, e, link);
                TAILQ_INSERT_TAIL(&u->ready, e, link);
                s->serve(e);
        }
        s->running = false;
        if (!TAILQ_EMPTY(&s->round))
                schedule(s, true);
}

int scheduler_new(struct event_base *base, scheduler_serve_t serve, unsigned alone_turns_max,
                  uint64_t alone_usec_max, struct scheduler **ret) {
        struct scheduler *s;
        int r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        TAILQ_INIT(&s->round);
        s->serve = serve;
        s->alone_turns_max = alone_turns_max ?: 1;
        s->alone_usec_max = alone_usec_max;
        r = hashmap_new(&hashmap_u64_ops, &s->users);
        if (r >= 0) {
                s->run_event = evtimer_new(base, on_run, s);
                if (!s->run_event)
                        r = -ENOMEM;
        }
        if (r < 0) {
                scheduler_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

struct scheduler *scheduler_free(struct scheduler *s) {
        if (!s)
                return NULL;
        if (s->users) {
                void *v;

                /* Only uids that left owing turns are left. */
                for (size_t i = 0; hashmap_iterate(s->users, &i, &v);) {
                        assert(((struct scheduler_user *) v)->n_entries == 0);
                        free(v);
                }
        }
        if (s->run_event)
                event_free(s->run_event);
        hashmap_free(s->users);
        free(s);
        return NULL;
}

int scheduler_join(struct scheduler *s, struct scheduler_entry *e, uid_t uid) {
        uint64_t key = uid;
        struct scheduler_user *u = hashmap_get(s->users, &key);

        if (!u) {
                u = calloc(1, sizeof(*u));
                if (!u)
                        return -ENOMEM;
                u->uid = uid;
                TAILQ_INIT(&u->ready);
                if (hashmap_put(s->users, &u->uid, u) < 0) {
                        free(u);
                        return -ENOMEM;
                }
        }
        u->n_entries++;
        *e = (struct scheduler_entry) { .user = u };
        return 0;
}

void scheduler_leave(struct scheduler *s, struct scheduler_entry *e) {
        struct scheduler_user *u = e->user;

        if (!u)
                return;
        scheduler_unready(s, e);
        e->user = NULL;
        assert(u->n_entries > 0);
        /*
         * A uid that owes turns stays, with its debt, for when it comes
         * back: else closing its last connection after a batch and
         * connecting again would shed it. One entry per such uid, until it
         * has paid.
         */
        if (--u->n_entries == 0 && u->debt == 0) {
                hashmap_remove(s->users, &u->uid);
                free(u);
        }
}

void scheduler_ready(struct scheduler *s, struct scheduler_entry *e) {
        struct scheduler_user *u = e->user;

        if (e->ready)
                return;
        e->ready = true;
        TAILQ_INSERT_TAIL(&u->ready, e, link);
        if (!u->in_round) {
                u->in_round = true;
                TAILQ_INSERT_TAIL(&s->round, u, link);
                /* Ready during a round: its turn comes in the next, after the loop looked for input. */
                if (s->running)
                        u->served_in = s->rounds;
        }
        schedule(s, false);
}

void scheduler_charge(struct scheduler *s, struct scheduler_entry *e, unsigned turns) {
        if (e->user && turns > 1)
                e->user->debt += turns - 1;
}

void scheduler_unready(struct scheduler *s, struct scheduler_entry *e) {
        struct scheduler_user *u = e->user;

        if (!e->ready)
                return;
        e->ready = false;
        TAILQ_REMOVE(&u->ready, e, link);
        if (TAILQ_EMPTY(&u->ready)) {
                u->in_round = false;
                TAILQ_REMOVE(&s->round, u, link);
        }
}
