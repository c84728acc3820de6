/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>

#include "access.h"
#include "hashmap.h"
#include "macro.h"
#include "quota.h"
#include "region.h"
#include "wait.h"

#define NSEC_PER_USEC UINT64_C(1000)
#define USEC_PER_SEC  UINT64_C(1000000)
#define NSEC_PER_MSEC UINT64_C(1000000)

/* The waiters on one name, oldest first. */
struct wait_list {
        char *name;             /* the key, owned */
        TAILQ_HEAD(, waiter) waiters;
};

struct waiter {
        struct wait_table *table;
        struct wait_list *list;         /* NULL once taken out of it */
        TAILQ_ENTRY(waiter) link;       /* in its list; then among those taken to be answered, or due */
        char *due_name;                 /* owned: taken to be answered WAIT_REMOVED in a later pass, the name */
        const struct peer *peer;        /* the owner's credentials, borrowed */
        void *owner;
        struct mfb_wire_header request; /* to answer with its cookie */
        uint64_t timeout_ns;
        struct event *timer;            /* NULL when it waits forever */
};

TAILQ_HEAD(waiter_queue, waiter);

/* What a pending WAIT is charged to its owner's uid. */
static const struct quota_amount waiter_amount = { .n = { [MFB_WIRE_RESOURCE_WAITERS] = 1 } };

struct wait_table {
        struct event_base *base;
        struct quota *quota;
        const struct region_table *regions;
        struct hashmap *by_name;        /* name → struct wait_list */
        wait_answer_t answer;
        void *userdata;
        /* What later passes answer (WAIT_ANSWERS_PER_PASS): */
        struct waiter_queue due;        /* taken, to be answered WAIT_REMOVED, oldest first */
        uint64_t *resume;               /* handles of sealed regions whose readers wait still */
        size_t n_resume, n_resume_allocated;
        struct event *more_event;       /* a zero timeout while later passes have answers to give */
};

static void on_more(evutil_socket_t fd, short what, void *userdata);

int wait_table_new(struct event_base *base, struct quota *quota, const struct region_table *regions,
                   wait_answer_t answer, void *userdata, struct wait_table **ret) {
        struct wait_table *t;
        int r;

        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->base = base;
        t->quota = quota;
        t->regions = regions;
        t->answer = answer;
        t->userdata = userdata;
        TAILQ_INIT(&t->due);
        r = hashmap_new(&hashmap_string_ops, &t->by_name);
        if (r >= 0) {
                t->more_event = evtimer_new(base, on_more, t);
                if (!t->more_event)
                        r = -ENOMEM;
        }
        if (r < 0) {
                hashmap_free(t->by_name);
                free(t);
                return r;
        }
        *ret = t;
        return 0;
}

struct wait_table *wait_table_free(struct wait_table *t) {
        if (!t)
                return NULL;
        assert(hashmap_size(t->by_name) == 0);
        assert(TAILQ_EMPTY(&t->due));
        hashmap_free(t->by_name);
        if (t->more_event)
                event_free(t->more_event);
        free(t->resume);
        free(t);
        return NULL;
}

/* Takes w out of its name's list (freeing the list once empty) and stops its timer. */
static void waiter_unlink(struct waiter *w) {
        struct wait_list *l = w->list;

        TAILQ_REMOVE(&l->waiters, w, link);
        w->list = NULL;
        if (TAILQ_EMPTY(&l->waiters)) {
                hashmap_remove(w->table->by_name, l->name);
                free(l->name);
                free(l);
        }
        if (w->timer)
                event_free(w->timer);
        w->timer = NULL;
}

/* Frees w, unlinked already, and gives back its charge. */
static void waiter_free(struct waiter *w) {
        assert(!w->list);
        quota_discharge(w->table->quota, w->peer->creds.uid, &waiter_amount);
        free(w->due_name);
        free(w);
}

/* Ends w, unlinked already, and hands it back to be answered with outcome. */
static void waiter_answer(struct waiter *w, enum wait_outcome outcome, struct region *r, const char *name) {
        struct wait_table *t = w->table;
        struct mfb_wire_header request = w->request;
        uint64_t timeout_ns = w->timeout_ns;
        void *owner = w->owner;

        waiter_free(w);
        t->answer(owner, &request, outcome, r, name, timeout_ns, t->userdata);
}

