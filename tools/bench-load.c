/* SPDX-License-Identifier: MIT */
/*
 * The throughput scenarios: many creates from one client, pipelined,
 * against memfd_create in process; and many client processes at once,
 * against the raw server.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench-common.h"
#include "bench-measure.h"
#include "bench-report.h"
#include "bench-scenarios.h"
#include "fdpass.h"
#include "macro.h"

/* pipeline ----------------------------------------------------------------- */

#define PIPELINE_REGIONS 10000U

/* memfd_create + ftruncate + F_ADD_SEALS in process, each memfd kept until the round ends. */
struct in_process {
        int fds[PIPELINE_REGIONS];
};

static void in_process_op(void *userdata) {
        struct in_process *p = userdata;

        for (unsigned i = 0; i < PIPELINE_REGIONS; i++) {
                p->fds[i] = bench_memfd("bench", BENCH_PAGE_REGION);
                if (p->fds[i] < 0)
                        bench_die("memfd: %m");
        }
}

static void in_process_end(void *userdata) {
        struct in_process *p = userdata;

        mfb_close_fds(p->fds, PIPELINE_REGIONS);
}

/* CREATEs over the protocol, up to the broker's limit in flight, on a connection made for the round. */
struct pipelined {
        const char *socket_path;
        int control;            /* a connection of this process that asks the broker what it holds */
        int fd;
        uint8_t *record;        /* MFB_WIRE_RECORD_MAX bytes for a reply */
};

static void pipelined_begin(void *userdata) {
        struct pipelined *p = userdata;

        p->fd = bench_connect_hello(p->socket_path);
}

static void pipelined_op(void *userdata) {
        struct pipelined *p = userdata;
        unsigned made = bench_create_regions(p->fd, PIPELINE_REGIONS, BENCH_PAGE_REGION, 0, NULL, 0,
                                             MFB_WIRE_REQUESTS_IN_FLIGHT_MAX, NULL);

        if (made != PIPELINE_REGIONS)
                bench_die("the broker refused a CREATE after %u", made);
}

/* CREATE_BATCH requests of the most regions one reply carries, a few in flight. */
#define BATCHES_IN_FLIGHT 4U

/* Sends a CREATE_BATCH for count regions; returns the result of the send. */
static int batch_send(int fd, uint32_t count) {
        struct mfb_wire_create_batch_request req = { .size = BENCH_PAGE_REGION, .count = count };

        return bench_request_send(fd, MFB_WIRE_OP_CREATE_BATCH, 1, &req, sizeof(req), 0);
}

static void wire_batch_op(void *userdata) {
        struct pipelined *p = userdata;
        unsigned sent = 0, made = 0, in_flight = 0;

        while (made < PIPELINE_REGIONS) {
                struct mfb_wire_create_batch_reply reply;
                int32_t k;

                while (sent < PIPELINE_REGIONS && in_flight < BATCHES_IN_FLIGHT) {
                        uint32_t count = PIPELINE_REGIONS - sent < MFB_WIRE_CREATE_BATCH_MAX ?
                                         PIPELINE_REGIONS - sent : MFB_WIRE_CREATE_BATCH_MAX;

                        k = batch_send(p->fd, count);
                        if (k < 0)
                                bench_die("sending CREATE_BATCH: %s", strerror(-k));
                        sent += count;
                        in_flight++;
                }
                /* Its fds, up to 253 of them, are closed: the connection holds the regions. */
                k = bench_reply_recv(p->fd, MFB_WIRE_OP_CREATE_BATCH, p->record, NULL);
                if (k < 0)
                        bench_die("CREATE_BATCH refused after %u regions: %s", made, strerror(-k));
                memcpy(&reply, p->record + sizeof(struct mfb_wire_header), sizeof(reply));
                made += reply.count;
                in_flight--;
        }
}

/* Whether the broker serves CREATE_BATCH: asked with one region, on a connection of its own. */
static bool broker_batches(const char *socket_path) {
        _cleanup_(freep) uint8_t *record = bench_check_alloc(malloc(MFB_WIRE_RECORD_MAX));
        int fd = bench_connect_hello(socket_path), k;

        k = batch_send(fd, 1);
        if (k < 0)
                bench_die("sending CREATE_BATCH: %s", strerror(-k));
        k = bench_reply_recv(fd, MFB_WIRE_OP_CREATE_BATCH, record, NULL);
        close(fd);
        return k >= 0;
}

