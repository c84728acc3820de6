/* SPDX-License-Identifier: MIT */
/*
 * Notifications (mfb_region_notify() and its kin) as their users see them:
 * a ring of a million messages between two processes, readers that cannot
 * notify by any route, one notification that wakes a hundred waiters,
 * timeouts, waiters and brokers that die, the pollable fd under poll(),
 * epoll and libevent, and nothing left behind by mfb_region_free().
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "macro.h"
#include "memfd-broker.h"
#include "raw.h"
#include "suites.h"

/* The other user of the reader test: nobody/nogroup. */
#define OTHER_ID 65534

static mfb_client *connect_to(const struct test_broker *b) {
        mfb_client *c = NULL;

        ck_assert_int_eq(mfb_client_connect(b->socket_path, &c), 0);
        return c;
}

static long long now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* A named region of size bytes, mode 0644 so that other processes (and users) can open it read-only. */
static mfb_region *create_shared(mfb_client *c, const char *name, uint64_t size) {
        mfb_region *r = NULL;

        ck_assert_int_eq(mfb_region_create_with(c, name, size, 0644, 0, &r), 0);
        return r;
}

/*
 * The region's sequence now: a wait that is told it saw a value the
 * sequence does not have returns at once with the current one. 0 or the
 * wait's error; safe in children.
 */
static int current_seq(mfb_region *r, uint64_t *ret) {
        *ret = UINT64_MAX;
        return mfb_region_wait_notify(r, ret, 0);
}

static uint64_t current_seq_or_fail(mfb_region *r) {
        uint64_t seq;

        ck_assert_int_eq(current_seq(r, &seq), 0);
        return seq;
}

/*
 * Waits for a notification with TEST_TIMEOUT_MS as timeout. A wait that
 * saw the notification only when its timeout ran out, and looked again,
 * was not woken: that is -ETIME, not success. Safe in children.
 */
static int wait_woken(mfb_region *r, uint64_t *seen) {
        long long start = now_ms();
        int k = mfb_region_wait_notify(r, seen, TEST_TIMEOUT_MS);

        if (k == 0 && now_ms() - start >= TEST_TIMEOUT_MS / 2)
                return -ETIME;
        return k;
}

/* Whether pid is blocked in futex() now: in the library's wait, for the single-threaded processes here. */
static bool in_futex(pid_t pid) {
        char path[64], buf[128];

        snprintf(path, sizeof(path), "/proc/%d/syscall", (int) pid);
        if (test_read_text(path, buf, sizeof(buf)) <= 0)
                return false;
        /* "running" while on a CPU; else the number of the syscall it sleeps in, and its arguments. */
        return buf[0] >= '0' && buf[0] <= '9' && strtol(buf, NULL, 10) == SYS_futex;
}

/*
 * Waits until pid sleeps in futex(), that is in its notification wait; a
 * pipe saying that a wait returned, or TEST_TIMEOUT_MS, ends it with false.
 * Nothing tells us when a process goes to sleep, so this looks every
 * millisecond. Safe in children.
 */
static bool wait_in_futex(pid_t pid, int returned_fd) {
        long long deadline = now_ms() + TEST_TIMEOUT_MS;
        struct timespec ms = { .tv_nsec = 1000 * 1000 };

        for (;;) {
                if (in_futex(pid))
                        return true;
                if (returned_fd >= 0 && poll(&(struct pollfd) { .fd = returned_fd, .events = POLLIN }, 1, 0) == 1)
                        return false;
                if (now_ms() > deadline)
                        return false;
                nanosleep(&ms, NULL);
        }
}

/* The FUTEX_WAKE of everyone waiting on the futex word of a mapped control page; returns how many woke. */
static long futex_wake_page(const void *page) {
        return syscall(SYS_futex, (const char *) page + MFB_WIRE_NOTIFY_FUTEX_OFFSET, FUTEX_WAKE, INT_MAX, NULL,
                       NULL, 0);
}

/* Ring ------------------------------------------------------------------ */

#define RING_MESSAGES 1000000U
#define RING_SLOTS 256U /* a power of two, so that the slot of a sequence number survives its wrap-around */
#define RING_PAYLOAD_MAX 240U

struct ring_slot {
        uint64_t seq;   /* 1 for the first message */
        uint32_t len;   /* of payload, 1 to RING_PAYLOAD_MAX */
        uint32_t sum;   /* ring_sum() of seq, len and the payload */
        uint8_t payload[RING_PAYLOAD_MAX];
};

/*
 * A single-producer single-consumer ring over two regions, each written by
 * one side only. The producer's region "ring" holds head (messages written)
 * and the slots; the consumer opens it read-only. The consumer's region
 * "ring-acks" holds tail (messages consumed); the producer opens it
 * read-only. Message n goes to slot (n - 1) % RING_SLOTS, written only
 * while n - 1 - tail < RING_SLOTS, that is once the consumer has finished
 * with message n - RING_SLOTS that used the slot before.
 *
 * Memory order: the producer fills a slot with plain stores, then
 * store-releases head; the consumer load-acquires head, so the slot's bytes
 * happen before its reads. Likewise the consumer store-releases tail after
 * reading a slot, and the producer load-acquires tail before reusing it.
 * No slot is ever read and written concurrently.
 *
 * Sleeping: each side waits on the other's region with
 * mfb_region_wait_notify(), and notifies its own region after publishing
 * (the producer after each message, the consumer after each batch it
 * drained). Back-pressure thus runs through the second region's
 * notifications, not through a futex of our own. It is an event count:
 * the sequence a wait returned was read before the next look at head or
 * tail, so a notification after that look changes the sequence, and the
 * next wait returns at once instead of sleeping through it; one before it
 * was counted in the sequence read, and the notifier's release of head or
 * tail came before its notification, so the look saw it. Left to
 * themselves the two may rarely sleep, so each waits once for the other
 * to fall asleep: the consumer on an empty ring, the producer on a full
 * one.
 */
struct ring {
        uint64_t head;
        uint8_t pad[56];        /* head on a cache line of its own */
        struct ring_slot slots[RING_SLOTS];
};

struct ring_acks {
        uint64_t tail;
};

#define RING_SIZE ((sizeof(struct ring) + 4095) & ~(size_t) 4095)

static uint64_t mix(uint64_t x) {
        x += 0x9e3779b97f4a7c15ULL;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
        return x ^ (x >> 31);
}

static uint32_t ring_len(uint64_t seq) {
        return 1 + (uint32_t) (mix(seq) % RING_PAYLOAD_MAX);
}

