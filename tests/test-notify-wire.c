/* SPDX-License-Identifier: MIT */
/*
 * Notifications at the protocol level (PROTOCOL.md, "Notifications"):
 * NOTIFIER, NOTIFY_WATCH and NOTIFY over raw connections, what each kind of
 * holder may do with the control page, how watchers are signalled and
 * cleaned up, what a watcher that never reads cannot do to the broker, and
 * the quota a page is charged to. One test drives the broker's watch table
 * (daemon/control.h) directly, for what a socket cannot show exactly: how
 * often a burst of notifications writes a watcher's pipe.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "control.h"
#include "harness.h"
#include "macro.h"
#include "memfd-broker.h"
#include "quota.h"
#include "raw.h"
#include "suites.h"
#include "wire.h"

#define OTHER_ID 65534
#define PAGE 4096

/* Creates a region of one page on c, read-write, mode 0644 (others may open it read-only). Returns its handle. */
static uint64_t create(int c, const char *name) {
        struct mfb_wire_create_request req = { .size = PAGE, .mode = 0644 };
        struct mfb_wire_region_reply reply;
        int fd = -1;

        if (name)
                strcpy(req.name.bytes, name);
        raw_send(c, MFB_WIRE_OP_CREATE, &req, sizeof(req), NULL, 0);
        ck_assert_int_eq(raw_reply(c, MFB_WIRE_OP_CREATE, &reply, sizeof(reply), &fd), 0);
        ck_assert_int_ge(fd, 0);
        close(fd);
        return reply.info.handle;
}

/* Opens handle on c with access (MFB_WIRE_ACCESS_*). */
static void open_handle(int c, uint64_t handle, uint32_t access) {
        struct mfb_wire_open_request req = { .handle = handle, .access = access };

        ck_assert_int_eq(raw_request(c, MFB_WIRE_OP_OPEN, &req, sizeof(req), NULL, 0), 0);
}

static int32_t notifier(int c, uint64_t handle, struct mfb_wire_notifier_reply *ret, int *ret_fd) {
        struct mfb_wire_notify_request req = { .handle = handle };

        raw_send(c, MFB_WIRE_OP_NOTIFIER, &req, sizeof(req), NULL, 0);
        return raw_reply(c, MFB_WIRE_OP_NOTIFIER, ret, sizeof(*ret), ret_fd);
}

static int32_t watch(int c, uint64_t handle, int *ret_fd) {
        struct mfb_wire_notify_request req = { .handle = handle };
        struct mfb_wire_notify_reply reply;

        raw_send(c, MFB_WIRE_OP_NOTIFY_WATCH, &req, sizeof(req), NULL, 0);
        return raw_reply(c, MFB_WIRE_OP_NOTIFY_WATCH, &reply, sizeof(reply), ret_fd);
}

static int32_t notify(int c, uint64_t handle, uint32_t flags, uint64_t *ret_seq) {
        struct mfb_wire_notify_request req = { .handle = handle, .flags = flags };
        struct mfb_wire_notify_reply reply = {};
        int32_t k;

        raw_send(c, MFB_WIRE_OP_NOTIFY, &req, sizeof(req), NULL, 0);
        k = raw_reply(c, MFB_WIRE_OP_NOTIFY, &reply, sizeof(reply), NULL);
        if (ret_seq)
                *ret_seq = reply.seq;
        return k;
}

static void release(int c, uint64_t handle) {
        struct mfb_wire_release_request req = { .handle = handle };

        ck_assert_int_eq(raw_request(c, MFB_WIRE_OP_RELEASE, &req, sizeof(req), NULL, 0), 0);
}

/* The page of handle, mapped read-only through a NOTIFIER on c; its fd closed. */
static volatile struct mfb_wire_notify_page *map_page(int c, uint64_t handle) {
        struct mfb_wire_notifier_reply reply;
        void *addr;
        int fd = -1;

        ck_assert_int_eq(notifier(c, handle, &reply, &fd), 0);
        addr = mmap(NULL, MFB_WIRE_NOTIFY_PAGE_SIZE, PROT_READ, MAP_SHARED, fd, 0);
        ck_assert_ptr_ne(addr, MAP_FAILED);
        close(fd);
        return addr;
}

static void unmap_page(volatile struct mfb_wire_notify_page *p) {
        ck_assert_int_eq(munmap((void *) p, MFB_WIRE_NOTIFY_PAGE_SIZE), 0);
}

