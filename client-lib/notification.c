/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "macro.h"
#include "notification.h"

#define NSEC_PER_SEC INT64_C(1000000000)
#define NSEC_PER_MSEC INT64_C(1000000)

/* The futex word: the low 32 bits of seq. */
static uint32_t *futex_word(struct mfb_wire_notify_page *page) {
        return (uint32_t *) ((uint8_t *) page + MFB_WIRE_NOTIFY_FUTEX_OFFSET);
}

void region_notify_done(struct region_notify *n) {
        if (n->page) {
                (void) munmap(n->page, MFB_WIRE_NOTIFY_PAGE_SIZE);
                n->page = NULL;
        }
        n->page_fd = safe_close(n->page_fd);
        n->event_fd = safe_close(n->event_fd);
}

/* The broker's HELLO said whether it serves notifications; that stays known after the connection goes. */
static int check_capable(mfb_client *c) {
        return c->hello.capabilities & MFB_WIRE_CAP_NOTIFY ? 0 : -EOPNOTSUPP;
}

/* What NOTIFIER's parse gets: the access expected, and where the fd goes. */
struct notifier_call {
        int access;                     /* of the region: O_RDWR expects a read-write page */
        int fd;
};

/*
 * A page fd as PROTOCOL.md describes it: a memfd of the page's size that
 * cannot be resized, open with the access the reply says. A writer must
 * get a read-write one; a reader takes what it gets, and maps it read-only.
 */
static int notifier_parse(mfb_client *c, const struct client_reply *reply, void *userdata) {
        struct notifier_call *nc = userdata;
        struct mfb_wire_notifier_reply body;
        int fd = reply->fds[0], seals, flags;
        struct stat st;

        memcpy(&body, reply->body, sizeof(body));
        if (body.reserved != 0 || (body.access != MFB_WIRE_ACCESS_READ &&
                                   body.access != (MFB_WIRE_ACCESS_READ | MFB_WIRE_ACCESS_WRITE)))
                return client_protocol_error(c);
        if (nc->access == O_RDWR && !(body.access & MFB_WIRE_ACCESS_WRITE))
                return client_protocol_error(c);
        seals = fcntl(fd, F_GET_SEALS);
        flags = fcntl(fd, F_GETFL);
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size != MFB_WIRE_NOTIFY_PAGE_SIZE || seals < 0 ||
            (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW) || flags < 0 ||
            (flags & O_ACCMODE) != (body.access & MFB_WIRE_ACCESS_WRITE ? O_RDWR : O_RDONLY))
                return client_protocol_error(c);
        nc->fd = fd;
        reply->fds[0] = -1;
        return 0;
}

/* Maps the control page, asking the broker for it the first time; -EOPNOTSUPP from a broker without notifications. */
static int need_page(mfb_client *c, uint64_t handle, int access, struct region_notify *n) {
        struct mfb_wire_notify_request request = { .handle = handle };
        struct notifier_call nc = { .access = access, .fd = -1 };
        _cleanup_(closep) int fd = -1;
        void *addr;
        int k;

        if (n->page)
                return 0;
        k = check_capable(c);
        if (k < 0)
                return k;
        k = client_call(c, MFB_WIRE_OP_NOTIFIER, &request, sizeof(request), notifier_parse, &nc);
        fd = nc.fd;
        if (k < 0)
                return k;
        addr = mmap(NULL, MFB_WIRE_NOTIFY_PAGE_SIZE, access == O_RDWR ? PROT_READ | PROT_WRITE : PROT_READ,
                    MAP_SHARED, fd, 0);
        if (addr == MAP_FAILED)
                return negative_errno();
        n->page = addr;
        n->page_fd = TAKE_FD(fd);
        return 0;
}

