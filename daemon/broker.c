/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "activation.h"
#include "broker.h"
#include "connection.h"
#include "control.h"
#include "hashmap.h"
#include "listener.h"
#include "log.h"
#include "macro.h"
#include "notify.h"
#include "persist.h"
#include "quota.h"
#include "region.h"
#include "request.h"
#include "session.h"
#include "size.h"
#include "wait.h"
#include "wire.h"

static const int handled_signals[] = { SIGTERM, SIGINT, SIGHUP };

static void on_signal(evutil_socket_t sig, short what, void *userdata) {
        struct broker *b = userdata;

        if (sig == SIGHUP) {
                log_notice("Received SIGHUP; there is nothing to reload");
                return;
        }
        log_notice("Received SIG%s, exiting", sigabbrev_np((int) sig));
        event_base_loopbreak(b->base);
}

static void on_accept(int fd, bool out_of_fds, void *userdata) {
        struct broker *b = userdata;

        if (out_of_fds) {
                session_refuse(fd, -ENOSPC, "the broker is out of file descriptors");
                return;
        }
        /* A failure is logged and costs this client only. */
        (void) session_new(&b->services, fd);
}

static void broker_status(char *buf, size_t size, void *userdata) {
        struct broker *b = userdata;
        struct region_usage u;
        char bytes[MFB_SIZE_STRING_MAX];

        region_table_usage(b->services.regions, &u);
        snprintf(buf, size, "regions: %zu (named: %zu), size: %s, connections: %" PRIu32, u.regions, u.named,
                 mfb_size_format(u.bytes, " ", bytes), b->services.n_sessions);
}

/* Without a service manager that keeps fds, the passed fds that are not listening sockets are of no use. */
static void close_unused(struct passed_fd *fds, size_t n_fds) {
        for (size_t i = 0; i < n_fds; i++)
                log_warning("Passed fd %s (fd %d) is not a listening socket, and nothing is kept across restarts without "
                            "$NOTIFY_SOCKET; closing it", fds[i].name, fds[i].fd);
        passed_fds_free(fds, n_fds);
}

static void log_libevent(int severity, const char *message) {
        static const int levels[] = {
                [EVENT_LOG_DEBUG] = LOG_DEBUG,
                [EVENT_LOG_MSG] = LOG_INFO,
                [EVENT_LOG_WARN] = LOG_WARNING,
                [EVENT_LOG_ERR] = LOG_ERR,
        };
        int level = severity >= 0 && (size_t) severity < ELEMENTSOF(levels) ? levels[severity] : LOG_ERR;

        log_full_errno(level, 0, "libevent: %s", message);
}

static void broker_freep(struct broker **b) {
        broker_free(*b);
}

/*
 * An event base that reports a peer closing its end (EV_CLOSED) on a
 * socket that is not being read: a connection with a pending WAIT is not
 * read, yet must not outlive its client.
 */
static struct event_base *event_base_new_early_close(void) {
        struct event_config *cfg = event_config_new();
        struct event_base *base;

        if (!cfg)
                return NULL;
        base = event_config_require_features(cfg, EV_FEATURE_EARLY_CLOSE) == 0 ? event_base_new_with_config(cfg)
                                                                                 : NULL;
        event_config_free(cfg);
        return base;
}

static void on_queue_sweep(evutil_socket_t fd, short what, void *userdata) {
        uint64_t expirations;

        /* Nonblocking: a sweep set again since it went off has not gone off yet (EAGAIN). */
        if (read(fd, &expirations, sizeof(expirations)) != sizeof(expirations))
                return;
        session_sweep_queues(userdata);
}