/* A watch's pipe, read empty: how many bytes it held; 0 when none (EAGAIN). Not at end of file. */
static size_t pipe_take(int fd) {
        uint8_t buf[512];
        size_t total = 0;
        ssize_t n;

        while ((n = read(fd, buf, sizeof(buf))) > 0)
                total += (size_t) n;
        ck_assert_msg(n < 0, "the watch's pipe is at end of file");
        ck_assert_int_eq(errno, EAGAIN);
        return total;
}

/* Whether fd, a watch's pipe, is at end of file once read empty: the broker closed its write end. */
static bool pipe_ended(int fd) {
        uint8_t buf[512];
        ssize_t n;

        while ((n = read(fd, buf, sizeof(buf))) > 0)
                ;
        return n == 0;
}

/* How many bytes wait in fd, a pipe. */
static size_t pipe_queued(int fd) {
        int n = -1;

        ck_assert_int_eq(ioctl(fd, FIONREAD, &n), 0);
        ck_assert_int_ge(n, 0);
        return (size_t) n;
}

/* What the broker cuts a watch's pipe to: 4096 bytes, which the kernel rounds up to one of its pages. */
static int one_page(void) {
        long page = sysconf(_SC_PAGESIZE);

        return page > 4096 ? (int) page : 4096;
}

/* What NOTIFY_WATCH promises (PROTOCOL.md): a pipe's read end, non-blocking. */
static void assert_watch_fd(int fd) {
        struct stat st;
        int flags = fcntl(fd, F_GETFL);

        ck_assert_int_eq(fstat(fd, &st), 0);
        ck_assert(S_ISFIFO(st.st_mode));
        ck_assert_int_ge(flags, 0);
        ck_assert_int_eq(flags & O_ACCMODE, O_RDONLY);
        ck_assert_int_ne(flags & O_NONBLOCK, 0);
}

/* Waits until fd is readable; false after TEST_TIMEOUT_MS. */
static bool readable(int fd) {
        struct pollfd p = { .fd = fd, .events = POLLIN };

        return poll(&p, 1, TEST_TIMEOUT_MS) == 1;
}

/* Waits until the page counts want watchers: a hangup is handled when the broker gets to it. */
static bool watchers_become(volatile struct mfb_wire_notify_page *p, uint32_t want) {
        for (unsigned i = 0; i < TEST_TIMEOUT_MS; i++) {
                if (p->watchers == want)
                        return true;
                nanosleep(&(struct timespec) { .tv_nsec = 1000000 }, NULL);
        }
        return false;
}

START_TEST(notifier_gives_writers_read_write_and_readers_read_only) {
        int writer = raw_connect_hello(&test_broker), reader = raw_connect_hello(&test_broker);
        struct mfb_wire_notifier_reply reply;
        uint64_t handle = create(writer, "notifier-access");
        int rw = -1, ro = -1, seals;
        struct stat st;

        /* Not held yet: as if there were no such region. */
        ck_assert_int_eq(notifier(reader, handle, &reply, &ro), -ENOENT);
        ck_assert_int_eq(ro, -1);
        open_handle(reader, handle, MFB_WIRE_ACCESS_READ);

        ck_assert_int_eq(notifier(writer, handle, &reply, &rw), 0);
        ck_assert_uint_eq(reply.access, MFB_WIRE_ACCESS_READ | MFB_WIRE_ACCESS_WRITE);
        ck_assert_uint_eq(reply.seq, 0);
        ck_assert_int_eq(fcntl(rw, F_GETFL) & O_ACCMODE, O_RDWR);

        ck_assert_int_eq(notifier(reader, handle, &reply, &ro), 0);
        ck_assert_uint_eq(reply.access, MFB_WIRE_ACCESS_READ);
        ck_assert_int_eq(fcntl(ro, F_GETFL) & O_ACCMODE, O_RDONLY);
        ck_assert_ptr_eq(mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0), MAP_FAILED);
        ck_assert_int_eq(errno, EACCES);

        /* One page, as PROTOCOL.md describes it, whichever fd. */
        ck_assert_int_eq(fstat(ro, &st), 0);
        ck_assert_int_eq(st.st_size, MFB_WIRE_NOTIFY_PAGE_SIZE);
        ck_assert_int_eq(st.st_mode & 07777, 0644);
        seals = fcntl(ro, F_GET_SEALS);
        ck_assert_int_eq(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
                         F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
        ck_assert_int_eq(ftruncate(rw, 2 * PAGE), -1);
        ck_assert_int_eq(fcntl(rw, F_ADD_SEALS, F_SEAL_WRITE), -1);
        ck_assert_int_eq(errno, EPERM);

        close(rw);
        close(ro);
        close(reader);
        close(writer);
}
END_TEST