/* Until the broker has released the regions of a closed connection, it is not idle for the next round. */
static void wait_regions_gone(int control) {
        uint64_t deadline = bench_now_ns() + (uint64_t) BENCH_TIMEOUT_MS * 1000000, used;

        for (;;) {
                bench_limits(control, MFB_WIRE_RESOURCE_REGIONS, NULL, &used);
                if (used == 0 || used == MFB_WIRE_LIMIT_NONE)
                        return;
                if (bench_now_ns() > deadline)
                        bench_die("the broker still holds %llu regions %d ms after their client closed",
                                  (unsigned long long) used, BENCH_TIMEOUT_MS);
                bench_sleep_ms(1);
        }
}

static void pipelined_end(void *userdata) {
        struct pipelined *p = userdata;

        p->fd = safe_close(p->fd);
        wait_regions_gone(p->control);
}

/* A library client made for a round, and the regions the round makes, kept until it ends. */
struct lib_round {
        const char *socket_path;
        int control;
        mfb_client *client;
        mfb_region *regions[PIPELINE_REGIONS];
};

static void lib_round_begin(void *userdata) {
        struct lib_round *o = userdata;

        o->client = bench_ctx_client(o->socket_path);
}

/* mfb_region_create() one after the other. */
static void one_by_one_op(void *userdata) {
        struct lib_round *o = userdata;

        for (unsigned i = 0; i < PIPELINE_REGIONS; i++) {
                int k = mfb_region_create(o->client, NULL, BENCH_PAGE_REGION, &o->regions[i]);

                if (k < 0)
                        bench_die("creating region %u: %s (%s)", i, strerror(-k),
                                  mfb_client_error_message(o->client));
        }
}

static void lib_round_end(void *userdata) {
        struct lib_round *o = userdata;

        /* Closing the connection first releases them all at once; freeing then only closes the fds. */
        o->client = mfb_client_free(o->client);
        for (unsigned i = 0; i < PIPELINE_REGIONS; i++)
                mfb_region_free(o->regions[i]);
        wait_regions_gone(o->control);
}

/* mfb_region_create_batch(), each region kept until the round ends. */
static void batch_op(void *userdata) {
        struct lib_round *o = userdata;
        int k = mfb_region_create_batch(o->client, BENCH_PAGE_REGION, PIPELINE_REGIONS, o->regions);

        if (k < 0)
                bench_die("creating a batch of %u regions: %s (%s)", PIPELINE_REGIONS, strerror(-k),
                          mfb_client_error_message(o->client));
}

/* mfb_region_create_async() for every region, then mfb_client_roundtrip(). */
struct async_batch {
        struct lib_round *o;
        unsigned answered;
};

static void async_created(mfb_client *c, int error, mfb_region *region, void *userdata) {
        struct async_batch *a = userdata;

        if (error < 0)
                bench_die("an asynchronous create failed: %s (%s)", strerror(-error), mfb_client_error_message(c));
        a->o->regions[a->answered++] = region;
}

static void async_op(void *userdata) {
        struct async_batch a = { .o = userdata };
        int k;

        for (unsigned i = 0; i < PIPELINE_REGIONS; i++) {
                k = mfb_region_create_async(a.o->client, NULL, BENCH_PAGE_REGION, 0, 0, async_created, &a);
                if (k < 0)
                        bench_die("queueing create %u: %s", i, strerror(-k));
        }
        k = mfb_client_roundtrip(a.o->client);
        if (k < 0)
                bench_die("waiting for %u asynchronous creates: %s", PIPELINE_REGIONS, strerror(-k));
        if (a.answered != PIPELINE_REGIONS)
                bench_die("%u of %u asynchronous creates answered", a.answered, PIPELINE_REGIONS);
}

/* A row of rates from states of PIPELINE_REGIONS per sample. */
static void rate_row(struct bench_row *row, struct bench_state *base, struct bench_state *broker) {
        bench_row_from_states(row, base, broker);
        /* The p99 of a rate: that of the slowest rounds. */
        row->base_median = PIPELINE_REGIONS * 1e9 / row->base_median;
        row->base_p99 = PIPELINE_REGIONS * 1e9 / row->base_p99;
        row->median = PIPELINE_REGIONS * 1e9 / row->median;
        row->p99 = PIPELINE_REGIONS * 1e9 / row->p99;
        row->unit = BENCH_UNIT_RATE;
}

