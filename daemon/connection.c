/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "connection.h"
#include "fdpass.h"
#include "log.h"
#include "macro.h"
#include "quota.h"
#include "schedule.h"
#include "wire.h"

/* Unread records discarded at most before a connection that was told why is closed. */
#define RECORDS_DISCARDED_MAX 1024U

struct transport {
        struct event_base *base;
        struct quota *quota;
        /*
         * The fds sent that clients have not read, each uid's share of what
         * the kernel lets the broker have in flight (its RLIMIT_NOFILE, less
         * what it parks): MFB_WIRE_RESOURCE_FDS only.
         */
        struct quota *in_flight;
        struct scheduler *scheduler;    /* whose record is handed up next */
        void *record;                   /* MFB_WIRE_RECORD_MAX bytes: the record being handed up */
        TAILQ_HEAD(, connection) lingering;     /* freed by their owners, with fds still unread */
};

/* A record sent with fds, which the peer may not have read yet. */
struct unread {
        uint64_t start;         /* the connection's bytes_sent before it was sent */
        size_t n_fds;
};

/* A record waiting for room in the socket, with the fds it carries. */
struct outgoing {
        STAILQ_ENTRY(outgoing) link;
        size_t len;
        size_t n_fds;
        int *fds;               /* n_fds of them, owned, after the record */
        uint8_t record[];
};

struct connection {
        struct transport *transport;
        int fd;
        uid_t uid;                      /* whose turns it takes, and who pays for its queue */
        const struct connection_ops *ops;
        void *userdata;
        struct event *event;            /* EV_READ | EV_CLOSED, and EV_WRITE while watched; edge-triggered */
        bool drain_wakeups;             /* connection_set_drain_wakeups() */
        struct scheduler_entry turn;    /* its turns to have a record handed up */
        bool reading;
        bool paused;                    /* by its owner */
        bool closing;                   /* gone once its queue is sent */
        int error;                      /* < 0: failed; gone follows from the loop */
        bool told;                      /* that it is gone: nothing more happens to it */
        STAILQ_HEAD(, outgoing) queue;
        size_t n_queued;
        /*
         * The fds sent that the peer may not have read: the kernel counts
         * them against the broker's RLIMIT_NOFILE until it does, even once
         * the broker has closed its end (see connection.h). Charged to uid,
         * records oldest first, from unread_first.
         */
        uint64_t bytes_sent;            /* of every record sent on the socket */
        struct unread *unread;
        size_t unread_first, n_unread, n_unread_allocated;
        size_t fds_unread;
        bool lingering;                 /* freed by its owner: kept only until they are read */
        TAILQ_ENTRY(connection) lingering_link;
};

static void connection_serve(struct scheduler_entry *e);
static void on_event(evutil_socket_t fd, short what, void *userdata);
static int fail(struct connection *c, int error);

int transport_new(struct event_base *base, struct quota *quota, uint64_t fds_in_flight_max, uid_t exempt_uid,
                  struct transport **ret) {
        struct quota_limits limits = { .broker_max.n[MFB_WIRE_RESOURCE_FDS] = fds_in_flight_max };
        struct transport *t = calloc(1, sizeof(*t));
        int r;

        if (!t)
                return -ENOMEM;
        t->base = base;
        t->quota = quota;
        TAILQ_INIT(&t->lingering);
        for (size_t i = 0; i < MFB_WIRE_RESOURCE_COUNT; i++)
                limits.uid_max.n[i] = MFB_WIRE_LIMIT_NONE;
        t->record = malloc(MFB_WIRE_RECORD_MAX);
        r = t->record ? quota_new(&limits, exempt_uid, &t->in_flight) : -ENOMEM;
        if (r >= 0)
                r = scheduler_new(base, connection_serve, SCHEDULER_ALONE_TURNS_MAX, SCHEDULER_ALONE_USEC_MAX,
                                  &t->scheduler);
        if (r < 0) {
                transport_free(t);
                return r;
        }
        *ret = t;
        return 0;
}

static void connection_destroy(struct connection *c);

struct transport *transport_free(struct transport *t) {
        if (t) {
                /* Stopping: whatever the kernel still counts goes with the broker. */
                while (!TAILQ_EMPTY(&t->lingering))
                        connection_destroy(TAILQ_FIRST(&t->lingering));
                scheduler_free(t->scheduler);
                quota_free(t->in_flight);
                free(t->record);
                free(t);
        }
        return NULL;
}