START_TEST(readers_cannot_notify) {
        int writer = raw_connect_hello(&test_broker), reader = raw_connect_hello(&test_broker);
        uint64_t handle = create(writer, NULL), seq;
        volatile struct mfb_wire_notify_page *page;

        open_handle(reader, handle, MFB_WIRE_ACCESS_READ);
        page = map_page(writer, handle);
        ck_assert_int_eq(notify(reader, handle, MFB_WIRE_NOTIFY_ADVANCE, NULL), -EPERM);
        ck_assert_int_eq(notify(reader, handle, 0, NULL), -EPERM);
        ck_assert_uint_eq(page->seq, 0);
        /* Unknown flags, and a handle not held, are refused before anything happens. */
        ck_assert_int_eq(notify(writer, handle, 0x80, NULL), -EINVAL);
        ck_assert_int_eq(notify(writer, handle + 1000, MFB_WIRE_NOTIFY_ADVANCE, NULL), -ENOENT);
        ck_assert_uint_eq(page->seq, 0);
        /* A writer that can: the same page moves. */
        ck_assert_int_eq(notify(writer, handle, MFB_WIRE_NOTIFY_ADVANCE, &seq), 0);
        ck_assert_uint_eq(seq, 1);
        ck_assert_uint_eq(page->seq, 1);

        unmap_page(page);
        close(reader);
        close(writer);
}
END_TEST

/* In a child that became OTHER_ID: the read-only page fd it inherited cannot become a writable one. */
static int reopen_as_other(void *arg) {
        int fd = *(int *) arg, rw;
        char path[64];

        TEST_CHILD_CHECK(setgroups(0, NULL) == 0);
        TEST_CHILD_CHECK(setresgid(OTHER_ID, OTHER_ID, OTHER_ID) == 0);
        TEST_CHILD_CHECK(setresuid(OTHER_ID, OTHER_ID, OTHER_ID) == 0);
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        rw = open(path, O_RDWR | O_CLOEXEC);
        TEST_CHILD_CHECK(rw < 0 && errno == EACCES);
        TEST_CHILD_CHECK(mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED);
        TEST_CHILD_CHECK(fchmod(fd, 0666) < 0);
        return 0;
}

START_TEST(readers_cannot_reopen_the_page_writable) {
        int writer, reader, ro = -1;
        struct mfb_wire_notifier_reply reply;
        uint64_t handle;

        if (geteuid() != 0) {
                fprintf(stderr, "SKIP %s: needs root to switch to uid %d\n", __func__, OTHER_ID);
                return;
        }
        writer = raw_connect_hello(&test_broker);
        reader = raw_connect_hello(&test_broker);
        handle = create(writer, NULL);
        open_handle(reader, handle, MFB_WIRE_ACCESS_READ);
        ck_assert_int_eq(notifier(reader, handle, &reply, &ro), 0);
        test_child_succeeded(test_fork(reopen_as_other, &ro));
        close(ro);
        close(reader);
        close(writer);
}
END_TEST

struct futex_waiter {
        volatile struct mfb_wire_notify_page *page;
        pid_t tid;
        long result;
        int error;
};

static void *futex_wait_thread(void *arg) {
        struct futex_waiter *w = arg;
        struct timespec timeout = { .tv_sec = TEST_TIMEOUT_MS / 1000 };

        __atomic_store_n(&w->tid, gettid(), __ATOMIC_SEQ_CST);
        w->result = syscall(SYS_futex, (uint32_t *) ((uint8_t *) w->page + MFB_WIRE_NOTIFY_FUTEX_OFFSET), FUTEX_WAIT,
                            0, &timeout, NULL, 0);
        w->error = w->result < 0 ? errno : 0;
        return NULL;
}

/* Whether thread tid of this process sleeps now (state S in its stat). */
static bool thread_sleeps(pid_t tid) {
        char path[64], buf[256], *p;

        snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int) tid);
        if (test_read_text(path, buf, sizeof(buf)) <= 0)
                return false;
        p = strrchr(buf, ')');
        return p && p[1] == ' ' && p[2] == 'S';
}