static void ring_fill(uint8_t *payload, uint64_t seq, uint32_t len) {
        uint64_t x = seq;

        for (uint32_t i = 0; i < len; i += 8) {
                x = mix(x);
                memcpy(payload + i, &x, len - i < 8 ? len - i : 8);
        }
}

/* FNV-1a over seq, len and the payload: a message torn between two writes fails it. */
static uint32_t ring_sum(uint64_t seq, uint32_t len, const uint8_t *payload) {
        uint32_t h = 2166136261U;
        uint8_t head[12];

        memcpy(head, &seq, 8);
        memcpy(head + 8, &len, 4);
        for (size_t i = 0; i < sizeof(head); i++)
                h = (h ^ head[i]) * 16777619U;
        for (uint32_t i = 0; i < len; i++)
                h = (h ^ payload[i]) * 16777619U;
        return h;
}

struct ring_producer {
        struct test_steps steps;
};

static int ring_produce(void *arg) {
        const struct ring_producer *p = arg;
        mfb_client *c = NULL;
        mfb_region *ring_region = NULL, *acks_region = NULL;
        struct ring *ring;
        const struct ring_acks *acks;
        uint64_t acks_seen = 0;

        TEST_CHILD_CHECK(mfb_client_connect(test_broker.socket_path, &c) == 0);
        TEST_CHILD_CHECK(mfb_region_create_with(c, "ring", RING_SIZE, 0644, 0, &ring_region) == 0);
        TEST_CHILD_CHECK(mfb_region_map_writable(ring_region, (void **) &ring) == 0);
        TEST_CHILD_CHECK(mfb_region_open(c, "ring-acks", O_RDONLY, &acks_region) == 0);
        TEST_CHILD_CHECK(mfb_region_map(acks_region, (void **) &acks) == 0);
        TEST_CHILD_CHECK(test_pipe_signal(p->steps.to_parent) == 0);

        for (uint64_t seq = 1; seq <= RING_MESSAGES; seq++) {
                struct ring_slot *slot = &ring->slots[(seq - 1) % RING_SLOTS];

                /* Once, let the consumer drain the ring and fall asleep: this message must wake it. */
                if (seq == RING_MESSAGES / 4)
                        TEST_CHILD_CHECK(wait_in_futex(getppid(), -1));
                /* Full: wait for the consumer to make room. */
                while (seq - 1 - __atomic_load_n(&acks->tail, __ATOMIC_ACQUIRE) >= RING_SLOTS) {
                        int k = wait_woken(acks_region, &acks_seen);

                        if (k != 0) {
                                fprintf(stderr, "producer at %llu: waiting for room: %s\n",
                                        (unsigned long long) seq, strerror(-k));
                                return 1;
                        }
                }
                slot->seq = seq;
                slot->len = ring_len(seq);
                ring_fill(slot->payload, seq, slot->len);
                slot->sum = ring_sum(seq, slot->len, slot->payload);
                __atomic_store_n(&ring->head, seq, __ATOMIC_RELEASE);
                if (mfb_region_notify(ring_region) != 0) {
                        fprintf(stderr, "producer at %llu: notify failed\n", (unsigned long long) seq);
                        return 1;
                }
        }

        /* The consumer reads the ring's sequence before the ring goes. */
        TEST_CHILD_CHECK(test_pipe_wait(p->steps.from_parent) == 0);
        mfb_region_free(acks_region);
        mfb_region_free(ring_region);
        mfb_client_free(c);
        return 0;
}

/*
 * A million messages of 1 to 240 bytes through a ring of 256 slots in
 * shared memory, with notifications both ways: none lost, none torn, none
 * twice, and the consumer ends at the producer's last one.
 */
START_TEST(a_million_messages_through_a_ring) {
        struct ring_producer p;
        mfb_client *c = connect_to(&test_broker);
        mfb_region *ring_region = NULL, *acks_region;
        const struct ring *ring;
        struct ring_acks *acks;
        uint64_t ring_seen = 0, next = 1, head;
        long long start = now_ms();
        bool paused = false;
        pid_t pid;

        acks_region = create_shared(c, "ring-acks", 4096);
        test_steps_open(&p.steps);
        pid = test_fork(ring_produce, &p);
        ck_assert_int_eq(test_pipe_wait(p.steps.from_child), 0);
        ck_assert_int_eq(mfb_region_open(c, "ring", O_RDONLY, &ring_region), 0);
        ck_assert_int_eq(mfb_region_map(ring_region, (void **) &ring), 0);
        ck_assert_int_eq(mfb_region_map_writable(acks_region, (void **) &acks), 0);

        while (next <= RING_MESSAGES) {
                head = __atomic_load_n(&ring->head, __ATOMIC_ACQUIRE);
                if (head < next) {
                        int k = wait_woken(ring_region, &ring_seen);

                        if (k != 0)
                                ck_abort_msg("consumer at %llu: waiting for a message: %s",
                                             (unsigned long long) next, strerror(-k));
                        continue;
                }
                /* Once, let the producer fill the ring and fall asleep: the room made next must wake it. */
                if (next == RING_MESSAGES / 2 && !paused) {
                        ck_assert_msg(wait_in_futex(pid, -1), "the producer did not wait for room");
                        ck_assert_uint_eq(__atomic_load_n(&ring->head, __ATOMIC_ACQUIRE), next - 1 + RING_SLOTS);
                        paused = true;
                        continue;
                }
                if (head - next >= RING_SLOTS)
                        ck_abort_msg("the producer is %llu messages ahead of %llu in a ring of %u",
                                     (unsigned long long) (head - next + 1), (unsigned long long) next, RING_SLOTS);
                for (; next <= head && (next != RING_MESSAGES / 2 || paused); next++) {
                        const struct ring_slot *slot = &ring->slots[(next - 1) % RING_SLOTS];

                        if (slot->seq != next)
                                ck_abort_msg("message %llu lost: slot holds %llu", (unsigned long long) next,
                                             (unsigned long long) slot->seq);
                        if (slot->len != ring_len(next) || slot->sum != ring_sum(next, slot->len, slot->payload))
                                ck_abort_msg("message %llu torn", (unsigned long long) next);
                        __atomic_store_n(&acks->tail, next, __ATOMIC_RELEASE);
                }
                ck_assert_int_eq(mfb_region_notify(acks_region), 0);
        }

        /* The producer's last, and nothing after it: one notification per message, none lost on the page. */
        ck_assert_uint_eq(next - 1, RING_MESSAGES);
        ck_assert_uint_eq(__atomic_load_n(&ring->head, __ATOMIC_ACQUIRE), RING_MESSAGES);
        ck_assert_uint_eq(current_seq_or_fail(ring_region), RING_MESSAGES);
        fprintf(stderr, "ring: %u messages in %lld ms\n", RING_MESSAGES, now_ms() - start);

        ck_assert_int_eq(test_pipe_signal(p.steps.to_child), 0);
        test_child_succeeded(pid);
        mfb_region_free(ring_region);
        mfb_region_free(acks_region);
        mfb_client_free(c);
        test_steps_close(&p.steps);
}
END_TEST