/* What a queued record is charged to the connection's uid. */
static struct quota_amount outgoing_amount(size_t len, size_t n_fds) {
        return (struct quota_amount) { .n = {
                [MFB_WIRE_RESOURCE_QUEUED_BYTES] = sizeof(struct outgoing) + len + n_fds * sizeof(int),
                [MFB_WIRE_RESOURCE_FDS] = n_fds,
        } };
}

/* Frees q, which left c's queue, and gives back its charge. */
static void outgoing_free(struct connection *c, struct outgoing *q) {
        struct quota_amount amount = outgoing_amount(q->len, q->n_fds);

        quota_discharge(c->transport->quota, c->uid, &amount);
        c->n_queued--;
        mfb_close_fds(q->fds, q->n_fds);
        free(q);
}

/* n_fds fds, as either accounting counts them: in_flight the unread ones, quota a kept socket. */
static struct quota_amount fds_amount(size_t n_fds) {
        return (struct quota_amount) { .n = { [MFB_WIRE_RESOURCE_FDS] = n_fds } };
}

/*
 * Gives back the charge of the fds sent on c that the peer has read, as far
 * as the socket tells: what it has not read takes at least its own bytes of
 * the send buffer (SIOCOUTQ), kernel overhead on top, and records are read
 * in order, so every record that started before bytes_sent less that is
 * read. A peer that closed its end dropped them all. (Its start, not its
 * end: the kernel wakes the broker for a record read before it takes the
 * last unit of the record's charge off the count.)
 */
static void unread_refresh(struct connection *c) {
        struct quota_amount amount;
        uint64_t read_up_to;
        size_t n_read = 0;
        int outq;

        if (c->fds_unread == 0 || ioctl(c->fd, SIOCOUTQ, &outq) < 0)
                return;
        read_up_to = c->bytes_sent > (uint64_t) outq ? c->bytes_sent - (uint64_t) outq : 0;
        while (c->unread_first < c->n_unread && c->unread[c->unread_first].start < read_up_to)
                n_read += c->unread[c->unread_first++].n_fds;
        if (c->unread_first == c->n_unread)
                c->unread_first = c->n_unread = 0;
        if (n_read == 0)
                return;
        amount = fds_amount(n_read);
        quota_discharge(c->transport->in_flight, c->uid, &amount);
        c->fds_unread -= n_read;
}

/*
 * Before sending a record with n_fds fds on c: room to remember it, and
 * the charge of its fds to c's uid, from its share of the fds the broker
 * may have in flight, looking first for what the peer has read if the
 * share is used up. A client that leaves so many fds unread fails as one
 * whose queue overflows. Returns 0, or -errno, with nothing charged.
 */
static int unread_prepare(struct connection *c, size_t n_fds) {
        struct quota_amount amount = fds_amount(n_fds);
        enum mfb_wire_resource refused;
        int r;

        if (c->unread_first > 0 && c->n_unread == c->n_unread_allocated) {
                memmove(c->unread, c->unread + c->unread_first,
                        (c->n_unread - c->unread_first) * sizeof(*c->unread));
                c->n_unread -= c->unread_first;
                c->unread_first = 0;
        }
        if (GREEDY_REALLOC(c->unread, c->n_unread_allocated, c->n_unread + 1) < 0)
                return -ENOMEM;
        r = quota_charge(c->transport->in_flight, c->uid, &amount, &refused);
        if (r < 0) {
                unread_refresh(c);
                r = quota_charge(c->transport->in_flight, c->uid, &amount, &refused);
        }
        if (r < 0)
                log_debug_errno(r, "uid %u has as many fds in flight as its share allows, and does not read them",
                                c->uid);
        return r;
}

/* Undoes unread_prepare() for a record that was not sent; nothing without fds. */
static void unread_cancel(struct connection *c, size_t n_fds) {
        struct quota_amount amount = fds_amount(n_fds);

        if (n_fds > 0)
                quota_discharge(c->transport->in_flight, c->uid, &amount);
}

/* A record of len bytes with n_fds fds (charged, after unread_prepare()) went out on c. */
static void sent(struct connection *c, size_t len, size_t n_fds) {
        if (n_fds > 0) {
                c->unread[c->n_unread++] = (struct unread) { .start = c->bytes_sent, .n_fds = n_fds };
                c->fds_unread += n_fds;
        }
        c->bytes_sent += len;
}

