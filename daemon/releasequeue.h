/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A connection's release queue (PROTOCOL.md, "Release queue"): a page the
 * client writes the handles it lets go of into, and the broker takes them
 * from, so that a release costs neither side a record. This is the page
 * and its reading; when it is taken, and what a taken handle does, is the
 * session's (session.h) and the request's (request.c).
 *
 * The broker maps each page read-only, and so reads it without a system
 * call; that is one mapping per queue, and the kernel allows a process
 * vm.max_map_count of them (65530 by default), which --max-release-queues
 * keeps the queues well below. It trusts nothing there: the client may
 * write anything, at any time, also while the broker reads; the seals keep
 * the page from being shrunk under the broker's mapping.
 */

#include <stddef.h>
#include <stdint.h>

struct release_queue;

/*
 * Makes a queue: a memfd of MFB_WIRE_RELEASE_QUEUE_SIZE bytes made with
 * memfd_flags (those of regions), owned by the broker's uid with mode 0600,
 * sealed against resizing and further seals, and mapped read-only. Returns
 * 0 with *ret_client_fd a read-write open of the page for the client (a new
 * open file description, owned by the caller); or -errno.
 */
int release_queue_new(unsigned memfd_flags, struct release_queue **ret, int *ret_client_fd);

/* Unmaps the page and frees q. Accepts NULL; returns NULL. */
struct release_queue *release_queue_free(struct release_queue *q);

/*
 * Takes up to max entries (at most MFB_WIRE_RELEASE_QUEUE_SLOTS), the
 * complete ones that follow those taken already, in order: their handles
 * into ret_handles. Stops at the first slot whose seq is not the one due.
 * Returns how many it took.
 */
size_t release_queue_take(struct release_queue *q, uint64_t *ret_handles, size_t max);
