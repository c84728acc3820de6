/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What every session and every request handler shares: the broker's
 * settings, tables and services, and the sessions themselves. Only a
 * struct, so that the modules that use it (session.c, request.c) depend on
 * nothing above them: the broker (broker.c), which fills it, is the one
 * module that knows them all.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

struct settings;
struct notifier;
struct persist;
struct quota;
struct hashmap;
struct region_table;
struct session;
struct transport;
struct wait_table;
struct watch_table;

TAILQ_HEAD(session_list, session);

struct services {
        const struct settings *settings;
        struct quota *quota;
        struct region_table *regions;
        struct wait_table *waits;
        struct watch_table *watches;            /* the pipes of NOTIFY_WATCH (control.h) */
        struct transport *transport;
        struct notifier *notifier;              /* NULL when not under a service manager */
        struct persist *persist;                /* NULL when not under a service manager */
        struct session_list sessions;           /* every client's, newest first */
        uint32_t n_sessions;
        /*
         * Sessions with a release queue whose client may have written to it
         * since it last sent: by their last request, oldest first. The
         * timerfd queue_sweep_fd has the sweep take each once its client's
         * window has passed (session_sweep_queues()); nothing runs while
         * none is there.
         */
        struct session_list sweeping;
        int queue_sweep_fd;                     /* a timerfd (CLOCK_MONOTONIC), owned by the broker */
        bool queue_sweep_armed;
        uint64_t queue_sweep_last_usec;         /* when it last went off */
        uint32_t n_queues;                      /* sessions with a release queue */
        struct hashmap *queue_owners;           /* uid → its sessions with one (session.c), while any */
        /*
         * Handles a record of s (request_handle()): the broker sets it, so
         * that sessions hand records up without depending on what handles
         * them.
         */
        void (*handle_request)(struct session *s, const void *record, size_t len, size_t nfds);
};
