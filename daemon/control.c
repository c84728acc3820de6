/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <event2/event.h>

#include "control.h"
#include "log.h"
#include "macro.h"
#include "quota.h"

/* What a watch's pipe is cut to: one slot of a page, the least the kernel allows. */
#define WATCH_PIPE_SIZE 4096

#define PAGE_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

/*
 * The broker keeps no mapping of a page: with one per page, regions made
 * by one uid could use up the broker's vm.max_map_count, and with it every
 * mapping malloc() makes. It reads and writes the page with pread() and
 * pwrite(), which see the same page cache as every client's mapping, and
 * maps it only for the moment of an MFB_WIRE_NOTIFY_ADVANCE, which needs an
 * atomic add and a futex address.
 */
struct control_page {
        int fd;                                 /* the broker's read-write memfd, owned */
        uint32_t watchers;                      /* the broker's count, which the page shows */
        bool pending;                           /* in its table's pending pages, to be signalled */
        TAILQ_ENTRY(control_page) pending_link;
        LIST_HEAD(, control_watch) watches;
};

struct control_watch {
        struct control_page *page;
        int write_fd;                           /* the pipe's write end, owned: never leaves the broker */
        int read_fd;                            /* its read end, owned: only copied for the client */
        uid_t uid;                              /* charged two fds for them */
        LIST_ENTRY(control_watch) link;         /* in page->watches */
};

struct watch_table {
        struct quota *quota;                    /* borrowed */
        struct event *flush_event;              /* made active when a page is marked: runs once per pass */
        TAILQ_HEAD(, control_page) pending;
};

/* What a watch is charged to its uid: the broker's two ends of its pipe. */
static const struct quota_amount watch_amount = { .n = { [MFB_WIRE_RESOURCE_FDS] = 2 } };

static void on_flush(evutil_socket_t fd, short what, void *userdata) {
        watch_table_flush(userdata);
}

static int watchers_store(const struct control_page *p) {
        ssize_t n = pwrite(p->fd, &p->watchers, sizeof(p->watchers),
                           offsetof(struct mfb_wire_notify_page, watchers));

        if (n < 0)
                return negative_errno();
        return n == sizeof(p->watchers) ? 0 : -EIO;
}

_Static_assert(MFB_WIRE_NOTIFY_PAGE_SIZE == MFB_WIRE_RELEASE_QUEUE_SIZE, "one size of page");

int control_page_memfd(const char *name, unsigned memfd_flags, mode_t mode) {
        _cleanup_(closep) int fd = -1;

        fd = memfd_create(name, memfd_flags);
        if (fd < 0)
                return negative_errno();
        if (ftruncate(fd, MFB_WIRE_NOTIFY_PAGE_SIZE) < 0)
                return negative_errno();
        /* Owned by the broker's uid: others cannot reopen a read-only fd of it read-write through /proc. */
        if (fchmod(fd, mode) < 0)
                return negative_errno();
        /* So that no fd that leaves can resize it (SIGBUS for every mapping), nor seal it against writers. */
        if (fcntl(fd, F_ADD_SEALS, PAGE_SEALS) < 0)
                return negative_errno();
        return TAKE_FD(fd);
}

int control_page_new(unsigned memfd_flags, struct control_page **ret) {
        _cleanup_(closep) int fd = -1;
        struct control_page *p;

        fd = control_page_memfd("mfb:control", memfd_flags, 0644);
        if (fd < 0)
                return fd;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->fd = TAKE_FD(fd);
        LIST_INIT(&p->watches);
        *ret = p;
        return 0;
}

