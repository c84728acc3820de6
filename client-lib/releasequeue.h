/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The client's side of its release queue (PROTOCOL.md, "Release queue"):
 * mfb_region_free() stores the handle in a page that the broker takes it
 * from, before the client's next request or on its own within
 * MFB_WIRE_RELEASE_QUEUE_SWEEP_MS of it; so a release costs a store, not a
 * record written and read and a wakeup of the broker. The page and its
 * bookkeeping; the requests that ask for it and that have it taken are
 * the client's (client.c). Internal.
 */

#include <stdbool.h>
#include <stdint.h>

#include "wire.h"

/* A client's release queue. */
struct release_queue {
        enum {
                QUEUE_NONE,             /* not asked for */
                QUEUE_ASKED,            /* RELEASE_QUEUE sent, its answer not read */
                QUEUE_READY,
                QUEUE_REFUSED,          /* the broker has none, or gave none: not asked for again */
        } state;
        unsigned releases;              /* before it was asked for: a client that releases once never asks */
        struct mfb_wire_release_queue_entry *slots;     /* the page's, mapped read-write while ready */
        void *page;                     /* that mapping, MFB_WIRE_RELEASE_QUEUE_SIZE bytes */
        uint64_t written;               /* entries written */
        uint64_t taken;                 /* entries the broker took, as far as its answers tell */
        bool unflagged;                 /* written since the last request made: the next carries FLAG_QUEUED */
};

/* CLOCK_MONOTONIC in microseconds: what the queue's window is measured on. */
uint64_t release_queue_now_usec(void);

/*
 * Whether to ask for the queue now, at a release that cannot go in it: not
 * at a client's first release (a tool that frees one region and leaves
 * would have the broker make a page for nothing), once at a later one.
 */
bool release_queue_wanted(struct release_queue *q);

/*
 * The answer to RELEASE_QUEUE: body (its release queue reply) and fd (the
 * page's, borrowed). Maps the page if it is what PROTOCOL.md says; else
 * the queue is refused, and releases go as records.
 */
void release_queue_answered(struct release_queue *q, const void *body, int fd);

/*
 * Stores handle in the queue when it is ready, has a free slot, and the
 * client wrote a request less than MFB_WIRE_RELEASE_QUEUE_WINDOW_MS before
 * (last_send_usec; later, the broker may have swept the queue for the last
 * time). Returns whether it did: if not, the caller sends the release
 * otherwise. *ret_late is true when the window passed while storing: the
 * caller then sends a request that has the broker take it.
 */
bool release_queue_put(struct release_queue *q, uint64_t handle, uint64_t last_send_usec, bool *ret_late);

/* A request being made carries MFB_WIRE_FLAG_QUEUED if handles were stored since the last one; its mark. */
void release_queue_flag(struct release_queue *q, struct mfb_wire_header *header, uint64_t *ret_mark);

/* A request flagged with mark (release_queue_flag()) was answered: the broker took those entries. */
void release_queue_taken(struct release_queue *q, uint64_t mark);

/* Unmaps the page. */
void release_queue_unmap(struct release_queue *q);
