/* SPDX-License-Identifier: MIT */
/*
 * The notify scenario: how long a notification takes to wake another
 * process, as a ping-pong between two processes: one notifies, the other
 * wakes and notifies back, and the first wakes. Through the library
 * (mfb_region_notify() and mfb_region_wait_notify(), and the pollable path:
 * mfb_region_notify_fd(), poll() and mfb_region_notify_read()), against a
 * raw eventfd ping-pong and a raw futex ping-pong on a shared page (what
 * the library does underneath), all in the same run, rounds interleaved.
 *
 * One region each way, as the raw baselines have one eventfd and one futex
 * word each way: each direction has its own sequence, its own futex word
 * and its own waiter, so that a wake-up never finds the wrong process and
 * the sequence one side waits on moves by exactly one per round, which is
 * checked. The timed operation is a whole round trip, in the process that
 * measures; the other, the echo, runs on the broker's CPU.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench-common.h"
#include "bench-measure.h"
#include "bench-report.h"
#include "bench-scenarios.h"
#include "macro.h"

#define SCENARIO "notify"
#define PAYLOAD_SMALL 64U
#define PAYLOAD_LARGE (1U << 20)
/* Asks the raw eventfd echo to exit: any count but the 1 of a round. */
#define EVENTFD_STOP 2U
/* Where in the ping region's words its writer asks the library's echo to exit, and where the stamps are. */
#define WORD_STAMP 0U
#define WORD_STOP 1U
/* The raw futex page: each word on a cache line of its own, as each region's is on a page of its own. */
#define FUTEX_PING 0U
#define FUTEX_PONG 8U
#define FUTEX_STOP 16U

enum method {
        METHOD_EVENTFD,         /* the baseline the target is for */
        METHOD_FUTEX,           /* what the library does underneath */
        METHOD_LIBRARY,
        METHOD_POLLABLE,
        METHOD_SMALL,           /* the library, a stamp written at both ends of a 64 B payload and checked */
        METHOD_LARGE,           /* the same, 1 MiB */
        METHOD_COUNT,
};

/* The two processes' shared state of one method; the echo has its own copy after the fork. */
struct pingpong {
        enum method method;
        const struct bench_ctx *ctx;
        pid_t echo;
        int ready;              /* socketpair to the echo: one byte once it waits */
        /* METHOD_EVENTFD */
        int efd_ping, efd_pong;
        /* METHOD_FUTEX: a shared page of a memfd, as the library's control page is */
        uint64_t *page;
        uint64_t seq_seen;      /* the last sequence this side saw on the word it waits on */
        /* the library */
        const char *socket_path;
        mfb_client *client;
        mfb_region *ping, *pong;
        uint64_t ping_handle, pong_handle;
        uint64_t ping_size;
        volatile uint64_t *ping_data, *pong_data;
        int pong_fd;            /* METHOD_POLLABLE: mfb_region_notify_fd() of the region waited on */
        uint64_t stamp;
};

static bool stamped(enum method m) {
        return m == METHOD_SMALL || m == METHOD_LARGE;
}

static bool library(enum method m) {
        return m >= METHOD_LIBRARY;
}

static long futex(uint64_t *word, int op, uint32_t val, const struct timespec *timeout) {
        return syscall(SYS_futex, (uint8_t *) word + MFB_WIRE_NOTIFY_FUTEX_OFFSET, op, val, timeout, NULL, 0);
}

/* The library's notify procedure, by hand (the wire protocol's, minus the watchers). */
static void futex_notify(uint64_t *word) {
        __atomic_add_fetch(word, 1, __ATOMIC_SEQ_CST);
        futex(word, FUTEX_WAKE, INT_MAX, NULL);
}

/* The library's wait procedure, by hand; without a timeout, as the echo of the eventfd waits without one. */
static uint64_t futex_wait(uint64_t *word, uint64_t seen) {
        uint64_t cur;

        while ((cur = __atomic_load_n(word, __ATOMIC_SEQ_CST)) == seen)
                if (futex(word, FUTEX_WAIT, (uint32_t) cur, NULL) < 0 && errno != EAGAIN && errno != EINTR)
                        bench_die("FUTEX_WAIT: %m");
        return cur;
}

static void check(int k, const char *what) {
        if (k < 0)
                bench_die("%s: %s", what, strerror(-k));
}