int control_page_adopt(int fd, struct control_page **ret, const char **ret_why) {
        _cleanup_(closep) int owned = fd;
        struct control_page *p;
        struct stat st;
        int seals, flags, k;

        *ret_why = NULL;
        seals = fcntl(fd, F_GET_SEALS);
        flags = fcntl(fd, F_GETFL);
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || seals < 0)
                *ret_why = "is not a memfd";
        else if ((seals & PAGE_SEALS) != PAGE_SEALS)
                *ret_why = "is not sealed against resizing and new seals";
        else if (st.st_size != MFB_WIRE_NOTIFY_PAGE_SIZE)
                *ret_why = "is not of the page's size";
        else if (flags < 0 || (flags & O_ACCMODE) != O_RDWR)
                *ret_why = "is not open read-write";
        if (*ret_why)
                return -EBADF;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->fd = TAKE_FD(owned);
        LIST_INIT(&p->watches);
        /* The pipes it counted died with the broker that gave them. */
        k = watchers_store(p);
        if (k < 0) {
                control_page_free(p);
                return k;
        }
        *ret = p;
        return 0;
}

struct control_page *control_page_free(struct control_page *p) {
        if (!p)
                return NULL;
        assert(LIST_EMPTY(&p->watches) && !p->pending);
        safe_close(p->fd);
        free(p);
        return NULL;
}

int control_page_fd(const struct control_page *p) {
        return p->fd;
}

int control_page_open(const struct control_page *p, bool writable) {
        char path[sizeof("/proc/self/fd/") + 3 * sizeof(int)];
        int fd;

        /* A new open file description, O_RDONLY for real: no copy of the broker's fd ever leaves. */
        snprintf(path, sizeof(path), "/proc/self/fd/%d", p->fd);
        fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
        return fd < 0 ? negative_errno() : fd;
}

uint64_t control_page_seq(const struct control_page *p) {
        uint64_t seq = 0;

        /* Only what a reply tells; a failure (which a memfd does not have) reads as 0. */
        if (pread(p->fd, &seq, sizeof(seq), offsetof(struct mfb_wire_notify_page, seq)) != sizeof(seq))
                return 0;
        return seq;
}

uint64_t control_page_advance(struct control_page *p) {
        struct mfb_wire_notify_page *page;
        uint64_t seq;

        page = mmap(NULL, MFB_WIRE_NOTIFY_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, p->fd, 0);
        if (page == MAP_FAILED) {
                /* Out of memory or mappings: the waiters still wake on the pipes, not on the futex. */
                log_warning_errno(errno, "Failed to map a control page to advance it: %m");
                return control_page_seq(p);
        }
        seq = __atomic_add_fetch(&page->seq, 1, __ATOMIC_SEQ_CST);
        /* Shared (no FUTEX_PRIVATE_FLAG): the waiters are other processes, keyed by the page, not the address. */
        (void) syscall(SYS_futex, (uint32_t *) ((uint8_t *) page + MFB_WIRE_NOTIFY_FUTEX_OFFSET), FUTEX_WAKE,
                       INT_MAX, NULL, NULL, 0);
        (void) munmap(page, MFB_WIRE_NOTIFY_PAGE_SIZE);
        return seq;
}

uint32_t control_page_watchers(const struct control_page *p) {
        return p->watchers;
}

int watch_table_new(struct event_base *base, struct quota *quota, struct watch_table **ret) {
        struct watch_table *t;

        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->quota = quota;
        TAILQ_INIT(&t->pending);
        t->flush_event = event_new(base, -1, 0, on_flush, t);
        if (!t->flush_event) {
                free(t);
                return -ENOMEM;
        }
        *ret = t;
        return 0;
}

struct watch_table *watch_table_free(struct watch_table *t) {
        if (!t)
                return NULL;
        assert(TAILQ_EMPTY(&t->pending));
        event_free(t->flush_event);
        free(t);
        return NULL;
}

/* Takes p out of the pending pages, which it no longer needs to be in. */
static void page_unmark(struct watch_table *t, struct control_page *p) {
        if (!p->pending)
                return;
        TAILQ_REMOVE(&t->pending, p, pending_link);
        p->pending = false;
}

