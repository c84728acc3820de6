/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>

#include "codec.h"
#include "settings.h"
#include "connection.h"
#include "control.h"
#include "hashmap.h"
#include "fdpass.h"
#include "hashmap.h"
#include "log.h"
#include "macro.h"
#include "notify.h"
#include "quota.h"
#include "region.h"
#include "releasequeue.h"
#include "services.h"
#include "session.h"
#include "wait.h"

/* What a region a session holds is charged to its uid, however many references it has. */
static const struct quota_amount hold_amount = { .n = { [MFB_WIRE_RESOURCE_HOLDS] = 1 } };

/* What a session is charged to its uid: a connection, and its socket. */
static const struct quota_amount session_amount = { .n = {
        [MFB_WIRE_RESOURCE_CONNECTIONS] = 1,
        [MFB_WIRE_RESOURCE_FDS] = 1,
} };

/*
 * A session's queue is due for the sweep once its client's window has
 * passed (PROTOCOL.md: what it writes after that, it has taken itself), and
 * the sweep runs at most once a TICK, taking every queue due: at most
 * WINDOW + TICK, the protocol's MFB_WIRE_RELEASE_QUEUE_SWEEP_MS, after the
 * last request. A timer set for each session's own time would go off
 * every few microseconds with a thousand clients.
 */
/* A uid's sessions with a release queue, while it has any (services->queue_owners). */
struct queue_owner {
        uint64_t uid;           /* the key: hashmap_u64_ops wants 64 bits */
        uint32_t n;
};

#define WINDOW_USEC ((uint64_t) MFB_WIRE_RELEASE_QUEUE_WINDOW_MS * 1000)
#define TICK_USEC ((uint64_t) (MFB_WIRE_RELEASE_QUEUE_SWEEP_MS - MFB_WIRE_RELEASE_QUEUE_WINDOW_MS) * 1000)

/* CLOCK_MONOTONIC in microseconds: a vDSO call, no syscall. */
static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

/*
 * Sets the sweep's timer for when the oldest of the sweeping sessions is
 * due, or stops it when none is. A timerfd of its own, set at most once a
 * sweep: as a timeout of the event loop, it would arm a timer in the kernel
 * at every sleep of the broker, which costs a virtual machine more than
 * the release it saves.
 */
static void sweep_schedule(struct services *sv) {
        struct session *first = TAILQ_FIRST(&sv->sweeping);
        struct itimerspec when = {};

        if (!first && !sv->queue_sweep_armed)
                return;
        if (first) {
                uint64_t due = first->last_request_usec + WINDOW_USEC;

                if (due < sv->queue_sweep_last_usec + TICK_USEC)
                        due = sv->queue_sweep_last_usec + TICK_USEC;
                /* Absolute, on the clock of now_usec(); never 0, which would disarm it. */
                when.it_value = (struct timespec) { .tv_sec = (time_t) (due / 1000000),
                                                    .tv_nsec = (long) (due % 1000000) * 1000 + 1 };
        }
        if (timerfd_settime(sv->queue_sweep_fd, TFD_TIMER_ABSTIME, &when, NULL) < 0) {
                /* With EINVAL or ENOMEM, which it cannot have: the queues are taken at the next requests then. */
                log_warning_errno(errno, "Failed to set the sweep of release queues: %m");
                return;
        }
        sv->queue_sweep_armed = first != NULL;
}

static void sweep_leave(struct session *s) {
        if (!s->sweeping)
                return;
        TAILQ_REMOVE(&s->services->sweeping, s, sweep_link);
        s->sweeping = false;
}

/*
 * s sent a request: its client may write to its queue from now on, which
 * the sweep takes WINDOW_USEC to MFB_WIRE_RELEASE_QUEUE_SWEEP_MS after the
 * last request, when no request takes it before. The timer, once set,
 * stays: it comes early for a session that sent again, and is set again
 * then.
 */
static void sweep_touch(struct session *s) {
        struct services *sv = s->services;

        s->last_request_usec = now_usec();
        sweep_leave(s);
        TAILQ_INSERT_TAIL(&sv->sweeping, s, sweep_link);
        s->sweeping = true;
        if (!sv->queue_sweep_armed)
                sweep_schedule(sv);
}