/* Waits for the region's sequence to move from *seq, by poll() on its notify fd; returns the new one. */
static void pollable_wait(mfb_region *r, int fd, uint64_t *seq, int timeout_ms) {
        for (;;) {
                uint64_t now;
                int k = poll(&(struct pollfd) { .fd = fd, .events = POLLIN }, 1, timeout_ms);

                if (k < 0 && errno != EINTR)
                        bench_die("poll: %m");
                if (k == 0)
                        bench_die("no notification within %d ms", timeout_ms);
                check(mfb_region_notify_read(r, &now), "mfb_region_notify_read");
                if (now != *seq) {
                        *seq = now;
                        return;
                }
        }
}

/* The echo ------------------------------------------------------------------ */

static void echo_ready(struct pingpong *pp) {
        if (write(pp->ready, "r", 1) != 1)
                bench_die("telling the scenario the echo waits: %m");
}

static _Noreturn void echo_eventfd(struct pingpong *pp) {
        echo_ready(pp);
        for (;;) {
                uint64_t v;

                if (read(pp->efd_ping, &v, sizeof(v)) != sizeof(v))
                        bench_die("reading the eventfd: %m");
                if (v == EVENTFD_STOP)
                        _exit(0);
                if (v != 1)
                        bench_die("the eventfd counted %llu, not 1", (unsigned long long) v);
                v = 1;
                if (write(pp->efd_pong, &v, sizeof(v)) != sizeof(v))
                        bench_die("writing the eventfd: %m");
        }
}

static _Noreturn void echo_futex(struct pingpong *pp) {
        uint64_t seen = __atomic_load_n(&pp->page[FUTEX_PING], __ATOMIC_SEQ_CST);

        echo_ready(pp);
        for (;;) {
                uint64_t now = futex_wait(&pp->page[FUTEX_PING], seen);

                if (now != seen + 1)
                        bench_die("the futex sequence moved from %llu to %llu", (unsigned long long) seen,
                                  (unsigned long long) now);
                seen = now;
                if (__atomic_load_n(&pp->page[FUTEX_STOP], __ATOMIC_SEQ_CST))
                        _exit(0);
                futex_notify(&pp->page[FUTEX_PONG]);
        }
}

static _Noreturn void echo_library(struct pingpong *pp) {
        mfb_client *c = bench_ctx_client(pp->socket_path);
        uint64_t seen = UINT64_MAX, last_word = pp->ping_size / sizeof(uint64_t) - 1;
        mfb_region *ping, *pong;
        void *p;
        int fd = -1;

        check(mfb_region_open_handle(c, pp->ping_handle, O_RDONLY, &ping), "opening the region to wait on");
        check(mfb_region_open_handle(c, pp->pong_handle, O_RDWR, &pong), "opening the region to notify");
        check(mfb_region_map(ping, &p), "mapping the region waited on");
        pp->ping_data = p;
        check(mfb_region_map(pong, &p), "mapping the region notified");
        pp->pong_data = p;
        /* The first use asks the broker for the control page: before the rounds, not in them. */
        check(mfb_region_wait_notify(ping, &seen, 0), "reading the sequence");
        check(mfb_region_wait_notify(pong, &(uint64_t) { UINT64_MAX }, 0), "reading the sequence");
        if (pp->method == METHOD_POLLABLE) {
                fd = mfb_region_notify_fd(ping);
                check(fd, "mfb_region_notify_fd");
        }
        echo_ready(pp);

        for (uint64_t round = 1;; round++) {
                uint64_t prev = seen;

                if (fd >= 0)
                        pollable_wait(ping, fd, &seen, -1);
                else
                        check(mfb_region_wait_notify(ping, &seen, -1), "mfb_region_wait_notify");
                if (seen != prev + 1)
                        bench_die("the sequence moved from %llu to %llu", (unsigned long long) prev,
                                  (unsigned long long) seen);
                if (pp->ping_data[WORD_STOP])
                        break;
                if (stamped(pp->method)) {
                        if (pp->ping_data[WORD_STAMP] != round || pp->ping_data[last_word] != round)
                                bench_die("round %llu: the payload's stamps are %llu and %llu",
                                          (unsigned long long) round, (unsigned long long) pp->ping_data[0],
                                          (unsigned long long) pp->ping_data[last_word]);
                        pp->pong_data[WORD_STAMP] = round;
                }
                check(mfb_region_notify(pong), "mfb_region_notify");
        }
        mfb_region_free(ping);
        mfb_region_free(pong);
        mfb_client_free(c);
        _exit(0);
}

/* The side that measures ------------------------------------------------------ */