void bench_scenario_pipeline(struct bench_ctx *ctx) {
        static const struct {
                void (*op)(void *userdata);
                const char *what;
                /*
                 * The project's target (issue 11: 10k regions "with batch or
                 * pipelining", at least 0.5x) is for the library's fastest way,
                 * the batch; the others show what each costs.
                 */
                bool target;
                bool both_placements;   /* one at a time waits on every round trip: the other CPU only adds wakeups */
        } ways[] = {
                { batch_op, "mfb_region_create_batch()", true, true },
                { async_op, "create_async() each, then roundtrip()", false, true },
                { pipelined_op, "CREATEs pipelined on the wire (64 in flight)", false, true },
                { wire_batch_op, "CREATE_BATCH on the wire (253 a request, 4 in flight)", false, true },
                { one_by_one_op, "mfb_region_create(), one at a time", false, false },
        };
        struct bench_broker broker = { 0 };
        struct in_process *in_process = bench_check_alloc(calloc(1, sizeof(*in_process)));
        struct lib_round *lib = bench_check_alloc(calloc(1, sizeof(*lib)));
        struct pipelined pipelined;
        struct bench_state states[1 + 2 * ELEMENTSOF(ways)];
        unsigned rounds = ctx->quick ? 2 : 6;
        int same = ctx->two_cpus ? ctx->server_cpu : -1;
        size_t n = 0;
        bool batches;
        int control;

        bench_report_scenario("pipeline", "10000 anonymous 4 KiB regions from one client, against memfd_create + "
                              "ftruncate + F_ADD_SEALS in process");
        if (ctx->fd_limit < PIPELINE_REGIONS + 256) {
                bench_report_skip("pipeline", "the limit on open files is too low to keep 10000 memfds in process");
                free(in_process);
                free(lib);
                return;
        }
        bench_ctx_broker(ctx, &broker, NULL);
        control = bench_connect_hello(broker.socket_path);
        pipelined = (struct pipelined) {
                .socket_path = broker.socket_path, .control = control, .fd = -1,
                .record = bench_check_alloc(malloc(MFB_WIRE_RECORD_MAX)),
        };
        batches = broker_batches(broker.socket_path);
        if (!batches)
                bench_report_note("pipeline", "this broker does not serve CREATE_BATCH");
        lib->socket_path = broker.socket_path;
        lib->control = control;

        states[n++] = (struct bench_state) { .name = "in process", .cpu = same, .op = in_process_op,
                                             .userdata = in_process, .round_end = in_process_end,
                                             .round_userdata = in_process };
        for (size_t w = 0; w < ELEMENTSOF(ways); w++)
                for (int p = 0; p < (ctx->two_cpus ? 2 : 1); p++) {
                        bool wire = ways[w].op == pipelined_op || ways[w].op == wire_batch_op;

                        if ((p == 1 && !ways[w].both_placements) || (ways[w].op == wire_batch_op && !batches))
                                continue;
                        states[n++] = (struct bench_state) {
                                .name = ways[w].what,
                                .cpu = ctx->two_cpus ? (p == 0 ? ctx->server_cpu : ctx->other_cpu) : -1,
                                .op = ways[w].op,
                                .userdata = wire ? (void *) &pipelined : (void *) lib,
                                .round_begin = wire ? pipelined_begin : lib_round_begin,
                                .round_end = wire ? pipelined_end : lib_round_end,
                                .round_userdata = wire ? (void *) &pipelined : (void *) lib,
                        };
                }
        bench_report_text("  %u rounds of 10000 each, interleaved; the in-process baseline %s", rounds,
                          bench_ctx_placement(ctx, same));
        bench_interleave(states, n, rounds, 1, 0);

        for (size_t i = 1; i < n; i++) {
                struct bench_row row = { .scenario = "pipeline" };
                size_t w = 0;

                while (ways[w].op != states[i].op)
                        w++;
                snprintf(row.what, sizeof(row.what), "10000 creates: %s, %s", ways[w].what,
                         bench_ctx_placement(ctx, states[i].cpu));
                snprintf(row.baseline, sizeof(row.baseline), "memfd_create in process");
                if (ways[w].target) {
                        row.target = BENCH_TARGET_RATIO_MIN;
                        row.target_value = 0.5;
                }
                /* The library's ways in the summary; the wire's show what the protocol allows. */
                row.summary = ways[w].op != pipelined_op && ways[w].op != wire_batch_op;
                rate_row(&row, &states[0], &states[i]);
                bench_report_row(&row);
        }

        close(control);
        free(pipelined.record);
        bench_states_free(states, n);
        free(in_process);
        free(lib);
        if (!bench_broker_stop(&broker))
                bench_die("the broker failed");
}

