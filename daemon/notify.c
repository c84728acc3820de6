/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "notify.h"

#define STATUS_MAX 256
#define USEC_PER_SEC UINT64_C(1000000)

struct notifier {
        notifier_status_t status;
        void *userdata;
        struct event *status_event;
        bool status_scheduled;
        struct event *watchdog_event;   /* NULL when the service has no watchdog */
        struct timeval watchdog_interval;
        char last_status[STATUS_MAX];   /* as last sent */
};

/* Failing to tell the service manager harms nobody but the reporting: worth a debug line only. */
static void notify(const char *message) {
        int r = sd_notify(false, message);

        if (r < 0)
                log_debug_errno(r, "Failed to notify the service manager: %m");
}

static void on_status(evutil_socket_t fd, short what, void *userdata) {
        struct notifier *n = userdata;
        char status[STATUS_MAX], message[sizeof("STATUS=") + STATUS_MAX];

        n->status_scheduled = false;
        n->status(status, sizeof(status), n->userdata);
        if (strcmp(status, n->last_status) == 0)
                return;
        snprintf(message, sizeof(message), "STATUS=%s", status);
        notify(message);
        memcpy(n->last_status, status, sizeof(status));
}

static void on_watchdog(evutil_socket_t fd, short what, void *userdata) {
        notify("WATCHDOG=1");
}

int notifier_new(struct event_base *base, notifier_status_t status, void *userdata, struct notifier **ret) {
        const char *socket = getenv("NOTIFY_SOCKET");
        struct notifier *n;
        uint64_t usec;
        int r;

        if (!socket || !*socket) {
                *ret = NULL;
                return 0;
        }
        n = calloc(1, sizeof(*n));
        if (!n)
                return -ENOMEM;
        n->status = status;
        n->userdata = userdata;
        n->status_event = evtimer_new(base, on_status, n);
        if (!n->status_event) {
                notifier_free(n);
                return -ENOMEM;
        }

        /* Half the interval, as sd_watchdog_enabled(3) advises, so that one late wakeup is no failure. */
        r = sd_watchdog_enabled(false, &usec);
        if (r < 0)
                log_warning_errno(r, "Failed to read the watchdog settings; sending no keep-alives: %m");
        else if (r > 0) {
                n->watchdog_interval = (struct timeval) {
                        .tv_sec = (time_t) (usec / 2 / USEC_PER_SEC),
                        .tv_usec = (suseconds_t) (usec / 2 % USEC_PER_SEC),
                };
                n->watchdog_event = event_new(base, -1, EV_PERSIST, on_watchdog, n);
                if (!n->watchdog_event) {
                        notifier_free(n);
                        return -ENOMEM;
                }
        }
        *ret = n;
        return 0;
}

struct notifier *notifier_free(struct notifier *n) {
        if (!n)
                return NULL;
        if (n->status_event)
                event_free(n->status_event);
        if (n->watchdog_event)
                event_free(n->watchdog_event);
        free(n);
        return NULL;
}

void notifier_ready(struct notifier *n) {
        char message[sizeof("READY=1\nSTATUS=") + STATUS_MAX];

        if (!n)
                return;
        n->status(n->last_status, sizeof(n->last_status), n->userdata);
        snprintf(message, sizeof(message), "READY=1\nSTATUS=%s", n->last_status);
        notify(message);
        if (n->watchdog_event)
                event_add(n->watchdog_event, &n->watchdog_interval);
}

void notifier_status_changed(struct notifier *n) {
        static const struct timeval interval = { .tv_usec = NOTIFY_STATUS_INTERVAL_MSEC * 1000 };

        if (!n || n->status_scheduled)
                return;
        event_add(n->status_event, &interval);
        n->status_scheduled = true;
}

void notifier_stopping(struct notifier *n) {
        if (!n)
                return;
        event_del(n->status_event);
        n->status_scheduled = false;
        if (n->watchdog_event)
                event_del(n->watchdog_event);
        notify("STOPPING=1\nSTATUS=Stopping");
}
