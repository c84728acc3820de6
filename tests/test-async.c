/* SPDX-License-Identifier: MIT */
/*
 * The asynchronous side of the library: callbacks from a libevent loop,
 * releases that do not wait, callbacks that free their client, a failed
 * connection, and batches of regions that succeed whole or leave nothing.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codec.h"
#include "fdpass.h"
#include "harness.h"
#include "macro.h"
#include "memfd-broker.h"
#include "raw.h"
#include "suites.h"

static mfb_client *connect_to(const struct test_broker *b) {
        mfb_client *c = NULL;

        ck_assert_int_eq(mfb_client_connect(b->socket_path, &c), 0);
        return c;
}

/* A libevent loop that dispatches one client until *remaining callbacks are left to run. */
struct loop {
        mfb_client *client;
        struct event_base *base;
        struct event *watch, *deadline;
        int events;
        const int *remaining;
        bool saw_pollout;       /* the client asked for POLLOUT: requests waited for room */
        bool timed_out;
        int error;              /* what a dispatch failed with */
};

static void loop_ready(evutil_socket_t fd, short what, void *userdata);

static void loop_watch(struct loop *l) {
        int events = mfb_client_get_events(l->client);

        ck_assert_int_ge(events, 0);
        ck_assert(events & POLLIN);
        if (events & POLLOUT)
                l->saw_pollout = true;
        if (events == l->events)
                return;
        ck_assert_int_eq(event_del(l->watch), 0);
        ck_assert_int_eq(event_assign(l->watch, l->base, mfb_client_get_fd(l->client),
                                      EV_PERSIST | EV_READ | (events & POLLOUT ? EV_WRITE : 0), loop_ready, l), 0);
        ck_assert_int_eq(event_add(l->watch, NULL), 0);
        l->events = events;
}

static void loop_ready(evutil_socket_t fd, short what, void *userdata) {
        struct loop *l = userdata;
        int r;

        r = mfb_client_dispatch(l->client);
        if (r < 0) {
                l->error = r;
                event_base_loopbreak(l->base);
                return;
        }
        if (*l->remaining == 0) {
                event_base_loopbreak(l->base);
                return;
        }
        loop_watch(l);
}

static void loop_timeout(evutil_socket_t fd, short what, void *userdata) {
        struct loop *l = userdata;

        l->timed_out = true;
        event_base_loopbreak(l->base);
}

/* Runs the loop until *remaining is 0, a dispatch fails, or TEST_TIMEOUT_MS pass. */
static void loop_run(struct loop *l, mfb_client *c, const int *remaining) {
        struct timeval limit = { .tv_sec = TEST_TIMEOUT_MS / 1000 };

        *l = (struct loop) { .client = c, .events = -1, .remaining = remaining };
        l->base = event_base_new();
        ck_assert_ptr_nonnull(l->base);
        l->watch = event_new(l->base, -1, 0, loop_ready, l);
        l->deadline = evtimer_new(l->base, loop_timeout, l);
        ck_assert(l->watch && l->deadline);
        ck_assert_int_eq(evtimer_add(l->deadline, &limit), 0);

        loop_watch(l);
        if (*remaining > 0)
                ck_assert_int_eq(event_base_dispatch(l->base), 0);
        ck_assert_msg(!l->timed_out, "callbacks still pending after %d ms: %d", TEST_TIMEOUT_MS, *remaining);

        event_free(l->deadline);
        event_free(l->watch);
        event_base_free(l->base);
}

#define ASYNC_REGIONS 4
#define ASYNC_ROUNDS 1000
#define MISSING_ROUND 500       /* where an open of a name nobody has goes in among the others */

struct order {
        mfb_client *client;
        int seen[ASYNC_REGIONS * (ASYNC_ROUNDS + 2) + 1];      /* region of each callback, in the order they ran */
        int n;
        int remaining;
        int missing;            /* the error the open of the missing name got, 0 before */
};

struct tag {
        struct order *order;
        int region;
};

static void expect_content(mfb_region *r, int region) {
        char want[32];
        const char *mem;

        snprintf(want, sizeof(want), "region %d", region);
        ck_assert_int_eq(mfb_region_map(r, (void **) &mem), 0);
        ck_assert_str_eq(mem, want);
}

static void sealed(mfb_client *c, int error, void *userdata) {
        struct tag *t = userdata;

        ck_assert_int_eq(error, 0);
        t->order->seen[t->order->n++] = t->region;
        t->order->remaining--;
}

static void created(mfb_client *c, int error, mfb_region *r, void *userdata) {
        struct tag *t = userdata;
        char *mem;

        ck_assert_int_eq(error, 0);
        ck_assert_ptr_nonnull(r);
        ck_assert_ptr_eq(c, t->order->client);
        ck_assert_int_eq(mfb_region_map_writable(r, (void **) &mem), 0);
        snprintf(mem, 32, "region %d", t->region);
        /* A new request from a callback; and the region freed before its seal is answered. */
        ck_assert_int_eq(mfb_region_seal_async(r, sealed, t), 0);
        mfb_region_free(r);
        t->order->seen[t->order->n++] = t->region;
        t->order->remaining--;
}

static void opened(mfb_client *c, int error, mfb_region *r, void *userdata) {
        struct tag *t = userdata;

        ck_assert_int_eq(error, 0);
        expect_content(r, t->region);
        mfb_region_free(r);
        t->order->seen[t->order->n++] = t->region;
        t->order->remaining--;
}

static void opened_missing(mfb_client *c, int error, mfb_region *r, void *userdata) {
        struct order *o = userdata;

        ck_assert_ptr_null(r);
        ck_assert_str_ne(mfb_client_error_message(c), "");
        o->missing = error;
        o->remaining--;
}

/*
 * Thousands of creates, opens and seals of four regions queued at once and
 * answered in a libevent loop: each callback runs once, in request order,
 * so that callbacks of different regions take turns as the broker answers
 * them, not one region's after another's. The socket fills up on the way,
 * and the library reads answers while it waits for room.
 */