static void on_timeout(evutil_socket_t fd, short what, void *userdata) {
        struct waiter *w = userdata;
        char name[MFB_WIRE_NAME_MAX + 1];

        snprintf(name, sizeof(name), "%s", w->list->name);
        waiter_unlink(w);
        waiter_answer(w, WAIT_TIMED_OUT, NULL, name);
}

/* Wakes at least timeout_ns from now: rounded up to libevent's microseconds, never early. */
static struct timeval timeval_from_ns(uint64_t timeout_ns) {
        uint64_t usec = timeout_ns / NSEC_PER_USEC + (timeout_ns % NSEC_PER_USEC != 0);

        return (struct timeval) {
                .tv_sec = (time_t) (usec / USEC_PER_SEC),
                .tv_usec = (suseconds_t) (usec % USEC_PER_SEC),
        };
}

/* The list of waiters on name, created empty if needed; NULL when out of memory. */
static struct wait_list *list_get_or_add(struct wait_table *t, const char *name) {
        struct wait_list *l = hashmap_get(t->by_name, name);

        if (l)
                return l;
        l = calloc(1, sizeof(*l));
        if (!l)
                return NULL;
        TAILQ_INIT(&l->waiters);
        l->name = strdup(name);
        if (!l->name || hashmap_put(t->by_name, l->name, l) < 0) {
                free(l->name);
                free(l);
                return NULL;
        }
        return l;
}

int wait_start(struct wait_table *t, const struct peer *peer, void *owner, const struct mfb_wire_header *request,
               const char *name, uint64_t timeout_ns, enum mfb_wire_resource *ret_refused, struct waiter **ret) {
        uid_t uid = peer->creds.uid;
        struct wait_list *l;
        struct waiter *w;
        int r;

        assert(timeout_ns > 0);

        r = quota_charge(t->quota, uid, &waiter_amount, ret_refused);
        if (r < 0)
                return r;
        w = calloc(1, sizeof(*w));
        if (!w) {
                quota_discharge(t->quota, uid, &waiter_amount);
                return -ENOMEM;
        }
        *w = (struct waiter) { .table = t, .peer = peer, .owner = owner, .request = *request, .timeout_ns = timeout_ns };
        if (timeout_ns != MFB_WIRE_WAIT_FOREVER) {
                w->timer = evtimer_new(t->base, on_timeout, w);
                if (!w->timer) {
                        waiter_free(w);
                        return -ENOMEM;
                }
        }
        l = list_get_or_add(t, name);
        if (!l) {
                if (w->timer)
                        event_free(w->timer);
                waiter_free(w);
                return -ENOMEM;
        }
        w->list = l;
        TAILQ_INSERT_TAIL(&l->waiters, w, link);

        if (w->timer) {
                struct timeval tv = timeval_from_ns(timeout_ns);

                /* Fails only for want of memory in libevent's timer heap. */
                if (evtimer_add(w->timer, &tv) < 0) {
                        waiter_unlink(w);
                        waiter_free(w);
                        return -ENOMEM;
                }
        }
        *ret = w;
        return 0;
}

void wait_forget(struct waiter *w) {
        if (!w)
                return;
        if (w->due_name)
                TAILQ_REMOVE(&w->table->due, w, link);
        else
                waiter_unlink(w);
        waiter_free(w);
}

/*
 * Asks for a pass of on_more(), after the loop has looked for input: a zero
 * timeout fires only then. Asking again while it is pending changes
 * nothing. Fails only for want of memory in libevent's timer heap: what is
 * left then waits for the next wake-up.
 */
static void more_schedule(struct wait_table *t) {
        static const struct timeval now = { 0, 0 };

        (void) evtimer_add(t->more_event, &now);
}

/* Remembers that r's readers are not all answered yet; false when out of memory. */
static bool resume_add(struct wait_table *t, const struct region *r) {
        for (size_t i = 0; i < t->n_resume; i++)
                if (t->resume[i] == r->handle)
                        return true;
        if (GREEDY_REALLOC(t->resume, t->n_resume_allocated, t->n_resume + 1) < 0)
                return false;
        t->resume[t->n_resume++] = r->handle;
        return true;
}

/*
 * Takes up to max of the waiters on name for which pick(w, r) holds out of
 * the table, oldest first, and hands each back to be answered with
 * outcome. Those beyond max: with WAIT_REMOVED they are taken too, into
 * the due queue that later passes answer (r will not be found again);
 * otherwise they stay, and *ret_more says so. All are taken before the
 * first is answered, so that answering (which may start or end other
 * WAITs) cannot disturb the walk. Returns how many were answered.
 */