/* clients ------------------------------------------------------------------ */

static const unsigned client_counts[] = { 10, 100, 1000 };
#define SAMPLES_PER_RUN 200000U         /* latencies kept of one run, shared among its clients */

/* What the clients of a run write, in memory shared with this process. */
struct clients_shared {
        uint64_t go_ns;                 /* when they start: set before the go */
        uint64_t duration_ns;
        unsigned cap;                   /* samples each client keeps */
        struct {
                uint64_t ops, errors;   /* ops: read while the run goes, so stored whole */
        } client[1000];
        uint64_t samples[SAMPLES_PER_RUN];
};

/* One client: connects, says it is ready, waits for the go, then operates until the time is up. */
static _Noreturn void client_run(struct clients_shared *sh, unsigned index, bool broker, const char *socket_path,
                                 int ready, int go) {
        uint64_t *samples = sh->samples + (size_t) index * sh->cap, end;
        mfb_client *c = NULL;
        int sock = -1, k;
        char byte;

        if (broker)
                k = mfb_client_connect(socket_path, &c);
        else
                k = sock = bench_raw_connect(socket_path);
        if (write(ready, "r", 1) != 1)
                _exit(1);
        /* The go: the other end closes. */
        if (read(go, &byte, 1) != 0)
                _exit(1);
        if (k < 0) {
                sh->client[index].errors++;
                _exit(0);
        }
        end = sh->go_ns + sh->duration_ns;
        for (uint64_t t = bench_now_ns(); t < end;) {
                uint64_t t1;

                if (broker) {
                        mfb_region *r;
                        void *p;

                        k = mfb_region_create(c, NULL, BENCH_PAGE_REGION, &r);
                        if (k >= 0) {
                                k = mfb_region_map(r, &p);
                                if (k >= 0)
                                        *(volatile uint8_t *) p = 1;
                                mfb_region_free(r);
                        }
                } else
                        k = bench_raw_op(sock, BENCH_RAW_CREATE, BENCH_PAGE_REGION, true, false);
                t1 = bench_now_ns();
                /*
                 * Throughput is what completes within the window: with 1000
                 * clients an operation takes tens of milliseconds, and the last
                 * ones, finishing after the others stopped, would stretch it.
                 */
                if (t1 > end && k >= 0)
                        break;
                if (k < 0) {
                        sh->client[index].errors++;
                        /* A connection that failed stays failed. */
                        if (k == -ENOTCONN || k == -EPIPE || k == -ECONNRESET || !broker)
                                break;
                } else {
                        uint64_t done = sh->client[index].ops;

                        if (done < sh->cap)
                                samples[done] = t1 - t;
                        __atomic_store_n(&sh->client[index].ops, done + 1, __ATOMIC_RELAXED);
                }
                t = t1;
        }
        mfb_client_free(c);
        safe_close(sock);
        _exit(0);
}

/* What the runs of one count against one server gave. CPU is counted within the runs' windows only. */
struct clients_result {
        uint64_t errors;
        uint64_t server_cpu_ns, window_ns;      /* the server's CPU time, and how long the windows were */
        uint64_t client_cpu_busy, client_cpu_all;       /* ticks of the clients' CPU: busy, and in all */
        uint64_t *samples;
        size_t n_samples, cap_samples;
        /* One per run: operations per second; the server's, and the clients' CPU, per operation (ns). */
        uint64_t *rates, *server_per_op, *clients_per_op;
        size_t n_runs;
};