START_TEST(advance_wakes_futex_waiters) {
        int writer = raw_connect_hello(&test_broker), reader = raw_connect_hello(&test_broker);
        uint64_t handle = create(writer, NULL), seq = 0;
        struct futex_waiter w = {};
        pthread_t thread;
        unsigned i;

        open_handle(reader, handle, MFB_WIRE_ACCESS_READ);
        /* A reader's read-only mapping is enough to wait on. */
        w.page = map_page(reader, handle);
        ck_assert_int_eq(pthread_create(&thread, NULL, futex_wait_thread, &w), 0);
        /* Until it sleeps in FUTEX_WAIT: then only a wake-up gets it out before its timeout. */
        for (i = 0; i < TEST_TIMEOUT_MS && !(__atomic_load_n(&w.tid, __ATOMIC_SEQ_CST) && thread_sleeps(w.tid)); i++)
                nanosleep(&(struct timespec) { .tv_nsec = 1000000 }, NULL);
        ck_assert_uint_lt(i, TEST_TIMEOUT_MS);

        ck_assert_int_eq(notify(writer, handle, MFB_WIRE_NOTIFY_ADVANCE, &seq), 0);
        ck_assert_int_eq(pthread_join(thread, NULL), 0);
        ck_assert_msg(w.result == 0, "FUTEX_WAIT returned %ld (%s), not woken", w.result, strerror(w.error));
        ck_assert_uint_eq(seq, 1);
        ck_assert_uint_eq(w.page->seq, 1);

        unmap_page(w.page);
        close(reader);
        close(writer);
}
END_TEST

START_TEST(watchers_are_signalled) {
        enum { BURST = 50 };
        int writer = raw_connect_hello(&test_broker), reader = raw_connect_hello(&test_broker);
        uint64_t handle = create(writer, NULL), value;
        volatile struct mfb_wire_notify_page *page;
        struct stat st, st_again;
        int efd = -1, again = -1;

        open_handle(reader, handle, MFB_WIRE_ACCESS_READ);
        page = map_page(writer, handle);
        ck_assert_uint_eq(page->watchers, 0);
        ck_assert_int_eq(watch(reader, handle, &efd), 0);
        ck_assert_int_ge(efd, 0);
        assert_watch_fd(efd);
        ck_assert_uint_eq(page->watchers, 1);
        /* A second NOTIFY_WATCH of the same connection: the same pipe, one watcher still. */
        ck_assert_int_eq(watch(reader, handle, &again), 0);
        assert_watch_fd(again);
        ck_assert_int_eq(fstat(efd, &st), 0);
        ck_assert_int_eq(fstat(again, &st_again), 0);
        ck_assert_uint_eq(st.st_ino, st_again.st_ino);
        ck_assert_uint_eq(page->watchers, 1);
        ck_assert_uint_eq(pipe_take(efd), 0);

        /* The writer advanced seq itself and asks only for the watchers' pipes: quiet, nothing comes back. */
        raw_send_flags(writer, MFB_WIRE_OP_NOTIFY, MFB_WIRE_FLAG_QUIET,
                       &(struct mfb_wire_notify_request) { .handle = handle }, sizeof(struct mfb_wire_notify_request),
                       NULL, 0);
        ck_assert(readable(efd));
        ck_assert_uint_eq(pipe_take(again), 1);
        ck_assert_uint_eq(pipe_take(efd), 0);

        /* A burst: every NOTIFY is answered, and the pipe is written at most once each, at least once. */
        for (unsigned i = 0; i < BURST; i++)
                raw_send(writer, MFB_WIRE_OP_NOTIFY,
                         &(struct mfb_wire_notify_request) { .handle = handle, .flags = MFB_WIRE_NOTIFY_ADVANCE },
                         sizeof(struct mfb_wire_notify_request), NULL, 0);
        for (unsigned i = 0; i < BURST; i++)
                ck_assert_int_eq(raw_reply(writer, MFB_WIRE_OP_NOTIFY, NULL, 0, NULL), 0);
        ck_assert(readable(efd));
        value = pipe_take(efd);
        ck_assert_uint_ge(value, 1);
        ck_assert_uint_le(value, BURST);
        ck_assert_uint_eq(page->seq, BURST);

        unmap_page(page);
        close(again);
        close(efd);
        close(reader);
        close(writer);
}
END_TEST