static unsigned wake(struct wait_table *t, const char *name, struct region *r, enum wait_outcome outcome,
                     bool (*pick)(const struct waiter *w, const struct region *r), unsigned max, bool *ret_more) {
        struct waiter_queue taken = TAILQ_HEAD_INITIALIZER(taken);
        struct wait_list *l = hashmap_get(t->by_name, name);
        struct waiter *w, *next;
        unsigned n = 0;

        *ret_more = false;
        if (!l)
                return 0;
        /* The list goes with its last waiter, which has no next then. */
        for (w = TAILQ_FIRST(&l->waiters); w; w = next) {
                next = TAILQ_NEXT(w, link);
                if (!pick(w, r))
                        continue;
                if (n < max) {
                        waiter_unlink(w);
                        TAILQ_INSERT_TAIL(&taken, w, link);
                        n++;
                        continue;
                }
                if (outcome != WAIT_REMOVED) {
                        *ret_more = true;
                        break;
                }
                /* Out of memory for its name: answered now rather than never. */
                w->due_name = strdup(name);
                waiter_unlink(w);
                TAILQ_INSERT_TAIL(w->due_name ? &t->due : &taken, w, link);
        }
        if (!TAILQ_EMPTY(&t->due))
                more_schedule(t);
        while ((w = TAILQ_FIRST(&taken))) {
                TAILQ_REMOVE(&taken, w, link);
                waiter_answer(w, outcome, outcome == WAIT_SEALED ? r : NULL, name);
        }
        return n;
}

static bool may_read(const struct waiter *w, const struct region *r) {
        return access_may(w->peer, r, MFB_WIRE_ACCESS_READ);
}

/* What wait_wake_readers() does, answering at most max; returns how many it answered. */
static unsigned wake_readers(struct wait_table *t, struct region *r, unsigned max, bool *ret_more) {
        *ret_more = false;
        if (r->name && region_is_sealed(r))
                return wake(t, r->name, r, WAIT_SEALED, may_read, max, ret_more);
        return 0;
}

void wait_wake_readers(struct wait_table *t, struct region *r) {
        bool more;

        (void) wake_readers(t, r, WAIT_ANSWERS_PER_PASS, &more);
        /* Out of memory to remember r: the rest wait for its next wake-up (a SET of it, say). */
        if (more && resume_add(t, r))
                more_schedule(t);
}

/* Waiters that cannot see a region go on waiting as if it had never been there. */
static bool may_see(const struct waiter *w, const struct region *r) {
        return access_may_see(w->peer, r);
}

void wait_wake_removed(struct wait_table *t, struct region *r) {
        bool more;

        if (r->name)
                (void) wake(t, r->name, r, WAIT_REMOVED, may_see, WAIT_ANSWERS_PER_PASS, &more);
}

/*
 * A pass's share of the answers that wake-ups left for later: the removed
 * first, then the readers of each remembered region, looked up again by
 * handle. A region gone since was removed, and its waiters that could see
 * it were answered then; those that could not go on waiting, as they would
 * had they come after it. Asks for another pass while any are left.
 */
static void on_more(evutil_socket_t fd, short what, void *userdata) {
        struct wait_table *t = userdata;
        unsigned budget = WAIT_ANSWERS_PER_PASS;
        struct waiter *w;
        size_t kept = 0;

        while (budget > 0 && (w = TAILQ_FIRST(&t->due))) {
                char *name = TAKE_PTR(w->due_name);

                TAILQ_REMOVE(&t->due, w, link);
                waiter_answer(w, WAIT_REMOVED, NULL, name);
                free(name);
                budget--;
        }
        /* Kept while their readers are not all answered; answering remembers none, so compacting in place is safe. */
        for (size_t i = 0; i < t->n_resume; i++) {
                uint64_t handle = t->resume[i];
                bool more = true;

                if (budget > 0) {
                        struct region *r = region_get_by_handle(t->regions, handle);

                        more = false;
                        if (r)
                                budget -= wake_readers(t, r, budget, &more);
                }
                if (more)
                        t->resume[kept++] = handle;
        }
        t->n_resume = kept;
        if (!TAILQ_EMPTY(&t->due) || t->n_resume > 0)
                more_schedule(t);
}
