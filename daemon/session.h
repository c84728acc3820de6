/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * One client's session: who it is (the credentials its socket had at
 * connect()), the regions it holds, its pending WAIT, and how it counts
 * against its uid. It owns its transport (connection.h), whose records it
 * hands to services->handle_request, and it ends when the transport says
 * the client is gone: then it gives back every reference it held.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "access.h"
#include "wire.h"

struct connection;
struct control_watch;
struct hashmap;
struct region;
struct release_queue;
struct services;
struct waiter;

/* How the session counts against its uid's connections and fds. */
enum session_quota {
        SESSION_COUNTED,        /* charged a connection and an fd */
        SESSION_REFUSED,        /* over its limit or share: its first request is refused, then it is closed */
};

/* The references one session holds to one region. */
struct hold {
        uint64_t handle;        /* the key in the session's holds */
        struct region *region;
        uint32_t count;         /* CREATEs and OPENs not released yet */
        uint32_t writable;      /* how many of them are read-write */
        struct control_watch *watch;    /* its NOTIFY_WATCH pipe (control.h), owned; NULL when none */
};

struct session {
        struct services *services;
        TAILQ_ENTRY(session) link;              /* in services->sessions */
        struct connection *connection;          /* owned */
        struct peer peer;                       /* taken at accept */
        bool hello_done;
        enum session_quota quota;
        struct waiter *waiter;                  /* its pending WAIT (the wait table's); NULL when none */
        struct hashmap *holds;                  /* handle → struct hold */
        uint32_t n_references;                  /* the sum of every hold's count */
        struct release_queue *queue;            /* RELEASE_QUEUE's, or NULL */
        bool queue_refusing;                    /* a handle taken from the queue was not held: tell the next request */
        uint64_t queue_refused;                 /* ... which one */
        uint64_t last_request_usec;             /* when its last record was read (CLOCK_MONOTONIC), with a queue */
        bool sweeping;                          /* in services->sweeping */
        TAILQ_ENTRY(session) sweep_link;
};

/*
 * Starts serving a client on fd, an accepted socket, which the session
 * owns from then on (it is closed on failure too), with the identity the
 * kernel gives its peer (SO_PEERCRED, SO_PEERGROUPS). services is
 * borrowed. Returns 0, or -errno after logging why (-EDQUOT: its uid has
 * too many connections, and it was told so and closed). The session lives
 * in services->sessions until the client goes or session_free().
 */
int session_new(struct services *services, int fd);

/*
 * As session_new(), but with the peer's identity given: peer is taken (its
 * groups are the session's from then on, freed on failure too). For tests
 * and fuzzers that play several users over socketpairs.
 */
int session_new_with_peer(struct services *services, int fd, struct peer *peer);

/*
 * Releases every reference the session holds (freeing regions that this
 * ends), forgets its pending WAIT, and frees its transport. Accepts NULL.
 */
void session_free(struct session *s);

/*
 * Tells the client on fd (an accepted socket, taken and closed) that the
 * broker will not serve it, with error (a negative errno) and message: the
 * refusal record of PROTOCOL.md, in place of the reply to its HELLO.
 */
void session_refuse(int fd, int error, const char *message);

/* The hold on handle, or NULL when the session holds no reference to it. */
struct hold *session_get_hold(struct session *s, uint64_t handle);

/*
 * Adds one reference to r, read-write if writable. The first charges the
 * uid one hold (MFB_WIRE_RESOURCE_HOLDS); the limit per session is the caller's
 * to check. Returns 0, -ENOMEM, or the errors of quota_charge() (-EDQUOT,
 * -ENOSPC) with *ret_refused set.
 */
int session_hold(struct session *s, struct region *r, bool writable, enum mfb_wire_resource *ret_refused);

/*
 * Drops one reference to handle, a read-only one first if there are both,
 * and frees the region if that ends its life. Returns 0, or -ENOENT when
 * the session holds no reference to handle.
 */
int session_release(struct session *s, uint64_t handle);

/*
 * RELEASE_QUEUE: gives s its release queue (releasequeue.h), one of the
 * broker's --max-release-queues, and of its uid's share of them (a
 * quarter; root and the broker's uid exempt). Returns a new read-write fd
 * of the page for the client, owned by the caller; or -EEXIST (s has one),
 * -ENOSPC (the broker has as many as it may), -EDQUOT (so has s's uid),
 * -ENOMEM, or the -errno of making the page.
 */
int session_open_queue(struct session *s);

/*
 * Takes up to max entries (at most MFB_WIRE_RELEASE_QUEUE_SLOTS) of what
 * s's client wrote to its queue: each entry released as by
 * session_release(), one turn of its uid each (connection_charge()). The
 * first handle s does not hold is kept in s->queue_refused (and
 * s->queue_refusing set), for the next request to fail with, if none is
 * kept already. Returns the entries taken.
 */
size_t session_take_queue(struct session *s, size_t max);

/*
 * Entries one sweep takes in all: it runs outside every uid's turns, and
 * the clients of one uid can fill a queue each with what they do not even
 * hold. Queues left over wait for the next sweep, 5 ms on.
 */
#define SESSION_SWEEP_ENTRIES_MAX 1024U

/*
 * Takes the queues of the sessions that have sent nothing since their
 * client's window (MFB_WIRE_RELEASE_QUEUE_WINDOW_MS) passed, up to
 * SESSION_SWEEP_ENTRIES_MAX entries, and sets services->queue_sweep_fd for
 * the next sweep; run when that timer goes off.
 */
void session_sweep_queues(struct services *services);

/* w, a WAIT just started for s, is pending: s is not read until session_wait_done(). */
void session_wait(struct session *s, struct waiter *w);

/* s's WAIT was answered (the wait table let go of it already): s is read again. */
void session_wait_done(struct session *s);