START_TEST(watches_end_with_the_hold) {
        int writer = raw_connect_hello(&test_broker), reader = raw_connect_hello(&test_broker);
        int witness = raw_connect_hello(&test_broker);
        uint64_t handle = create(writer, NULL);
        volatile struct mfb_wire_notify_page *page;
        int efd = -1, witness_efd = -1;

        open_handle(reader, handle, MFB_WIRE_ACCESS_READ);
        open_handle(reader, handle, MFB_WIRE_ACCESS_READ);
        open_handle(witness, handle, MFB_WIRE_ACCESS_READ);
        page = map_page(writer, handle);
        ck_assert_int_eq(watch(reader, handle, &efd), 0);
        ck_assert_int_eq(watch(witness, handle, &witness_efd), 0);
        ck_assert_uint_eq(page->watchers, 2);

        /* One of two references given back: the watch stays. */
        release(reader, handle);
        ck_assert_uint_eq(page->watchers, 2);
        /* The last: it ends, and a notification reaches only the others (the witness shows the pass ran). */
        release(reader, handle);
        ck_assert_uint_eq(page->watchers, 1);
        ck_assert_int_eq(notify(writer, handle, MFB_WIRE_NOTIFY_ADVANCE, NULL), 0);
        ck_assert(readable(witness_efd));
        /* Nothing for the notification; end of file, since the broker closed its end. */
        ck_assert(pipe_ended(efd));
        /* Not held any more: no new watch either. */
        ck_assert_int_eq(watch(reader, handle, &(int) { -1 }), -ENOENT);

        /* A connection that closes ends its watches too. */
        close(witness);
        ck_assert(watchers_become(page, 0));

        unmap_page(page);
        close(witness_efd);
        close(efd);
        close(reader);
        close(writer);
}
END_TEST

START_TEST(a_watched_region_goes_with_its_page) {
        int writer = raw_connect_hello(&test_broker), reader = raw_connect_hello(&test_broker);
        unsigned before = test_broker_fd_count(&test_broker);
        uint64_t handle = create(writer, "watched-and-removed");
        volatile struct mfb_wire_notify_page *page;
        struct mfb_wire_lookup_request remove = { .handle = handle };
        int efd = -1;

        open_handle(reader, handle, MFB_WIRE_ACCESS_READ);
        page = map_page(reader, handle);
        ck_assert_int_eq(watch(reader, handle, &efd), 0);
        /* Removed but held: still notified. */
        ck_assert_int_eq(raw_request(writer, MFB_WIRE_OP_REMOVE, &remove, sizeof(remove), NULL, 0), 0);
        ck_assert_int_eq(notify(writer, handle, MFB_WIRE_NOTIFY_ADVANCE, NULL), 0);
        ck_assert(readable(efd));
        ck_assert_uint_eq(page->seq, 1);

        /* The writer lets go, then the watching reader by hanging up: the region, page, pipe and socket go. */
        release(writer, handle);
        close(reader);
        ck_assert(test_broker_wait_fd_count(&test_broker, before - 1));
        /* What the client mapped stays its own. */
        ck_assert_uint_eq(page->seq, 1);

        unmap_page(page);
        close(efd);
        close(writer);
}
END_TEST

/*
 * A watcher that makes its copy of the read end blocking (the file
 * description it shares with the broker's read end) and never reads, while
 * a writer notifies thousands of times, each in a pass of its own (one
 * round trip each): the broker answers everyone throughout, the other
 * watcher is signalled every time, and no more than the pipe's page waits
 * for the one that does not read.
 */
START_TEST(a_watcher_that_never_reads_blocks_nobody) {
        int writer = raw_connect_hello(&test_broker), lazy = raw_connect_hello(&test_broker);
        int reader = raw_connect_hello(&test_broker);
        uint64_t handle = create(writer, NULL), seq = 0;
        struct mfb_wire_notifier_reply reply;
        int lazy_fd = -1, reader_fd = -1, fd = -1, size, n;

        open_handle(lazy, handle, MFB_WIRE_ACCESS_READ);
        open_handle(reader, handle, MFB_WIRE_ACCESS_READ);
        ck_assert_int_eq(watch(lazy, handle, &lazy_fd), 0);
        ck_assert_int_eq(watch(reader, handle, &reader_fd), 0);
        ck_assert_int_eq(fcntl(lazy_fd, F_SETFL, 0), 0);
        size = fcntl(lazy_fd, F_GETPIPE_SZ);
        ck_assert_int_eq(size, one_page());

        /* Past the pipe's size: the broker writes it once, since a byte waits, and nothing else fails. */
        n = size + 100;
        for (int i = 1; i <= n; i++) {
                ck_assert_int_eq(notify(writer, handle, MFB_WIRE_NOTIFY_ADVANCE, &seq), 0);
                ck_assert_uint_eq(seq, (uint64_t) i);
                if (i % 512 == 0) {
                        ck_assert(readable(reader_fd));
                        ck_assert_uint_ge(pipe_take(reader_fd), 1);
                }
        }
        ck_assert_uint_eq(pipe_queued(lazy_fd), 1);

        /* Everyone is still served: the lazy watcher's connection, the others, and a newcomer. */
        ck_assert_int_eq(notifier(lazy, handle, &reply, &fd), 0);
        ck_assert_uint_eq(reply.seq, (uint64_t) n);
        close(fd);
        (void) pipe_take(reader_fd);
        ck_assert_int_eq(notify(writer, handle, MFB_WIRE_NOTIFY_ADVANCE, &seq), 0);
        ck_assert(readable(reader_fd));
        ck_assert_uint_eq(pipe_take(reader_fd), 1);
        close(raw_connect_hello(&test_broker));
        ck_assert_uint_eq(pipe_queued(lazy_fd), 1);

        close(lazy_fd);
        close(reader_fd);
        close(reader);
        close(lazy);
        close(writer);
}
END_TEST

