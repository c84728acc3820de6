/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fdpass.h"
#include "releasequeue.h"

#define WINDOW_USEC ((uint64_t) MFB_WIRE_RELEASE_QUEUE_WINDOW_MS * 1000)

uint64_t client_now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

/* Whether fd is what PROTOCOL.md says a queue's is: a page of the right size, read-write, not resizable. */
static bool page_fd_valid(int fd) {
        struct stat st;
        int seals = fcntl(fd, F_GET_SEALS), flags = fcntl(fd, F_GETFL);

        return fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == MFB_WIRE_RELEASE_QUEUE_SIZE &&
               seals >= 0 && (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) == (F_SEAL_SHRINK | F_SEAL_GROW) &&
               flags >= 0 && (flags & O_ACCMODE) == O_RDWR;
}

static int queue_answered(mfb_client *c, void *data, int status, const struct client_reply *reply) {
        struct mfb_wire_release_queue_reply body;
        void *page = MAP_FAILED;

        if (status == 0) {
                memcpy(&body, reply->body, sizeof(body));
                if (body.slots == MFB_WIRE_RELEASE_QUEUE_SLOTS && page_fd_valid(reply->fds[0]))
                        page = mmap(NULL, MFB_WIRE_RELEASE_QUEUE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
                                    reply->fds[0], 0);
                mfb_close_fds(reply->fds, reply->nfds);
        }
        /* Refused (out of fds, say), or unusable: releases go as records, as with a broker that has none. */
        if (page == MAP_FAILED) {
                c->queue.state = QUEUE_REFUSED;
                return 0;
        }
        c->queue.page = page;
        c->queue.slots = (struct mfb_wire_release_queue_entry *) ((uint8_t *) page + MFB_WIRE_RELEASE_QUEUE_HEADER);
        c->queue.state = QUEUE_READY;
        return 0;
}

void release_queue_ask(mfb_client *c) {
        if (c->queue.state != QUEUE_NONE)
                return;
        if (!(c->hello.capabilities & MFB_WIRE_CAP_RELEASE_QUEUE)) {
                c->queue.state = QUEUE_REFUSED;
                return;
        }
        if (client_request(c, MFB_WIRE_OP_RELEASE_QUEUE, NULL, 0, queue_answered, 0, NULL) == 0)
                c->queue.state = QUEUE_ASKED;
}

bool release_queue_put(mfb_client *c, uint64_t handle) {
        struct client_queue *q = &c->queue;
        struct mfb_wire_release_queue_entry *e;

        if (q->state != QUEUE_READY || q->written - q->taken >= MFB_WIRE_RELEASE_QUEUE_SLOTS ||
            client_now_usec() - c->last_send_usec >= WINDOW_USEC)
                return false;
        e = &q->slots[q->written % MFB_WIRE_RELEASE_QUEUE_SLOTS];
        e->handle = handle;
        /* The seq completes the entry: the broker reads it, then the handle, which must be there by then. */
        __atomic_store_n(&e->seq, q->written + 1, __ATOMIC_RELEASE);
        q->written++;
        q->unflagged = true;
        /*
         * Descheduled between the first look at the clock and the store, the
         * client may be late after all: then a request has the broker take it.
         */
        if (client_now_usec() - c->last_send_usec >= WINDOW_USEC)
                (void) client_request(c, MFB_WIRE_OP_SYNC, NULL, 0, NULL, 0, NULL);
        return true;
}

void release_queue_flag(mfb_client *c, struct mfb_wire_header *header, uint64_t *ret_mark) {
        *ret_mark = 0;
        if (!c->queue.unflagged)
                return;
        header->flags |= MFB_WIRE_FLAG_QUEUED;
        *ret_mark = c->queue.written;
        c->queue.unflagged = false;
}

void release_queue_answered(mfb_client *c, uint64_t mark) {
        if (mark > c->queue.taken)
                c->queue.taken = mark;
}

void release_queue_unmap(mfb_client *c) {
        if (c->queue.page)
                (void) munmap(c->queue.page, MFB_WIRE_RELEASE_QUEUE_SIZE);
        c->queue.page = NULL;
        c->queue.slots = NULL;
}
