/* SPDX-License-Identifier: MIT */
#pragma once

/* Small helpers shared by the daemon, the library and the tools. */

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _public_ __attribute__((visibility("default")))

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

/* The struct of type that holds ptr as its member. */
#define container_of(ptr, type, member) ((type *) ((char *) (ptr) - offsetof(type, member)))

/* Move ownership out of a variable that has a cleanup attribute. */
#define TAKE_FD(fd) ({ int _fd_ = (fd); (fd) = -1; _fd_; })
#define TAKE_PTR(p) ({ __typeof__(p) _p_ = (p); (p) = NULL; _p_; })

/* Closes fd if it is valid, keeping errno; returns -1 for `fd = safe_close(fd);`. */
static inline int safe_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                close(fd);
                errno = saved;
        }
        return -1;
}

static inline void closep(int *fd) {
        safe_close(*fd);
}

static inline void freep(void *p) {
        free(*(void **) p);
}

/*
 * Makes room for at least want elements of size bytes in *array, of which
 * *allocated fit: at least twice as many as before (and 64 at first), so
 * that adding one at a time costs amortized O(1). Returns 0, or -ENOMEM
 * with *array and *allocated as they were. Use GREEDY_REALLOC().
 */
static inline int greedy_realloc(void **array, size_t *allocated, size_t want, size_t size) {
        size_t n = *allocated * 2 > want ? *allocated * 2 : want;
        void *p;

        if (want <= *allocated)
                return 0;
        if (n < 64)
                n = 64;
        p = reallocarray(*array, n, size);
        if (!p)
                return -ENOMEM;
        *array = p;
        *allocated = n;
        return 0;
}

#define GREEDY_REALLOC(array, allocated, want) \
        greedy_realloc((void **) &(array), &(allocated), (want), sizeof((array)[0]))

/* -errno of the last failed call, never 0 (so a caller cannot mistake it for success). */
static inline int negative_errno(void) {
        return errno > 0 ? -errno : -EIO;
}