/* In a child that became OTHER_ID (when the test may switch): grows the watch's pipe to 16 pages. */
static int grow_pipe_as_other(void *arg) {
        int fd = *(int *) arg;

        if (geteuid() == 0) {
                TEST_CHILD_CHECK(setgroups(0, NULL) == 0);
                TEST_CHILD_CHECK(setresgid(OTHER_ID, OTHER_ID, OTHER_ID) == 0);
                TEST_CHILD_CHECK(setresuid(OTHER_ID, OTHER_ID, OTHER_ID) == 0);
        }
        TEST_CHILD_CHECK(fcntl(fd, F_SETPIPE_SZ, 16 * one_page()) >= 16 * one_page());
        return 0;
}

/*
 * A watcher of another uid that grows its pipe (F_SETPIPE_SZ works on the
 * read end, for anyone, up to /proc/sys/fs/pipe-max-size) and never reads:
 * the pipe's pages are the broker's, who made it, yet it holds one byte,
 * not one per notification up to its new size.
 */
START_TEST(a_watcher_cannot_grow_what_the_broker_keeps) {
        int writer = raw_connect_hello(&test_broker), other = -1, other_fd = -1;
        uint64_t handle, seq = 0;
        int n;

        /* As root, the watcher is another uid; as anyone else, the test's own is unprivileged already. */
        if (geteuid() == 0)
                other = raw_connect_hello_as(&test_broker, OTHER_ID);
        else
                other = raw_connect_hello(&test_broker);
        handle = create(writer, NULL);
        open_handle(other, handle, MFB_WIRE_ACCESS_READ);
        ck_assert_int_eq(watch(other, handle, &other_fd), 0);
        test_child_succeeded(test_fork(grow_pipe_as_other, &other_fd));
        ck_assert_int_ge(fcntl(other_fd, F_GETPIPE_SZ), 16 * one_page());

        /* More notifications than a page would hold, each in a pass of its own (a NOTIFY is answered after it). */
        n = one_page() + 100;
        for (int i = 1; i <= n; i++)
                ck_assert_int_eq(notify(writer, handle, MFB_WIRE_NOTIFY_ADVANCE, &seq), 0);
        ck_assert_uint_eq(seq, (uint64_t) n);
        ck_assert_uint_eq(pipe_queued(other_fd), 1);
        /* Read, it is written again at the next notification. */
        ck_assert_uint_eq(pipe_take(other_fd), 1);
        ck_assert_int_eq(notify(writer, handle, MFB_WIRE_NOTIFY_ADVANCE, &seq), 0);
        ck_assert(readable(other_fd));
        ck_assert_uint_eq(pipe_take(other_fd), 1);

        close(other_fd);
        close(other);
        close(writer);
}
END_TEST

/*
 * The library, when the broker that gave a region's pollable fd is gone:
 * the fd is at end of file and polls readable for good, so
 * mfb_region_notify_read() says so (-ENOTCONN) each time instead of
 * letting a poll loop spin, and still gives the sequence; waiting on the
 * page needs no broker and goes on.
 */
