/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "control.h"
#include "macro.h"
#include "releasequeue.h"
#include "wire.h"

struct release_queue {
        void *page;             /* the broker's read-only mapping of it, MFB_WIRE_RELEASE_QUEUE_SIZE bytes */
        const struct mfb_wire_release_queue_entry *slots;
        uint64_t taken;         /* entries taken so far: the next one due is entry number taken */
};

/* A new read-write open of the memfd fd, a new open file description: no copy of the broker's leaves. */
static int reopen_read_write(int fd) {
        char path[sizeof("/proc/self/fd/") + 3 * sizeof(int)];
        int k;

        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        k = open(path, O_RDWR | O_CLOEXEC);
        return k < 0 ? negative_errno() : k;
}

int release_queue_new(unsigned memfd_flags, struct release_queue **ret, int *ret_client_fd) {
        _cleanup_(closep) int fd = -1, client_fd = -1;
        struct release_queue *q;
        void *page;

        /* Shrunk, the page would be a SIGBUS for the broker's reads; sealed, nothing can shrink it. */
        fd = control_page_memfd("mfb:release-queue", memfd_flags, 0600);
        if (fd < 0)
                return fd;
        client_fd = reopen_read_write(fd);
        if (client_fd < 0)
                return client_fd;
        page = mmap(NULL, MFB_WIRE_RELEASE_QUEUE_SIZE, PROT_READ, MAP_SHARED, fd, 0);
        if (page == MAP_FAILED)
                return negative_errno();

        q = calloc(1, sizeof(*q));
        if (!q) {
                (void) munmap(page, MFB_WIRE_RELEASE_QUEUE_SIZE);
                return -ENOMEM;
        }
        q->page = page;
        q->slots = (const struct mfb_wire_release_queue_entry *) ((const uint8_t *) page +
                                                                  MFB_WIRE_RELEASE_QUEUE_HEADER);
        *ret = q;
        *ret_client_fd = TAKE_FD(client_fd);
        return 0;
}

struct release_queue *release_queue_free(struct release_queue *q) {
        if (!q)
                return NULL;
        (void) munmap(q->page, MFB_WIRE_RELEASE_QUEUE_SIZE);
        free(q);
        return NULL;
}

size_t release_queue_take(struct release_queue *q, uint64_t *ret_handles, size_t max) {
        size_t n = 0;

        if (max > MFB_WIRE_RELEASE_QUEUE_SLOTS)
                max = MFB_WIRE_RELEASE_QUEUE_SLOTS;
        while (n < max) {
                const struct mfb_wire_release_queue_entry *e = &q->slots[(q->taken + n) % MFB_WIRE_RELEASE_QUEUE_SLOTS];

                /* Complete once its seq is its number + 1, stored after the handle (release, acquire). */
                if (__atomic_load_n(&e->seq, __ATOMIC_ACQUIRE) != q->taken + n + 1)
                        break;
                ret_handles[n++] = __atomic_load_n(&e->handle, __ATOMIC_RELAXED);
        }
        q->taken += n;
        return n;
}
