/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "access.h"
#include "connection.h"
#include "hashmap.h"
#include "quota.h"
#include "region.h"
#include "reply.h"
#include "wait.h"

#define NSEC_PER_USEC UINT64_C(1000)
#define USEC_PER_SEC  UINT64_C(1000000)
#define NSEC_PER_MSEC UINT64_C(1000000)

/* The waiters on one name, oldest first. */
struct wait_list {
        char *name;             /* the key, owned */
        struct waiter *head, *tail;
};

struct waiter {
        struct wait_table *table;
        struct wait_list *list;
        struct waiter *prev, *next;
        struct connection *connection;  /* which owns the waiter (c->waiter) */
        struct mfb_wire_header request; /* to answer with its cookie */
        uint64_t timeout_ns;
        struct event *timer;            /* NULL when it waits forever */
};

/* What a pending WAIT is charged to its connection's uid. */
static const struct quota_amount waiter_amount = { .n = { [MFB_RESOURCE_WAITERS] = 1 } };

struct wait_table {
        struct event_base *base;
        struct quota *quota;
        struct hashmap *by_name;        /* name → struct wait_list */
};

int wait_table_new(struct event_base *base, struct quota *quota, struct wait_table **ret) {
        struct wait_table *t;
        int r;

        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->base = base;
        t->quota = quota;
        r = hashmap_new(&hashmap_string_ops, &t->by_name);
        if (r < 0) {
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
        hashmap_free(t->by_name);
        free(t);
        return NULL;
}

/* Takes w out of its name's list (freeing the list once empty) and stops its timer; w stays c->waiter. */
static void waiter_unlink(struct waiter *w) {
        struct wait_list *l = w->list;

        if (w->prev)
                w->prev->next = w->next;
        else
                l->head = w->next;
        if (w->next)
                w->next->prev = w->prev;
        else
                l->tail = w->prev;
        w->prev = w->next = NULL;
        w->list = NULL;

        if (!l->head) {
                hashmap_remove(w->table->by_name, l->name);
                free(l->name);
                free(l);
        }
        if (w->timer)
                event_free(w->timer);
        w->timer = NULL;
}

/* Frees w, unlinked already, gives back its charge, and tells its connection it waits no more. */
static void waiter_free(struct waiter *w) {
        assert(!w->list);
        quota_discharge(w->table->quota, w->connection->peer.creds.uid, &waiter_amount);
        w->connection->waiter = NULL;
        free(w);
}

/* After a WAIT of c was answered with k (what sending returned): reads c again, or drops it. */
static void answered(struct connection *c, int k) {
        if (k < 0)
                connection_drop(c, k);
        else
                connection_update_reading(c);
}

static void on_timeout(evutil_socket_t fd, short what, void *userdata) {
        struct waiter *w = userdata;
        struct connection *c = w->connection;
        struct mfb_wire_header request = w->request;
        uint64_t ms = w->timeout_ns / NSEC_PER_MSEC;
        char name[MFB_WIRE_NAME_MAX + 1];

        snprintf(name, sizeof(name), "%s", w->list->name);
        waiter_unlink(w);
        waiter_free(w);
        answered(c, reply_error(c, &request, -ETIMEDOUT, "no sealed region named %s appeared within %" PRIu64 " ms",
                                name, ms));
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
        l->name = strdup(name);
        if (!l->name || hashmap_put(t->by_name, l->name, l) < 0) {
                free(l->name);
                free(l);
                return NULL;
        }
        return l;
}

int wait_start(struct wait_table *t, struct connection *c, const struct mfb_wire_header *request, const char *name,
               uint64_t timeout_ns, enum mfb_wire_resource *ret_refused) {
        struct wait_list *l;
        struct waiter *w;
        int r;

        assert(!c->waiter);
        assert(timeout_ns > 0);

        r = quota_charge(t->quota, c->peer.creds.uid, &waiter_amount, ret_refused);
        if (r < 0)
                return r;
        w = calloc(1, sizeof(*w));
        if (!w) {
                quota_discharge(t->quota, c->peer.creds.uid, &waiter_amount);
                return -ENOMEM;
        }
        *w = (struct waiter) { .table = t, .connection = c, .request = *request, .timeout_ns = timeout_ns };
        if (timeout_ns != MFB_WAIT_FOREVER) {
                w->timer = evtimer_new(t->base, on_timeout, w);
                if (!w->timer) {
                        quota_discharge(t->quota, c->peer.creds.uid, &waiter_amount);
                        free(w);
                        return -ENOMEM;
                }
        }
        l = list_get_or_add(t, name);
        if (!l) {
                if (w->timer)
                        event_free(w->timer);
                quota_discharge(t->quota, c->peer.creds.uid, &waiter_amount);
                free(w);
                return -ENOMEM;
        }
        w->list = l;
        w->prev = l->tail;
        if (l->tail)
                l->tail->next = w;
        else
                l->head = w;
        l->tail = w;

        if (w->timer) {
                struct timeval tv = timeval_from_ns(timeout_ns);

                /* Fails only for want of memory in libevent's timer heap. */
                if (evtimer_add(w->timer, &tv) < 0) {
                        waiter_unlink(w);
                        quota_discharge(t->quota, c->peer.creds.uid, &waiter_amount);
                        free(w);
                        return -ENOMEM;
                }
        }
        c->waiter = w;
        connection_update_reading(c);
        return 0;
}

void wait_forget(struct connection *c) {
        struct waiter *w = c->waiter;

        if (!w)
                return;
        waiter_unlink(w);
        waiter_free(w);
}

/*
 * Takes the waiters on name for which pick(w, userdata) holds out of the
 * table, into a list linked by next, so that answering them cannot disturb
 * the walk. They stay their connections' waiters until answered; nothing
 * frees a connection other than the one being answered meanwhile.
 */
static struct waiter *take(struct wait_table *t, const char *name,
                           bool (*pick)(const struct waiter *w, const void *userdata), const void *userdata) {
        struct waiter *taken = NULL, **tail = &taken, *next;
        struct wait_list *l = hashmap_get(t->by_name, name);

        for (struct waiter *w = l ? l->head : NULL; w; w = next) {
                next = w->next;
                if (!pick(w, userdata))
                        continue;
                /* May free the list, but only once next is NULL. */
                waiter_unlink(w);
                *tail = w;
                tail = &w->next;
        }
        return taken;
}

static bool may_read(const struct waiter *w, const void *userdata) {
        return access_may(&w->connection->peer, userdata, MFB_ACCESS_READ);
}

void wait_wake_readers(struct wait_table *t, struct region *r) {
        struct waiter *next;

        if (!r->name || !region_is_sealed(r))
                return;
        for (struct waiter *w = take(t, r->name, may_read, r); w; w = next) {
                struct connection *c = w->connection;
                struct mfb_wire_header request = w->request;

                next = w->next;
                waiter_free(w);
                answered(c, reply_open(c, &request, r, false));
        }
}

/* Waiters that cannot see a region go on waiting as if it had never been there. */
static bool may_see(const struct waiter *w, const void *userdata) {
        return access_may_see(&w->connection->peer, userdata);
}

void wait_wake_removed(struct wait_table *t, const struct region *r) {
        struct waiter *next;

        if (!r->name)
                return;
        for (struct waiter *w = take(t, r->name, may_see, r); w; w = next) {
                struct connection *c = w->connection;
                struct mfb_wire_header request = w->request;

                next = w->next;
                waiter_free(w);
                answered(c, reply_error(c, &request, -EIDRM, "region %s was removed", r->name));
        }
}