static void on_record(struct connection *c, const void *record, size_t len, size_t nfds, void *userdata) {
        struct session *s = userdata;

        if (s->queue)
                sweep_touch(s);
        s->services->handle_request(s, record, len, nfds);
        notifier_status_changed(s->services->notifier);
}

static void on_gone(struct connection *c, int error, void *userdata) {
        struct session *s = userdata;

        if (error < 0)
                log_debug_errno(error, "Dropping the connection of pid %d uid %u%s: %m", (int) s->peer.creds.pid,
                                s->peer.creds.uid, s->waiter ? ", whose WAIT was pending" : "");
        else
                log_debug("Connection of pid %d uid %u closed", (int) s->peer.creds.pid, s->peer.creds.uid);
        session_free(s);
}

static const struct connection_ops session_ops = {
        .record = on_record,
        .gone = on_gone,
};

void session_refuse(int fd, int error, const char *message) {
        struct {
                struct mfb_wire_header header;
                char message[MFB_WIRE_ERROR_MESSAGE_MAX];
        } rec;
        size_t len = strnlen(message, sizeof(rec.message)), nfds;
        int fds[MFB_FDS_RECV_MAX];
        uint8_t buf[sizeof(struct mfb_wire_header) + sizeof(struct mfb_wire_hello_request)];

        /* The answer to the HELLO it sends or has sent: cookie 0, since there is no request to take one from. */
        mfb_wire_header_init(&rec.header, MFB_WIRE_OP_HELLO | MFB_WIRE_REPLY, 0, error, 0,
                             (uint32_t) (sizeof(rec.header) + len));
        memcpy(rec.message, message, len);
        (void) mfb_record_send(fd, &rec, sizeof(rec.header) + len, NULL, 0, MSG_DONTWAIT);
        /* Closing with a request unread would make the kernel report ECONNRESET before our answer. */
        while (mfb_record_recv(fd, buf, sizeof(buf), fds, &nfds, MSG_DONTWAIT) > 0)
                mfb_close_fds(fds, nfds);
        safe_close(fd);
}

/*
 * Charges s to its uid: a connection and an fd. Returns 0, or -EDQUOT to
 * close it at once: it is over its limit or share, and its uid has too
 * many refused connections waiting to be told so already.
 */
static int count_session(struct session *s) {
        struct quota *q = s->services->quota;
        int r;

        r = quota_charge(q, s->peer.creds.uid, &session_amount, NULL);
        if (r >= 0) {
                s->quota = SESSION_COUNTED;
                return 0;
        }
        if (r == -ENOMEM)
                return log_error_errno(r, "Failed to count the connection of pid %d: %m", (int) s->peer.creds.pid);
        r = quota_add_refused(q, s->peer.creds.uid);
        if (r < 0)
                return log_debug_errno(r, "Closing a connection of uid %u at once: it has too many refused "
                                       "connections waiting already", s->peer.creds.uid);
        s->quota = SESSION_REFUSED;
        return 0;
}

/* Gives back what counting s took. */
static void uncount_session(struct session *s) {
        if (s->quota == SESSION_COUNTED)
                quota_discharge(s->services->quota, s->peer.creds.uid, &session_amount);
        else
                quota_remove_refused(s->services->quota, s->peer.creds.uid);
}

int session_new(struct services *services, int fd) {
        struct peer peer;
        int r;

        /* The peer's identity as of connect(), before it can do anything else. */
        r = peer_get(fd, &peer);
        if (r < 0) {
                safe_close(fd);
                return log_error_errno(r, "Failed to read the credentials of a new connection: %m");
        }
        return session_new_with_peer(services, fd, &peer);
}