START_TEST(callbacks_interleave_across_regions_under_libevent) {
        static struct order o;
        struct tag tags[ASYNC_REGIONS];
        mfb_client *c = connect_to(&test_broker);
        int small = 16384, k = 0;
        struct loop l;
        char name[32];

        /* A small send buffer, so that queued requests certainly wait for room. */
        ck_assert_int_eq(setsockopt(mfb_client_get_fd(c), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);

        o = (struct order) { .client = c };
        for (int i = 0; i < ASYNC_REGIONS; i++) {
                tags[i] = (struct tag) { .order = &o, .region = i };
                snprintf(name, sizeof(name), "async-%d", i);
                ck_assert_int_eq(mfb_region_create_async(c, name, 4096, 0, 0, created, &tags[i]), 0);
                /* Its callback, and that of the seal it makes. */
                o.remaining += 2;
        }
        for (int round = 0; round < ASYNC_ROUNDS; round++) {
                if (round == MISSING_ROUND) {
                        ck_assert_int_eq(mfb_region_open_async(c, "async-missing", O_RDONLY, opened_missing, &o),
                                         0);
                        o.remaining++;
                }
                for (int i = 0; i < ASYNC_REGIONS; i++) {
                        snprintf(name, sizeof(name), "async-%d", i);
                        ck_assert_int_eq(mfb_region_open_async(c, name, O_RDONLY, opened, &tags[i]), 0);
                        o.remaining++;
                }
        }
        /* Nothing ran yet: callbacks run only when the client dispatches. */
        ck_assert_int_eq(o.n, 0);

        loop_run(&l, c, &o.remaining);
        ck_assert_int_eq(l.error, 0);
        ck_assert_int_eq(o.remaining, 0);
        ck_assert(l.saw_pollout);
        ck_assert_int_eq(o.missing, -ENOENT);

        /* The creates, then every open round by round, then the seals made from the creates' callbacks. */
        ck_assert_int_eq(o.n, ASYNC_REGIONS * (ASYNC_ROUNDS + 2));
        for (int round = 0; round < ASYNC_ROUNDS + 2; round++)
                for (int i = 0; i < ASYNC_REGIONS; i++)
                        ck_assert_int_eq(o.seen[k++], i);

        /* The seals happened, and every open's release too: only this client's STAT is asked after them. */
        for (int i = 0; i < ASYNC_REGIONS; i++) {
                mfb_region_stat st;

                snprintf(name, sizeof(name), "async-%d", i);
                ck_assert_int_eq(mfb_stat(c, name, &st), 0);
                ck_assert(st.seals & F_SEAL_WRITE);
                ck_assert_uint_eq(st.nattch, 0);
        }
        mfb_client_free(c);
}
END_TEST

struct counter {
        int ran;
        int want_error;
};

static void count_region(mfb_client *c, int error, mfb_region *r, void *userdata) {
        struct counter *n = userdata;

        ck_assert_int_eq(error, n->want_error);
        mfb_region_free(r);
        n->ran++;
}

/* A synchronous call waits behind the asynchronous requests made before it, and runs their callbacks. */
START_TEST(sync_call_runs_earlier_callbacks_first) {
        mfb_client *c = connect_to(&test_broker);
        struct counter n = {};
        mfb_region *r = NULL;
        mfb_region_stat st;

        ck_assert_int_eq(mfb_region_create(c, "behind", 4096, &r), 0);
        for (int i = 0; i < 50; i++)
                ck_assert_int_eq(mfb_region_open_async(c, "behind", O_RDONLY, count_region, &n), 0);
        ck_assert_int_eq(n.ran, 0);
        ck_assert_int_eq(mfb_region_stat_get(r, &st), 0);
        ck_assert_int_eq(n.ran, 50);
        ck_assert_uint_eq(st.nattch, 1);

        /* Nothing is pending: dispatching finds nothing to do, and only POLLIN is wanted. */
        ck_assert_int_eq(mfb_client_dispatch(c), 0);
        ck_assert_int_eq(mfb_client_get_events(c), POLLIN);
        mfb_region_free(r);
        ck_assert_int_eq(mfb_client_roundtrip(c), 0);
        mfb_client_free(c);
}
END_TEST

struct nesting {
        char trace[16];
        int n;
};

static void nested_open(mfb_client *c, int error, mfb_region *r, void *userdata) {
        struct nesting *t = userdata;

        ck_assert_int_eq(error, 0);
        mfb_region_free(r);
        t->trace[t->n++] = 'o';
}

static void open_then_stat(mfb_client *c, int error, mfb_region *r, void *userdata) {
        struct nesting *t = userdata;
        mfb_region_stat st;

        ck_assert_int_eq(error, 0);
        t->trace[t->n++] = '(';
        /* Asked after the three opens below: their callbacks run inside it, before it returns. */
        ck_assert_int_eq(mfb_region_stat_get(r, &st), 0);
        ck_assert_uint_eq(st.nattch, 1);
        t->trace[t->n++] = ')';
        mfb_region_free(r);
}

/* A callback may make a synchronous call: the callbacks of the requests before it run inside it. */
START_TEST(callbacks_may_make_synchronous_calls) {
        mfb_client *c = connect_to(&test_broker);
        struct nesting t = {};
        mfb_region *r = NULL;

        ck_assert_int_eq(mfb_region_create(c, "nested", 4096, &r), 0);
        ck_assert_int_eq(mfb_region_open_async(c, "nested", O_RDONLY, open_then_stat, &t), 0);
        for (int i = 0; i < 3; i++)
                ck_assert_int_eq(mfb_region_open_async(c, "nested", O_RDONLY, nested_open, &t), 0);
        while (t.n < 5) {
                struct pollfd p = { .fd = mfb_client_get_fd(c), .events = POLLIN };

                ck_assert_int_eq(poll(&p, 1, TEST_TIMEOUT_MS), 1);
                ck_assert_int_ge(mfb_client_dispatch(c), 0);
        }
        ck_assert_str_eq(t.trace, "(ooo)");
        ck_assert_int_eq(mfb_client_dispatch(c), 0);
        mfb_region_free(r);
        mfb_client_free(c);
}
END_TEST

static void gate_opened(mfb_client *c, int error, mfb_region *r, void *userdata) {
        bool *gate = userdata;

        ck_assert_int_eq(error, 0);
        mfb_region_free(r);
        *gate = true;
}

/*
 * mfb_region_free() does not wait for the broker: it returns even while the
 * broker reads nothing from the client (a WAIT of it is pending). Still, a
 * STAT by the same client afterwards no longer counts it, without anyone
 * sleeping: the release goes before the STAT on the connection.
 */
START_TEST(freed_reference_is_released_before_the_next_reply) {
        mfb_client *owner = connect_to(&test_broker), *c = connect_to(&test_broker);
        mfb_region *watched = NULL, *held = NULL, *gate = NULL;
        mfb_region_stat st;
        bool gate_seen = false;

        ck_assert_int_eq(mfb_region_create(owner, "watched", 4096, &watched), 0);
        ck_assert_int_eq(mfb_region_open(c, "watched", O_RDONLY, &held), 0);
        ck_assert_int_eq(mfb_stat(c, "watched", &st), 0);
        ck_assert_uint_eq(st.nattch, 2);

        /* The broker reads nothing more from c until "gate" is sealed. */
        ck_assert_int_eq(mfb_region_wait_async(c, "gate", -1, gate_opened, &gate_seen), 0);
        mfb_region_free(held);
        /* The RELEASE waits behind the WAIT, unread: the broker has not seen it. */
        ck_assert_int_eq(mfb_stat(owner, "watched", &st), 0);
        ck_assert_uint_eq(st.nattch, 2);

        ck_assert_int_eq(mfb_region_create(owner, "gate", 4096, &gate), 0);
        ck_assert_int_eq(mfb_region_seal(gate), 0);
        ck_assert_int_eq(mfb_stat(c, "watched", &st), 0);
        ck_assert(gate_seen);
        ck_assert_uint_eq(st.nattch, 1);

        mfb_region_free(gate);
        mfb_region_free(watched);
        mfb_client_free(c);
        mfb_client_free(owner);
}
END_TEST

/* The holders of region name, as c's STAT says. */
static uint32_t nattch_of(mfb_client *c, const char *name) {
        mfb_region_stat st;

        ck_assert_int_eq(mfb_stat(c, name, &st), 0);
        return st.nattch;
}

/*
 * The holders of region name once the broker has read all that c wrote,
 * as owner's STAT says: the broker handles what it reads at once, so a
 * release c sent has been carried out by then, and one c holds back has not.
 */
static uint32_t nattch_after(mfb_client *owner, mfb_client *c, const char *name) {
        raw_wait_consumed(mfb_client_get_fd(c));
        return nattch_of(owner, name);
}

/*
 * Waits, asking with STAT on owner, until the region name has want holders:
 * for the end of a connection, which no socket of the test can be asked
 * about any more. Fails the test after 10 s.
 */
static void wait_for_nattch(mfb_client *owner, const char *name, uint32_t want) {
        for (int i = 0; i < 10000; i++) {
                if (nattch_of(owner, name) == want)
                        return;
                (void) poll(NULL, 0, 1);
        }
        ck_abort_msg("%s still has %u holders, not %u", name, (unsigned) nattch_of(owner, name), (unsigned) want);
}

/* Bytes c wrote that the broker has not read yet (SIOCOUTQ). */
static int unread_of(mfb_client *c) {
        int n = -1;

        ck_assert_int_eq(ioctl(mfb_client_get_fd(c), SIOCOUTQ, &n), 0);
        return n;
}

/* Keeps the region an asynchronous open gave in *userdata. */
static void opened_kept(mfb_client *c, int error, mfb_region *region, void *userdata) {
        ck_assert_int_eq(error, 0);
        *(mfb_region **) userdata = region;
}

/*
 * By default, where the broker offers a release queue, mfb_region_free()
 * stores the handle in it and writes nothing: the broker takes it before
 * the client's next request, or on its own within 10 ms of the client's
 * last one. The first release goes as a record; so does the second, which
 * asks for the queue (a client that releases once never has one made).
 */
START_TEST(releases_go_through_the_queue) {
        mfb_client *owner = connect_to(&test_broker), *c = connect_to(&test_broker);
        mfb_region *queued = NULL, *other = NULL, *r = NULL, *async = NULL;
        int unread;

        ck_assert_int_eq(mfb_region_create(owner, "queued", 4096, &queued), 0);
        ck_assert_int_eq(mfb_region_create(owner, "other", 4096, &other), 0);
        for (int i = 0; i < 2; i++) {
                ck_assert_int_eq(mfb_region_open(c, "queued", O_RDONLY, &r), 0);
                mfb_region_free(r);
        }
        ck_assert_int_eq(mfb_client_roundtrip(c), 0);
        ck_assert_uint_eq(nattch_of(owner, "queued"), 1);

        /*
         * The broker stopped: an OPEN goes out, then a release right after it,
         * within the queue's window, adds nothing to what waits in the socket.
         */
        ck_assert_int_eq(mfb_region_open(c, "queued", O_RDONLY, &r), 0);
        ck_assert_int_eq(kill(test_broker.pid, SIGSTOP), 0);
        ck_assert_int_eq(mfb_region_open_async(c, "other", O_RDONLY, opened_kept, &async), 0);
        unread = unread_of(c);
        ck_assert_int_gt(unread, 0);
        mfb_region_free(r);
        ck_assert_int_eq(unread_of(c), unread);
        ck_assert_int_eq(kill(test_broker.pid, SIGCONT), 0);
        /* That OPEN was made before the release, so it does not have the broker take it: the sweep does. */
        wait_for_nattch(owner, "queued", 1);
        ck_assert_int_eq(mfb_client_roundtrip(c), 0);
        ck_assert_ptr_nonnull(async);
        ck_assert_uint_eq(nattch_of(owner, "other"), 2);

        /* Stored or sent, a release is taken before the client's next request: its STAT no longer counts c. */
        mfb_region_free(async);
        ck_assert_uint_eq(nattch_of(c, "other"), 1);

        ck_assert_int_eq(mfb_remove(owner, "queued"), 0);
        ck_assert_int_eq(mfb_remove(owner, "other"), 0);
        mfb_region_free(queued);
        mfb_region_free(other);
        mfb_client_free(c);
        mfb_client_free(owner);
}
END_TEST

/*
 * With deferred releases and no release queue (the broker has none left
 * to give: --max-release-queues 1, taken), mfb_region_free() sends
 * nothing: the release rides in the client's next request, and is carried
 * out before it; or goes with mfb_client_roundtrip(), the seventeenth
 * free, turning deferral off, or the end of the connection.
 */
START_TEST(deferred_releases_ride_in_the_next_request_without_a_queue) {
        static const char *const args[] = { "--max-release-queues", "1", NULL };
        struct test_broker b;
        mfb_client *owner, *c;
        mfb_region *shared = NULL, *r = NULL, *many[MFB_WIRE_RELEASES_CARRIED_MAX + 1];

        test_broker_start(&b, args);
        owner = connect_to(&b);
        c = connect_to(&b);
        ck_assert_int_eq(mfb_region_create(owner, "deferred", 4096, &shared), 0);
        /* owner's second release asks for the only queue, and gets it. */
        for (int i = 0; i < 2; i++) {
                ck_assert_int_eq(mfb_region_open(owner, "deferred", O_RDONLY, &r), 0);
                mfb_region_free(r);
        }
        ck_assert_int_eq(mfb_client_roundtrip(owner), 0);

        ck_assert_int_eq(mfb_client_set_deferred_releases(NULL, 1), -EINVAL);
        ck_assert_int_eq(mfb_client_set_deferred_releases(c, 1), 0);

        /* Freed, nothing sent: the broker, having read all c wrote, still counts c among the holders. */
        ck_assert_int_eq(mfb_region_open(c, "deferred", O_RDONLY, &r), 0);
        mfb_region_free(r);
        ck_assert_int_eq(mfb_client_dispatch(c), 0);
        ck_assert_uint_eq(nattch_after(owner, c, "deferred"), 2);
        /* c's next request carries it, released before that request's own reply. */
        ck_assert_uint_eq(nattch_of(c, "deferred"), 1);

        /* mfb_client_roundtrip() sends what waits, and sees it done for every connection. */
        ck_assert_int_eq(mfb_region_open(c, "deferred", O_RDONLY, &r), 0);
        mfb_region_free(r);
        ck_assert_int_eq(mfb_client_roundtrip(c), 0);
        ck_assert_uint_eq(nattch_of(owner, "deferred"), 1);

        /* At most 16 wait: the seventeenth free sends them all, itself among them. */
        for (size_t i = 0; i < ELEMENTSOF(many); i++)
                ck_assert_int_eq(mfb_region_open(c, "deferred", O_RDONLY, &many[i]), 0);
        for (size_t i = 0; i + 1 < ELEMENTSOF(many); i++)
                mfb_region_free(many[i]);
        ck_assert_uint_eq(nattch_after(owner, c, "deferred"), 2);
        mfb_region_free(many[ELEMENTSOF(many) - 1]);
        ck_assert_uint_eq(nattch_after(owner, c, "deferred"), 1);

        /* Turning deferral off sends what waits. */
        ck_assert_int_eq(mfb_region_open(c, "deferred", O_RDONLY, &r), 0);
        mfb_region_free(r);
        ck_assert_uint_eq(nattch_after(owner, c, "deferred"), 2);
        ck_assert_int_eq(mfb_client_set_deferred_releases(c, 0), 0);
        ck_assert_uint_eq(nattch_after(owner, c, "deferred"), 1);

        /* So does the end of the connection, which releases everything. */
        ck_assert_int_eq(mfb_client_set_deferred_releases(c, 1), 0);
        ck_assert_int_eq(mfb_region_open(c, "deferred", O_RDONLY, &r), 0);
        mfb_region_free(r);
        ck_assert_uint_eq(nattch_after(owner, c, "deferred"), 2);
        mfb_client_free(c);
        wait_for_nattch(owner, "deferred", 1);

        ck_assert_int_eq(mfb_remove(owner, "deferred"), 0);
        mfb_region_free(shared);
        mfb_client_free(owner);
        test_broker_stop(&b);
}
END_TEST

#define FREEING_REQUESTS 20
#define FREEING_AT 3

struct freeing {
        mfb_client *client;
        mfb_region *kept[FREEING_AT];
        int ran, canceled;
        bool freed;
};

static void free_client_on_third(mfb_client *c, int error, mfb_region *r, void *userdata) {
        struct freeing *f = userdata;

        if (f->freed) {
                /* The client is being freed: what is left ends, and can ask for nothing more. */
                ck_assert_int_eq(error, -ECANCELED);
                ck_assert_ptr_null(r);
                ck_assert_int_eq(mfb_region_open_async(c, "shared", O_RDONLY, free_client_on_third, f),
                                 -ENOTCONN);
                /* A second free from here does nothing. */
                ck_assert_ptr_null(mfb_client_free(c));
                f->canceled++;
                return;
        }
        ck_assert_int_eq(error, 0);
        f->kept[f->ran++] = r;
        if (f->ran == FREEING_AT) {
                f->freed = true;
                ck_assert_ptr_null(mfb_client_free(c));
        }
}

/*
 * A callback may free its client: the requests still pending get their
 * callbacks with -ECANCELED at once, the dispatch that ran the callback
 * returns without touching the client again, and the regions handed out
 * before stay usable until freed.
 */
START_TEST(callbacks_may_free_the_client) {
        unsigned baseline = test_broker_fd_count(&test_broker);
        mfb_client *owner = connect_to(&test_broker);
        struct freeing f = { .client = connect_to(&test_broker) };
        mfb_region *shared = NULL;
        int fd = mfb_client_get_fd(f.client);
        char *mem;

        ck_assert_int_eq(mfb_region_create(owner, "shared", 4096, &shared), 0);
        ck_assert_int_eq(mfb_region_map(shared, (void **) &mem), 0);
        strcpy(mem, "still mapped");
        for (int i = 0; i < FREEING_REQUESTS; i++)
                ck_assert_int_eq(mfb_region_open_async(f.client, "shared", O_RDONLY, free_client_on_third, &f), 0);

        while (!f.freed) {
                struct pollfd p = { .fd = fd, .events = POLLIN };

                ck_assert_int_eq(poll(&p, 1, TEST_TIMEOUT_MS), 1);
                ck_assert_int_ge(mfb_client_dispatch(f.client), 0);
        }
        ck_assert_int_eq(f.ran, FREEING_AT);
        ck_assert_int_eq(f.canceled, FREEING_REQUESTS - FREEING_AT);

        /* The regions outlive their client; their calls that need it say it is gone. */
        for (int i = 0; i < FREEING_AT; i++) {
                const char *m;

                ck_assert_int_eq(mfb_region_map(f.kept[i], (void **) &m), 0);
                ck_assert_str_eq(m, "still mapped");
                ck_assert_int_eq(mfb_region_stat_get(f.kept[i], &(mfb_region_stat) {}), -ENOTCONN);
                mfb_region_free(f.kept[i]);
        }
        ck_assert_int_eq(mfb_region_remove(shared), 0);
        mfb_region_free(shared);
        mfb_client_free(owner);
        ck_assert_msg(test_broker_wait_fd_count(&test_broker, baseline), "broker has %u fds, %u before",
                      test_broker_fd_count(&test_broker), baseline);
}
END_TEST

static void free_client(mfb_client *c, int error, mfb_region *r, void *userdata) {
        ck_assert_int_eq(error, 0);
        mfb_region_free(r);
        mfb_client_free(c);
}

static void expect_canceled(mfb_client *c, int error, mfb_region *r, void *userdata) {
        int *n = userdata;

        ck_assert_int_eq(error, -ECANCELED);
        ck_assert_ptr_null(r);
        (*n)++;
}

/* A synchronous call whose wait ran a callback that freed the client returns -ECANCELED. */
START_TEST(sync_call_canceled_by_a_callback_that_frees_the_client) {
        mfb_client *c = connect_to(&test_broker);
        mfb_region *r = NULL;
        mfb_region_stat st;
        int canceled = 0;

        ck_assert_int_eq(mfb_region_create(c, "first", 4096, &r), 0);
        ck_assert_int_eq(mfb_region_open_async(c, "first", O_RDONLY, free_client, NULL), 0);
        ck_assert_int_eq(mfb_region_open_async(c, "first", O_RDONLY, expect_canceled, &canceled), 0);
        ck_assert_int_eq(mfb_region_stat_get(r, &st), -ECANCELED);
        ck_assert_int_eq(canceled, 1);
        mfb_region_free(r);
}
END_TEST

static void expect_error(mfb_client *c, int error, mfb_region *r, void *userdata) {
        int *got = userdata;

        ck_assert_int_lt(error, 0);
        ck_assert_ptr_null(r);
        *got = error;
}

/*
 * The broker going away ends every pending request with the connection's
 * error, and dispatch says it, again and again; the fd stays open until
 * the client is freed, so that an event loop never watches a stranger.
 */
START_TEST(lost_connection_ends_every_callback) {
        struct test_broker b;
        mfb_client *c;
        int waited = 0, opened = 0, fd, r;

        test_broker_start(&b, NULL);
        c = connect_to(&b);
        fd = mfb_client_get_fd(c);
        ck_assert_int_eq(mfb_region_wait_async(c, "never", -1, expect_error, &waited), 0);
        ck_assert_int_eq(mfb_region_open_async(c, "never", O_RDONLY, expect_error, &opened), 0);
        test_broker_stop(&b);

        do {
                struct pollfd p = { .fd = fd, .events = POLLIN };

                ck_assert_int_eq(poll(&p, 1, TEST_TIMEOUT_MS), 1);
                r = mfb_client_dispatch(c);
        } while (r >= 0);
        ck_assert(r == -ENOTCONN || r == -ECONNRESET);
        ck_assert_int_eq(waited, r);
        ck_assert_int_eq(opened, r);
        ck_assert_int_eq(mfb_client_dispatch(c), r);
        ck_assert_int_eq(mfb_client_get_fd(c), fd);
        ck_assert_int_ge(fcntl(fd, F_GETFD), 0);
        ck_assert_int_eq(mfb_region_open_async(c, "never", O_RDONLY, expect_error, &opened), -ENOTCONN);
        ck_assert_int_eq(mfb_stat(c, "never", &(mfb_region_stat) {}), -ENOTCONN);
        mfb_client_free(c);
}
END_TEST

START_TEST(async_calls_check_their_arguments) {
        mfb_client *c = connect_to(&test_broker);
        mfb_region *r = NULL;
        int n = 0;

        ck_assert_int_eq(mfb_region_create_async(c, NULL, 4096, 0, 0, NULL, NULL), -EINVAL);
        ck_assert_int_eq(mfb_region_create_async(c, NULL, 0, 0, 0, expect_error, &n), -EINVAL);
        ck_assert_int_eq(mfb_region_create_async(NULL, NULL, 4096, 0, 0, expect_error, &n), -EINVAL);
        ck_assert_int_eq(mfb_region_open_async(c, "", O_RDONLY, expect_error, &n), -EINVAL);
        ck_assert_int_eq(mfb_region_open_handle_async(c, 0, O_RDONLY, expect_error, &n), -EINVAL);
        ck_assert_int_eq(mfb_region_wait_async(c, "x", -2, expect_error, &n), -EINVAL);
        ck_assert_int_eq(mfb_region_seal_async(NULL, NULL, NULL), -EINVAL);
        ck_assert_int_eq(mfb_client_dispatch(NULL), -EINVAL);
        ck_assert_int_eq(mfb_client_get_fd(NULL), -EINVAL);
        ck_assert_int_eq(mfb_client_get_events(NULL), -EINVAL);
        ck_assert_int_eq(mfb_client_flush(NULL), -EINVAL);
        ck_assert_int_eq(mfb_client_roundtrip(NULL), -EINVAL);
        ck_assert_int_eq(mfb_region_create_batch(NULL, 4096, 1, &r), -EINVAL);
        ck_assert_int_eq(mfb_region_create_batch(c, 0, 1, &r), -EINVAL);
        ck_assert_int_eq(mfb_region_create_batch(c, 4096, 1, NULL), -EINVAL);
        ck_assert_int_eq(mfb_region_create_batch(c, 4096, 0, NULL), 0);

        /* A read-only region cannot be sealed; nothing was queued for it. */
        ck_assert_int_eq(mfb_region_create(c, "ro", 4096, &r), 0);
        mfb_region_free(r);
        ck_assert_int_eq(mfb_region_open(c, "ro", O_RDONLY, &r), 0);
        ck_assert_int_eq(mfb_region_seal_async(r, NULL, NULL), -EPERM);
        mfb_region_free(r);
        ck_assert_int_eq(mfb_client_flush(c), 0);
        ck_assert_int_eq(mfb_client_roundtrip(c), 0);
        ck_assert_int_eq(n, 0);
        mfb_client_free(c);
}
END_TEST

#define BATCH 300

/* More regions than the library keeps in flight, each verified, mapped and writable. */
START_TEST(batch_creates_every_region) {
        mfb_client *c = connect_to(&test_broker);
        mfb_region *regions[BATCH];
        mfb_region_stat *entries = NULL;
        size_t n = 0;

        ck_assert_int_eq(mfb_region_create_batch(c, 8192, BATCH, regions), 0);
        for (int i = 0; i < BATCH; i++) {
                char *mem;

                ck_assert_uint_eq(mfb_region_size(regions[i]), 8192);
                ck_assert_int_eq(mfb_region_access(regions[i]), O_RDWR);
                ck_assert_int_eq(mfb_region_map_writable(regions[i], (void **) &mem), 0);
                mem[8191] = 1;
                if (i > 0)
                        ck_assert_uint_gt(mfb_region_handle(regions[i]), mfb_region_handle(regions[i - 1]));
        }
        ck_assert_int_eq(mfb_list(c, &entries, &n), 0);
        ck_assert_uint_eq(n, BATCH);
        for (int i = 0; i < BATCH; i++) {
                ck_assert_uint_eq(entries[i].handle, mfb_region_handle(regions[i]));
                ck_assert_str_eq(entries[i].name, "");
                ck_assert_uint_eq(entries[i].nattch, 1);
        }
        free(entries);

        for (int i = 0; i < BATCH; i++)
                mfb_region_free(regions[i]);
        ck_assert_int_eq(mfb_list(c, &entries, &n), 0);
        ck_assert_uint_eq(n, 0);
        mfb_client_free(c);
}
END_TEST

#define BATCH_LIMIT 300
#define BATCH_TOO_MANY 800        /* more than one CREATE_BATCH holds: the first may succeed, a later fail */

/*
 * A batch the broker refuses partway (its limit on regions) fails whole:
 * the regions it had made are gone, in the broker and in this process,
 * before the client's next answer; the caller's array is untouched, and
 * the regions the client had before stay.
 */
START_TEST(batch_that_fails_halfway_leaves_nothing) {
        static const char *const args[] = { "--max-regions", "300", NULL };
        struct test_broker b;
        mfb_region *before = NULL, *regions[BATCH_TOO_MANY], *sentinel = (mfb_region *) &b;
        mfb_region_stat *entries = NULL;
        mfb_limit limits[MFB_LIMIT_COUNT];
        unsigned broker_fds, fds;
        mfb_client *c;
        size_t n = 0;
        int k;

        test_broker_start(&b, args);
        c = connect_to(&b);
        ck_assert_int_eq(mfb_region_create(c, "before", 4096, &before), 0);
        /* Answered after the broker let go of its copy of the fd it sent for "before". */
        ck_assert_int_eq(mfb_stat(c, "before", &(mfb_region_stat) {}), 0);
        broker_fds = test_broker_fd_count(&b);
        fds = test_fd_count();

        for (int i = 0; i < BATCH_TOO_MANY; i++)
                regions[i] = sentinel;
        k = mfb_region_create_batch(c, 4096, BATCH_TOO_MANY, regions);
        /* Over the broker's limit (root), or over this uid's share of it first. */
        ck_assert_msg(k == -ENOSPC || k == -EDQUOT, "batch gave %d", k);
        ck_assert_str_ne(mfb_client_error_message(c), "");
        for (int i = 0; i < BATCH_TOO_MANY; i++)
                ck_assert_ptr_eq(regions[i], sentinel);
        ck_assert_uint_eq(test_fd_count(), fds);

        /* Asked on the same client, after the batch: it holds only what it held before. */
        ck_assert_int_eq(mfb_list(c, &entries, &n), 0);
        ck_assert_uint_eq(n, 1);
        ck_assert_str_eq(entries[0].name, "before");
        ck_assert_uint_eq(entries[0].nattch, 1);
        free(entries);
        ck_assert_int_eq(mfb_limits(c, MFB_LIMIT_COUNT, limits, NULL), MFB_LIMIT_COUNT);
        ck_assert_uint_eq(limits[MFB_LIMIT_REGIONS].uid_used, 1);
        ck_assert(test_broker_wait_fd_count(&b, broker_fds));

        /* All the room is there again: a batch of as many as the broker allows now succeeds. */
        n = (size_t) limits[MFB_LIMIT_REGIONS].uid_available;
        ck_assert_uint_gt(n, 0);
        ck_assert_uint_lt(n, BATCH_LIMIT);
        ck_assert_int_eq(mfb_region_create_batch(c, 4096, n, regions), 0);
        for (size_t i = 0; i < n; i++)
                mfb_region_free(regions[i]);

        mfb_region_free(before);
        mfb_client_free(c);
        test_broker_stop(&b);
}
END_TEST

/* A broker that follows a script, to see what the library makes of answers no real one gives. */
struct fake {
        int listener;
        uint64_t capabilities;
};

/* Reads one request of the opcode wanted into *ret (the header). 0, or -1. */
static int fake_read(int fd, uint16_t opcode, struct mfb_wire_header *ret) {
        uint8_t record[MFB_WIRE_RECORD_MAX];
        int fds[MFB_FDS_RECV_MAX];
        size_t nfds;
        ssize_t n;

        n = mfb_record_recv(fd, record, sizeof(record), fds, &nfds, 0);
        if (n <= 0 || nfds != 0 || mfb_wire_request_check(record, (size_t) n, ret) < 0 || ret->opcode != opcode) {
                fprintf(stderr, "fake broker: wanted %s, read %zd bytes\n", mfb_wire_opcode_name(opcode), n);
                return -1;
        }
        return 0;
}

static int fake_reply(int fd, const struct mfb_wire_header *request, uint64_t cookie, int status, const void *body,
                      size_t len, int region_fd) {
        struct {
                struct mfb_wire_header header;
                uint8_t body[512];
        } rec;

        if (len > sizeof(rec.body))
                return -1;
        mfb_wire_header_init(&rec.header, request->opcode | MFB_WIRE_REPLY, cookie, status, region_fd >= 0 ? 1 : 0,
                             (uint32_t) (sizeof(rec.header) + len));
        if (len > 0)
                memcpy(rec.body, body, len);
        return mfb_record_send(fd, &rec, sizeof(rec.header) + len, &region_fd, region_fd >= 0 ? 1 : 0, 0);
}

/* Accepts the client and answers its HELLO with these capabilities. Returns the connection, or -1. */
static int fake_accept(const struct fake *f) {
        struct mfb_wire_hello_reply hello = {
                .version = MFB_WIRE_VERSION,
                .capabilities = f->capabilities,
                .region_size_max = 1 << 20,
                .record_max = MFB_WIRE_RECORD_MAX,
                .name_max = MFB_WIRE_NAME_MAX,
                .fds_per_record_max = 1,
                .requests_in_flight_max = MFB_WIRE_REQUESTS_IN_FLIGHT_MAX,
                .list_entries_max = MFB_WIRE_LIST_ENTRIES_MAX,
        };
        struct mfb_wire_header h;
        int fd;

        fd = accept4(f->listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0 || fake_read(fd, MFB_WIRE_OP_HELLO, &h) < 0 ||
            fake_reply(fd, &h, h.cookie, 0, &hello, sizeof(hello), -1) < 0)
                return -1;
        return fd;
}

/* A real memfd of 4096 bytes, sealed as a broker seals it, for a region reply. */
static int fake_memfd(void) {
        int fd = memfd_create("fake", MFD_CLOEXEC | MFD_ALLOW_SEALING);

        if (fd < 0 || ftruncate(fd, 4096) < 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
                return -1;
        return fd;
}

static int fake_region_reply(int fd, const struct mfb_wire_header *h, uint64_t handle) {
        struct mfb_wire_region_reply region = {
                .access = MFB_WIRE_ACCESS_READ | MFB_WIRE_ACCESS_WRITE,
                .info = { .handle = handle, .size = 4096, .mode = 0600 },
        };
        int memfd = fake_memfd(), r;

        if (memfd < 0)
                return -1;
        r = fake_reply(fd, h, h->cookie, 0, &region, sizeof(region), memfd);
        close(memfd);
        return r;
}

/* Listens on a socket in the test broker's folder, and runs fn there as a fake broker. */
static pid_t fake_start(struct fake *f, struct sockaddr_un *sa, int (*fn)(void *arg)) {
        *sa = (struct sockaddr_un) { .sun_family = AF_UNIX };
        ck_assert_int_lt(snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/fake", test_broker.dir),
                         (int) sizeof(sa->sun_path));
        f->listener = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(f->listener, 0);
        ck_assert_int_eq(bind(f->listener, (struct sockaddr *) sa, sizeof(*sa)), 0);
        ck_assert_int_eq(listen(f->listener, 1), 0);
        return test_fork(fn, f);
}

static void fake_stop(struct fake *f, const struct sockaddr_un *sa, pid_t pid) {
        test_child_succeeded(pid);
        close(f->listener);
        ck_assert_int_eq(unlink(sa->sun_path), 0);
}

#define FAKE_HANDLE 5
#define FAKE_NATTCH 7

/*
 * HELLO with the capabilities given; a CREATE answered with a real memfd;
 * the RELEASE of it, quiet where offered, and then refused all the same;
 * a STAT; and a second STAT answered under a cookie nobody used.
 */
static int fake_broker(void *arg) {
        const struct fake *f = arg;
        struct mfb_wire_region_info info = { .handle = FAKE_HANDLE, .size = 4096, .nattch = FAKE_NATTCH };
        bool quiet = f->capabilities & MFB_WIRE_CAP_QUIET;
        struct mfb_wire_header h;
        int fd;

        fd = fake_accept(f);
        TEST_CHILD_CHECK(fd >= 0);
        TEST_CHILD_CHECK(fake_read(fd, MFB_WIRE_OP_CREATE, &h) == 0);
        TEST_CHILD_CHECK(fake_region_reply(fd, &h, FAKE_HANDLE) == 0);

        TEST_CHILD_CHECK(fake_read(fd, MFB_WIRE_OP_RELEASE, &h) == 0);
        TEST_CHILD_CHECK(h.flags == (quiet ? MFB_WIRE_FLAG_QUIET : 0));
        if (quiet)
                TEST_CHILD_CHECK(fake_reply(fd, &h, h.cookie, -ENOENT, "refused", 7, -1) == 0);
        else
                TEST_CHILD_CHECK(fake_reply(fd, &h, h.cookie, 0, NULL, 0, -1) == 0);

        TEST_CHILD_CHECK(fake_read(fd, MFB_WIRE_OP_STAT, &h) == 0);
        TEST_CHILD_CHECK(fake_reply(fd, &h, h.cookie, 0, &info, sizeof(info), -1) == 0);
        TEST_CHILD_CHECK(fake_read(fd, MFB_WIRE_OP_STAT, &h) == 0);
        TEST_CHILD_CHECK(fake_reply(fd, &h, h.cookie + 1, 0, &info, sizeof(info), -1) == 0);
        close(fd);
        return 0;
}

static void run_against_fake(uint64_t capabilities) {
        struct fake f = { .capabilities = capabilities };
        struct sockaddr_un sa;
        mfb_client *c = NULL;
        mfb_region *r = NULL;
        mfb_region_stat st;
        pid_t pid;

        pid = fake_start(&f, &sa, fake_broker);

        ck_assert_int_eq(mfb_client_connect(sa.sun_path, &c), 0);
        /* A broker that does not take carried releases: the release below goes as a record of its own. */
        ck_assert_int_eq(mfb_client_set_deferred_releases(c, 1), -EOPNOTSUPP);
        ck_assert_int_eq(mfb_region_create(c, NULL, 4096, &r), 0);
        ck_assert_uint_eq(mfb_region_handle(r), FAKE_HANDLE);
        mfb_region_free(r);
        /* The release's answer, or its failure, is read and dropped: this is the STAT's own. */
        ck_assert_int_eq(mfb_stat_handle(c, FAKE_HANDLE, &st), 0);
        ck_assert_uint_eq(st.nattch, FAKE_NATTCH);
        ck_assert_str_eq(mfb_client_error_message(c), "");
        /* An answer to nothing asked breaks the protocol; the connection is of no use after. */
        ck_assert_int_eq(mfb_stat_handle(c, FAKE_HANDLE, &st), -EBADMSG);
        ck_assert_int_eq(mfb_stat_handle(c, FAKE_HANDLE, &st), -ENOTCONN);
        ck_assert_int_eq(mfb_client_dispatch(c), -EBADMSG);
        mfb_client_free(c);
        fake_stop(&f, &sa, pid);
}

/* Where the broker offers quiet requests, a release is one; the failure of one is dropped. */
START_TEST(quiet_release_and_its_failure) {
        run_against_fake(MFB_WIRE_CAP_QUIET);
}
END_TEST

/* A broker without quiet requests answers every release; the answer is read before the next one. */
START_TEST(release_answered_by_an_older_broker) {
        run_against_fake(0);
}
END_TEST

/* A page as a broker's release queue is: 4096 bytes, sealed against resizing and further seals. */
static int fake_queue_page(void) {
        int fd = memfd_create("fake-queue", MFD_CLOEXEC | MFD_ALLOW_SEALING);

        if (fd < 0 || ftruncate(fd, MFB_WIRE_RELEASE_QUEUE_SIZE) < 0 ||
            fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
                return -1;
        return fd;
}

/*
 * A broker with release queues: three CREATEs, two RELEASEs (the second
 * after a RELEASE_QUEUE, answered with a page) and a third release stored
 * in the page; then the quiet SYNC of mfb_client_flush(), flagged, refused
 * all the same (as a broker refuses a queue with a release of a handle not
 * held), and a STAT.
 */
static int fake_queue_broker(void *arg) {
        const struct fake *f = arg;
        struct mfb_wire_region_info info = { .handle = FAKE_HANDLE, .size = 4096, .nattch = FAKE_NATTCH };
        struct mfb_wire_release_queue_reply queue = { .slots = MFB_WIRE_RELEASE_QUEUE_SLOTS };
        struct mfb_wire_header h;
        int fd, page, r;

        fd = fake_accept(f);
        TEST_CHILD_CHECK(fd >= 0);
        for (int i = 0; i < 2; i++) {
                TEST_CHILD_CHECK(fake_read(fd, MFB_WIRE_OP_CREATE, &h) == 0);
                TEST_CHILD_CHECK(fake_region_reply(fd, &h, FAKE_HANDLE + i) == 0);
                /* The second release asks for the queue first. */
                if (i == 1) {
                        TEST_CHILD_CHECK(fake_read(fd, MFB_WIRE_OP_RELEASE_QUEUE, &h) == 0);
                        page = fake_queue_page();
                        TEST_CHILD_CHECK(page >= 0);
                        r = fake_reply(fd, &h, h.cookie, 0, &queue, sizeof(queue), page);
                        close(page);
                        TEST_CHILD_CHECK(r == 0);
                }
                TEST_CHILD_CHECK(fake_read(fd, MFB_WIRE_OP_RELEASE, &h) == 0);
                TEST_CHILD_CHECK(h.flags == MFB_WIRE_FLAG_QUIET);
        }
        TEST_CHILD_CHECK(fake_read(fd, MFB_WIRE_OP_CREATE, &h) == 0);
        TEST_CHILD_CHECK(fake_region_reply(fd, &h, FAKE_HANDLE + 2) == 0);

        TEST_CHILD_CHECK(fake_read(fd, MFB_WIRE_OP_SYNC, &h) == 0);
        TEST_CHILD_CHECK(h.flags == (MFB_WIRE_FLAG_QUIET | MFB_WIRE_FLAG_QUEUED));
        TEST_CHILD_CHECK(fake_reply(fd, &h, h.cookie, -ENOENT, "refused", 7, -1) == 0);
        TEST_CHILD_CHECK(fake_read(fd, MFB_WIRE_OP_STAT, &h) == 0);
        TEST_CHILD_CHECK(fake_reply(fd, &h, h.cookie, 0, &info, sizeof(info), -1) == 0);
        close(fd);
        return 0;
}

/* The refusal of the quiet SYNC that has the broker take the queue is read and dropped, as a RELEASE's is. */
START_TEST(refused_quiet_sync_is_dropped) {
        struct fake f = { .capabilities = MFB_WIRE_CAP_QUIET | MFB_WIRE_CAP_RELEASE_QUEUE };
        struct sockaddr_un sa;
        mfb_client *c = NULL;
        mfb_region *r = NULL;
        mfb_region_stat st;
        pid_t pid;

        pid = fake_start(&f, &sa, fake_queue_broker);
        ck_assert_int_eq(mfb_client_connect(sa.sun_path, &c), 0);
        for (int i = 0; i < 2; i++) {
                ck_assert_int_eq(mfb_region_create(c, NULL, 4096, &r), 0);
                mfb_region_free(r);
        }
        /* The answer to RELEASE_QUEUE comes before this CREATE's: the third release goes in the page. */
        ck_assert_int_eq(mfb_region_create(c, NULL, 4096, &r), 0);
        mfb_region_free(r);
        ck_assert_int_eq(mfb_client_flush(c), 0);
        ck_assert_int_eq(mfb_stat_handle(c, FAKE_HANDLE, &st), 0);
        ck_assert_uint_eq(st.nattch, FAKE_NATTCH);
        ck_assert_str_eq(mfb_client_error_message(c), "");
        mfb_client_free(c);
        fake_stop(&f, &sa, pid);
}
END_TEST

#define PIPELINED_MADE 100     /* CREATEs the fake answers with a region before it refuses */
#define PIPELINED_ASKED 300

/*
 * A broker without CREATE_BATCH: the batch comes as CREATEs, answered with
 * regions up to PIPELINED_MADE and refused after; then the RELEASE of each
 * region made must come, once, before the client hangs up.
 */
static int fake_pipelined_broker(void *arg) {
        static bool released[PIPELINED_MADE + 1];
        const struct fake *f = arg;
        size_t creates = 0, releases = 0;
        int fd;

        fd = fake_accept(f);
        TEST_CHILD_CHECK(fd >= 0);
        for (;;) {
                uint8_t record[MFB_WIRE_RECORD_MAX];
                struct mfb_wire_release_request release;
                struct mfb_wire_header h;
                int fds[MFB_FDS_RECV_MAX];
                size_t nfds;
                ssize_t n;

                n = mfb_record_recv(fd, record, sizeof(record), fds, &nfds, 0);
                if (n == 0)
                        break;
                TEST_CHILD_CHECK(n > 0 && nfds == 0 && mfb_wire_request_check(record, (size_t) n, &h) == 0);
                switch (h.opcode) {
                case MFB_WIRE_OP_CREATE:
                        /* Nothing is asked after the refusal but what was on its way already. */
                        TEST_CHILD_CHECK(creates < PIPELINED_MADE + MFB_WIRE_REQUESTS_IN_FLIGHT_MAX);
                        if (creates < PIPELINED_MADE)
                                TEST_CHILD_CHECK(fake_region_reply(fd, &h, creates + 1) == 0);
                        else
                                TEST_CHILD_CHECK(fake_reply(fd, &h, h.cookie, -ENOSPC, "full", 4, -1) == 0);
                        creates++;
                        break;
                case MFB_WIRE_OP_RELEASE:
                        memcpy(&release, record + sizeof(h), sizeof(release));
                        TEST_CHILD_CHECK(release.handle >= 1 && release.handle <= PIPELINED_MADE);
                        TEST_CHILD_CHECK(!released[release.handle]);
                        released[release.handle] = true;
                        releases++;
                        TEST_CHILD_CHECK(fake_reply(fd, &h, h.cookie, 0, NULL, 0, -1) == 0);
                        break;
                default:
                        TEST_CHILD_CHECK(!"a request the batch does not make");
                }
        }
        TEST_CHILD_CHECK(creates > PIPELINED_MADE);
        TEST_CHILD_CHECK(releases == PIPELINED_MADE);
        close(fd);
        return 0;
}

/* The batch of a broker without CREATE_BATCH, refused partway: every region made is given back. */
START_TEST(pipelined_batch_that_fails_halfway_gives_back_what_it_made) {
        struct fake f = {};
        mfb_region *regions[PIPELINED_ASKED];
        struct sockaddr_un sa;
        mfb_client *c = NULL;
        unsigned fds;
        pid_t pid;

        pid = fake_start(&f, &sa, fake_pipelined_broker);
        ck_assert_int_eq(mfb_client_connect(sa.sun_path, &c), 0);
        fds = test_fd_count();
        ck_assert_int_eq(mfb_region_create_batch(c, 4096, PIPELINED_ASKED, regions), -ENOSPC);
        ck_assert_str_eq(mfb_client_error_message(c), "full");
        ck_assert_uint_eq(test_fd_count(), fds);
        ck_assert_int_eq(mfb_client_roundtrip(c), 0);
        mfb_client_free(c);
        fake_stop(&f, &sa, pid);
}
END_TEST

/* The EXAMPLE of memfd-broker(3), built from the same source, against a broker. */
START_TEST(the_libevent_example_runs) {
        const char *builddir = getenv("MFB_BUILDDIR");
        char program[4096], out[256] = "";
        int pipefd[2], status;
        ssize_t len;
        pid_t pid;

        ck_assert_ptr_nonnull(builddir);
        ck_assert_int_lt(snprintf(program, sizeof(program), "%s/tests/example-libevent", builddir),
                         (int) sizeof(program));
        ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                if (dup2(pipefd[1], STDOUT_FILENO) < 0 || setenv(MFB_SOCKET_ENV, test_broker.socket_path, 1) < 0)
                        _exit(127);
                execl(program, program, (char *) NULL);
                _exit(127);
        }
        close(pipefd[1]);
        status = test_wait_child(pid);
        len = read(pipefd[0], out, sizeof(out) - 1);
        close(pipefd[0]);
        ck_assert_int_gt(len, 0);
        ck_assert_str_eq(out, "100 regions created\n");
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "example exit status 0x%x", status);
}
END_TEST

static char *read_file(const char *dir, const char *path) {
        char full[4096];
        FILE *f;
        char *s;
        long size;

        ck_assert_int_lt(snprintf(full, sizeof(full), "%s/%s", dir, path), (int) sizeof(full));
        f = fopen(full, "re");
        ck_assert_msg(f, "%s: %s", full, strerror(errno));
        ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
        size = ftell(f);
        ck_assert_int_ge(size, 0);
        rewind(f);
        s = malloc((size_t) size + 1);
        ck_assert_ptr_nonnull(s);
        ck_assert_uint_eq(fread(s, 1, (size_t) size, f), (size_t) size);
        s[size] = '\0';
        fclose(f);
        return s;
}

/* What a roff .EX block shows for text: \e a backslash, \- a minus, \& nothing. */
static void roff_unescape(char *s) {
        char *out = s;

        for (; *s; s++) {
                if (*s == '\\' && s[1] == 'e')
                        *out++ = '\\', s++;
                else if (*s == '\\' && s[1] == '-')
                        *out++ = '-', s++;
                else if (*s == '\\' && s[1] == '&')
                        s++;
                else
                        *out++ = *s;
        }
        *out = '\0';
}

/* The man page shows the example that the test above builds and runs, to the byte. */
START_TEST(the_man_page_shows_the_tested_example) {
        static const char marker[] = ".\\\" tests/example-libevent.c\n";
        const char *srcdir = getenv("MFB_SRCDIR");
        char *page, *code, *start, *end;

        ck_assert_ptr_nonnull(srcdir);
        page = read_file(srcdir, "man/memfd-broker.3");
        code = read_file(srcdir, "tests/example-libevent.c");

        start = strstr(page, marker);
        ck_assert_msg(start, "memfd-broker.3 does not mark the libevent example");
        start = strstr(start, ".EX\n");
        ck_assert_ptr_nonnull(start);
        start += strlen(".EX\n");
        end = strstr(start, ".EE\n");
        ck_assert_ptr_nonnull(end);
        *end = '\0';
        roff_unescape(start);
        ck_assert_str_eq(start, code);
        free(code);
        free(page);
}
END_TEST

Suite *async_suite(void) {
        Suite *s = suite_create("async");
        TCase *tc = tcase_create("async");

        tcase_set_timeout(tc, 60);
        tcase_add_checked_fixture(tc, test_broker_setup, test_broker_teardown);
        tcase_add_test(tc, callbacks_interleave_across_regions_under_libevent);
        tcase_add_test(tc, sync_call_runs_earlier_callbacks_first);
        tcase_add_test(tc, callbacks_may_make_synchronous_calls);
        tcase_add_test(tc, freed_reference_is_released_before_the_next_reply);
        tcase_add_test(tc, releases_go_through_the_queue);
        tcase_add_test(tc, deferred_releases_ride_in_the_next_request_without_a_queue);
        tcase_add_test(tc, callbacks_may_free_the_client);
        tcase_add_test(tc, sync_call_canceled_by_a_callback_that_frees_the_client);
        tcase_add_test(tc, lost_connection_ends_every_callback);
        tcase_add_test(tc, async_calls_check_their_arguments);
        tcase_add_test(tc, batch_creates_every_region);
        tcase_add_test(tc, batch_that_fails_halfway_leaves_nothing);
        tcase_add_test(tc, quiet_release_and_its_failure);
        tcase_add_test(tc, release_answered_by_an_older_broker);
        tcase_add_test(tc, refused_quiet_sync_is_dropped);
        tcase_add_test(tc, pipelined_batch_that_fails_halfway_gives_back_what_it_made);
        tcase_add_test(tc, the_libevent_example_runs);
        tcase_add_test(tc, the_man_page_shows_the_tested_example);
        suite_add_tcase(s, tc);
        return s;
}