/* Whether c's event includes EV_WRITE. */
static bool write_watched(const struct connection *c) {
        return event_get_events(c->event) & EV_WRITE;
}

/*
 * Watches c's socket for room (EV_WRITE) only while that matters: records
 * queued, a lingering c, or its owner asked for drain wake-ups. Call it when
 * one of those changed. Returns 0, or -ENOMEM with c unwatched.
 */
static int write_watch_update(struct connection *c) {
        bool want = c->drain_wakeups || c->lingering || !STAILQ_EMPTY(&c->queue);
        short events = EV_READ | EV_CLOSED | EV_ET | EV_PERSIST | (want ? EV_WRITE : 0);

        if (want == write_watched(c))
                return 0;
        /* Not pending after event_del(), so it may be assigned again. */
        (void) event_del(c->event);
        if (event_assign(c->event, c->transport->base, c->fd, events, on_event, c) < 0 ||
            event_add(c->event, NULL) < 0)
                return -ENOMEM;
        /*
         * event_del() dropped an edge this pass of the loop had yet to hand
         * over, and an edge-triggered one comes only once: look again now.
         */
        event_active(c->event, EV_READ | (want ? EV_WRITE : 0), 0);
        return 0;
}

/* As write_watch_update(), failing c if it could not. */
static void write_watch_update_or_fail(struct connection *c) {
        int r = write_watch_update(c);

        if (r < 0)
                (void) fail(c, r);
}

void connection_set_drain_wakeups(struct connection *c, bool on) {
        c->drain_wakeups = on;
        write_watch_update_or_fail(c);
}

/* Reads c again if nothing stops it, or stops: call it when one of those changed. */
static void update_reading(struct connection *c) {
        bool on = !c->paused && !c->closing && c->error == 0 && !c->told && c->n_queued < MFB_WIRE_REQUESTS_IN_FLIGHT_MAX;

        /* Edge-triggered: what arrived while c was not read raised no new edge, so look now. */
        if (on && !c->reading)
                scheduler_ready(c->transport->scheduler, &c->turn);
        else if (!on && c->reading)
                scheduler_unready(c->transport->scheduler, &c->turn);
        c->reading = on;
}

/*
 * Marks c failed with error: nothing is read or sent any more, and its
 * owner hears of it from the event loop, never from inside a caller that
 * may be answering several connections at once. Returns error.
 */
static int fail(struct connection *c, int error) {
        assert(error < 0);
        if (c->error == 0) {
                c->error = error;
                update_reading(c);
                event_active(c->event, EV_TIMEOUT, 0);
        }
        return error;
}

/* Queues a record with n_fds fds, which it takes: they are closed on failure too. */
static int queue_push(struct connection *c, const void *record, size_t len, int *fds, size_t n_fds) {
        struct quota_amount amount = outgoing_amount(len, n_fds);
        enum mfb_wire_resource refused;
        struct outgoing *q;
        size_t fds_at;
        int r;

        r = quota_charge(c->transport->quota, c->uid, &amount, &refused);
        if (r < 0) {
                mfb_close_fds(fds, n_fds);
                log_debug_errno(r, "uid %u has no room for more %s, and does not read its replies", c->uid,
                                quota_resource_name(refused));
                return fail(c, r);
        }
        /* The fds after the record, aligned for them. */
        fds_at = (len + sizeof(int) - 1) / sizeof(int) * sizeof(int);
        q = malloc(sizeof(*q) + fds_at + n_fds * sizeof(int));
        if (!q) {
                quota_discharge(c->transport->quota, c->uid, &amount);
                mfb_close_fds(fds, n_fds);
                return fail(c, -ENOMEM);
        }
        *q = (struct outgoing) { .len = len, .n_fds = n_fds, .fds = (int *) (q->record + fds_at) };
        memcpy(q->record, record, len);
        if (n_fds > 0)
                memcpy(q->fds, fds, n_fds * sizeof(int));
        /* Taken. */
        for (size_t i = 0; i < n_fds; i++)
                fds[i] = -1;

        STAILQ_INSERT_TAIL(&c->queue, q, link);
        c->n_queued++;
        update_reading(c);
        write_watch_update_or_fail(c);
        return 0;
}

/* Why nothing can be sent on c any more, or 0. */
static int broken(const struct connection *c) {
        return c->error < 0 ? c->error : c->told ? -ENOTCONN : 0;
}