/* Ticks of cpu so far (/proc/stat): busy ones, and all of them. */
static void cpu_ticks(int cpu, uint64_t *ret_busy, uint64_t *ret_all) {
        unsigned long long v[8] = { 0 };
        char line[512], name[16];
        FILE *f = fopen("/proc/stat", "re");

        *ret_busy = *ret_all = 0;
        if (!f)
                return;
        snprintf(name, sizeof(name), "cpu%d ", cpu);
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, name, strlen(name)) == 0 &&
                    sscanf(line + strlen(name), "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                           &v[3], &v[4], &v[5], &v[6], &v[7]) == 8) {
                        /* user nice system idle iowait irq softirq steal: idle and iowait are not busy. */
                        *ret_busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
                        *ret_all = *ret_busy + v[3] + v[4];
                        break;
                }
        fclose(f);
}

/* n clients at once, on other_cpu, against the broker or the raw server (process server) at socket_path. */
static void clients_once(struct bench_ctx *ctx, struct clients_shared *sh, unsigned n, bool broker,
                         const char *socket_path, pid_t server, uint64_t duration_ns, struct clients_result *res) {
        pid_t *pids = bench_check_alloc(calloc(n, sizeof(pid_t)));
        int ready[2], go[2];
        uint64_t ops = 0, window_ops = 0, cpu, busy, all, busy_end, all_end;
        unsigned got = 0;

        memset(sh, 0, sizeof(*sh));
        sh->duration_ns = duration_ns;
        sh->cap = SAMPLES_PER_RUN / n;
        if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0)
                bench_die("pipe: %m");
        for (unsigned i = 0; i < n; i++) {
                pids[i] = fork();
                if (pids[i] < 0)
                        bench_die("fork: %m");
                if (pids[i] == 0) {
                        bench_child_init();
                        close(ready[0]);
                        close(go[1]);
                        if (ctx->two_cpus)
                                bench_pin(ctx->other_cpu);
                        client_run(sh, i, broker, socket_path, ready[1], go[0]);
                }
        }
        close(ready[1]);
        close(go[0]);
        while (got < n) {
                char buf[256];
                ssize_t k;

                if (poll(&(struct pollfd) { .fd = ready[0], .events = POLLIN }, 1, BENCH_TIMEOUT_MS) != 1)
                        bench_die("%u of %u clients were not ready within %d ms", n - got, n, BENCH_TIMEOUT_MS);
                k = read(ready[0], buf, sizeof(buf));
                if (k <= 0)
                        bench_die("the clients' ready pipe closed after %u of %u", got, n);
                got += (unsigned) k;
        }
        close(ready[0]);
        cpu = bench_cpu_ns(server);
        cpu_ticks(ctx->other_cpu, &busy, &all);
        sh->go_ns = bench_now_ns();
        close(go[1]);
        /*
         * The CPU used when the window closes, and the operations counted by
         * then: what those cost, not the last operations that end after it,
         * nor the exits of 1000 processes and the end of their connections.
         */
        bench_sleep_until(sh->go_ns + duration_ns);
        cpu = bench_cpu_ns(server) - cpu;
        cpu_ticks(ctx->other_cpu, &busy_end, &all_end);
        for (unsigned i = 0; i < n; i++)
                window_ops += __atomic_load_n(&sh->client[i].ops, __ATOMIC_RELAXED);
        for (unsigned i = 0; i < n; i++)
                if (bench_reap(pids[i], BENCH_TIMEOUT_MS + (int) (duration_ns / 1000000)) != 0)
                        bench_die("a client process failed");
        res->server_cpu_ns += cpu;
        res->window_ns += duration_ns;
        res->client_cpu_busy += busy_end - busy;
        res->client_cpu_all += all_end - all;
        free(pids);

        for (unsigned i = 0; i < n; i++) {
                uint64_t kept = sh->client[i].ops < sh->cap ? sh->client[i].ops : sh->cap;

                ops += sh->client[i].ops;
                res->errors += sh->client[i].errors;
                if (GREEDY_REALLOC(res->samples, res->cap_samples, res->n_samples + kept) < 0)
                        bench_die("out of memory");
                memcpy(res->samples + res->n_samples, sh->samples + (size_t) i * sh->cap, kept * sizeof(uint64_t));
                res->n_samples += kept;
        }
        if (window_ops == 0)
                bench_die("no operation of %u clients completed in %.1f s", n, (double) duration_ns / 1e9);
        res->rates = bench_check_alloc(realloc(res->rates, (res->n_runs + 1) * sizeof(uint64_t)));
        res->server_per_op = bench_check_alloc(realloc(res->server_per_op, (res->n_runs + 1) * sizeof(uint64_t)));
        res->clients_per_op = bench_check_alloc(realloc(res->clients_per_op, (res->n_runs + 1) * sizeof(uint64_t)));
        res->rates[res->n_runs] = (uint64_t) ((double) ops * 1e9 / (double) sh->duration_ns);
        res->server_per_op[res->n_runs] = cpu / window_ops;
        res->clients_per_op[res->n_runs] = (uint64_t) ((double) (busy_end - busy) * 1e9 /
                                                       (double) sysconf(_SC_CLK_TCK) / (double) window_ops);
        res->n_runs++;
}

