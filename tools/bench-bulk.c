/* SPDX-License-Identifier: MIT */
/*
 * The bulk scenario: 256 MiB produced by one process, sealed, and read by
 * another, through the broker; against the same with a memfd handed over
 * directly (the raw baseline), and against a copy through a Unix stream
 * socket.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench-common.h"
#include "bench-report.h"
#include "bench-scenarios.h"
#include "fdpass.h"
#include "macro.h"

#define BULK_SIZE (UINT64_C(256) << 20)
#define BULK_WORDS (BULK_SIZE / sizeof(uint64_t))
#define CHUNK (256U << 10)      /* what the copy writes and reads at a time */
#define SCRAMBLE UINT64_C(0x9e3779b97f4a7c15)
#define ROUNDS_MAX 8

enum method {
        METHOD_MEMFD,           /* the baseline */
        METHOD_COPY,
        METHOD_POPULATE,        /* the baseline, both mappings made with MAP_POPULATE: what page faults cost */
        METHOD_BROKER,
        METHOD_COUNT,
};

/* Produces words first..first+n of a round's data. */
static void produce(uint64_t *p, size_t n, uint64_t first, uint64_t seed) {
        for (size_t i = 0; i < n; i++)
                p[i] = (first + i + seed) * SCRAMBLE;
}

static uint64_t consume(const uint64_t *p, size_t n) {
        uint64_t sum = 0;

        for (size_t i = 0; i < n; i++)
                sum += p[i];
        return sum;
}

/* What consume() gives for a whole round's data: SCRAMBLE times the sum of seed .. seed + BULK_WORDS - 1. */
static uint64_t expected_sum(uint64_t seed) {
        uint64_t n = BULK_WORDS;

        return SCRAMBLE * (n * seed + n / 2 * (n - 1));
}

/* The consumer's side ------------------------------------------------------ */

static void report_sum(int report, uint64_t sum) {
        if (write(report, &sum, sizeof(sum)) != sizeof(sum))
                _exit(1);
}

static _Noreturn void consume_memfd(int sock, int report, int map_flags) {
        int fds[MFB_FDS_RECV_MAX], seals;
        size_t nfds = 0;
        struct stat st;
        char byte;
        void *p;

        if (mfb_record_recv(sock, &byte, 1, fds, &nfds, 0) != 1 || nfds != 1)
                bench_die("the producer sent no memfd");
        seals = fcntl(fds[0], F_GET_SEALS);
        if (fstat(fds[0], &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t) st.st_size < BULK_SIZE || seals < 0 ||
            !(seals & F_SEAL_WRITE))
                bench_die("the memfd is not sealed as it should be");
        p = mmap(NULL, BULK_SIZE, PROT_READ, MAP_SHARED | map_flags, fds[0], 0);
        if (p == MAP_FAILED)
                bench_die("mmap: %m");
        report_sum(report, consume(p, BULK_WORDS));
        munmap(p, BULK_SIZE);
        close(fds[0]);
        _exit(0);
}

static _Noreturn void consume_copy(int sock, int report) {
        uint64_t *buf = bench_check_alloc(malloc(CHUNK)), sum = 0;
        size_t total = 0;

        while (total < BULK_SIZE) {
                size_t got = 0;

                while (got < CHUNK) {
                        ssize_t n = read(sock, (uint8_t *) buf + got, CHUNK - got);

                        if (n <= 0)
                                bench_die("the copy ended after %zu bytes", total + got);
                        got += (size_t) n;
                }
                sum += consume(buf, CHUNK / sizeof(uint64_t));
                total += got;
        }
        report_sum(report, sum);
        free(buf);
        _exit(0);
}