START_TEST(a_gone_broker_ends_the_pollable_fd) {
        struct test_broker b;
        struct pollfd p;
        mfb_client *c = NULL;
        mfb_region *r = NULL;
        uint64_t seq = 0;
        int fd;

        test_broker_start(&b, NULL);
        ck_assert_int_eq(mfb_client_connect(b.socket_path, &c), 0);
        ck_assert_int_eq(mfb_region_create(c, NULL, PAGE, &r), 0);
        fd = mfb_region_notify_fd(r);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(mfb_region_notify_read(r, &seq), 0);
        ck_assert_uint_eq(seq, 0);
        ck_assert_int_eq(mfb_region_notify(r), 0);
        ck_assert(readable(fd));
        ck_assert_int_eq(mfb_region_notify_read(r, &seq), 0);
        ck_assert_uint_eq(seq, 1);
        p = (struct pollfd) { .fd = fd, .events = POLLIN };
        ck_assert_int_eq(poll(&p, 1, 0), 0);

        test_broker_stop(&b);
        ck_assert(readable(fd));
        for (unsigned i = 0; i < 2; i++) {
                seq = 0;
                ck_assert_int_eq(mfb_region_notify_read(r, &seq), -ENOTCONN);
                ck_assert_uint_eq(seq, 1);
        }
        ck_assert_int_eq(mfb_region_wait_notify(r, &seq, 0), -ETIMEDOUT);

        /* Notifying needs no broker: it advances and wakes, and says so, however often. */
        for (unsigned i = 0; i < 3; i++)
                ck_assert_int_eq(mfb_region_notify(r), 0);
        ck_assert_int_eq(mfb_region_wait_notify(r, &seq, 0), 0);
        ck_assert_uint_eq(seq, 4);

        mfb_region_free(r);
        mfb_client_free(c);
}
END_TEST

/* The fds the brokers of the quota test may share: a few above what it keeps for itself. */
#define SHORT_FD_LIMIT 80U

START_TEST(pages_are_charged_to_the_owner) {
        uint64_t handles[SHORT_FD_LIMIT];
        struct mfb_wire_notifier_reply reply;
        struct mfb_wire_create_request req = { .size = PAGE };
        /* So that fds, not regions, run out first, for root and anyone else. */
        static const char *const args[] = { "--max-regions", "1000", "--max-regions-per-uid", "1000", NULL };
        struct test_broker b;
        unsigned n = 0;
        int32_t k = 0;
        int c, fd = -1;

        test_broker_start_unwrapped(&b, args, geteuid(), SHORT_FD_LIMIT);
        c = raw_connect_hello(&b);
        /* Regions until the fds the users share are gone. */
        for (; n < SHORT_FD_LIMIT; n++) {
                struct mfb_wire_region_reply region;

                raw_send(c, MFB_WIRE_OP_CREATE, &req, sizeof(req), NULL, 0);
                k = raw_reply(c, MFB_WIRE_OP_CREATE, &region, sizeof(region), &fd);
                if (k < 0)
                        break;
                close(fd);
                handles[n] = region.info.handle;
        }
        ck_assert_msg(k == -ENOSPC || k == -EDQUOT, "CREATE got %s", strerror(-k));
        ck_assert_uint_gt(n, 1);

        /* The page is one more fd of the owner's: refused the same way, and nothing made. */
        ck_assert_int_eq(notifier(c, handles[0], &reply, &fd), k);
        ck_assert_int_eq(fd, -1);
        ck_assert_int_eq(watch(c, handles[0], &fd), k);

        /* One region less, one page more. */
        release(c, handles[n - 1]);
        ck_assert_int_eq(notifier(c, handles[0], &reply, &fd), 0);
        ck_assert_int_ge(fd, 0);
        close(fd);

        close(c);
        test_broker_stop(&b);
}
END_TEST