/* Readers ---------------------------------------------------------------- */

/* How long the waiter of the reader test waits; every attempt to notify happens within it. */
#define QUIET_WAIT_MS 3000

struct wait_report {
        int result;
        uint64_t seq;
        long long waited_ms;
};

struct quiet_waiter {
        int ready;      /* a byte once it knows the sequence */
        int report;     /* its struct wait_report */
        uint64_t seq;   /* the sequence it must see */
};

/* Holds "guarded" read-only and waits QUIET_WAIT_MS for a notification that must not come. */
static int wait_quietly(void *arg) {
        const struct quiet_waiter *w = arg;
        struct wait_report rep = { 0 };
        mfb_client *c = NULL;
        mfb_region *r = NULL;
        long long start;

        TEST_CHILD_CHECK(mfb_client_connect(test_broker.socket_path, &c) == 0);
        TEST_CHILD_CHECK(mfb_region_open(c, "guarded", O_RDONLY, &r) == 0);
        TEST_CHILD_CHECK(current_seq(r, &rep.seq) == 0);
        TEST_CHILD_CHECK(rep.seq == w->seq);
        TEST_CHILD_CHECK(test_pipe_signal(w->ready) == 0);
        start = now_ms();
        rep.result = mfb_region_wait_notify(r, &rep.seq, QUIET_WAIT_MS);
        rep.waited_ms = now_ms() - start;
        TEST_CHILD_CHECK(write(w->report, &rep, sizeof(rep)) == (ssize_t) sizeof(rep));
        mfb_region_free(r);
        mfb_client_free(c);
        return 0;
}

struct reader {
        int page_fd;    /* a read-only fd of the control page, from the test's NOTIFIER */
        uint64_t seq;   /* the sequence, which must stay */
        bool other_uid; /* become OTHER_ID first */
};

/* Writes to a read-only shared mapping: must die of the fault, not change anything. */
static int write_fault(void *page) {
        pid_t pid = fork();
        int status;

        if (pid < 0)
                return -1;
        if (pid == 0) {
                struct sigaction dfl = { .sa_handler = SIG_DFL };

                /* No core of a fault we ask for, and no sanitizer's report of it: the kernel's own end. */
                prctl(PR_SET_DUMPABLE, 0);
                sigaction(SIGSEGV, &dfl, NULL);
                sigaction(SIGBUS, &dfl, NULL);
                *(volatile uint32_t *) ((char *) page + MFB_WIRE_NOTIFY_FUTEX_OFFSET) += 1;
                _exit(0);
        }
        if (waitpid(pid, &status, 0) != pid)
                return -1;
        return WIFSIGNALED(status) && (WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGBUS) ? 0 : -1;
}