static _Noreturn void consume_broker(mfb_client *c, const char *name, int report) {
        mfb_region *r;
        void *p;
        int k;

        k = mfb_region_wait(c, name, BENCH_TIMEOUT_MS, &r);
        if (k < 0)
                bench_die("waiting for %s: %s", name, strerror(-k));
        k = mfb_region_map(r, &p);
        if (k < 0)
                bench_die("mapping %s: %s", name, strerror(-k));
        report_sum(report, consume(p, BULK_WORDS));
        mfb_region_free(r);
        mfb_client_free(c);
        _exit(0);
}

/* The producer's side ------------------------------------------------------ */

static void produce_memfd(int sock, uint64_t seed, int map_flags) {
        int fd = bench_memfd("bench-bulk", BULK_SIZE);
        void *p;

        if (fd < 0)
                bench_die("memfd: %m");
        p = mmap(NULL, BULK_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | map_flags, fd, 0);
        if (p == MAP_FAILED)
                bench_die("mmap: %m");
        produce(p, BULK_WORDS, 0, seed);
        munmap(p, BULK_SIZE);
        if (fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE) < 0)
                bench_die("sealing: %m");
        if (mfb_record_send(sock, "m", 1, &fd, 1, 0) < 0)
                bench_die("sending the memfd: %m");
        close(fd);
}

static void produce_copy(int sock, uint64_t seed) {
        uint64_t *buf = bench_check_alloc(malloc(CHUNK));

        for (uint64_t off = 0; off < BULK_SIZE; off += CHUNK) {
                size_t done = 0;

                produce(buf, CHUNK / sizeof(uint64_t), off / sizeof(uint64_t), seed);
                while (done < CHUNK) {
                        ssize_t n = write(sock, (uint8_t *) buf + done, CHUNK - done);

                        if (n < 0)
                                bench_die("writing the copy: %m");
                        done += (size_t) n;
                }
        }
        free(buf);
}

static mfb_region *produce_broker(mfb_client *c, const char *name, uint64_t seed) {
        mfb_region *r;
        void *p;
        int k;

        k = mfb_region_create(c, name, BULK_SIZE, &r);
        if (k < 0)
                bench_die("creating %s: %s (%s)", name, strerror(-k), mfb_client_error_message(c));
        k = mfb_region_map_writable(r, &p);
        if (k < 0)
                bench_die("mapping %s: %s", name, strerror(-k));
        produce(p, BULK_WORDS, 0, seed);
        k = mfb_region_seal(r);
        if (k < 0)
                bench_die("sealing %s: %s", name, strerror(-k));
        return r;
}

/* One transfer by method, timed from the first byte produced to the consumer's sum. */
static uint64_t transfer(struct bench_ctx *ctx, enum method m, const char *socket_path, unsigned round) {
        uint64_t seed = round * 7919U + (uint64_t) m, sum = 0, start, elapsed;
        int pair[2] = { -1, -1 }, report[2];
        mfb_client *producer = NULL, *consumer = NULL;
        mfb_region *region = NULL;
        char name[64];
        pid_t pid;

        snprintf(name, sizeof(name), "bench-bulk-%u", round);
        if (pipe2(report, O_CLOEXEC) < 0)
                bench_die("pipe: %m");
        if (m == METHOD_BROKER) {
                producer = bench_ctx_client(socket_path);
                consumer = bench_ctx_client(socket_path);
        } else if (socketpair(AF_UNIX, (m == METHOD_COPY ? SOCK_STREAM : SOCK_SEQPACKET) | SOCK_CLOEXEC, 0, pair) <
                   0)
                bench_die("socketpair: %m");

        pid = fork();
        if (pid < 0)
                bench_die("fork: %m");
        if (pid == 0) {
                bench_child_init();
                close(report[0]);
                if (ctx->two_cpus)
                        bench_pin(ctx->server_cpu);
                if (m == METHOD_MEMFD || m == METHOD_POPULATE)
                        consume_memfd(pair[1], report[1], m == METHOD_POPULATE ? MAP_POPULATE : 0);
                if (m == METHOD_COPY)
                        consume_copy(pair[1], report[1]);
                consume_broker(consumer, name, report[1]);
        }
        close(report[1]);
        safe_close(pair[1]);
        /* The consumer's connection is its own from now on. */
        mfb_client_free(consumer);

        start = bench_now_ns();
        if (m == METHOD_MEMFD || m == METHOD_POPULATE)
                produce_memfd(pair[0], seed, m == METHOD_POPULATE ? MAP_POPULATE : 0);
        else if (m == METHOD_COPY)
                produce_copy(pair[0], seed);
        else
                region = produce_broker(producer, name, seed);
        if (poll(&(struct pollfd) { .fd = report[0], .events = POLLIN }, 1, BENCH_TIMEOUT_MS) != 1 ||
            read(report[0], &sum, sizeof(sum)) != sizeof(sum))
                bench_die("the consumer did not finish");
        elapsed = bench_now_ns() - start;

        if (sum != expected_sum(seed))
                bench_die("the consumer read other bytes than were produced");
        close(report[0]);
        safe_close(pair[0]);
        if (bench_reap(pid, BENCH_TIMEOUT_MS) != 0)
                bench_die("the consumer failed");
        if (region) {
                int k = mfb_region_remove(region);

                if (k < 0)
                        bench_die("removing %s: %s", name, strerror(-k));
                mfb_region_free(region);
        }
        mfb_client_free(producer);
        return elapsed;
}