static void round_trip_eventfd(void *userdata) {
        struct pingpong *pp = userdata;
        uint64_t v = 1;

        if (write(pp->efd_ping, &v, sizeof(v)) != sizeof(v))
                bench_die("writing the eventfd: %m");
        if (read(pp->efd_pong, &v, sizeof(v)) != sizeof(v) || v != 1)
                bench_die("reading the eventfd");
}

static void round_trip_futex(void *userdata) {
        struct pingpong *pp = userdata;
        uint64_t now;

        futex_notify(&pp->page[FUTEX_PING]);
        now = futex_wait(&pp->page[FUTEX_PONG], pp->seq_seen);
        if (now != pp->seq_seen + 1)
                bench_die("the echo's futex sequence moved by %llu", (unsigned long long) (now - pp->seq_seen));
        pp->seq_seen = now;
}

static void round_trip_library(void *userdata) {
        struct pingpong *pp = userdata;
        uint64_t prev = pp->seq_seen;

        if (stamped(pp->method)) {
                pp->stamp++;
                pp->ping_data[WORD_STAMP] = pp->stamp;
                pp->ping_data[pp->ping_size / sizeof(uint64_t) - 1] = pp->stamp;
        }
        check(mfb_region_notify(pp->ping), "mfb_region_notify");
        if (pp->method == METHOD_POLLABLE)
                pollable_wait(pp->pong, pp->pong_fd, &pp->seq_seen, BENCH_TIMEOUT_MS);
        else
                check(mfb_region_wait_notify(pp->pong, &pp->seq_seen, BENCH_TIMEOUT_MS), "mfb_region_wait_notify");
        if (pp->seq_seen != prev + 1)
                bench_die("the echo's sequence moved from %llu to %llu", (unsigned long long) prev,
                          (unsigned long long) pp->seq_seen);
        if (stamped(pp->method) && pp->pong_data[WORD_STAMP] != pp->stamp)
                bench_die("the echo answered stamp %llu with %llu", (unsigned long long) pp->stamp,
                          (unsigned long long) pp->pong_data[WORD_STAMP]);
}

/*
 * A blocking read of an eventfd has no timeout, and a baseline with a poll()
 * before it would not be the bare eventfd: an alarm around each round stands
 * for the timeout, and ends the run as SIGTERM does (cleanly) if an echo
 * stops answering.
 */
static void on_alarm(int sig) {
        static const char msg[] = "memfd-broker-bench: notify: an echo did not answer in time\n";

        (void) sig;
        (void) !write(STDERR_FILENO, msg, sizeof(msg) - 1);
        raise(SIGTERM);
}

static void round_begin(void *userdata) {
        (void) userdata;
        alarm(BENCH_TIMEOUT_MS / 1000);
}

static void round_end(void *userdata) {
        (void) userdata;
        alarm(0);
}

/* Setting up and stopping -------------------------------------------------------- */

static mfb_region *make_region(mfb_client *c, uint64_t size, volatile uint64_t **ret_data) {
        mfb_region *r;
        void *p;

        check(mfb_region_create(c, NULL, size, &r), "creating a region");
        check(mfb_region_map(r, &p), "mapping a region");
        *ret_data = p;
        return r;
}