int region_notify_signal(mfb_client *c, uint64_t handle, int access, struct region_notify *n) {
        struct mfb_wire_notify_request request = { .handle = handle };
        int k;

        k = need_page(c, handle, access, n);
        if (k < 0)
                return k;
        (void) __atomic_add_fetch(&n->page->seq, 1, __ATOMIC_SEQ_CST);
        /* Shared, not FUTEX_PRIVATE_FLAG: the waiters are in other processes. */
        (void) syscall(SYS_futex, futex_word(n->page), FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
        /*
         * Without a connection the notification is made all the same: the
         * futex waiters woke, and the pipes of watchers died with the broker
         * that wrote them (their readers see end of file).
         */
        if (__atomic_load_n(&n->page->watchers, __ATOMIC_SEQ_CST) == 0 || !client_usable(c))
                return 0;
        /* Quiet, and not waited for: the broker signals the watchers; a refusal is read and dropped. */
        return client_request(c, MFB_WIRE_OP_NOTIFY, &request, sizeof(request), NULL, 0, NULL);
}

static int64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

int region_notify_wait(mfb_client *c, uint64_t handle, int access, struct region_notify *n, uint64_t *seq,
                       int64_t timeout_ms) {
        int64_t deadline = 0;
        int k;

        k = need_page(c, handle, access, n);
        if (k < 0)
                return k;
        if (timeout_ms > 0)
                deadline = timeout_ms > (INT64_MAX - now_ns()) / NSEC_PER_MSEC ? INT64_MAX
                                                                                 : now_ns() + timeout_ms * NSEC_PER_MSEC;
        for (;;) {
                uint64_t cur = __atomic_load_n(&n->page->seq, __ATOMIC_SEQ_CST);
                struct timespec ts, *tsp = NULL;

                if (cur != *seq) {
                        *seq = cur;
                        return 0;
                }
                if (timeout_ms == 0)
                        return -ETIMEDOUT;
                if (timeout_ms > 0 && deadline != INT64_MAX) {
                        int64_t left = deadline - now_ns();

                        if (left <= 0)
                                return -ETIMEDOUT;
                        ts = (struct timespec) { .tv_sec = left / NSEC_PER_SEC, .tv_nsec = left % NSEC_PER_SEC };
                        tsp = &ts;
                }
                /*
                 * Sleeps only while the low 32 bits are still cur's: a notification
                 * between the load and here makes it return at once (EAGAIN). Any
                 * wake-up (a reader may FUTEX_WAKE too, EINTR) just checks again.
                 */
                (void) syscall(SYS_futex, futex_word(n->page), FUTEX_WAIT, (uint32_t) cur, tsp, NULL, 0);
        }
}

/* What NOTIFY_WATCH's parse gets: where the fd goes. */
static int watch_parse(mfb_client *c, const struct client_reply *reply, void *userdata) {
        int *ret_fd = userdata, fd = reply->fds[0], flags;
        struct stat st;

        /* A pipe's read end, non-blocking, as PROTOCOL.md promises: mfb_region_notify_read() must never block. */
        flags = fcntl(fd, F_GETFL);
        if (fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode) || flags < 0 || (flags & O_ACCMODE) != O_RDONLY ||
            !(flags & O_NONBLOCK))
                return client_protocol_error(c);
        *ret_fd = fd;
        reply->fds[0] = -1;
        return 0;
}

int region_notify_fd(mfb_client *c, uint64_t handle, int access, struct region_notify *n) {
        struct mfb_wire_notify_request request = { .handle = handle };
        int k, fd = -1;

        if (n->event_fd >= 0)
                return n->event_fd;
        /* The page too, now: then region_notify_read() never asks the broker anything. */
        k = need_page(c, handle, access, n);
        if (k < 0)
                return k;
        k = client_call(c, MFB_WIRE_OP_NOTIFY_WATCH, &request, sizeof(request), watch_parse, &fd);
        if (k < 0) {
                safe_close(fd);
                return k;
        }
        n->event_fd = fd;
        return fd;
}

/*
 * Reads fd (a non-blocking pipe) empty. Returns 0 once it would block, -ENOTCONN at end of file (no write end
 * left: the broker that gave it is gone, and the fd polls readable for good), or -errno.
 */
static int drain(int fd) {
        uint8_t buf[256];

        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));

                if (n > 0)
                        continue;
                if (n == 0)
                        return -ENOTCONN;
                if (errno == EAGAIN)
                        return 0;
                if (errno != EINTR)
                        return negative_errno();
        }
}

int region_notify_read(mfb_client *c, uint64_t handle, int access, struct region_notify *n, uint64_t *ret_seq) {
        int k;

        k = need_page(c, handle, access, n);
        if (k < 0)
                return k;
        /* Before the sequence is read: a notification after the read makes the fd readable again. */
        k = n->event_fd >= 0 ? drain(n->event_fd) : 0;
        /* At end of file too: the page is memory, and its sequence as good as ever. */
        *ret_seq = __atomic_load_n(&n->page->seq, __ATOMIC_SEQ_CST);
        return k;
}