/*
 * Sends a record with its fds charged as unread (unread_prepare()), or
 * nothing charged if it does not go. Returns 0, -EAGAIN when the socket is
 * full, or the -errno that breaks c, which the caller acts on.
 */
static int send_charged(struct connection *c, const void *record, size_t len, const int *fds, size_t n_fds) {
        int r = n_fds > 0 ? unread_prepare(c, n_fds) : 0;

        if (r < 0)
                return r;
        r = mfb_record_send(c->fd, record, len, fds, n_fds, MSG_DONTWAIT);
        if (r < 0) {
                unread_cancel(c, n_fds);
                return r;
        }
        sent(c, len, n_fds);
        return 0;
}

/*
 * Sends a record at once, nothing being queued before it. Returns 0 when it
 * went, -EAGAIN when the socket is full (to be queued), or the -errno that
 * failed c.
 */
static int send_now(struct connection *c, const void *record, size_t len, const int *fds, size_t n_fds) {
        int r = send_charged(c, record, len, fds, n_fds);

        return r == 0 || r == -EAGAIN ? r : fail(c, r);
}

int connection_send(struct connection *c, const void *record, size_t len) {
        return connection_send_consume_fds(c, record, len, NULL, 0);
}

int connection_send_consume_fds(struct connection *c, const void *record, size_t len, int *fds, size_t n_fds) {
        int r;

        r = broken(c);
        if (r < 0) {
                mfb_close_fds(fds, n_fds);
                return r;
        }
        if (STAILQ_EMPTY(&c->queue)) {
                r = send_now(c, record, len, fds, n_fds);
                if (r != -EAGAIN) {
                        /* Sent, the kernel holds its own references; or failed, and they go with the connection. */
                        mfb_close_fds(fds, n_fds);
                        return r;
                }
        }
        return queue_push(c, record, len, fds, n_fds);
}