/* Makes what both sides share, before the fork. */
static void pingpong_prepare(struct pingpong *pp, mfb_client *c) {
        int fd;

        switch (pp->method) {
        case METHOD_EVENTFD:
                pp->efd_ping = eventfd(0, EFD_CLOEXEC);
                pp->efd_pong = eventfd(0, EFD_CLOEXEC);
                if (pp->efd_ping < 0 || pp->efd_pong < 0)
                        bench_die("eventfd: %m");
                break;
        case METHOD_FUTEX:
                fd = bench_memfd("bench-notify", MFB_WIRE_NOTIFY_PAGE_SIZE);
                if (fd < 0)
                        bench_die("memfd: %m");
                pp->page = mmap(NULL, MFB_WIRE_NOTIFY_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                if (pp->page == MAP_FAILED)
                        bench_die("mmap: %m");
                close(fd);
                break;
        default:
                pp->client = c;
                pp->ping_size = pp->method == METHOD_SMALL ? PAYLOAD_SMALL :
                                pp->method == METHOD_LARGE ? PAYLOAD_LARGE : BENCH_PAGE_REGION;
                pp->ping = make_region(c, pp->ping_size, &pp->ping_data);
                pp->pong = make_region(c, BENCH_PAGE_REGION, &pp->pong_data);
                pp->ping_handle = mfb_region_handle(pp->ping);
                pp->pong_handle = mfb_region_handle(pp->pong);
                pp->pong_fd = -1;
                break;
        }
}

static void pingpong_start(struct pingpong *pp) {
        int sock;
        char byte;

        pp->echo = bench_fork_pair(&sock);
        if (pp->echo == 0) {
                pp->ready = sock;
                if (pp->ctx->two_cpus)
                        bench_pin(pp->ctx->server_cpu);
                if (pp->method == METHOD_EVENTFD)
                        echo_eventfd(pp);
                if (pp->method == METHOD_FUTEX)
                        echo_futex(pp);
                echo_library(pp);
        }
        bench_track_pid(pp->echo);
        /* The echo has read the sequence it waits on: a notification from now on wakes it. */
        if (poll(&(struct pollfd) { .fd = sock, .events = POLLIN }, 1, BENCH_TIMEOUT_MS) != 1 ||
            read(sock, &byte, 1) != 1)
                bench_die("the echo did not start");
        pp->seq_seen = 0;
        if (library(pp->method)) {
                /* As the echo has, this side asks for its control pages now: the first use is not timed. */
                pp->seq_seen = UINT64_MAX;
                check(mfb_region_wait_notify(pp->pong, &pp->seq_seen, 0), "reading the sequence");
                check(mfb_region_wait_notify(pp->ping, &(uint64_t) { UINT64_MAX }, 0), "reading the sequence");
                if (pp->method == METHOD_POLLABLE) {
                        pp->pong_fd = mfb_region_notify_fd(pp->pong);
                        check(pp->pong_fd, "mfb_region_notify_fd");
                }
        }
        close(sock);
}

static void pingpong_stop(struct pingpong *pp) {
        uint64_t v = EVENTFD_STOP;
        int status;

        switch (pp->method) {
        case METHOD_EVENTFD:
                if (write(pp->efd_ping, &v, sizeof(v)) != sizeof(v))
                        bench_die("writing the eventfd: %m");
                break;
        case METHOD_FUTEX:
                __atomic_store_n(&pp->page[FUTEX_STOP], 1, __ATOMIC_SEQ_CST);
                futex_notify(&pp->page[FUTEX_PING]);
                break;
        default:
                pp->ping_data[WORD_STOP] = 1;
                check(mfb_region_notify(pp->ping), "mfb_region_notify");
                break;
        }
        status = bench_reap(pp->echo, BENCH_TIMEOUT_MS);
        bench_untrack_pid(pp->echo);
        if (status != 0)
                bench_die("an echo failed (wait status %d)", status);
        switch (pp->method) {
        case METHOD_EVENTFD:
                close(pp->efd_ping);
                close(pp->efd_pong);
                break;
        case METHOD_FUTEX:
                munmap(pp->page, MFB_WIRE_NOTIFY_PAGE_SIZE);
                break;
        default:
                /* The pollable fd is borrowed: freeing the region closes it. */
                mfb_region_free(pp->ping);
                mfb_region_free(pp->pong);
                break;
        }
}

/* The scenario ---------------------------------------------------------------- */

/* Whether the broker serves notifications: the first use of a region tells. */
static bool broker_notifies(mfb_client *c) {
        uint64_t seq = UINT64_MAX;
        volatile uint64_t *data;
        mfb_region *r = make_region(c, BENCH_PAGE_REGION, &data);
        int k = mfb_region_wait_notify(r, &seq, 0);

        mfb_region_free(r);
        if (k == -EOPNOTSUPP)
                return false;
        check(k, "reading a region's sequence");
        return true;
}

static void report_row(struct bench_state *states, size_t base, size_t measured, const char *what,
                       const char *baseline, bool target, bool summary, const struct bench_ctx *ctx) {
        const char *where = bench_ctx_placement(ctx, states[base].cpu);
        struct bench_row row = {
                .scenario = SCENARIO, .summary = summary,
                .target = target ? BENCH_TARGET_RATIO_MAX : BENCH_TARGET_NONE, .target_value = 1.5,
        };

        snprintf(row.what, sizeof(row.what), "%s, %s", what, where);
        snprintf(row.baseline, sizeof(row.baseline), "%s", baseline);
        bench_row_from_states(&row, &states[base], &states[measured]);
        bench_report_row(&row);
}

void bench_scenario_notify(struct bench_ctx *ctx) {
        static const char *const names[2][METHOD_COUNT] = {
                { "raw eventfd echo, same CPU", "raw futex echo, same CPU", "library echo, same CPU",
                  "pollable path (the broker), same CPU", "library echo, 64 B payload, same CPU",
                  "library echo, 1 MiB payload, same CPU" },
                { "raw eventfd echo, other CPU", "raw futex echo, other CPU", "library echo, other CPU",
                  "pollable path (the broker), other CPU", "library echo, 64 B payload, other CPU",
                  "library echo, 1 MiB payload, other CPU" },
        };
        struct pingpong pp[METHOD_COUNT];
        struct bench_state states[2 * METHOD_COUNT];
        struct bench_broker broker = { 0 };
        struct sigaction sa = { .sa_handler = on_alarm }, old_sa;
        int cpus[2] = { ctx->server_cpu, ctx->other_cpu };
        size_t placements = ctx->two_cpus ? 2 : 1, methods, n = 0;
        unsigned rounds = ctx->quick ? 5 : 40, per_round = 250;
        mfb_client *c;

        bench_report_scenario(SCENARIO, "notify, the other process wakes and notifies back, the first wakes: the "
                              "library against a raw eventfd and a raw futex ping-pong");
        bench_ctx_broker(ctx, &broker, NULL);
        c = bench_ctx_client(broker.socket_path);
        methods = broker_notifies(c) ? METHOD_COUNT : METHOD_LIBRARY;
        if (methods < METHOD_COUNT)
                bench_report_note(SCENARIO, "the broker does not serve notifications: the raw baselines only");
        if (!ctx->two_cpus)
                bench_report_note(SCENARIO, "fewer than 2 CPUs: one placement only, left to the kernel");
        if (sigaction(SIGALRM, &sa, &old_sa) < 0)
                bench_die("sigaction: %m");

        for (size_t m = 0; m < methods; m++) {
                pp[m] = (struct pingpong) { .method = (enum method) m, .ctx = ctx,
                                            .socket_path = broker.socket_path };
                pingpong_prepare(&pp[m], c);
                pingpong_start(&pp[m]);
        }
        for (size_t p = 0; p < placements; p++)
                for (size_t m = 0; m < methods; m++)
                        states[n++] = (struct bench_state) {
                                .name = names[p][m], .cpu = ctx->two_cpus ? cpus[p] : -1,
                                .op = m == METHOD_EVENTFD ? round_trip_eventfd : m == METHOD_FUTEX ?
                                      round_trip_futex : round_trip_library,
                                .userdata = &pp[m], .round_begin = round_begin, .round_end = round_end,
                                /* The pollable path goes through the broker: its work is the one to count. */
                                .server = m == METHOD_POLLABLE ? broker.pid : pp[m].echo,
                        };
        bench_report_text("  %u round trips of each, in %u interleaved rounds; the echo on the broker's CPU, the "
                          "measuring side on the same CPU or the other one", rounds * per_round, rounds);
        bench_interleave(states, n, rounds, per_round, 100);

        for (size_t p = 0; p < placements; p++) {
                struct bench_state *s = &states[p * methods];

                report_row(s, METHOD_EVENTFD, METHOD_FUTEX, "round trip, raw futex on a shared page",
                           "raw eventfd", false, false, ctx);
                if (methods < METHOD_COUNT)
                        continue;
                report_row(s, METHOD_EVENTFD, METHOD_LIBRARY, "round trip, mfb_region_notify+wait_notify",
                           "raw eventfd", true, true, ctx);
                report_row(s, METHOD_FUTEX, METHOD_LIBRARY, "round trip, mfb_region_notify+wait_notify",
                           "raw futex", false, false, ctx);
                report_row(s, METHOD_EVENTFD, METHOD_POLLABLE, "round trip, pollable: notify_fd+poll+notify_read",
                           "raw eventfd", false, true, ctx);
                report_row(s, METHOD_SMALL, METHOD_LARGE, "round trip, payload stamped and checked: 1 MiB "
                           "against 64 B", "the library, 64 B", false, false, ctx);
        }
        for (size_t i = 0; i < n; i++)
                bench_state_note(SCENARIO, &states[i]);
        if (methods == METHOD_COUNT)
                bench_report_note(SCENARIO, "a round trip is two notifications and two wake-ups; the pollable path "
                                  "sends each notification to the broker, which signals the watcher's pipe; "
                                  "the measuring side waits through the library with a timeout, as a caller "
                                  "would, the raw ones without");

        for (size_t m = 0; m < methods; m++)
                pingpong_stop(&pp[m]);
        sigaction(SIGALRM, &old_sa, NULL);
        mfb_client_free(c);
        bench_states_free(states, n);
        if (!bench_broker_stop(&broker))
                bench_die("the broker failed");
}