int broker_new(const struct settings *settings, struct broker **ret) {
        _cleanup_(broker_freep) struct broker *b = NULL;
        _cleanup_(closep) int listen_fd = -1;
        struct services *sv;
        struct passed_fd *passed;
        size_t n_passed;
        int r;

        b = calloc(1, sizeof(*b));
        if (!b)
                return log_error_errno(ENOMEM, "Failed to start: %m");
        sv = &b->services;
        sv->settings = settings;
        TAILQ_INIT(&sv->sessions);
        TAILQ_INIT(&sv->sweeping);
        sv->queue_sweep_fd = -1;
        sv->handle_request = request_handle;

        event_set_log_callback(log_libevent);
        b->base = event_base_new_early_close();
        if (!b->base)
                return log_error_errno(ENOTSUP, "Failed to set up an event loop that notices closed connections "
                                       "(EV_FEATURE_EARLY_CLOSE, epoll): %m");

        for (size_t i = 0; i < ELEMENTSOF(handled_signals); i++) {
                b->signal_events[i] = evsignal_new(b->base, handled_signals[i], on_signal, b);
                if (!b->signal_events[i] || evsignal_add(b->signal_events[i], NULL) < 0)
                        return log_error_errno(ENOMEM, "Failed to handle SIG%s: %m",
                                               sigabbrev_np(handled_signals[i]));
        }

        r = quota_new(&(struct quota_limits) {
                        .broker_max = { .n = {
                                [MFB_WIRE_RESOURCE_REGIONS] = settings->max_regions,
                                [MFB_WIRE_RESOURCE_BYTES] = settings->max_bytes,
                                [MFB_WIRE_RESOURCE_FDS] = settings->max_fds,
                                [MFB_WIRE_RESOURCE_CONNECTIONS] = settings->max_connections,
                                [MFB_WIRE_RESOURCE_QUEUED_BYTES] = settings->max_queued_bytes,
                                [MFB_WIRE_RESOURCE_WAITERS] = settings->max_waiters,
                                [MFB_WIRE_RESOURCE_KEPT] = settings->max_kept_regions,
                                [MFB_WIRE_RESOURCE_HOLDS] = settings->max_holds,
                        } },
                        .uid_max = { .n = {
                                [MFB_WIRE_RESOURCE_REGIONS] = settings->max_regions_per_uid,
                                [MFB_WIRE_RESOURCE_BYTES] = settings->max_bytes_per_uid,
                                [MFB_WIRE_RESOURCE_FDS] = MFB_WIRE_LIMIT_NONE,
                                [MFB_WIRE_RESOURCE_CONNECTIONS] = settings->max_connections_per_uid,
                                [MFB_WIRE_RESOURCE_QUEUED_BYTES] = MFB_WIRE_LIMIT_NONE,
                                [MFB_WIRE_RESOURCE_WAITERS] = MFB_WIRE_LIMIT_NONE,
                                [MFB_WIRE_RESOURCE_KEPT] = MFB_WIRE_LIMIT_NONE,
                                [MFB_WIRE_RESOURCE_HOLDS] = MFB_WIRE_LIMIT_NONE,
                        } },
                }, geteuid(), &sv->quota);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the accounting per uid: %m");
        r = region_table_new(settings->max_region_size, sv->quota, &sv->regions);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the region table: %m");
        r = wait_table_new(b->base, sv->quota, sv->regions, request_wait_answer, NULL, &sv->waits);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the table of waiters: %m");
        r = watch_table_new(b->base, sv->quota, &sv->watches);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the watches of control pages: %m");
        r = transport_new(b->base, sv->quota, settings->max_fds_in_flight, geteuid(), &sv->transport);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the connections' transport: %m");
        r = hashmap_new(&hashmap_u64_ops, &sv->queue_owners);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the count of release queues: %m");
        sv->queue_sweep_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (sv->queue_sweep_fd < 0)
                return log_error_errno(errno, "Failed to set up the sweep of release queues: %m");
        b->queue_sweep = event_new(b->base, sv->queue_sweep_fd, EV_READ | EV_PERSIST, on_queue_sweep, sv);
        if (!b->queue_sweep || event_add(b->queue_sweep, NULL) < 0)
                return log_error_errno(ENOMEM, "Failed to set up the sweep of release queues: %m");

        r = activation_take_fds(&listen_fd, &passed, &n_passed);
        if (r < 0)
                return r;
        r = notifier_new(b->base, broker_status, b, &sv->notifier);
        if (r < 0) {
                passed_fds_free(passed, n_passed);
                return log_error_errno(r, "Failed to set up notifying the service manager: %m");
        }
        if (sv->notifier) {
                r = persist_new(b->base, sv->regions, passed, n_passed, &sv->persist);
                if (r < 0)
                        return r;
        } else
                close_unused(passed, n_passed);

        if (listen_fd >= 0) {
                r = listener_new_fd(b->base, TAKE_FD(listen_fd), on_accept, b, &b->listener);
                if (r < 0)
                        return r;
                log_notice("memfd-brokerd " PACKAGE_VERSION " serving on the socket passed by the service manager");
        } else {
                r = listener_new_path(b->base, settings->socket_path, on_accept, b, &b->listener);
                if (r < 0)
                        return r;
                log_notice("memfd-brokerd " PACKAGE_VERSION " listening on %s", settings->socket_path);
        }

        *ret = TAKE_PTR(b);
        return 0;
}

int broker_run(struct broker *b) {
        int r = 0;

        notifier_ready(b->services.notifier);
        if (event_base_dispatch(b->base) < 0)
                r = log_error_errno(EIO, "The event loop failed: %m");
        notifier_stopping(b->services.notifier);
        return r;
}

struct broker *broker_free(struct broker *b) {
        struct services *sv;

        if (!b)
                return NULL;
        sv = &b->services;

        /* Sessions first: they release their references to regions and forget their WAITs. */
        while (!TAILQ_EMPTY(&sv->sessions))
                session_free(TAILQ_FIRST(&sv->sessions));
        if (b->queue_sweep)
                event_free(b->queue_sweep);
        safe_close(sv->queue_sweep_fd);
        /* Empty: every session that counted in it is gone. */
        hashmap_free(sv->queue_owners);
        /* With the times of those releases, for the next broker. */
        persist_flush(sv->persist);
        persist_free(sv->persist);
        notifier_free(sv->notifier);
        listener_free(b->listener);
        wait_table_free(sv->waits);
        watch_table_free(sv->watches);
        transport_free(sv->transport);
        region_table_free(sv->regions);
        quota_free(sv->quota);
        for (size_t i = 0; i < ELEMENTSOF(b->signal_events); i++)
                if (b->signal_events[i])
                        event_free(b->signal_events[i]);
        if (b->base)
                event_base_free(b->base);
        free(b);
        return NULL;
}
