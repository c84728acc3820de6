/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "activation.h"
#include "broker.h"
#include "connection.h"
#include "listener.h"
#include "log.h"
#include "macro.h"
#include "quota.h"
#include "region.h"
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

static void on_accept(int fd, void *userdata) {
        struct broker *b = userdata;

        /* A failure is logged and costs this client only. */
        (void) connection_new(b, fd);
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

int broker_new(const struct config *config, struct broker **ret) {
        _cleanup_(broker_freep) struct broker *b = NULL;
        int listen_fd, r;

        b = calloc(1, sizeof(*b));
        if (!b)
                return log_error_errno(ENOMEM, "Failed to start: %m");
        b->config = config;

        event_set_log_callback(log_libevent);
        b->base = event_base_new_early_close();
        if (!b->base)
                return log_error_errno(ENOTSUP, "Failed to set up an event loop that notices closed connections "
                                       "(EV_FEATURE_EARLY_CLOSE, epoll): %m");
        b->record = malloc(MFB_WIRE_RECORD_MAX);
        if (!b->record)
                return log_error_errno(ENOMEM, "Failed to start: %m");

        for (size_t i = 0; i < ELEMENTSOF(handled_signals); i++) {
                b->signal_events[i] = evsignal_new(b->base, handled_signals[i], on_signal, b);
                if (!b->signal_events[i] || evsignal_add(b->signal_events[i], NULL) < 0)
                        return log_error_errno(ENOMEM, "Failed to handle SIG%s: %m",
                                               sigabbrev_np(handled_signals[i]));
        }

        r = quota_new(&(struct quota_limits) {
                        .regions = config->max_regions_per_uid,
                        .bytes = config->max_bytes_per_uid,
                        .connections = config->max_connections_per_uid,
                }, &b->quota);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the accounting per uid: %m");
        r = region_table_new(config->max_region_size, config->max_regions, b->quota, &b->regions);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the region table: %m");
        r = wait_table_new(b->base, &b->waits);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the table of waiters: %m");

        r = activation_listen_fd(&listen_fd);
        if (r < 0)
                return r;
        if (r > 0) {
                r = listener_new_fd(b->base, listen_fd, on_accept, b, &b->listener);
                if (r < 0)
                        return r;
                log_notice("memfd-brokerd " PACKAGE_VERSION " serving on the socket passed by the service manager");
        } else {
                r = listener_new_path(b->base, config->socket_path, on_accept, b, &b->listener);
                if (r < 0)
                        return r;
                log_notice("memfd-brokerd " PACKAGE_VERSION " listening on %s", config->socket_path);
        }

        *ret = TAKE_PTR(b);
        return 0;
}

int broker_run(struct broker *b) {
        if (event_base_dispatch(b->base) < 0)
                return log_error_errno(EIO, "The event loop failed: %m");
        return 0;
}

struct broker *broker_free(struct broker *b) {
        if (!b)
                return NULL;

        /* Connections first: they release their references to regions and forget their WAITs. */
        while (b->connections)
                connection_free(b->connections);
        listener_free(b->listener);
        wait_table_free(b->waits);
        region_table_free(b->regions);
        quota_free(b->quota);
        for (size_t i = 0; i < ELEMENTSOF(b->signal_events); i++)
                if (b->signal_events[i])
                        event_free(b->signal_events[i]);
        if (b->base)
                event_base_free(b->base);
        free(b->record);
        free(b);
        return NULL;
}