/* Tries every way a holder of a read-only page could advance the sequence or wake waiters for good. */
static int reader_tries_to_notify(void *arg) {
        const struct reader *a = arg;
        const struct mfb_wire_notify_page *page;
        struct mfb_wire_notify_page *priv;
        mfb_client *c = NULL;
        mfb_region *r = NULL;
        uint64_t seq, one = 1;
        char proc[64];
        int fd = a->page_fd, mem, reopened;

        if (a->other_uid) {
                TEST_CHILD_CHECK(setgroups(0, NULL) == 0);
                TEST_CHILD_CHECK(setresgid(OTHER_ID, OTHER_ID, OTHER_ID) == 0);
                TEST_CHILD_CHECK(setresuid(OTHER_ID, OTHER_ID, OTHER_ID) == 0);
                /*
                 * Changing uid made the process undumpable, which hands
                 * /proc/self to root: dumpable again, a refused reopen below
                 * is the page's mode speaking, not /proc's.
                 */
                TEST_CHILD_CHECK(prctl(PR_SET_DUMPABLE, 1) == 0);
        }

        /* The library: a region opened read-only does not notify. */
        TEST_CHILD_CHECK(mfb_client_connect(test_broker.socket_path, &c) == 0);
        TEST_CHILD_CHECK(mfb_region_open(c, "guarded", O_RDONLY, &r) == 0);
        TEST_CHILD_CHECK(mfb_region_notify(r) == -EACCES);
        /* It may wait, and sees the same sequence. */
        TEST_CHILD_CHECK(current_seq(r, &seq) == 0);
        TEST_CHILD_CHECK(seq == a->seq);

        /* The page fd: read-only, so no write() and no writable shared mapping. */
        TEST_CHILD_CHECK((fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY);
        TEST_CHILD_CHECK(pwrite(fd, &one, sizeof(one), 0) < 0 && errno == EBADF);
        TEST_CHILD_CHECK(write(fd, &one, sizeof(one)) < 0 && errno == EBADF);
        TEST_CHILD_CHECK(mmap(NULL, MFB_WIRE_NOTIFY_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) ==
                         MAP_FAILED && errno == EACCES);
        page = mmap(NULL, MFB_WIRE_NOTIFY_PAGE_SIZE, PROT_READ, MAP_SHARED, fd, 0);
        TEST_CHILD_CHECK(page != MAP_FAILED);
        TEST_CHILD_CHECK(page->seq == a->seq);
        TEST_CHILD_CHECK(mprotect((void *) page, MFB_WIRE_NOTIFY_PAGE_SIZE, PROT_READ | PROT_WRITE) < 0 &&
                         errno == EACCES);
        /* A write through the mapping faults (in a child, which dies of it). */
        TEST_CHILD_CHECK(write_fault((void *) page) == 0);
        /* Nor does the debugger's way in write a shared page the process may not write. */
        mem = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
        TEST_CHILD_CHECK(mem >= 0);
        TEST_CHILD_CHECK(pwrite(mem, &one, sizeof(one), (off_t) (uintptr_t) page) < 0);
        close(mem);
        /* A private writable mapping is allowed, but is a copy: nobody else sees its sequence. */
        priv = mmap(NULL, MFB_WIRE_NOTIFY_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
        TEST_CHILD_CHECK(priv != MAP_FAILED);
        __atomic_add_fetch(&priv->seq, 1, __ATOMIC_SEQ_CST);
        TEST_CHILD_CHECK(futex_wake_page(priv) == 0);
        munmap(priv, MFB_WIRE_NOTIFY_PAGE_SIZE);

        /*
         * FUTEX_WAKE on the read-only mapping does wake the waiter (the
         * test saw it asleep on this word), which must find the sequence
         * unchanged and sleep again.
         */
        TEST_CHILD_CHECK(futex_wake_page(page) >= 1);

        /* Reopening the page read-write: the broker's 0644 page is not ours to write. Root could. */
        if (a->other_uid) {
                snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
                reopened = open(proc, O_RDONLY | O_CLOEXEC);
                TEST_CHILD_CHECK(reopened >= 0);
                close(reopened);
                TEST_CHILD_CHECK(open(proc, O_RDWR | O_CLOEXEC) < 0 && errno == EACCES);
        } else
                fprintf(stderr, "SKIP reopening the page read-write as another user: needs root to switch to "
                        "uid %d\n", OTHER_ID);

        TEST_CHILD_CHECK(page->seq == a->seq);
        munmap((void *) page, MFB_WIRE_NOTIFY_PAGE_SIZE);
        mfb_region_free(r);
        mfb_client_free(c);
        return 0;
}

static int32_t raw_notify(int fd, uint64_t handle, uint32_t flags) {
        struct mfb_wire_notify_request req = { .handle = handle, .flags = flags };

        return raw_request(fd, MFB_WIRE_OP_NOTIFY, &req, sizeof(req), NULL, 0);
}

/*
 * A reader can wait but not notify: not through the library, not through
 * the protocol, not through its page fd (write, mapping, reopening it as
 * another user) nor with FUTEX_WAKE; a waiter sleeps through it all.
 */
START_TEST(a_reader_cannot_notify_by_any_route) {
        mfb_client *c = connect_to(&test_broker);
        mfb_region *r = create_shared(c, "guarded", 4096);
        struct mfb_wire_open_request open_req = { .access = MFB_WIRE_ACCESS_READ };
        struct mfb_wire_notify_request notifier_req;
        struct mfb_wire_notifier_reply notifier;
        struct quiet_waiter w;
        struct wait_report rep;
        struct reader rd = { .other_uid = geteuid() == 0 };
        int ready[2], report[2], raw, page_fd, seals, watch_fd;
        struct stat st;
        uint64_t seq;
        pid_t waiter;

        /* A few notifications first, so that the sequence that must stay is not the initial one. */
        for (int i = 0; i < 3; i++)
                ck_assert_int_eq(mfb_region_notify(r), 0);
        seq = current_seq_or_fail(r);
        /* A watcher too: no attempt may signal it either. */
        watch_fd = mfb_region_notify_fd(r);
        ck_assert_int_ge(watch_fd, 0);

        ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(report, O_CLOEXEC), 0);
        w = (struct quiet_waiter) { .ready = ready[1], .report = report[1], .seq = seq };
        waiter = test_fork(wait_quietly, &w);
        ck_assert_int_eq(test_pipe_wait(ready[0]), 0);
        ck_assert_msg(wait_in_futex(waiter, report[0]), "the waiter did not go to sleep");

        /* The protocol: a read-only hold gets a read-only page, and NOTIFY is refused either way. */
        raw = raw_connect_hello(&test_broker);
        open_req.handle = mfb_region_handle(r);
        ck_assert_int_eq(raw_request(raw, MFB_WIRE_OP_OPEN, &open_req, sizeof(open_req), NULL, 0), 0);
        notifier_req = (struct mfb_wire_notify_request) { .handle = mfb_region_handle(r) };
        raw_send(raw, MFB_WIRE_OP_NOTIFIER, &notifier_req, sizeof(notifier_req), NULL, 0);
        ck_assert_int_eq(raw_reply(raw, MFB_WIRE_OP_NOTIFIER, &notifier, sizeof(notifier), &page_fd), 0);
        ck_assert_int_ge(page_fd, 0);
        ck_assert_uint_eq(notifier.access, MFB_WIRE_ACCESS_READ);
        ck_assert_uint_eq(notifier.seq, seq);
        ck_assert_int_eq(fcntl(page_fd, F_GETFL) & O_ACCMODE, O_RDONLY);
        /* The broker's page, 0644, of one page that cannot be resized or unsealed. */
        ck_assert_int_eq(fstat(page_fd, &st), 0);
        ck_assert_uint_eq(st.st_uid, geteuid());
        ck_assert_uint_eq(st.st_mode & 07777, 0644);
        ck_assert_int_eq(st.st_size, MFB_WIRE_NOTIFY_PAGE_SIZE);
        seals = fcntl(page_fd, F_GET_SEALS);
        ck_assert_int_ge(seals, 0);
        ck_assert_int_eq(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
                         F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
        ck_assert_int_eq(raw_notify(raw, mfb_region_handle(r), 0), -EPERM);
        ck_assert_int_eq(raw_notify(raw, mfb_region_handle(r), MFB_WIRE_NOTIFY_ADVANCE), -EPERM);

        /* The page fd's routes, by another user where we can become one. */
        rd.page_fd = page_fd;
        rd.seq = seq;
        test_child_succeeded(test_fork(reader_tries_to_notify, &rd));

        /* The FUTEX_WAKE woke the waiter; it went back to sleep, and none of it ended its wait. */
        ck_assert_msg(wait_in_futex(waiter, report[0]), "a reader's attempt ended the wait");
        ck_assert_int_eq(poll(&(struct pollfd) { .fd = report[0], .events = POLLIN }, 1, TEST_TIMEOUT_MS), 1);
        ck_assert_int_eq(read(report[0], &rep, sizeof(rep)), (ssize_t) sizeof(rep));
        test_child_succeeded(waiter);
        ck_assert_int_eq(rep.result, -ETIMEDOUT);
        ck_assert_uint_eq(rep.seq, seq);
        ck_assert_int_ge(rep.waited_ms, QUIET_WAIT_MS - 1);
        ck_assert_uint_eq(current_seq_or_fail(r), seq);
        ck_assert_int_eq(poll(&(struct pollfd) { .fd = watch_fd, .events = POLLIN }, 1, 0), 0);

        /* The writer can: the same waiting and watching see its notification. */
        ck_assert_int_eq(mfb_region_notify(r), 0);
        ck_assert_uint_eq(current_seq_or_fail(r), seq + 1);
        ck_assert_int_eq(poll(&(struct pollfd) { .fd = watch_fd, .events = POLLIN }, 1, TEST_TIMEOUT_MS), 1);

        close(page_fd);
        close(raw);
        close(ready[0]);
        close(ready[1]);
        close(report[0]);
        close(report[1]);
        mfb_region_free(r);
        mfb_client_free(c);
}
END_TEST

/* Broadcast -------------------------------------------------------------- */

#define BROADCAST_WAITERS 100

struct broadcast_waiter {
        int index;
        int ready;
        uint64_t before;        /* the sequence before the one notification */
};

static int wait_for_broadcast(void *arg) {
        const struct broadcast_waiter *w = arg;
        mfb_client *c = NULL;
        mfb_region *r = NULL;
        uint64_t seen;

        TEST_CHILD_CHECK(mfb_client_connect(test_broker.socket_path, &c) == 0);
        /* Readers and writers alike. */
        TEST_CHILD_CHECK(mfb_region_open(c, "broadcast", w->index % 2 ? O_RDONLY : O_RDWR, &r) == 0);
        TEST_CHILD_CHECK(current_seq(r, &seen) == 0);
        TEST_CHILD_CHECK(seen == w->before);
        TEST_CHILD_CHECK(test_pipe_signal(w->ready) == 0);
        /*
         * No limit: a wake-up that does not come leaves it asleep past the
         * test's deadline, rather than checking again when a timeout ends.
         */
        TEST_CHILD_CHECK(mfb_region_wait_notify(r, &seen, -1) == 0);
        TEST_CHILD_CHECK(seen == w->before + 1);
        mfb_region_free(r);
        mfb_client_free(c);
        return 0;
}

/* A hundred processes asleep in mfb_region_wait_notify() all wake for one mfb_region_notify(). */
START_TEST(one_notification_wakes_every_waiter) {
        static struct broadcast_waiter waiters[BROADCAST_WAITERS];
        mfb_client *c = connect_to(&test_broker);
        mfb_region *r = create_shared(c, "broadcast", 4096);
        pid_t pids[BROADCAST_WAITERS];
        uint64_t before;
        int ready[2];

        for (int i = 0; i < 5; i++)
                ck_assert_int_eq(mfb_region_notify(r), 0);
        before = current_seq_or_fail(r);
        ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
        for (int i = 0; i < BROADCAST_WAITERS; i++) {
                waiters[i] = (struct broadcast_waiter) { .index = i, .ready = ready[1], .before = before };
                pids[i] = test_fork(wait_for_broadcast, &waiters[i]);
        }
        for (int i = 0; i < BROADCAST_WAITERS; i++)
                ck_assert_int_eq(test_pipe_wait(ready[0]), 0);
        /* Every one asleep in its wait, so that the notification is what wakes them. */
        for (int i = 0; i < BROADCAST_WAITERS; i++)
                ck_assert_msg(wait_in_futex(pids[i], -1), "waiter %d did not go to sleep", i);

        ck_assert_int_eq(mfb_region_notify(r), 0);
        for (int i = 0; i < BROADCAST_WAITERS; i++)
                test_child_succeeded(pids[i]);
        ck_assert_uint_eq(current_seq_or_fail(r), before + 1);

        close(ready[0]);
        close(ready[1]);
        mfb_region_free(r);
        mfb_client_free(c);
}
END_TEST

/* Timeouts and failures -------------------------------------------------- */

struct unlimited_waiter {
        uint64_t seq;   /* the sequence it must wait past */
        int done;       /* a byte once its wait returned */
};

/* Waits on "timed" without a limit; in a child, so that a wake-up that never comes fails at its deadline. */
static int wait_without_limit(void *arg) {
        const struct unlimited_waiter *w = arg;
        mfb_client *c = NULL;
        mfb_region *r = NULL;
        uint64_t seen = w->seq;
        int k;

        TEST_CHILD_CHECK(mfb_client_connect(test_broker.socket_path, &c) == 0);
        TEST_CHILD_CHECK(mfb_region_open(c, "timed", O_RDONLY, &r) == 0);
        k = mfb_region_wait_notify(r, &seen, -1);
        TEST_CHILD_CHECK(test_pipe_signal(w->done) == 0);
        TEST_CHILD_CHECK(k == 0);
        TEST_CHILD_CHECK(seen == w->seq + 1);
        mfb_region_free(r);
        mfb_client_free(c);
        return 0;
}

START_TEST(waits_time_out_and_poll) {
        mfb_client *c = connect_to(&test_broker);
        mfb_region *r = create_shared(c, "timed", 4096);
        struct unlimited_waiter w;
        uint64_t seq, s;
        int done[2];
        long long start, waited;
        pid_t pid;

        ck_assert_int_eq(mfb_region_notify(NULL), -EINVAL);
        ck_assert_int_eq(mfb_region_wait_notify(NULL, &s, 0), -EINVAL);
        ck_assert_int_eq(mfb_region_wait_notify(r, NULL, 0), -EINVAL);
        ck_assert_int_eq(mfb_region_notify_fd(NULL), -EINVAL);
        ck_assert_int_eq(mfb_region_notify_read(NULL, &s), -EINVAL);

        /* 0 polls: at once, the current sequence if it differs, else -ETIMEDOUT with it untouched. */
        seq = current_seq_or_fail(r);
        s = seq;
        ck_assert_int_eq(mfb_region_wait_notify(r, &s, 0), -ETIMEDOUT);
        ck_assert_uint_eq(s, seq);

        start = now_ms();
        ck_assert_int_eq(mfb_region_wait_notify(r, &s, 100), -ETIMEDOUT);
        waited = now_ms() - start;
        ck_assert_uint_eq(s, seq);
        ck_assert_int_ge(waited, 99);
        ck_assert_int_lt(waited, TEST_TIMEOUT_MS);

        ck_assert_int_eq(mfb_region_notify(r), 0);
        ck_assert_int_eq(mfb_region_wait_notify(r, &s, 0), 0);
        ck_assert_uint_eq(s, seq + 1);
        /* A sequence, not a count of wake-ups: two notifications, one wait sees both. */
        ck_assert_int_eq(mfb_region_notify(r), 0);
        ck_assert_int_eq(mfb_region_notify(r), 0);
        ck_assert_int_eq(mfb_region_wait_notify(r, &s, 1000), 0);
        ck_assert_uint_eq(s, seq + 3);

        /* Negative: no limit; it sleeps until notified. */
        ck_assert_int_eq(pipe2(done, O_CLOEXEC), 0);
        w = (struct unlimited_waiter) { .seq = s, .done = done[1] };
        pid = test_fork(wait_without_limit, &w);
        ck_assert_msg(wait_in_futex(pid, done[0]), "the waiter without a limit did not go to sleep");
        ck_assert_int_eq(mfb_region_notify(r), 0);
        test_child_succeeded(pid);
        close(done[0]);
        close(done[1]);

        mfb_region_free(r);
        mfb_client_free(c);
}
END_TEST

/* Watches and waits on "watched" until killed. */
static int watch_until_killed(void *arg) {
        const struct test_steps *st = arg;
        mfb_client *c = NULL;
        mfb_region *r = NULL;
        uint64_t seen;

        TEST_CHILD_CHECK(mfb_client_connect(test_broker.socket_path, &c) == 0);
        TEST_CHILD_CHECK(mfb_region_open(c, "watched", O_RDONLY, &r) == 0);
        TEST_CHILD_CHECK(mfb_region_notify_fd(r) >= 0);
        TEST_CHILD_CHECK(current_seq(r, &seen) == 0);
        TEST_CHILD_CHECK(test_pipe_signal(st->to_parent) == 0);
        mfb_region_wait_notify(r, &seen, -1);
        /* Woken: nobody notifies, so this is wrong. */
        return 1;
}

static uint32_t nattch_of(mfb_region *r) {
        mfb_region_stat st;

        ck_assert_int_eq(mfb_region_stat_get(r, &st), 0);
        return st.nattch;
}

/* A waiter killed in its wait leaves nothing in the broker: hold, connection, watch. */
START_TEST(a_killed_waiter_releases_everything) {
        mfb_client *c = connect_to(&test_broker), *other;
        mfb_region *r = create_shared(c, "watched", 4096), *ro = NULL;
        struct mfb_wire_open_request open_req = { .access = MFB_WIRE_ACCESS_READ };
        struct mfb_wire_notify_request notifier_req;
        struct mfb_wire_notifier_reply notifier;
        const struct mfb_wire_notify_page *page;
        struct test_steps st;
        unsigned baseline;
        int raw, page_fd, status;
        uint64_t seq, s;
        pid_t pid;

        ck_assert_int_eq(mfb_region_notify(r), 0);
        /* The page as a raw reader maps it, to see the broker's count of watchers. */
        raw = raw_connect_hello(&test_broker);
        open_req.handle = mfb_region_handle(r);
        ck_assert_int_eq(raw_request(raw, MFB_WIRE_OP_OPEN, &open_req, sizeof(open_req), NULL, 0), 0);
        notifier_req = (struct mfb_wire_notify_request) { .handle = mfb_region_handle(r) };
        raw_send(raw, MFB_WIRE_OP_NOTIFIER, &notifier_req, sizeof(notifier_req), NULL, 0);
        ck_assert_int_eq(raw_reply(raw, MFB_WIRE_OP_NOTIFIER, &notifier, sizeof(notifier), &page_fd), 0);
        page = mmap(NULL, MFB_WIRE_NOTIFY_PAGE_SIZE, PROT_READ, MAP_SHARED, page_fd, 0);
        ck_assert(page != MAP_FAILED);
        close(page_fd);
        ck_assert_uint_eq(page->watchers, 0);
        ck_assert_uint_eq(nattch_of(r), 2);
        baseline = test_broker_fd_count(&test_broker);

        test_steps_open(&st);
        pid = test_fork(watch_until_killed, &st);
        ck_assert_int_eq(test_pipe_wait(st.from_child), 0);
        ck_assert_msg(wait_in_futex(pid, -1), "the waiter did not go to sleep");
        ck_assert_uint_eq(nattch_of(r), 3);
        ck_assert_uint_eq(__atomic_load_n(&page->watchers, __ATOMIC_ACQUIRE), 1);
        ck_assert_uint_gt(test_broker_fd_count(&test_broker), baseline);

        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        status = test_wait_child(pid);
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        ck_assert_msg(test_broker_wait_fd_count(&test_broker, baseline),
                      "the broker kept fds of the killed waiter: %u, %u before", test_broker_fd_count(&test_broker),
                      baseline);
        ck_assert_uint_eq(nattch_of(r), 2);
        ck_assert_uint_eq(__atomic_load_n(&page->watchers, __ATOMIC_ACQUIRE), 0);

        /* The broker goes on serving, notifications included. */
        seq = current_seq_or_fail(r);
        other = connect_to(&test_broker);
        ck_assert_int_eq(mfb_region_open(other, "watched", O_RDONLY, &ro), 0);
        ck_assert_int_ge(mfb_region_notify_fd(ro), 0);
        ck_assert_uint_eq(__atomic_load_n(&page->watchers, __ATOMIC_ACQUIRE), 1);
        ck_assert_int_eq(mfb_region_notify(r), 0);
        s = seq;
        ck_assert_int_eq(mfb_region_wait_notify(ro, &s, TEST_TIMEOUT_MS), 0);
        ck_assert_uint_eq(s, seq + 1);
        ck_assert_int_eq(poll(&(struct pollfd) { .fd = mfb_region_notify_fd(ro), .events = POLLIN }, 1,
                              TEST_TIMEOUT_MS), 1);
        ck_assert_int_eq(mfb_region_notify_read(ro, &s), 0);
        ck_assert_uint_eq(s, seq + 1);

        mfb_region_free(ro);
        mfb_client_free(other);
        munmap((void *) page, MFB_WIRE_NOTIFY_PAGE_SIZE);
        close(raw);
        test_steps_close(&st);
        mfb_region_free(r);
        mfb_client_free(c);
}
END_TEST

#define PING_PONGS 100

struct pinger {
        const struct test_broker *broker;
        struct test_steps steps;
};

/* Answers every notification of "ping" with one of "pong", once the broker is gone. */
static int pong(void *arg) {
        const struct pinger *p = arg;
        mfb_client *c = NULL;
        mfb_region *ping_region = NULL, *pong_region = NULL;
        uint64_t seen;

        TEST_CHILD_CHECK(mfb_client_connect(p->broker->socket_path, &c) == 0);
        TEST_CHILD_CHECK(mfb_region_open(c, "ping", O_RDONLY, &ping_region) == 0);
        TEST_CHILD_CHECK(mfb_region_create_with(c, "pong", 4096, 0644, 0, &pong_region) == 0);
        /* Both pages while the broker lives: the first use of each asks it for the page. */
        TEST_CHILD_CHECK(current_seq(ping_region, &seen) == 0);
        TEST_CHILD_CHECK(mfb_region_notify(pong_region) == 0);
        TEST_CHILD_CHECK(test_pipe_signal(p->steps.to_parent) == 0);

        TEST_CHILD_CHECK(test_pipe_wait(p->steps.from_parent) == 0);
        for (int i = 1; i <= PING_PONGS; i++) {
                uint64_t before = seen;

                TEST_CHILD_CHECK(wait_woken(ping_region, &seen) == 0);
                TEST_CHILD_CHECK(seen == before + 1);
                TEST_CHILD_CHECK(mfb_region_notify(pong_region) == 0);
        }
        mfb_region_free(pong_region);
        mfb_region_free(ping_region);
        mfb_client_free(c);
        return 0;
}

/* Holders notify each other through their mappings alone: the broker's death does not stop them. */
START_TEST(notifications_outlive_a_killed_broker) {
        struct test_broker b;
        struct pinger p;
        mfb_client *c;
        mfb_region *ping_region, *pong_region = NULL;
        uint64_t seen;
        int status;
        pid_t pid;

        test_broker_start(&b, NULL);
        c = connect_to(&b);
        ping_region = create_shared(c, "ping", 4096);
        ck_assert_int_eq(mfb_region_notify(ping_region), 0);
        p = (struct pinger) { .broker = &b };
        test_steps_open(&p.steps);
        pid = test_fork(pong, &p);
        ck_assert_int_eq(test_pipe_wait(p.steps.from_child), 0);
        ck_assert_int_eq(mfb_region_open(c, "pong", O_RDONLY, &pong_region), 0);
        seen = current_seq_or_fail(pong_region);

        ck_assert_int_eq(kill(b.pid, SIGKILL), 0);
        status = test_wait_child(b.pid);
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        ck_assert_int_eq(unlink(b.socket_path), 0);
        ck_assert_int_eq(rmdir(b.dir), 0);

        ck_assert_int_eq(test_pipe_signal(p.steps.to_child), 0);
        for (int i = 1; i <= PING_PONGS; i++) {
                uint64_t before = seen;

                ck_assert_int_eq(mfb_region_notify(ping_region), 0);
                ck_assert_int_eq(wait_woken(pong_region, &seen), 0);
                ck_assert_uint_eq(seen, before + 1);
        }
        test_child_succeeded(pid);

        mfb_region_free(pong_region);
        mfb_region_free(ping_region);
        mfb_client_free(c);
        test_steps_close(&p.steps);
}
END_TEST

/* Event loops ------------------------------------------------------------ */

/* Creates "events", then notifies it once for each 'n' the test sends, answering each; 'q' ends it. */
static int notify_on_request(void *arg) {
        const struct test_steps *st = arg;
        mfb_client *c = NULL;
        mfb_region *r = NULL;
        char cmd;

        TEST_CHILD_CHECK(mfb_client_connect(test_broker.socket_path, &c) == 0);
        TEST_CHILD_CHECK(mfb_region_create_with(c, "events", 4096, 0644, 0, &r) == 0);
        TEST_CHILD_CHECK(test_pipe_signal(st->to_parent) == 0);
        for (;;) {
                TEST_CHILD_CHECK(poll(&(struct pollfd) { .fd = st->from_parent, .events = POLLIN }, 1,
                                      TEST_TIMEOUT_MS) == 1);
                TEST_CHILD_CHECK(read(st->from_parent, &cmd, 1) == 1);
                if (cmd == 'q')
                        break;
                TEST_CHILD_CHECK(mfb_region_notify(r) == 0);
                TEST_CHILD_CHECK(test_pipe_signal(st->to_parent) == 0);
        }
        mfb_region_free(r);
        mfb_client_free(c);
        return 0;
}

static void command(const struct test_steps *st, char cmd) {
        ck_assert_int_eq(write(st->to_child, &cmd, 1), 1);
}

enum loop_kind { LOOP_POLL, LOOP_EPOLL, LOOP_LIBEVENT };

/* The notification fd of r watched by one kind of event loop. */
struct watch {
        enum loop_kind kind;
        mfb_region *r;
        int fd;
        int epfd;
        struct event_base *base;
        struct event *ready, *deadline;
        bool fired, timed_out;
        uint64_t seq;           /* what the libevent callback's mfb_region_notify_read() gave */
};

static void watch_ready(evutil_socket_t fd, short what, void *userdata) {
        struct watch *w = userdata;

        /* A user's callback: takes the notification, which consumes the fd's readiness. */
        ck_assert_int_eq(mfb_region_notify_read(w->r, &w->seq), 0);
        w->fired = true;
        event_base_loopbreak(w->base);
}

static void watch_timeout(evutil_socket_t fd, short what, void *userdata) {
        struct watch *w = userdata;

        w->timed_out = true;
        event_base_loopbreak(w->base);
}

static void watch_start(struct watch *w, enum loop_kind kind, mfb_region *r) {
        *w = (struct watch) { .kind = kind, .r = r, .epfd = -1 };
        w->fd = mfb_region_notify_fd(r);
        ck_assert_int_ge(w->fd, 0);
        /* Borrowed from the region: the same fd every time. */
        ck_assert_int_eq(mfb_region_notify_fd(r), w->fd);
        ck_assert(fcntl(w->fd, F_GETFD) & FD_CLOEXEC);

        switch (kind) {
        case LOOP_POLL:
                break;
        case LOOP_EPOLL:
                w->epfd = epoll_create1(EPOLL_CLOEXEC);
                ck_assert_int_ge(w->epfd, 0);
                ck_assert_int_eq(epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->fd,
                                           &(struct epoll_event) { .events = EPOLLIN }), 0);
                break;
        case LOOP_LIBEVENT:
                w->base = event_base_new();
                ck_assert_ptr_nonnull(w->base);
                w->ready = event_new(w->base, w->fd, EV_READ | EV_PERSIST, watch_ready, w);
                w->deadline = evtimer_new(w->base, watch_timeout, w);
                ck_assert(w->ready && w->deadline);
                ck_assert_int_eq(event_add(w->ready, NULL), 0);
                break;
        }
}

static void watch_stop(struct watch *w) {
        if (w->epfd >= 0)
                close(w->epfd);
        if (w->base) {
                event_free(w->ready);
                event_free(w->deadline);
                event_base_free(w->base);
        }
}

/*
 * Whether the loop reports the fd readable within timeout_ms (0: now).
 * Under libevent the callback runs then, and takes the notification.
 */
static bool watch_readable(struct watch *w, int timeout_ms) {
        struct epoll_event ev;
        struct timeval limit = { .tv_sec = timeout_ms / 1000, .tv_usec = timeout_ms % 1000 * 1000 };
        int n;

        switch (w->kind) {
        case LOOP_POLL:
                n = poll(&(struct pollfd) { .fd = w->fd, .events = POLLIN }, 1, timeout_ms);
                ck_assert_int_ge(n, 0);
                return n == 1;
        case LOOP_EPOLL:
                n = epoll_wait(w->epfd, &ev, 1, timeout_ms);
                ck_assert_int_ge(n, 0);
                if (n == 1)
                        ck_assert(ev.events & EPOLLIN);
                return n == 1;
        case LOOP_LIBEVENT:
                w->fired = w->timed_out = false;
                if (timeout_ms == 0)
                        ck_assert_int_eq(event_base_loop(w->base, EVLOOP_NONBLOCK), 0);
                else {
                        ck_assert_int_eq(evtimer_add(w->deadline, &limit), 0);
                        ck_assert_int_eq(event_base_dispatch(w->base), 0);
                        ck_assert_int_eq(evtimer_del(w->deadline), 0);
                }
                return w->fired;
        }
        return false;
}

/* Waits for the loop to report a notification and takes it; returns the sequence it gave. */
static uint64_t watch_next(struct watch *w) {
        uint64_t seq;

        ck_assert_msg(watch_readable(w, TEST_TIMEOUT_MS), "no readiness within %d ms", TEST_TIMEOUT_MS);
        if (w->kind == LOOP_LIBEVENT)
                return w->seq;
        ck_assert_int_eq(mfb_region_notify_read(w->r, &seq), 0);
        return seq;
}

static void notifications_reach_the_loop(enum loop_kind kind) {
        struct test_steps st;
        struct watch w;
        mfb_client *c;
        mfb_region *r = NULL;
        uint64_t seq, s;
        pid_t pid;

        test_steps_open(&st);
        pid = test_fork(notify_on_request, &st);
        ck_assert_int_eq(test_pipe_wait(st.from_child), 0);
        c = connect_to(&test_broker);
        /* A reader watches: the writer is the other process. */
        ck_assert_int_eq(mfb_region_open(c, "events", O_RDONLY, &r), 0);
        watch_start(&w, kind, r);

        ck_assert(!watch_readable(&w, 0));
        /* With nothing to take it does not block, and gives the sequence. */
        ck_assert_int_eq(mfb_region_notify_read(r, &seq), 0);
        ck_assert(!watch_readable(&w, 0));

        for (uint64_t i = 1; i <= 3; i++) {
                command(&st, 'n');
                ck_assert_int_eq(test_pipe_wait(st.from_child), 0);
                ck_assert_uint_eq(watch_next(&w), seq + i);
                /* Taken: not readable again until the next notification. */
                ck_assert(!watch_readable(&w, 0));
        }

        /* Two before the loop looks: one readiness may stand for both, the sequence tells. */
        command(&st, 'n');
        command(&st, 'n');
        ck_assert_int_eq(test_pipe_wait(st.from_child), 0);
        ck_assert_int_eq(test_pipe_wait(st.from_child), 0);
        ck_assert_uint_eq(watch_next(&w), seq + 5);
        ck_assert_int_eq(mfb_region_notify_read(r, &s), 0);
        ck_assert_uint_eq(s, seq + 5);

        command(&st, 'q');
        test_child_succeeded(pid);
        watch_stop(&w);
        mfb_region_free(r);
        mfb_client_free(c);
        test_steps_close(&st);
}

START_TEST(the_notify_fd_under_poll) {
        notifications_reach_the_loop(LOOP_POLL);
}
END_TEST

START_TEST(the_notify_fd_under_epoll) {
        notifications_reach_the_loop(LOOP_EPOLL);
}
END_TEST

START_TEST(the_notify_fd_under_libevent) {
        notifications_reach_the_loop(LOOP_LIBEVENT);
}
END_TEST

/* Nothing left ----------------------------------------------------------- */

/* How many memfd mappings this process has. */
static unsigned memfd_mappings(void) {
        FILE *f = fopen("/proc/self/maps", "re");
        char line[4096];
        unsigned n = 0;

        ck_assert_ptr_nonnull(f);
        while (fgets(line, sizeof(line), f))
                if (strstr(line, "/memfd:"))
                        n++;
        fclose(f);
        return n;
}

START_TEST(freeing_a_region_after_all_four_leaves_nothing) {
        mfb_client *c = connect_to(&test_broker);
        unsigned fds = test_fd_count(), mappings = memfd_mappings(),
                 broker_fds = test_broker_fd_count(&test_broker);
        mfb_region *r = NULL;
        char proc[64], link[64] = "";
        uint64_t seq, s;
        int fd;

        ck_assert_int_eq(mfb_region_create(c, NULL, 4096, &r), 0);
        ck_assert_int_eq(mfb_region_notify(r), 0);
        seq = current_seq_or_fail(r);
        fd = mfb_region_notify_fd(r);
        ck_assert_int_ge(fd, 0);
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        ck_assert_int_gt(readlink(proc, link, sizeof(link) - 1), 0);
        ck_assert_msg(strncmp(link, "pipe:[", 6) == 0, "the pollable fd is %s, not a pipe", link);
        ck_assert_int_eq(mfb_region_notify(r), 0);
        ck_assert_int_eq(poll(&(struct pollfd) { .fd = fd, .events = POLLIN }, 1, TEST_TIMEOUT_MS), 1);
        ck_assert_int_eq(mfb_region_notify_read(r, &s), 0);
        ck_assert_uint_eq(s, seq + 1);
        ck_assert_uint_gt(memfd_mappings(), mappings);

        mfb_region_free(r);
        ck_assert_uint_eq(test_fd_count(), fds);
        ck_assert_uint_eq(memfd_mappings(), mappings);
        ck_assert_int_eq(fcntl(fd, F_GETFD), -1);
        /* The broker let go of the region, its page and the watch. */
        ck_assert_int_eq(mfb_client_roundtrip(c), 0);
        ck_assert_msg(test_broker_wait_fd_count(&test_broker, broker_fds), "the broker has %u fds, %u before",
                      test_broker_fd_count(&test_broker), broker_fds);
        mfb_client_free(c);
}
END_TEST

Suite *notify_suite(void) {
        Suite *s = suite_create("notify");
        TCase *tc = tcase_create("notify"), *dying = tcase_create("notify-broker-killed");

        tcase_set_timeout(tc, 120);
        tcase_add_checked_fixture(tc, test_broker_setup, test_broker_teardown);
        tcase_add_test(tc, a_million_messages_through_a_ring);
        tcase_add_test(tc, a_reader_cannot_notify_by_any_route);
        tcase_add_test(tc, one_notification_wakes_every_waiter);
        tcase_add_test(tc, waits_time_out_and_poll);
        tcase_add_test(tc, a_killed_waiter_releases_everything);
        tcase_add_test(tc, the_notify_fd_under_poll);
        tcase_add_test(tc, the_notify_fd_under_epoll);
        tcase_add_test(tc, the_notify_fd_under_libevent);
        tcase_add_test(tc, freeing_a_region_after_all_four_leaves_nothing);
        suite_add_tcase(s, tc);

        /* Its broker is its own, killed on purpose: only the fd leak check. */
        tcase_set_timeout(dying, 60);
        tcase_add_checked_fixture(dying, test_fd_leak_setup, test_fd_leak_teardown);
        tcase_add_test(dying, notifications_outlive_a_killed_broker);
        suite_add_tcase(s, dying);
        return s;
}
