/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Notifications of one region (PROTOCOL.md, "Notifications"): its control
 * page, mapped, and the read end of the pipe the broker writes to, each
 * asked for at its first use. Internal: region.c keeps one in every region
 * and gives the public calls their checks.
 */

#include <stdbool.h>
#include <stdint.h>

#include "memfd-broker.h"
#include "wire.h"

struct region_notify {
        int page_fd;                            /* the control page's fd, owned; -1 until NOTIFIER */
        struct mfb_wire_notify_page *page;      /* its mapping, read-write for a writer; NULL until then */
        int event_fd;                           /* the NOTIFY_WATCH pipe's read end, owned; -1 until asked for */
};

/* A region's, before any use. */
#define REGION_NOTIFY_INIT ((struct region_notify) { .page_fd = -1, .event_fd = -1 })

/* Unmaps and closes what n has. */
void region_notify_done(struct region_notify *n);

/*
 * Notifies the region with handle, held by c with access (O_RDWR): advances
 * the sequence, wakes the futex waiters, and asks the broker to signal the
 * watchers when the page says there are some, without waiting. Returns 0,
 * -EOPNOTSUPP, or the errors of the first NOTIFIER.
 */
int region_notify_signal(mfb_client *c, uint64_t handle, int access, struct region_notify *n);

/* Waits until the sequence differs from *seq, for up to timeout_ms (negative: no limit). */
int region_notify_wait(mfb_client *c, uint64_t handle, int access, struct region_notify *n, uint64_t *seq,
                       int64_t timeout_ms);

/* The pipe's read end (borrowed), asked for at the first call, with the page; or -errno. */
int region_notify_fd(mfb_client *c, uint64_t handle, int access, struct region_notify *n);

/*
 * Reads what the pipe holds away, if there is a pipe, and gives the
 * sequence; -ENOTCONN (the sequence given all the same) when the pipe is
 * at end of file: the broker that gave it is gone.
 */
int region_notify_read(mfb_client *c, uint64_t handle, int access, struct region_notify *n, uint64_t *ret_seq);