void bench_scenario_bulk(struct bench_ctx *ctx) {
        static const char *const names[] = {
                [METHOD_MEMFD] = "memfd handed over directly", [METHOD_COPY] = "copy over a Unix stream socket",
                [METHOD_POPULATE] = "memfd, MAP_POPULATE",
        };
        struct bench_broker broker = { 0 };
        unsigned rounds = ctx->quick ? 2 : ROUNDS_MAX;
        uint64_t samples[METHOD_COUNT][ROUNDS_MAX];
        int producer_cpu = ctx->two_cpus ? ctx->other_cpu : -1;

        bench_report_scenario("bulk", "256 MiB produced, sealed and read whole by another process");
        bench_ctx_broker(ctx, &broker, NULL);
        bench_report_text("  %u rounds, interleaved; the producer %s, the consumer on the broker's CPU; timed from "
                          "the first byte produced to the consumer's last byte read", rounds,
                          ctx->two_cpus ? "on the other CPU" : "placed by the kernel");
        if (producer_cpu >= 0)
                bench_pin(producer_cpu);
        for (unsigned r = 0; r < rounds; r++)
                for (unsigned i = 0; i < METHOD_COUNT; i++) {
                        enum method m = (enum method) ((r + i) % METHOD_COUNT);

                        samples[m][r] = transfer(ctx, m, broker.socket_path, r);
                }
        if (producer_cpu >= 0)
                bench_unpin();

        for (unsigned base = METHOD_MEMFD; base < METHOD_BROKER; base++) {
                struct bench_row row = {
                        .scenario = "bulk", .unit = BENCH_UNIT_NS, .summary = base != METHOD_POPULATE,
                };

                snprintf(row.what, sizeof(row.what), "256 MiB produced, sealed, read by another process");
                snprintf(row.baseline, sizeof(row.baseline), "%s", names[base]);
                bench_stats(samples[base], rounds, &row.base_median, &row.base_p99);
                bench_stats(samples[METHOD_BROKER], rounds, &row.median, &row.p99);
                bench_report_row(&row);
        }
        bench_report_note("bulk", "the memfd ways allocate and zero 65536 fresh pages of 4 KiB and map them in two "
                          "processes, a fault per page and process; the copy goes through a %u KiB buffer that stays "
                          "in cache. The row against MAP_POPULATE on both mappings tells the faults' share. With %u "
                          "rounds, the p99 is the slowest round", CHUNK >> 10, rounds);
        if (!bench_broker_stop(&broker))
                bench_die("the broker failed");
}
