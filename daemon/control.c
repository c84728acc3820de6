/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "control.h"
#include "log.h"
#include "macro.h"
#include "quota.h"

/* The signal of the guard timer: a real-time one, which nothing else in the broker (nor libevent) uses. */
#define GUARD_SIGNAL (SIGRTMIN + 4)

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
        struct control_page *page;              /* NULL once revoked */
        int efd;                                /* the broker's eventfd, owned; -1 once revoked */
        uid_t uid;                              /* charged one fd for it while not revoked */
        LIST_ENTRY(control_watch) link;         /* in page->watches */
};

struct watch_table {
        struct quota *quota;                    /* borrowed */
        struct event *flush_event;              /* made active when a page is marked: runs once per pass */
        TAILQ_HEAD(, control_page) pending;
        timer_t guard;
};

/* What a watch is charged to its uid: the broker's copy of its eventfd. */
static const struct quota_amount watch_amount = { .n = { [MFB_WIRE_RESOURCE_FDS] = 1 } };

static void on_flush(evutil_socket_t fd, short what, void *userdata) {
        watch_table_flush(userdata);
}

/* Only there to interrupt a blocked write(): installed without SA_RESTART. */
static void on_guard(int sig) {
}

static int watchers_store(const struct control_page *p) {
        ssize_t n = pwrite(p->fd, &p->watchers, sizeof(p->watchers),
                           offsetof(struct mfb_wire_notify_page, watchers));

        if (n < 0)
                return negative_errno();
        return n == sizeof(p->watchers) ? 0 : -EIO;
}

int control_page_new(unsigned memfd_flags, struct control_page **ret) {
        _cleanup_(closep) int fd = -1;
        struct control_page *p;

        fd = memfd_create("mfb:control", memfd_flags);
        if (fd < 0)
                return negative_errno();
        if (ftruncate(fd, MFB_WIRE_NOTIFY_PAGE_SIZE) < 0)
                return negative_errno();
        /* Owned by the broker's uid: others cannot reopen a read-only fd of it read-write through /proc. */
        if (fchmod(fd, 0644) < 0)
                return negative_errno();
        /* So that no fd that leaves can resize it (SIGBUS for every mapping), nor seal it against writers. */
        if (fcntl(fd, F_ADD_SEALS, PAGE_SEALS) < 0)
                return negative_errno();

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
        /* The eventfds it counted died with the broker that gave them. */
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
                /* Out of memory or mappings: the waiters still wake on the eventfds, not on the futex. */
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
        struct sigaction sa = { .sa_handler = on_guard };
        struct sigevent sev = {
                .sigev_notify = SIGEV_THREAD_ID,
                .sigev_signo = GUARD_SIGNAL,
                ._sigev_un._tid = gettid(),
        };
        struct watch_table *t;
        sigset_t mask;

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

        /* No SA_RESTART: the signal is there to make a blocked write() return EINTR. */
        sigemptyset(&sa.sa_mask);
        sigemptyset(&mask);
        sigaddset(&mask, GUARD_SIGNAL);
        if (sigaction(GUARD_SIGNAL, &sa, NULL) < 0 || sigprocmask(SIG_UNBLOCK, &mask, NULL) < 0 ||
            timer_create(CLOCK_MONOTONIC, &sev, &t->guard) < 0) {
                int k = negative_errno();

                event_free(t->flush_event);
                free(t);
                return k;
        }
        *ret = t;
        return 0;
}

struct watch_table *watch_table_free(struct watch_table *t) {
        if (!t)
                return NULL;
        assert(TAILQ_EMPTY(&t->pending));
        event_free(t->flush_event);
        (void) timer_delete(t->guard);
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
        int k;

        k = quota_charge(t->quota, uid, &watch_amount, ret_refused);
        if (k < 0)
                return k;
        w = calloc(1, sizeof(*w));
        if (!w) {
                quota_discharge(t->quota, uid, &watch_amount);
                return -ENOMEM;
        }
        w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (w->efd < 0) {
                k = negative_errno();
                quota_discharge(t->quota, uid, &watch_amount);
                free(w);
                return k;
        }
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

        if (w->efd < 0)
                return -EPERM;
        fd = fcntl(w->efd, F_DUPFD_CLOEXEC, 3);
        return fd < 0 ? negative_errno() : fd;
}

/* Takes w off its page and closes its eventfd; what is left of w is its owner's to free. */
static void watch_detach(struct watch_table *t, struct control_watch *w) {
        struct control_page *p = w->page;

        if (!p)
                return;
        LIST_REMOVE(w, link);
        assert(p->watchers > 0);
        p->watchers--;
        (void) watchers_store(p);
        if (p->watchers == 0)
                page_unmark(t, p);
        w->page = NULL;
        w->efd = safe_close(w->efd);
        quota_discharge(t->quota, w->uid, &watch_amount);
}

void control_unwatch(struct watch_table *t, struct control_watch *w) {
        if (!w)
                return;
        watch_detach(t, w);
        free(w);
}

uint32_t control_page_signal(struct watch_table *t, struct control_page *p) {
        /* The broker's count, again: a writer may have changed it, and readers rely on it to send NOTIFY. */
        (void) watchers_store(p);
        if (p->watchers == 0 || p->pending)
                return 0;
        TAILQ_INSERT_TAIL(&t->pending, p, pending_link);
        p->pending = true;
        /* Once per pass, after what is being handled now, however many pages get marked meanwhile. */
        event_active(t->flush_event, EV_TIMEOUT, 1);
        return p->watchers;
}

/* Arms (or, with 0, disarms) the guard: a signal every usec microseconds. */
static void guard_set(struct watch_table *t, long usec) {
        struct itimerspec its = {
                .it_value = { .tv_nsec = usec * 1000 },
                .it_interval = { .tv_nsec = usec * 1000 },
        };

        (void) timer_settime(t->guard, 0, &its, NULL);
}

void watch_table_flush(struct watch_table *t) {
        static const uint64_t one = 1;
        struct control_page *p;

        if (TAILQ_EMPTY(&t->pending))
                return;
        /* A tick, not a single shot: one that came just before a write started would leave it blocked. */
        guard_set(t, CONTROL_GUARD_USEC);
        while ((p = TAILQ_FIRST(&t->pending))) {
                struct control_watch *w, *next;

                page_unmark(t, p);
                for (w = LIST_FIRST(&p->watches); w; w = next) {
                        next = LIST_NEXT(w, link);
                        if (write(w->efd, &one, sizeof(one)) >= 0)
                                continue;
                        /* EAGAIN: its count is near the top, so it is readable already; nothing is lost. */
                        if (errno == EAGAIN)
                                continue;
                        if (errno == EINTR) {
                                log_debug("Revoking a watch of uid %u: writing its eventfd blocked, someone made it "
                                          "blocking and filled it", (unsigned) w->uid);
                                watch_detach(t, w);
                                continue;
                        }
                        log_debug_errno(errno, "Failed to signal a watcher's eventfd: %m");
                }
        }
        guard_set(t, 0);
}