/* The watch table on its own: a burst of notifications in one pass writes each pipe once. */
START_TEST(a_burst_is_one_write_per_pass) {
        struct quota_limits limits = {};
        struct event_base *base = event_base_new();
        struct control_page *page = NULL;
        struct control_watch *w[2] = {};
        struct watch_table *t = NULL;
        struct quota *q = NULL;
        enum mfb_wire_resource refused;
        int efd[2], size;

        for (unsigned i = 0; i < MFB_WIRE_RESOURCE_COUNT; i++)
                limits.broker_max.n[i] = limits.uid_max.n[i] = MFB_WIRE_LIMIT_NONE;
        ck_assert_ptr_nonnull(base);
        ck_assert_int_eq(quota_new(&limits, 0, &q), 0);
        ck_assert_int_eq(watch_table_new(base, q, &t), 0);
        ck_assert_int_eq(control_page_new(MFD_CLOEXEC | MFD_ALLOW_SEALING, &page), 0);
        for (unsigned i = 0; i < 2; i++) {
                ck_assert_int_eq(control_watch(t, page, 1000 + i, &w[i], &refused), 0);
                efd[i] = control_watch_fd(w[i]);
                ck_assert_int_ge(efd[i], 0);
        }
        ck_assert_uint_eq(control_page_watchers(page), 2);
        /* Both ends of the pipe, which the broker keeps. */
        ck_assert_uint_eq(quota_held(q, 1000, MFB_WIRE_RESOURCE_FDS), 2);

        /* The first marks the page, the rest find it marked; the pass writes once. */
        ck_assert_uint_eq(control_page_signal(t, page), 2);
        for (unsigned i = 0; i < 99; i++)
                ck_assert_uint_eq(control_page_signal(t, page), 0);
        ck_assert_uint_eq(pipe_take(efd[0]), 0);
        ck_assert_int_ge(event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), 0);
        ck_assert_uint_eq(pipe_take(efd[0]), 1);
        ck_assert_uint_eq(pipe_take(efd[1]), 1);
        /* Nothing marked: the next pass writes nothing. */
        ck_assert_int_ge(event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), 0);
        ck_assert_uint_eq(pipe_take(efd[0]), 0);

        /*
         * A client that makes its copy blocking, grows the pipe (the broker
         * cut it to a page) and never reads: its pipe holds the one byte the
         * first pass wrote, since the broker writes only to an empty pipe,
         * and the passes go on without blocking, for the others too.
         */
        ck_assert_int_eq(fcntl(efd[0], F_SETFL, 0), 0);
        ck_assert_int_eq(fcntl(efd[0], F_GETPIPE_SZ), one_page());
        size = fcntl(efd[0], F_SETPIPE_SZ, 16 * one_page());
        ck_assert_int_ge(size, 16 * one_page());
        for (int i = 0; i < size + 10; i++) {
                ck_assert_uint_eq(control_page_signal(t, page), 2);
                watch_table_flush(t);
                ck_assert_uint_eq(pipe_take(efd[1]), 1);
        }
        ck_assert_uint_eq(pipe_queued(efd[0]), 1);
        ck_assert_uint_eq(control_page_watchers(page), 2);
        ck_assert_uint_eq(quota_held(q, 1000, MFB_WIRE_RESOURCE_FDS), 2);

        for (unsigned i = 0; i < 2; i++) {
                control_unwatch(t, w[i]);
                /* The broker's write end is closed: end of file after what it held. */
                ck_assert(pipe_ended(efd[i]));
                close(efd[i]);
        }
        ck_assert_uint_eq(control_page_watchers(page), 0);
        ck_assert_uint_eq(quota_held(q, 1000, MFB_WIRE_RESOURCE_FDS), 0);
        ck_assert_uint_eq(quota_held(q, 1001, MFB_WIRE_RESOURCE_FDS), 0);
        control_page_free(page);
        watch_table_free(t);
        quota_free(q);
        event_base_free(base);
}
END_TEST

Suite *notify_wire_suite(void) {
        Suite *s = suite_create("notify-wire");
        TCase *tc = tcase_create("notify-wire");
        TCase *unit = tcase_create("notify-unit");

        tcase_set_timeout(tc, 60);
        tcase_add_checked_fixture(tc, test_broker_setup, test_broker_teardown);
        tcase_add_test(tc, notifier_gives_writers_read_write_and_readers_read_only);
        tcase_add_test(tc, readers_cannot_notify);
        tcase_add_test(tc, readers_cannot_reopen_the_page_writable);
        tcase_add_test(tc, advance_wakes_futex_waiters);
        tcase_add_test(tc, watchers_are_signalled);
        tcase_add_test(tc, watches_end_with_the_hold);
        tcase_add_test(tc, a_watched_region_goes_with_its_page);
        tcase_add_test(tc, a_watcher_that_never_reads_blocks_nobody);
        tcase_add_test(tc, a_watcher_cannot_grow_what_the_broker_keeps);
        tcase_add_test(tc, a_gone_broker_ends_the_pollable_fd);
        tcase_add_test(tc, pages_are_charged_to_the_owner);
        suite_add_tcase(s, tc);

        tcase_set_timeout(unit, 60);
        tcase_add_checked_fixture(unit, test_fd_leak_setup, test_fd_leak_teardown);
        tcase_add_test(unit, a_burst_is_one_write_per_pass);
        suite_add_tcase(s, unit);
        return s;
}
