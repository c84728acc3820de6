/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The transport: one client's socket, its libevent event, the queue of
 * records the socket could not take yet, and its turns at being read. It
 * knows records and fds, not what they mean: each complete record goes up
 * to the connection's owner through ops->record, and anything that ends the
 * connection (the peer hanging up, a broken socket, a failed send) through
 * ops->gone, after which the owner frees it. In that it is libwayland's
 * wl_connection and dbus-broker's connection.c: the owner (daemon/session.c)
 * pulls nothing up from here and the transport calls nothing above it.
 *
 * Records go out in the order they are sent. One is sent at once when
 * nothing is queued; otherwise it waits in the queue, charged to the
 * connection's uid (its bytes, and its fds): a record the uid has no share
 * left for fails the connection, whose client was not reading. The
 * connection is not read while MFB_WIRE_REQUESTS_IN_FLIGHT_MAX records are
 * queued unsent, so a client that does not read its replies stalls only
 * itself; nor while its owner paused it (a pending WAIT), so that replies
 * stay in request order. While it is read, its records are handed up one
 * at a time, when its uid's turn comes (schedule.h).
 *
 * One edge-triggered event watches the socket for everything: readable,
 * writable, and the peer hanging up or failing. Edge-triggered, because a
 * socket that is not being read stays readable, and one whose peer closed
 * with replies unread reports an error (EPOLLERR), which libevent delivers
 * as readable and writable, not as closed: watched level-triggered, either
 * would wake the loop at once, forever. So while a connection is not read,
 * each wakeup asks the kernel whether the peer is still there, and a
 * connection never outlives its client, whatever state it is in.
 *
 * Fds sent stay in flight until the client reads them, and the kernel
 * counts them against the broker's RLIMIT_NOFILE (ETOOMANYREFS past it,
 * for every client, unless the broker has CAP_SYS_RESOURCE), even after
 * the broker closed its end, for as long as the client keeps them unread.
 * So each is charged to the connection's uid, from its share of the fds
 * the broker may have in flight, until the socket says it was read
 * (SIOCOUTQ): a client that leaves more unread than its share fails as one
 * whose queue overflows, and a connection freed with fds unread keeps its
 * socket and its charge until they are read or dropped; the socket charged
 * as one of the uid's fds (quota), or, without room for it, closed, the
 * fds then charged in flight for as long as the broker runs.
 *
 * A failure never frees a connection from under a caller: a send that
 * fails marks the connection failed and stops reading it, and ops->gone
 * comes later, from the event loop. So a handler may send to any number of
 * connections (answering WAITs) without any of them going away meanwhile.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct connection;
struct event_base;
struct quota;
struct transport;

struct connection_ops {
        /*
         * A record of len bytes came (record is borrowed until the call
         * returns) with nfds fds, which the transport closed already: no
         * request carries fds. The callee answers with connection_send*().
         * It must not free c; to end c it calls connection_close_when_sent().
         */
        void (*record)(struct connection *c, const void *record, size_t len, size_t nfds, void *userdata);
        /*
         * c ended: the peer closed (error 0) or hung up, its socket failed, a
         * send failed, or it was closed once its records were sent. c is not
         * read or written again; the owner must free it with
         * connection_free(), in this call or later.
         */
        void (*gone)(struct connection *c, int error, void *userdata);
};

/*
 * Returns 0 and the transport's shared parts: the event loop (base), the
 * fair turns between uids (schedule.h), the accounting that queued records
 * are charged to (quota), both borrowed; the accounting of fds in flight,
 * fds_in_flight_max of them for all uids, shared fairly but for root and
 * exempt_uid (as in quota.h); and the buffer a record is read into. Or
 * -ENOMEM.
 */
int transport_new(struct event_base *base, struct quota *quota, uint64_t fds_in_flight_max, uid_t exempt_uid,
                  struct transport **ret);

/*
 * Frees t, and the connections it kept for their unread fds; no other
 * connection may use it any more. Accepts NULL; returns NULL.
 */
struct transport *transport_free(struct transport *t);