int connection_send_borrowed_fds(struct connection *c, const void *record, size_t len, const int *fds,
                                 size_t n_fds) {
        int copies[MFB_FDS_RECV_MAX];
        int r;

        assert(n_fds <= MFB_FDS_RECV_MAX);
        r = broken(c);
        if (r < 0)
                return r;
        if (STAILQ_EMPTY(&c->queue)) {
                r = send_now(c, record, len, fds, n_fds);
                if (r != -EAGAIN)
                        return r;
        }
        /* To be queued: the queue owns what it holds. */
        for (size_t i = 0; i < n_fds; i++) {
                copies[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
                if (copies[i] < 0) {
                        r = negative_errno();
                        mfb_close_fds(copies, i);
                        return r;
                }
        }
        return queue_push(c, record, len, copies, n_fds);
}

void connection_abort(struct connection *c, int error) {
        (void) fail(c, error);
}

void connection_pause(struct connection *c, bool paused) {
        c->paused = paused;
        update_reading(c);
}

void connection_close_when_sent(struct connection *c) {
        c->closing = true;
        update_reading(c);
        /* Nothing to send: it is gone from the next pass of the loop, whoever asked, wherever. */
        if (STAILQ_EMPTY(&c->queue))
                event_active(c->event, EV_WRITE, 0);
}

void connection_charge(struct connection *c, unsigned turns) {
        scheduler_charge(c->transport->scheduler, &c->turn, turns);
}

size_t connection_queued(const struct connection *c) {
        return c->n_queued;
}

uint64_t connection_fds_sendable(struct connection *c) {
        unread_refresh(c);
        return quota_available(c->transport->in_flight, c->uid, MFB_WIRE_RESOURCE_FDS);
}

uint64_t transport_fds_in_flight(const struct transport *t, uid_t uid) {
        return quota_held(t->in_flight, uid, MFB_WIRE_RESOURCE_FDS);
}

/* Sends queued records until the socket is full. Returns 0, or -errno when the connection is broken. */
static int queue_flush(struct connection *c) {
        struct outgoing *q;

        while ((q = STAILQ_FIRST(&c->queue))) {
                int r = send_charged(c, q->record, q->len, q->fds, q->n_fds);

                if (r == -EAGAIN)
                        break;
                if (r < 0)
                        return r;
                STAILQ_REMOVE_HEAD(&c->queue, link);
                outgoing_free(c, q);
        }
        update_reading(c);
        write_watch_update_or_fail(c);
        return 0;
}

/* Tells the owner, once, that c is gone. c must not be touched after: the owner may have freed it. */
static void gone(struct connection *c, int error) {
        if (c->told)
                return;
        c->told = true;
        c->reading = false;
        scheduler_unready(c->transport->scheduler, &c->turn);
        c->ops->gone(c, error, c->userdata);
}

/* Reads and drops up to max records waiting on c, and any fds they carry. */
static void discard_input(struct connection *c, size_t max) {
        int fds[MFB_FDS_RECV_MAX];
        size_t nfds;

        for (size_t i = 0; i < max; i++) {
                if (mfb_record_recv(c->fd, c->transport->record, MFB_WIRE_RECORD_MAX, fds, &nfds, MSG_DONTWAIT) <= 0)
                        break;
                mfb_close_fds(fds, nfds);
        }
}

/* Discards what the client sent after its last answered record, then tells the owner. */
static void close_answered(struct connection *c) {
        discard_input(c, RECORDS_DISCARDED_MAX);
        gone(c, 0);
}

/*
 * Whether the peer hung up, shut down its sending side, or the socket
 * failed: asked of the kernel, since the event that woke us cannot tell an
 * error from data waiting (see connection.h).
 */
static bool peer_gone(const struct connection *c) {
        struct pollfd p = { .fd = c->fd, .events = POLLRDHUP };

        return poll(&p, 1, 0) != 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static void connection_serve(struct scheduler_entry *e) {
        struct connection *c = container_of(e, struct connection, turn);
        int fds[MFB_FDS_RECV_MAX];
        size_t nfds = 0;
        ssize_t n;

        n = mfb_record_recv(c->fd, c->transport->record, MFB_WIRE_RECORD_MAX, fds, &nfds, MSG_DONTWAIT);
        /* Read still, but nothing is waiting: the next edge makes it ready again. */
        if (n == -EAGAIN) {
                scheduler_unready(c->transport->scheduler, &c->turn);
                return;
        }
        if (n <= 0) {
                gone(c, (int) n);
                return;
        }
        /* No record carries fds to the broker; the owner refuses it. */
        mfb_close_fds(fds, nfds);
        /* Not woken when the peer reads: what it read of its replies is given back as it asks again. */
        if (!write_watched(c))
                unread_refresh(c);
        c->ops->record(c, c->transport->record, (size_t) n, nfds, c->userdata);

        if (c->error < 0)
                return;         /* gone follows from the loop */
        if (c->closing && STAILQ_EMPTY(&c->queue)) {
                close_answered(c);
                return;
        }
        /*
         * Paused by what it read (a WAIT, a full queue): a hangup that came
         * with the edge that made it ready will raise no other, so look now.
         */
        if (!c->reading && peer_gone(c))
                gone(c, -ECONNRESET);
}

static void on_event(evutil_socket_t fd, short what, void *userdata) {
        struct connection *c = userdata;
        int r;

        /* Whatever woke it, the peer may have read or dropped what it was sent. */
        if (c->lingering) {
                unread_refresh(c);
                if (c->fds_unread == 0)
                        connection_destroy(c);
                return;
        }
        if (c->told)
                return;         /* its owner frees it later */
        if (c->error < 0) {
                gone(c, c->error);
                return;
        }
        /* Room in the socket: the peer read something. */
        if (what & EV_WRITE)
                unread_refresh(c);
        if ((what & EV_WRITE) && !STAILQ_EMPTY(&c->queue)) {
                r = queue_flush(c);
                if (r < 0) {
                        gone(c, r);
                        return;
                }
        }
        if (c->closing && STAILQ_EMPTY(&c->queue)) {
                close_answered(c);
                return;
        }
        /* Its records wait for their turn (schedule.h); a hangup is seen when reading comes to it. */
        if (c->reading) {
                if (what & (EV_READ | EV_CLOSED))
                        scheduler_ready(c->transport->scheduler, &c->turn);
                return;
        }
        /* Not read now (paused, a full queue, closing): the peer may be gone all the same. */
        if ((what & (EV_READ | EV_CLOSED)) && peer_gone(c))
                gone(c, -ECONNRESET);
}

/*
 * A SOCK_SEQPACKET record larger than the socket's send buffer cannot be
 * sent at all (EMSGSIZE): make room for the largest reply, whatever
 * net.core.wmem_default says. And no more: the replies a client has not
 * read wait in that buffer, with their fds in flight, which the kernel
 * counts against the broker's RLIMIT_NOFILE together with the parked
 * memfds of named regions (park.h). So a uid that never reads holds at
 * most 128 KiB of replies in flight per connection, one fd in each of a
 * few hundred bytes (each costs the buffer about 1 KiB), rather than what
 * net.core.wmem_default would let it.
 */
static void set_send_buffer(int fd) {
        int want = MFB_WIRE_RECORD_MAX;

        /* The kernel doubles it, for its own overhead: room for one record of MFB_WIRE_RECORD_MAX and more. */
        if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof(want)) < 0)
                log_warning_errno(errno, "Failed to size a socket's send buffer for the largest reply: %m");
}

