/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "broker.h"
#include "connection.h"
#include "codec.h"
#include "fdpass.h"
#include "hashmap.h"
#include "log.h"
#include "macro.h"
#include "notify.h"
#include "persist.h"
#include "quota.h"
#include "region.h"
#include "request.h"
#include "schedule.h"
#include "wait.h"
#include "wire.h"

/* Unread records discarded at most before a connection that was told why is closed. */
#define RECORDS_DISCARDED_MAX 1024U

/* What a region a connection holds is charged to its uid, however many references it has. */
static const struct quota_amount hold_amount = { .n = { [MFB_RESOURCE_HOLDS] = 1 } };

/* What a connection is charged to its uid: itself, and its socket. */
static const struct quota_amount connection_amount = { .n = {
        [MFB_RESOURCE_CONNECTIONS] = 1,
        [MFB_RESOURCE_FDS] = 1,
} };

struct reply {
        struct reply *next;
        size_t len;
        size_t n_fds;
        int *fds;               /* n_fds of them, owned, after the record */
        uint8_t record[];
};

/* What a queued reply is charged to the connection's uid. */
static struct quota_amount reply_amount(size_t len, size_t n_fds) {
        return (struct quota_amount) { .n = {
                [MFB_RESOURCE_QUEUED_BYTES] = sizeof(struct reply) + len + n_fds * sizeof(int),
                [MFB_RESOURCE_FDS] = n_fds,
        } };
}

/* Frees q, which left c's queue, and gives back its charge. */
static void reply_free(struct connection *c, struct reply *q) {
        struct quota_amount amount = reply_amount(q->len, q->n_fds);

        quota_discharge(c->broker->quota, c->peer.creds.uid, &amount);
        c->n_queued--;
        mfb_close_fds(q->fds, q->n_fds);
        free(q);
}

void connection_update_reading(struct connection *c) {
        bool on = !c->waiter && !c->closing && c->n_queued < MFB_WIRE_REQUESTS_IN_FLIGHT_MAX;

        /* Edge-triggered: what arrived while c was not read raised no new edge, so look now. */
        if (on && !c->reading)
                scheduler_ready(c->broker->scheduler, &c->turn);
        else if (!on && c->reading)
                scheduler_unready(c->broker->scheduler, &c->turn);
        c->reading = on;
}

/* Queues a reply with n_fds fds, which it takes: they are closed on failure too. */
static int queue_push(struct connection *c, const void *record, size_t len, int *fds, size_t n_fds) {
        struct quota_amount amount = reply_amount(len, n_fds);
        enum mfb_wire_resource refused;
        struct reply *q;
        size_t fds_at;
        int r;

        r = quota_charge(c->broker->quota, c->peer.creds.uid, &amount, &refused);
        if (r < 0) {
                mfb_close_fds(fds, n_fds);
                return log_debug_errno(r, "uid %u has no room for more %s, and pid %d does not read its replies",
                                       c->peer.creds.uid, quota_resource_name(refused), (int) c->peer.creds.pid);
        }
        /* The fds after the record, aligned for them. */
        fds_at = (len + sizeof(int) - 1) / sizeof(int) * sizeof(int);
        q = malloc(sizeof(*q) + fds_at + n_fds * sizeof(int));
        if (!q) {
                quota_discharge(c->broker->quota, c->peer.creds.uid, &amount);
                mfb_close_fds(fds, n_fds);
                return -ENOMEM;
        }
        *q = (struct reply) { .len = len, .n_fds = n_fds, .fds = (int *) (q->record + fds_at) };
        memcpy(q->record, record, len);
        if (n_fds > 0)
                memcpy(q->fds, fds, n_fds * sizeof(int));
        /* Taken. */
        for (size_t i = 0; i < n_fds; i++)
                fds[i] = -1;

        if (c->queue_tail)
                c->queue_tail->next = q;
        else
                c->queue_head = q;
        c->queue_tail = q;
        c->n_queued++;
        connection_update_reading(c);
        return 0;
}

static int send_record(struct connection *c, const void *record, size_t len, const int *fds, size_t n_fds) {
        return mfb_record_send(c->fd, record, len, fds, n_fds, MSG_DONTWAIT);
}

int connection_reply(struct connection *c, const void *record, size_t len) {
        return connection_reply_consume_fds(c, record, len, NULL, 0);
}

int connection_reply_consume_fd(struct connection *c, const void *record, size_t len, int fd) {
        return connection_reply_consume_fds(c, record, len, &fd, 1);
}