/*
 * How many fds a record sent on c now could carry without going beyond
 * its uid's share in flight (what the client read given back first): for
 * a request whose reply carries many, to refuse it rather than fail c.
 */
uint64_t connection_fds_sendable(struct connection *c);

/* The fds sent to uid's connections, live or kept, that may be unread: what uid is charged in flight. */
uint64_t transport_fds_in_flight(const struct transport *t, uid_t uid);

/*
 * Starts reading fd, an accepted socket, which the connection owns from
 * then on (it is closed on failure too), taking turns as one of uid's and
 * charging its queued records to uid. ops and userdata are borrowed for
 * its life. Reading starts at once: the first record may be handed up from
 * the next turn of the event loop. Returns 0 or -ENOMEM.
 */
int connection_new(struct transport *t, int fd, uid_t uid, const struct connection_ops *ops, void *userdata,
                   struct connection **ret);

/*
 * Stops everything, drops the queued records and closes the socket; or,
 * while the client holds fds it was sent unread, keeps the socket (and
 * their charge) until it reads or drops them, or the transport is freed,
 * if the uid has room for one more fd; the socket shut down both ways.
 * The owner is done with c either way. Accepts NULL.
 */
void connection_free(struct connection *c);

/*
 * Sends record (len bytes, borrowed), at once or after the records queued
 * before it. Returns 0, or -errno when c failed (ops->gone follows from
 * the event loop; nothing more can be sent on it).
 */
int connection_send(struct connection *c, const void *record, size_t len);

/*
 * As connection_send(), with n_fds fds (up to SCM_MAX_FD) attached, which
 * it takes: closed once sent, or at once on failure, and each set to -1 as
 * it is taken. Every fd a client gets from a reopen is one of its own, so
 * the queue never needs a copy and running out of fds cannot fail it.
 */
int connection_send_consume_fds(struct connection *c, const void *record, size_t len, int *fds, size_t n_fds);

/*
 * As connection_send(), with n_fds fds (up to SCM_MAX_FD) attached, which
 * stay the caller's: a copy of each is made only when the record has to
 * wait in the queue. Returns 0; -EMFILE or -ENFILE when those copies cannot
 * be made, and then nothing was sent or queued and c is fine, so the caller
 * may still answer otherwise; or -errno when c failed.
 */
int connection_send_borrowed_fds(struct connection *c, const void *record, size_t len, const int *fds,
                                 size_t n_fds);

/*
 * Ends c unanswered, as a failed send does: nothing more is read or sent,
 * and its owner is told it is gone, with error, from the event loop.
 */
void connection_abort(struct connection *c, int error);

/*
 * Pauses reading c (paused) or resumes it: its owner's business, such as a
 * pending WAIT, whose reply must come before those of later requests. A
 * hangup is noticed while paused too.
 */
void connection_pause(struct connection *c, bool paused);

/*
 * Stops reading c, whose owner is told it is gone (error 0) once its
 * queued records are sent. What the client sent after is read and dropped
 * first: closing a socket with unread data makes the kernel report
 * ECONNRESET to the peer before the reply it has yet to read.
 */
void connection_close_when_sent(struct connection *c);

/*
 * Whether the broker is woken when c's peer reads what it was sent, with
 * nothing queued for it (on at first). Such a wake-up only gives back the
 * in-flight charge of the fds the peer read, at once: without it, when the
 * peer next sends a record. Turn it off for a peer bound to send again
 * right after reading, which the wake-up would only preempt on a shared
 * CPU (docs/PERFORMANCE.md); leave it on where a peer may fall quiet with
 * its charge stale. Woken or not, the broker is woken for room in the
 * socket while records wait in c's queue, and while a freed c lingers on
 * fds its peer has not read.
 */
void connection_set_drain_wakeups(struct connection *c, bool on);

/*
 * The record being handled costs as much as turns ordinary ones (a batch),
 * or work done for c outside its turns does (a WAIT answered, a release
 * queue swept): see scheduler_charge().
 */
void connection_charge(struct connection *c, unsigned turns);

/* How many records wait in c's queue, unsent. */
size_t connection_queued(const struct connection *c);