int connection_new(struct transport *t, int fd, uid_t uid, const struct connection_ops *ops, void *userdata,
                   struct connection **ret) {
        struct connection *c;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c) {
                safe_close(fd);
                return -ENOMEM;
        }
        *c = (struct connection) {
                .transport = t,
                .fd = fd,
                .uid = uid,
                .ops = ops,
                .userdata = userdata,
                .drain_wakeups = true,
        };
        STAILQ_INIT(&c->queue);
        set_send_buffer(fd);

        c->event = event_new(t->base, fd, EV_READ | EV_WRITE | EV_CLOSED | EV_ET | EV_PERSIST, on_event, c);
        r = c->event && event_add(c->event, NULL) >= 0 ? 0 : -ENOMEM;
        if (r >= 0)
                r = scheduler_join(t->scheduler, &c->turn, uid);
        if (r < 0) {
                connection_free(c);
                return r;
        }
        update_reading(c);
        *ret = c;
        return 0;
}

/* Closes c's socket and frees it, with the charge of the fds it sent, and of the socket if it was kept. */
static void connection_destroy(struct connection *c) {
        struct quota_amount amount = fds_amount(c->fds_unread), socket = fds_amount(1);

        if (c->lingering) {
                TAILQ_REMOVE(&c->transport->lingering, c, lingering_link);
                quota_discharge(c->transport->quota, c->uid, &socket);
        }
        if (c->fds_unread > 0)
                quota_discharge(c->transport->in_flight, c->uid, &amount);
        if (c->event)
                event_free(c->event);
        safe_close(c->fd);
        free(c->unread);
        free(c);
}

void connection_free(struct connection *c) {
        struct outgoing *q;

        if (!c)
                return;
        scheduler_leave(c->transport->scheduler, &c->turn);
        while ((q = STAILQ_FIRST(&c->queue))) {
                STAILQ_REMOVE_HEAD(&c->queue, link);
                outgoing_free(c, q);
        }
        /*
         * Fds the peer has not read stay counted against the broker's
         * RLIMIT_NOFILE after its end is closed, for as long as the peer
         * keeps them unread, and only the socket can tell when that ends:
         * kept until it does, still charged to the uid. To the peer it is
         * closed all the same: shut down both ways (it reads what it was
         * sent, then end of file), what it sent and was not read dropped.
         */
        unread_refresh(c);
        if (c->fds_unread > 0 && c->event) {
                struct quota_amount socket = fds_amount(1);
                enum mfb_wire_resource refused;

                /* The socket is one of the broker's fds, which its uid pays for while it is kept. */
                if (quota_charge(c->transport->quota, c->uid, &socket, &refused) >= 0) {
                        (void) shutdown(c->fd, SHUT_RDWR);
                        discard_input(c, SIZE_MAX);
                        c->lingering = true;
                        TAILQ_INSERT_TAIL(&c->transport->lingering, c, lingering_link);
                        /* Unwatched, it lingers until the broker stops, still charged: no worse than unread. */
                        if (write_watch_update(c) < 0)
                                log_warning("Out of memory: a closed connection's socket is kept until the "
                                            "broker stops");
                        return;
                }
                /*
                 * No room to keep it: closed, and its fds stay charged in
                 * flight to the uid for as long as the broker runs, since the
                 * kernel may count them that long and nothing can tell when
                 * it stops. Only a uid that leaves fds unread and has used
                 * up its share of the broker's fds comes to that.
                 */
                log_debug("uid %u has no room for more %s: a connection it left %zu fds unread is closed, and "
                          "they stay charged", c->uid, quota_resource_name(refused), c->fds_unread);
                c->fds_unread = 0;
        }
        connection_destroy(c);
}
