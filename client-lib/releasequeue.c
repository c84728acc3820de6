/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "releasequeue.h"

#define WINDOW_USEC ((uint64_t) MFB_WIRE_RELEASE_QUEUE_WINDOW_MS * 1000)

uint64_t release_queue_now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

bool release_queue_wanted(struct release_queue *q) {
        return q->state == QUEUE_NONE && q->releases++ > 0;
}

/* Whether fd is what PROTOCOL.md says a queue's is: a page of the right size, read-write, not resizable. */
static bool page_fd_valid(int fd) {
        struct stat st;
        int seals = fcntl(fd, F_GET_SEALS), flags = fcntl(fd, F_GETFL);

        return fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == MFB_WIRE_RELEASE_QUEUE_SIZE &&
               seals >= 0 && (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) == (F_SEAL_SHRINK | F_SEAL_GROW) &&
               flags >= 0 && (flags & O_ACCMODE) == O_RDWR;
}

void release_queue_answered(struct release_queue *q, const void *body, int fd) {
        struct mfb_wire_release_queue_reply reply;
        void *page = MAP_FAILED;

        memcpy(&reply, body, sizeof(reply));
        if (reply.slots == MFB_WIRE_RELEASE_QUEUE_SLOTS && page_fd_valid(fd))
                page = mmap(NULL, MFB_WIRE_RELEASE_QUEUE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (page == MAP_FAILED) {
                q->state = QUEUE_REFUSED;
                return;
        }
        q->page = page;
        q->slots = (struct mfb_wire_release_queue_entry *) ((uint8_t *) page + MFB_WIRE_RELEASE_QUEUE_HEADER);
        q->state = QUEUE_READY;
}

bool release_queue_put(struct release_queue *q, uint64_t handle, uint64_t last_send_usec, bool *ret_late) {
        struct mfb_wire_release_queue_entry *e;

        *ret_late = false;
        if (q->state != QUEUE_READY || q->written - q->taken >= MFB_WIRE_RELEASE_QUEUE_SLOTS ||
            release_queue_now_usec() - last_send_usec >= WINDOW_USEC)
                return false;
        e = &q->slots[q->written % MFB_WIRE_RELEASE_QUEUE_SLOTS];
        e->handle = handle;
        /* The seq completes the entry: the broker reads it, then the handle, which must be there by then. */
        __atomic_store_n(&e->seq, q->written + 1, __ATOMIC_RELEASE);
        q->written++;
        q->unflagged = true;
        /* Descheduled between the first look at the clock and the store, the client may be late after all. */
        *ret_late = release_queue_now_usec() - last_send_usec >= WINDOW_USEC;
        return true;
}

void release_queue_flag(struct release_queue *q, struct mfb_wire_header *header, uint64_t *ret_mark) {
        *ret_mark = 0;
        if (!q->unflagged)
                return;
        header->flags |= MFB_WIRE_FLAG_QUEUED;
        *ret_mark = q->written;
        q->unflagged = false;
}

void release_queue_taken(struct release_queue *q, uint64_t mark) {
        if (mark > q->taken)
                q->taken = mark;
}

void release_queue_unmap(struct release_queue *q) {
        if (q->page)
                (void) munmap(q->page, MFB_WIRE_RELEASE_QUEUE_SIZE);
        q->page = NULL;
        q->slots = NULL;
}