/* A row of throughput: the median over runs, and the slowest run's as its p99. */
static void throughput_row(struct bench_row *row, struct clients_result *base, struct clients_result *broker) {
        bench_stats(base->rates, base->n_runs, &row->base_median, &row->base_p99);
        bench_stats(broker->rates, broker->n_runs, &row->median, &row->p99);
        /* For a rate the bad end is the low one. */
        row->base_p99 = (double) base->rates[0];
        row->p99 = (double) broker->rates[0];
        row->unit = BENCH_UNIT_RATE;
}

/*
 * A row of what one operation cost in CPU with 1000 clients against 10, one
 * value per run (sorted): which of the two sides grows, the server's or the
 * clients', is what bounds the throughput.
 */
static void cost_row(const char *what, const char *baseline, uint64_t *at_10, uint64_t *at_1000, size_t n_runs) {
        struct bench_row row = { .scenario = "clients", .unit = BENCH_UNIT_NS, .summary = true };

        snprintf(row.what, sizeof(row.what), "%s", what);
        snprintf(row.baseline, sizeof(row.baseline), "%s", baseline);
        bench_stats(at_10, n_runs, &row.base_median, &row.base_p99);
        bench_stats(at_1000, n_runs, &row.median, &row.p99);
        bench_report_row(&row);
}

