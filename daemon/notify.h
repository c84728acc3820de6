/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Telling the service manager how the broker is doing (sd_notify(3)):
 * READY=1 once it serves, a one-line STATUS= kept current, STOPPING=1 when
 * it stops, and WATCHDOG=1 at half the watchdog interval when the service
 * has a watchdog (WatchdogSec=). Status changes are coalesced: the line is
 * sent at most once per NOTIFY_STATUS_INTERVAL_MSEC, and only when it
 * reads differently, never once per request.
 *
 * Without $NOTIFY_SOCKET (not started by systemd) there is no notifier, and
 * every function here takes NULL and does nothing: then it costs nothing.
 */

#include <stddef.h>

#define NOTIFY_STATUS_INTERVAL_MSEC 100

struct event_base;
struct notifier;

/* Writes the status line, one line of text, NUL-terminated, to buf of size bytes. */
typedef void (*notifier_status_t)(char *buf, size_t size, void *userdata);

/*
 * Returns 0 and a notifier whose timers run on base (borrowed), and which
 * asks status for the status line; or 0 and NULL when $NOTIFY_SOCKET is
 * unset; or -ENOMEM.
 */
int notifier_new(struct event_base *base, notifier_status_t status, void *userdata, struct notifier **ret);

/* Stops the timers and frees n. Accepts NULL; returns NULL. */
struct notifier *notifier_free(struct notifier *n);

/* Sends READY=1 with the status line, and starts the watchdog keep-alives. */
void notifier_ready(struct notifier *n);

/* The status line may have changed: sends it within NOTIFY_STATUS_INTERVAL_MSEC if it did. */
void notifier_status_changed(struct notifier *n);

/* Sends STOPPING=1, and stops the status updates and the keep-alives. */
void notifier_stopping(struct notifier *n);
