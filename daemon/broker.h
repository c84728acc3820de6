/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The broker: the event loop, the listening socket, every connection, the
 * region table, the per-uid accounting, the pending WAITs, the signals
 * that stop it, and under systemd what it tells the service manager and
 * keeps across restarts.
 */

#include <event2/event.h>

#include "settings.h"
#include "services.h"

struct listener;

struct broker {
        struct event_base *base;
        struct services services;               /* what the sessions and requests share */
        struct listener *listener;
        struct event *signal_events[3];
        struct event *queue_sweep;              /* reads services.queue_sweep_fd */
};

/*
 * Sets up a broker listening on the socket the service manager passed, or
 * else on settings->socket_path, with the regions the service manager kept
 * (persist.h). settings is borrowed and must outlive the broker. Returns 0,
 * or -errno after logging why.
 */
int broker_new(const struct settings *settings, struct broker **ret);

/*
 * Tells the service manager that it is ready, and serves clients until
 * SIGTERM or SIGINT. Returns 0, or -errno after logging why.
 */
int broker_run(struct broker *b);

/*
 * Closes every connection (releasing what they held) and every region,
 * saving what the next broker restores, and removes the socket file if
 * this broker created it. Accepts NULL; returns NULL.
 */
struct broker *broker_free(struct broker *b);