int session_new_with_peer(struct services *services, int fd, struct peer *peer) {
        struct session *s;
        int r;

        s = calloc(1, sizeof(*s));
        if (!s) {
                peer_done(peer);
                safe_close(fd);
                return log_error_errno(ENOMEM, "Failed to accept a connection: %m");
        }
        s->services = services;
        s->peer = *peer;
        *peer = (struct peer) {};

        r = count_session(s);
        if (r == -EDQUOT) {
                char message[MFB_WIRE_ERROR_MESSAGE_MAX + 1];

                /* Told, as one that finds the broker out of fds is; no request of its is ever read. */
                snprintf(message, sizeof(message), "uid %u has too many connections, and too many refused ones "
                         "waiting to be told so", s->peer.creds.uid);
                session_refuse(fd, r, message);
                peer_done(&s->peer);
                free(s);
                return r;
        }
        if (r < 0) {
                safe_close(fd);
                peer_done(&s->peer);
                free(s);
                return r;
        }
        TAILQ_INSERT_HEAD(&services->sessions, s, link);
        services->n_sessions++;
        notifier_status_changed(services->notifier);

        r = hashmap_new(&hashmap_u64_ops, &s->holds);
        if (r >= 0)
                r = connection_new(services->transport, fd, s->peer.creds.uid, &session_ops, s, &s->connection);
        else
                safe_close(fd);
        if (r < 0) {
                log_error_errno(r, "Failed to set up the connection of pid %d: %m", (int) s->peer.creds.pid);
                session_free(s);
                return r;
        }

        log_debug("New connection of pid %d uid %u gid %u, %zu supplementary groups%s", (int) s->peer.creds.pid,
                  s->peer.creds.uid, s->peer.creds.gid, s->peer.n_groups,
                  s->quota == SESSION_REFUSED ? ", over the connection limit" : "");
        return 0;
}

/* The reference of hold h is given back by s: when, and by whom, for STAT. */
static void hold_touch(struct session *s, struct hold *h) {
        region_touched(s->services->regions, h->region, s->peer.creds.pid, REGION_DETACHED, region_now());
}

/* Frees h, the last of s's references to its region, which this may end. */
static void hold_free(struct session *s, struct hold *h) {
        struct region *r = h->region;

        /* The watch ends with the last reference: its pipe is closed, and the page counts one watcher fewer. */
        control_unwatch(s->services->watches, h->watch);
        free(h);
        region_drop_holder(s->services->regions, r);
        quota_discharge(s->services->quota, s->peer.creds.uid, &hold_amount);
}

void session_free(struct session *s) {
        void *v;

        if (!s)
                return;
        TAILQ_REMOVE(&s->services->sessions, s, link);
        s->services->n_sessions--;
        notifier_status_changed(s->services->notifier);

        /* Before the credentials go: the waiter is charged to them. */
        wait_forget(s->waiter);
        s->waiter = NULL;
        if (s->holds) {
                for (size_t i = 0; hashmap_iterate(s->holds, &i, &v);) {
                        hold_touch(s, v);
                        hold_free(s, v);
                }
                hashmap_free(s->holds);
        }
        sweep_leave(s);
        if (TAILQ_EMPTY(&s->services->sweeping))
                sweep_schedule(s->services);
        if (s->queue) {
                uint64_t key = s->peer.creds.uid;
                struct queue_owner *o = hashmap_get(s->services->queue_owners, &key);

                s->queue = release_queue_free(s->queue);
                s->services->n_queues--;
                if (--o->n == 0)
                        free(hashmap_remove(s->services->queue_owners, &key));
        }
        /* The connection's charge first: its socket, if kept for fds left unread, is charged anew. */
        uncount_session(s);
        connection_free(s->connection);
        peer_done(&s->peer);
        free(s);
}

struct hold *session_get_hold(struct session *s, uint64_t handle) {
        return hashmap_get(s->holds, &handle);
}