int connection_reply_consume_fds(struct connection *c, const void *record, size_t len, int *fds, size_t n_fds) {
        int r;

        if (!c->queue_head) {
                r = send_record(c, record, len, fds, n_fds);
                if (r != -EAGAIN) {
                        /* Sent, the kernel holds its own references; or failed, and they go with the connection. */
                        mfb_close_fds(fds, n_fds);
                        return r;
                }
        }
        return queue_push(c, record, len, fds, n_fds);
}

int connection_reply_borrowed_fds(struct connection *c, const void *record, size_t len, const int *fds,
                                  size_t n_fds) {
        int copies[MFB_FDS_RECV_MAX];
        int r;

        assert(n_fds <= MFB_FDS_RECV_MAX);
        if (!c->queue_head) {
                r = send_record(c, record, len, fds, n_fds);
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

void connection_close_when_sent(struct connection *c) {
        c->closing = true;
        connection_update_reading(c);
}

/* Sends queued replies until the socket is full. Returns 0, or -errno when the connection is broken. */
static int queue_flush(struct connection *c) {
        while (c->queue_head) {
                struct reply *q = c->queue_head;
                int r;

                r = send_record(c, q->record, q->len, q->fds, q->n_fds);
                if (r == -EAGAIN)
                        break;
                if (r < 0)
                        return r;
                c->queue_head = q->next;
                if (!c->queue_head)
                        c->queue_tail = NULL;
                reply_free(c, q);
        }
        connection_update_reading(c);
        return 0;
}

void connection_drop(struct connection *c, int error) {
        log_debug_errno(error, "Dropping the connection of pid %d uid %u: %m", (int) c->peer.creds.pid,
                        c->peer.creds.uid);
        connection_free(c);
}

/*
 * Frees a closing connection whose replies are sent. What the client sent
 * after its last answered request is read and discarded first: closing a
 * socket with unread data makes the kernel report ECONNRESET to the peer
 * before the reply it has yet to read.
 */
static void close_answered(struct connection *c) {
        int fds[MFB_FDS_RECV_MAX];
        size_t nfds;

        for (unsigned i = 0; i < RECORDS_DISCARDED_MAX; i++) {
                if (mfb_record_recv(c->fd, c->broker->record, MFB_WIRE_RECORD_MAX, fds, &nfds, MSG_DONTWAIT) <= 0)
                        break;
                mfb_close_fds(fds, nfds);
        }
        log_debug("Closing the connection of pid %d uid %u, which was told why", (int) c->peer.creds.pid,
                  c->peer.creds.uid);
        connection_free(c);
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

/*
 * Reads and handles one record. Returns 1, 0 when the peer closed the
 * connection, -EAGAIN when no record is waiting, or another -errno to drop
 * the connection.
 */
static int read_one(struct connection *c) {
        int fds[MFB_FDS_RECV_MAX];
        size_t nfds = 0;
        ssize_t n;
        int r;

        n = mfb_record_recv(c->fd, c->broker->record, MFB_WIRE_RECORD_MAX, fds, &nfds, MSG_DONTWAIT);
        if (n <= 0)
                return (int) n;
        /* Requests never carry fds in version 1; request_handle() refuses the request. */
        mfb_close_fds(fds, nfds);
        r = request_handle(c, c->broker->record, (size_t) n, nfds);
        return r < 0 ? r : 1;
}

void connection_serve(struct scheduler_entry *e) {
        struct connection *c = container_of(e, struct connection, turn);
        int r;

        r = read_one(c);
        if (r == -EAGAIN) {
                scheduler_unready(c->broker->scheduler, &c->turn);
                return;
        }
        if (r == 0) {
                log_debug("Connection of pid %d uid %u closed", (int) c->peer.creds.pid, c->peer.creds.uid);
                connection_free(c);
                return;
        }
        if (r < 0) {
                connection_drop(c, r);
                return;
        }
        notifier_status_changed(c->broker->notifier);
        if (c->closing && !c->queue_head) {
                close_answered(c);
                return;
        }
        /*
         * Paused by what it read (a WAIT, a full queue): a hangup that came
         * with the edge that made it ready will raise no other, so look now.
         */
        if (!c->reading && peer_gone(c)) {
                log_debug("Connection of pid %d uid %u closed%s", (int) c->peer.creds.pid, c->peer.creds.uid,
                          c->waiter ? " while its WAIT was pending" : " while it was not read");
                connection_free(c);
        }
}

static void on_event(evutil_socket_t fd, short what, void *userdata) {
        struct connection *c = userdata;
        int r;

        if ((what & EV_WRITE) && c->queue_head) {
                r = queue_flush(c);
                if (r < 0) {
                        connection_drop(c, r);
                        return;
                }
        }
        if (c->closing && !c->queue_head) {
                close_answered(c);
                return;
        }
        /* Its requests wait for their turn (schedule.h); a hangup is seen when reading comes to it. */
        if (c->reading) {
                if (what & (EV_READ | EV_CLOSED))
                        scheduler_ready(c->broker->scheduler, &c->turn);
                return;
        }
        /* Not read now (a pending WAIT, a full queue, closing): the peer may be gone all the same. */
        if ((what & (EV_READ | EV_CLOSED)) && peer_gone(c)) {
                log_debug("Connection of pid %d uid %u closed%s", (int) c->peer.creds.pid, c->peer.creds.uid,
                          c->waiter ? " while its WAIT was pending" : " while it was not read");
                connection_free(c);
        }
}

void connection_refuse(int fd, int error, const char *message) {
        struct {
                struct mfb_wire_header header;
                char message[MFB_WIRE_ERROR_MESSAGE_MAX];
        } rec;
        size_t len = strnlen(message, sizeof(rec.message)), nfds;
        int fds[MFB_FDS_RECV_MAX];
        uint8_t buf[sizeof(struct mfb_wire_header) + sizeof(struct mfb_wire_hello_request)];

        /* The answer to the HELLO it sends or has sent: cookie 0, since there is no request to take one from. */
        mfb_wire_header_init(&rec.header, MFB_OP_HELLO | MFB_WIRE_REPLY, 0, error, 0,
                             (uint32_t) (sizeof(rec.header) + len));
        memcpy(rec.message, message, len);
        (void) mfb_record_send(fd, &rec, sizeof(rec.header) + len, NULL, 0, MSG_DONTWAIT);
        /* Closing with a request unread would make the kernel report ECONNRESET before our answer. */
        while (mfb_record_recv(fd, buf, sizeof(buf), fds, &nfds, MSG_DONTWAIT) > 0)
                mfb_close_fds(fds, nfds);
        safe_close(fd);
}

/*
 * Charges c to its uid: a connection and an fd. Returns 0, or -EDQUOT to
 * close it at once: it is over its limit or share, and its uid has too
 * many refused connections waiting to be told so already.
 */
static int count_connection(struct connection *c) {
        int r;

        r = quota_charge(c->broker->quota, c->peer.creds.uid, &connection_amount, NULL);
        if (r >= 0) {
                c->quota = CONNECTION_COUNTED;
                return 0;
        }
        if (r == -ENOMEM)
                return log_error_errno(r, "Failed to count the connection of pid %d: %m", (int) c->peer.creds.pid);
        r = quota_add_refused(c->broker->quota, c->peer.creds.uid);
        if (r < 0)
                return log_debug_errno(r, "Closing a connection of uid %u at once: it has too many refused "
                                       "connections waiting already", c->peer.creds.uid);
        c->quota = CONNECTION_REFUSED;
        return 0;
}

int connection_new(struct broker *b, int fd) {
        struct peer peer;
        int r;

        /* The peer's identity as of connect(), before it can do anything else. */
        r = peer_get(fd, &peer);
        if (r < 0) {
                safe_close(fd);
                return log_error_errno(r, "Failed to read the credentials of a new connection: %m");
        }
        return connection_new_with_peer(b, fd, &peer);
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

int connection_new_with_peer(struct broker *b, int fd, struct peer *peer) {
        struct connection *c;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c) {
                peer_done(peer);
                safe_close(fd);
                return log_error_errno(ENOMEM, "Failed to accept a connection: %m");
        }
        c->broker = b;
        c->fd = fd;
        c->peer = *peer;
        set_send_buffer(fd);
        *peer = (struct peer) {};
        c->next = b->connections;
        if (c->next)
                c->next->prev = c;
        b->connections = c;
        b->n_connections++;
        notifier_status_changed(b->notifier);

        r = hashmap_new(&hashmap_u64_ops, &c->holds);
        if (r >= 0) {
                c->event = event_new(b->base, fd, EV_READ | EV_WRITE | EV_CLOSED | EV_ET | EV_PERSIST, on_event, c);
                if (!c->event || event_add(c->event, NULL) < 0)
                        r = -ENOMEM;
        }
        if (r >= 0)
                r = scheduler_join(b->scheduler, &c->turn, c->peer.creds.uid);
        if (r < 0) {
                log_error_errno(r, "Failed to set up the connection of pid %d: %m", (int) c->peer.creds.pid);
                connection_free(c);
                return r;
        }
        r = count_connection(c);
        if (r == -EDQUOT) {
                char message[MFB_WIRE_ERROR_MESSAGE_MAX + 1];
                int refused_fd = c->fd;

                /* Told, as one that finds the broker out of fds is; no request of its is ever read. */
                snprintf(message, sizeof(message), "uid %u has too many connections, and too many refused ones "
                         "waiting to be told so", c->peer.creds.uid);
                c->fd = -1;
                connection_free(c);
                connection_refuse(refused_fd, r, message);
                return r;
        }
        if (r < 0) {
                connection_free(c);
                return r;
        }
        connection_update_reading(c);

        log_debug("New connection of pid %d uid %u gid %u, %zu supplementary groups%s", (int) c->peer.creds.pid,
                  c->peer.creds.uid, c->peer.creds.gid, c->peer.n_groups,
                  c->quota == CONNECTION_REFUSED ? ", over the connection limit" : "");
        return 0;
}

static void release_all(struct connection *c) {
        uint64_t now = region_now();
        void *v;

        for (size_t i = 0; hashmap_iterate(c->holds, &i, &v);) {
                struct hold *h = v;

                region_touched(c->broker->regions, h->region, c->peer.creds.pid, REGION_DETACHED, now);
                region_drop_holder(c->broker->regions, h->region);
                quota_discharge(c->broker->quota, c->peer.creds.uid, &hold_amount);
                free(h);
        }
}

struct connection *connection_free(struct connection *c) {
        if (!c)
                return NULL;

        if (c->prev)
                c->prev->next = c->next;
        else
                c->broker->connections = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->broker->n_connections--;
        notifier_status_changed(c->broker->notifier);

        scheduler_leave(c->broker->scheduler, &c->turn);
        wait_forget(c);
        if (c->holds) {
                release_all(c);
                hashmap_free(c->holds);
        }
        while (c->queue_head) {
                struct reply *q = c->queue_head;

                c->queue_head = q->next;
                reply_free(c, q);
        }
        if (c->event)
                event_free(c->event);
        if (c->quota == CONNECTION_COUNTED)
                quota_discharge(c->broker->quota, c->peer.creds.uid, &connection_amount);
        else if (c->quota == CONNECTION_REFUSED)
                quota_remove_refused(c->broker->quota, c->peer.creds.uid);
        peer_done(&c->peer);
        safe_close(c->fd);
        free(c);
        return NULL;
}

struct hold *connection_get_hold(struct connection *c, uint64_t handle) {
        return hashmap_get(c->holds, &handle);
}

int connection_hold(struct connection *c, struct region *r, bool writable, enum mfb_wire_resource *ret_refused) {
        struct hold *h = connection_get_hold(c, r->handle);
        int k;

        if (!h) {
                k = quota_charge(c->broker->quota, c->peer.creds.uid, &hold_amount, ret_refused);
                if (k < 0)
                        return k;
                h = calloc(1, sizeof(*h));
                if (!h) {
                        quota_discharge(c->broker->quota, c->peer.creds.uid, &hold_amount);
                        return -ENOMEM;
                }
                *h = (struct hold) { .handle = r->handle, .region = r };
                k = hashmap_put(c->holds, &h->handle, h);
                if (k < 0) {
                        quota_discharge(c->broker->quota, c->peer.creds.uid, &hold_amount);
                        free(h);
                        return k;
                }
                region_add_holder(r);
        }
        h->count++;
        if (writable)
                h->writable++;
        c->n_references++;
        return 0;
}

int connection_release(struct connection *c, uint64_t handle) {
        struct hold *h = connection_get_hold(c, handle);
        struct region *r;

        if (!h)
                return -ENOENT;
        r = h->region;
        region_touched(c->broker->regions, r, c->peer.creds.pid, REGION_DETACHED, region_now());

        /* Keeping a read-write reference longer only lets this client SEAL, which takes rights away. */
        if (h->writable == h->count)
                h->writable--;
        h->count--;
        c->n_references--;
        if (h->count == 0) {
                hashmap_remove(c->holds, &h->handle);
                free(h);
                region_drop_holder(c->broker->regions, r);
                quota_discharge(c->broker->quota, c->peer.creds.uid, &hold_amount);
        }
        return 0;
}