void bench_scenario_clients(struct bench_ctx *ctx) {
        struct bench_broker broker = { 0 };
        struct bench_raw_server raw = { 0 };
        struct clients_result results[ELEMENTSOF(client_counts)][2] = { { { 0 } } };
        struct clients_shared *sh;
        unsigned rounds = ctx->quick ? 1 : 6;
        uint64_t duration_ns = ctx->quick ? 300000000 : 500000000;

        bench_report_scenario("clients", "10, 100 and 1000 client processes at once, each creating, mapping, "
                              "touching and freeing 4 KiB regions, against the raw server");
        if (ctx->fd_limit < 2 * 1000 + 256) {
                bench_report_skip("clients", "the limit on open files is too low for 1000 connections");
                return;
        }
        sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (sh == MAP_FAILED)
                bench_die("mmap: %m");
        bench_ctx_raw(ctx, &raw);
        bench_ctx_broker(ctx, &broker, NULL);
        bench_report_text("  %u run(s) of %.1f s per count and server, interleaved; the clients %s, each its own "
                          "connection", rounds, (double) duration_ns / 1e9,
                          ctx->two_cpus ? "on the other CPU" : "placed by the kernel");

        /* Every count against both servers in each round, the order rotating. */
        for (unsigned r = 0; r < rounds; r++)
                for (size_t j = 0; j < 2 * ELEMENTSOF(client_counts); j++) {
                        size_t k = (j + r) % (2 * ELEMENTSOF(client_counts)), i = k / 2;
                        bool use_broker = k % 2 == 1;

                        clients_once(ctx, sh, client_counts[i], use_broker,
                                     use_broker ? broker.socket_path : raw.socket_path,
                                     use_broker ? broker.pid : raw.pid, duration_ns, &results[i][use_broker]);
                }

        for (size_t i = 0; i < ELEMENTSOF(client_counts); i++) {
                struct clients_result *base = &results[i][0], *br = &results[i][1];
                struct bench_row row = { .scenario = "clients" };

                snprintf(row.what, sizeof(row.what), "%u clients: throughput", client_counts[i]);
                snprintf(row.baseline, sizeof(row.baseline), "raw server, %u clients", client_counts[i]);
                throughput_row(&row, base, br);
                bench_report_row(&row);

                row = (struct bench_row) { .scenario = "clients" };
                snprintf(row.what, sizeof(row.what), "%u clients: latency of one operation", client_counts[i]);
                snprintf(row.baseline, sizeof(row.baseline), "raw server, %u clients", client_counts[i]);
                bench_stats(base->samples, base->n_samples, &row.base_median, &row.base_p99);
                bench_stats(br->samples, br->n_samples, &row.median, &row.p99);
                row.unit = BENCH_UNIT_NS;
                bench_report_row(&row);

                row = (struct bench_row) { .scenario = "clients", .unit = BENCH_UNIT_COUNT,
                                           .target = BENCH_TARGET_ZERO, .summary = client_counts[i] == 1000 };
                snprintf(row.what, sizeof(row.what), "%u clients: errors, all runs", client_counts[i]);
                snprintf(row.baseline, sizeof(row.baseline), "raw server, %u clients", client_counts[i]);
                row.base_median = row.base_p99 = (double) base->errors;
                row.median = row.p99 = (double) br->errors;
                bench_report_row(&row);
        }
        {
                struct bench_row row = {
                        .scenario = "clients", .target = BENCH_TARGET_RATIO_MIN, .target_value = 0.8,
                        .summary = true,
                };
                /* In the summary too: the baseline's own scaling bounds what the broker's can be. */
                struct bench_row raw_row = { .scenario = "clients", .summary = true };

                snprintf(raw_row.what, sizeof(raw_row.what), "raw server: 1000 clients' throughput against 10's");
                snprintf(raw_row.baseline, sizeof(raw_row.baseline), "raw server, 10 clients");
                throughput_row(&raw_row, &results[0][0], &results[2][0]);
                bench_report_row(&raw_row);
                snprintf(row.what, sizeof(row.what), "1000 clients' throughput against 10's");
                snprintf(row.baseline, sizeof(row.baseline), "the broker, 10 clients");
                throughput_row(&row, &results[0][1], &results[2][1]);
                bench_report_row(&row);
        }

        cost_row("raw server: its CPU per operation, 1000 clients against 10", "raw server, 10 clients",
                 results[0][0].server_per_op, results[2][0].server_per_op, rounds);
        cost_row("the broker's CPU per operation, 1000 clients against 10", "the broker, 10 clients",
                 results[0][1].server_per_op, results[2][1].server_per_op, rounds);
        if (ctx->two_cpus) {
                cost_row("raw server: its clients' CPU per operation, 1000 against 10", "raw server, 10 clients",
                         results[0][0].clients_per_op, results[2][0].clients_per_op, rounds);
                cost_row("the clients' CPU per operation, 1000 against 10", "the broker, 10 clients",
                         results[0][1].clients_per_op, results[2][1].clients_per_op, rounds);
        }

        for (size_t i = 0; i < ELEMENTSOF(client_counts) && ctx->two_cpus; i++)
                bench_report_note("clients", "%u clients: the server busy %.0f%% of the time, the clients' CPU %.0f%% "
                                  "(raw server); %.0f%% and %.0f%% (broker)", client_counts[i],
                                  100.0 * (double) results[i][0].server_cpu_ns / (double) results[i][0].window_ns,
                                  100.0 * (double) results[i][0].client_cpu_busy /
                                  (double) (results[i][0].client_cpu_all ? results[i][0].client_cpu_all : 1),
                                  100.0 * (double) results[i][1].server_cpu_ns / (double) results[i][1].window_ns,
                                  100.0 * (double) results[i][1].client_cpu_busy /
                                  (double) (results[i][1].client_cpu_all ? results[i][1].client_cpu_all : 1));
        for (size_t i = 0; i < ELEMENTSOF(client_counts); i++)
                for (unsigned b = 0; b < 2; b++) {
                        free(results[i][b].samples);
                        free(results[i][b].rates);
                        free(results[i][b].server_per_op);
                        free(results[i][b].clients_per_op);
                }
        munmap(sh, sizeof(*sh));
        if (!bench_broker_stop(&broker) || !bench_raw_stop(&raw))
                bench_die("a server failed");
}