int session_hold(struct session *s, struct region *r, bool writable, enum mfb_wire_resource *ret_refused) {
        struct hold *h = session_get_hold(s, r->handle);
        struct quota *q = s->services->quota;
        int k;

        if (!h) {
                k = quota_charge(q, s->peer.creds.uid, &hold_amount, ret_refused);
                if (k < 0)
                        return k;
                h = calloc(1, sizeof(*h));
                if (!h) {
                        quota_discharge(q, s->peer.creds.uid, &hold_amount);
                        return -ENOMEM;
                }
                *h = (struct hold) { .handle = r->handle, .region = r };
                k = hashmap_put(s->holds, &h->handle, h);
                if (k < 0) {
                        quota_discharge(q, s->peer.creds.uid, &hold_amount);
                        free(h);
                        return k;
                }
                region_add_holder(r);
        }
        h->count++;
        if (writable)
                h->writable++;
        s->n_references++;
        return 0;
}

int session_release(struct session *s, uint64_t handle) {
        struct hold *h = session_get_hold(s, handle);

        if (!h)
                return -ENOENT;
        hold_touch(s, h);
        /* Keeping a read-write reference longer only lets this client SEAL, which takes rights away. */
        if (h->writable == h->count)
                h->writable--;
        h->count--;
        s->n_references--;
        if (h->count == 0) {
                hashmap_remove(s->holds, &h->handle);
                hold_free(s, h);
        }
        return 0;
}

int session_open_queue(struct session *s) {
        struct services *sv = s->services;
        uint64_t key = s->peer.creds.uid;
        struct queue_owner *o = hashmap_get(sv->queue_owners, &key);
        int k, fd;

        if (s->queue)
                return -EEXIST;
        if (sv->n_queues >= sv->settings->max_release_queues)
                return -ENOSPC;
        if (o && o->n >= sv->settings->max_release_queues_per_uid && !quota_is_exempt(sv->quota, s->peer.creds.uid))
                return -EDQUOT;
        if (!o) {
                o = calloc(1, sizeof(*o));
                if (!o)
                        return -ENOMEM;
                o->uid = key;
                k = hashmap_put(sv->queue_owners, &o->uid, o);
                if (k < 0) {
                        free(o);
                        return k;
                }
        }
        k = release_queue_new(region_table_memfd_flags(sv->regions), &s->queue, &fd);
        if (k < 0) {
                if (o->n == 0)
                        free(hashmap_remove(sv->queue_owners, &key));
                return k;
        }
        o->n++;
        sv->n_queues++;
        /* From the answer on, its client may write to it. */
        sweep_touch(s);
        return fd;
}

size_t session_take_queue(struct session *s, size_t max) {
        uint64_t handles[MFB_WIRE_RELEASE_QUEUE_SLOTS];
        size_t n = release_queue_take(s->queue, handles, max < ELEMENTSOF(handles) ? max : ELEMENTSOF(handles));

        if (n == 0)
                return 0;
        connection_charge(s->connection, (unsigned) n);
        for (size_t i = 0; i < n; i++) {
                if (session_release(s, handles[i]) < 0) {
                        if (!s->queue_refusing) {
                                s->queue_refusing = true;
                                s->queue_refused = handles[i];
                        }
                        continue;
                }
                log_debug("RELEASE (queued) of pid %d uid %u: region %" PRIu64, (int) s->peer.creds.pid,
                          s->peer.creds.uid, handles[i]);
        }
        return n;
}

void session_sweep_queues(struct services *sv) {
        uint64_t now = now_usec();
        size_t budget = SESSION_SWEEP_ENTRIES_MAX;
        struct session *s;

        sv->queue_sweep_armed = false;          /* it went off */
        sv->queue_sweep_last_usec = now;
        while ((s = TAILQ_FIRST(&sv->sweeping)) && s->last_request_usec + WINDOW_USEC <= now) {
                size_t taken = session_take_queue(s, budget);

                /* Regions freed: the status the service manager shows says so. */
                if (taken > 0)
                        notifier_status_changed(sv->notifier);
                budget -= taken;
                /* Out of budget, s may have more: it stays first, for the next sweep. */
                if (budget == 0)
                        break;
                sweep_leave(s);
        }
        sweep_schedule(sv);
}

void session_wait(struct session *s, struct waiter *w) {
        s->waiter = w;
        connection_pause(s->connection, true);
}

void session_wait_done(struct session *s) {
        s->waiter = NULL;
        connection_pause(s->connection, false);
}
