/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * One client connection: its socket, the peer's credentials, the regions
 * it holds, and the queue of replies the socket could not take yet.
 *
 * Replies go out in request order. One is sent at once when nothing is
 * queued; otherwise it waits in the queue, charged to the client's uid
 * (its bytes, and its fd if it has one): a reply the uid has no share
 * left for drops the connection, whose client was not reading. The
 * connection is not read while MFB_WIRE_REQUESTS_IN_FLIGHT_MAX replies are
 * queued, so a client that does not read its replies stalls only itself;
 * nor while its WAIT is pending, so that replies stay in request order.
 * While it is read, its requests are handled one at a time, when its uid's
 * turn comes (schedule.h).
 *
 * One edge-triggered event watches the socket for everything: readable,
 * writable, and the peer hanging up or failing. Edge-triggered, because a
 * socket that is not being read stays readable, and one whose peer closed
 * with replies unread reports an error (EPOLLERR), which libevent delivers
 * as readable and writable, not as closed: watched level-triggered, either
 * would wake the loop at once, forever. So while a connection is not read,
 * each wakeup asks the kernel whether the peer is still there, and a
 * connection never outlives its client, whatever state it is in.
 */

#include <stdbool.h>
#include <stdint.h>

#include "access.h"
#include "schedule.h"
#include "wire.h"

struct broker;
struct event;
struct hashmap;
struct region;
struct reply;
struct waiter;

/* How the connection counts against its uid's connections and fds. */
enum connection_quota {
        CONNECTION_UNCOUNTED,   /* not yet */
        CONNECTION_COUNTED,     /* charged a connection and an fd */
        CONNECTION_REFUSED,     /* over its limit or share: its first request is refused, then it is closed */
};

/* The references one connection holds to one region. */
struct hold {
        uint64_t handle;        /* the key in the connection's holds */
        struct region *region;
        uint32_t count;         /* CREATEs and OPENs not released yet */
        uint32_t writable;      /* how many of them are read-write */
};

struct connection {
        struct broker *broker;
        struct connection *prev, *next;         /* in broker->connections */
        int fd;
        struct peer peer;                       /* taken at accept */
        struct event *event;                    /* EV_READ | EV_WRITE | EV_CLOSED, edge-triggered */
        struct scheduler_entry turn;            /* its turns to have a request handled */
        bool reading;
        bool hello_done;
        bool closing;                           /* freed once its queued replies are sent */
        enum connection_quota quota;
        struct waiter *waiter;                  /* its pending WAIT, owned; NULL when none */
        struct reply *queue_head, *queue_tail;
        uint32_t n_queued;                      /* replies in the queue, each charged to the uid */
        struct hashmap *holds;                  /* handle → struct hold */
        uint32_t n_references;                  /* the sum of every hold's count */
};

/*
 * Starts serving a client on fd, an accepted socket, which the connection
 * owns from then on (it is closed on failure too), with the identity the
 * kernel gives its peer (SO_PEERCRED, SO_PEERGROUPS). Returns 0, or -errno
 * after logging why. The broker owns the connection: it lives until the
 * client goes, is dropped, or broker_free().
 */
int connection_new(struct broker *b, int fd);

/*
 * As connection_new(), but with the peer's identity given: peer is taken
 * (its groups are the connection's from then on, freed on failure too).
 * For tests and fuzzers that play several users over socketpairs.
 */
int connection_new_with_peer(struct broker *b, int fd, struct peer *peer);

/*
 * Releases every reference the connection holds (freeing regions that this
 * ends), drops its queued replies and closes its socket. Accepts NULL;
 * returns NULL.
 */
struct connection *connection_free(struct connection *c);

/*
 * Handles the next request of the connection whose turn e is (the
 * scheduler's callback), or notices that none is waiting, or that the
 * client went.
 */
void connection_serve(struct scheduler_entry *e);

/*
 * Tells the client on fd (an accepted socket, taken and closed) that the
 * broker will not serve it, with error (a negative errno) and message: the
 * refusal record of PROTOCOL.md, in place of the reply to its HELLO.
 */
void connection_refuse(int fd, int error, const char *message);

/* Logs why c is dropped, at debug level (it concerns that client only), and frees it. */
void connection_drop(struct connection *c, int error);

/*
 * Sends a reply record of len bytes (record is borrowed), at once or after
 * the replies queued before it. Returns 0, or -errno when the connection is
 * broken (or its uid has no room to queue it) and must be freed.
 */
int connection_reply(struct connection *c, const void *record, size_t len);

/*
 * As connection_reply(), with fd attached, which it takes (not -1): closed
 * once sent, or at once on failure. Every fd a client gets is one of its
 * own (a reopen), so the queue never needs a duplicate, and running out of
 * file descriptors cannot make the reply fail.
 */
int connection_reply_consume_fd(struct connection *c, const void *record, size_t len, int fd);

/*
 * As connection_reply(), with n_fds fds (up to SCM_MAX_FD) attached, which
 * stay the caller's: a copy of each is made only when the reply has to wait
 * in the queue. Returns 0; -EMFILE or -ENFILE when those copies cannot be
 * made, and then nothing was sent or queued, so the caller may still answer
 * otherwise; or another -errno when the connection is broken.
 */
int connection_reply_borrowed_fds(struct connection *c, const void *record, size_t len, const int *fds,
                                  size_t n_fds);

/* As connection_reply_consume_fd(), with n_fds fds (up to SCM_MAX_FD), each set to -1 as it is taken. */
int connection_reply_consume_fds(struct connection *c, const void *record, size_t len, int *fds, size_t n_fds);

/*
 * Reads c again if nothing stops it (a pending WAIT, a full queue, the
 * connection closing), or stops: call it when one of those changed.
 */
void connection_update_reading(struct connection *c);

/*
 * Stops reading c, which is freed once its queued replies are sent. Only
 * for the handler of one of c's requests: c is freed after it returns.
 */
void connection_close_when_sent(struct connection *c);

/* The hold on handle, or NULL when the connection holds no reference to it. */
struct hold *connection_get_hold(struct connection *c, uint64_t handle);

/*
 * Adds one reference to r, read-write if writable. The first charges c's
 * uid one hold (MFB_RESOURCE_HOLDS); the limit per connection is the
 * caller's to check. Returns 0, -ENOMEM, or the errors of quota_charge()
 * (-EDQUOT, -ENOSPC) with *ret_refused set.
 */
int connection_hold(struct connection *c, struct region *r, bool writable, enum mfb_wire_resource *ret_refused);

/*
 * Drops one reference to handle, a read-only one first if there are both,
 * and frees the region if that ends its life. Returns 0, or -ENOENT when
 * the connection holds no reference to handle.
 */
int connection_release(struct connection *c, uint64_t handle);
