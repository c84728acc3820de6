/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The client's side of its release queue (PROTOCOL.md, "Release queue"):
 * mfb_region_free() stores the handle in a page that the broker takes it
 * from, before the client's next request or on its own within
 * MFB_WIRE_RELEASE_QUEUE_SWEEP_MS of it; so a release costs a store, not a
 * record written and read and a wakeup of the broker. Asked for with the
 * first release (which goes as a record), and used from the next one on,
 * once the answer is read. Internal.
 */

#include <stdbool.h>
#include <stdint.h>

#include "client.h"

/* Asks the broker for the queue, once, where it offers one; its answer maps the page. */
void release_queue_ask(mfb_client *c);

/*
 * Stores handle in the queue when it is ready, has a free slot, and the
 * client wrote a request less than MFB_WIRE_RELEASE_QUEUE_WINDOW_MS ago
 * (later, the broker may have swept the queue for the last time). Returns
 * whether it did: if not, the caller sends the release otherwise.
 */
bool release_queue_put(mfb_client *c, uint64_t handle);

/* The request q being made carries MFB_WIRE_FLAG_QUEUED if handles were stored since the last one. */
void release_queue_flag(mfb_client *c, struct mfb_wire_header *header, uint64_t *ret_mark);

/* A request flagged with mark (release_queue_flag()) was answered: the broker took those entries. */
void release_queue_answered(mfb_client *c, uint64_t mark);

/* Unmaps the page. */
void release_queue_unmap(mfb_client *c);

/* CLOCK_MONOTONIC in microseconds. */
uint64_t client_now_usec(void);
