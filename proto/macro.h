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

/* -errno of the last failed call, never 0 (so a caller cannot mistake it for success). */
static inline int negative_errno(void) {
        return errno > 0 ? -errno : -EIO;
}