int control_watch(struct watch_table *t, struct control_page *p, uid_t uid, struct control_watch **ret,
                  enum mfb_wire_resource *ret_refused) {
        struct control_watch *w;
        int k, fds[2];

        k = quota_charge(t->quota, uid, &watch_amount, ret_refused);
        if (k < 0)
                return k;
        w = calloc(1, sizeof(*w));
        if (!w) {
                quota_discharge(t->quota, uid, &watch_amount);
                return -ENOMEM;
        }
        /*
         * Non-blocking for good on the write end: that open file description
         * stays in the broker (clients get copies of the read end only), so
         * nobody can clear O_NONBLOCK on it, and a full pipe fails a write
         * with EAGAIN instead of blocking the broker.
         */
        if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
                k = negative_errno();
                quota_discharge(t->quota, uid, &watch_amount);
                free(w);
                return k;
        }
        /*
         * One page, not the default 16: what a watcher that never reads
         * keeps in the kernel. Not fatal: a bigger pipe works the same, it
         * only costs more.
         */
        if (fcntl(fds[1], F_SETPIPE_SZ, WATCH_PIPE_SIZE) < 0)
                log_debug_errno(errno, "Failed to cut a watch's pipe to %d bytes: %m", WATCH_PIPE_SIZE);
        w->read_fd = fds[0];
        w->write_fd = fds[1];
        w->page = p;
        w->uid = uid;
        LIST_INSERT_HEAD(&p->watches, w, link);
        p->watchers++;
        (void) watchers_store(p);
        *ret = w;
        return 0;
}

int control_watch_fd(const struct control_watch *w) {
        int fd;

        /* Shares the read end's file description: what the client does to it (O_NONBLOCK too) is the client's. */
        fd = fcntl(w->read_fd, F_DUPFD_CLOEXEC, 3);
        return fd < 0 ? negative_errno() : fd;
}

void control_unwatch(struct watch_table *t, struct control_watch *w) {
        struct control_page *p;

        if (!w)
                return;
        p = w->page;
        LIST_REMOVE(w, link);
        assert(p->watchers > 0);
        p->watchers--;
        (void) watchers_store(p);
        if (p->watchers == 0)
                page_unmark(t, p);
        /* The broker's write end: with it gone, the client's copies of the read end report end of file. */
        safe_close(w->write_fd);
        safe_close(w->read_fd);
        quota_discharge(t->quota, w->uid, &watch_amount);
        free(w);
}

uint32_t control_page_signal(struct watch_table *t, struct control_page *p) {
        /* The broker's count, again: a writer may have changed it, and writers rely on it to send NOTIFY. */
        (void) watchers_store(p);
        if (p->watchers == 0 || p->pending)
                return 0;
        TAILQ_INSERT_TAIL(&t->pending, p, pending_link);
        p->pending = true;
        /* Once per pass, after what is being handled now, however many pages get marked meanwhile. */
        event_active(t->flush_event, EV_TIMEOUT, 1);
        return p->watchers;
}

/*
 * Whether w's pipe holds nothing, so that its watcher needs a byte to wake.
 * One byte is all it ever needs (the bytes carry nothing but readiness), and
 * writing only to an empty pipe keeps what a watcher that never reads holds
 * in the kernel to that byte: the client may grow the pipe with
 * F_SETPIPE_SZ on its read end, up to /proc/sys/fs/pipe-max-size, and the
 * pages would be the broker's, who made the pipe. If the ioctl fails, write:
 * a full pipe refuses the byte harmlessly.
 */
static bool watch_pipe_empty(const struct control_watch *w) {
        int queued;

        return ioctl(w->write_fd, FIONREAD, &queued) < 0 || queued == 0;
}

void watch_table_flush(struct watch_table *t) {
        static const uint8_t one = 1;
        struct control_page *p;

        while ((p = TAILQ_FIRST(&t->pending))) {
                struct control_watch *w;

                page_unmark(t, p);
                LIST_FOREACH(w, &p->watches, link) {
                        /* A byte waits: readable already, nothing is lost. */
                        if (!watch_pipe_empty(w))
                                continue;
                        /* EAGAIN: full after all (the ioctl failed), so readable already too. */
                        if (write(w->write_fd, &one, sizeof(one)) >= 0 || errno == EAGAIN)
                                continue;
                        /* Not EPIPE: the broker keeps the read end. Nothing else is expected of a pipe. */
                        log_debug_errno(errno, "Failed to signal a watcher of uid %u: %m", (unsigned) w->uid);
                }
        }
}
