/* SPDX-License-Identifier: MIT */
/*
 * The memory scenario: what a live region and an idle connection cost the
 * broker, against what they cost the raw server, which keeps a bare memfd
 * per region and nothing per connection but the socket: the server's
 * anonymous resident memory (RssAnon), and its open fds. What the kernel
 * holds for them (the memfd's inode, dentry and file, the sockets) is not
 * counted: the machine-wide counts (Slab, /proc/slabinfo) move with the
 * objects earlier scenarios freed and with other work more than with 10000
 * memfds. The fds say whether the broker holds more kernel objects per
 * region than the raw server does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench-common.h"
#include "bench-report.h"
#include "bench-scenarios.h"
#include "fdpass.h"
#include "macro.h"

#define MEMORY_REGIONS 10000U
#define MEMORY_CONNECTIONS 1000U
#define ROUNDS_MAX 5

/* A line "key value kB" of a /proc file, in bytes. */
static uint64_t proc_kb(const char *path, const char *key) {
        size_t len = strlen(key);
        char line[256];
        uint64_t kb = 0;
        FILE *f = fopen(path, "re");

        if (!f)
                bench_die("%s: %m", path);
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, key, len) == 0 && line[len] == ':') {
                        kb = strtoull(line + len + 1, NULL, 10);
                        break;
                }
        fclose(f);
        return kb * 1024;
}

struct footprint {
        uint64_t rss_anon;
        unsigned fds;
};

static struct footprint footprint_of(pid_t pid) {
        char path[64];

        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        return (struct footprint) { .rss_anon = proc_kb(path, "RssAnon"), .fds = bench_count_fds(pid) };
}

/* RssAnon per unit from a to b. */
static uint64_t per_unit(struct footprint a, struct footprint b, unsigned units) {
        return b.rss_anon > a.rss_anon ? (b.rss_anon - a.rss_anon) / units : 0;
}

struct measured {
        uint64_t region[ROUNDS_MAX], connection[ROUNDS_MAX];
        unsigned region_fds;    /* the server's open fds for MEMORY_REGIONS regions */
        unsigned connection_fds;        /* and for MEMORY_CONNECTIONS connections */
};

/* From the server's footprints at the start, with the regions, and with the connections too. */
static void measured_set(struct measured *m, unsigned round, struct footprint start, struct footprint regions,
                         struct footprint connections) {
        m->region[round] = per_unit(start, regions, MEMORY_REGIONS);
        m->connection[round] = per_unit(regions, connections, MEMORY_CONNECTIONS);
        m->region_fds = regions.fds - start.fds;
        m->connection_fds = connections.fds - regions.fds;
}

static void measure_raw(struct bench_ctx *ctx, struct measured *m, unsigned round, int *conns) {
        struct bench_raw_server raw = { 0 };
        struct footprint start, regions, connections;
        int control;

        bench_ctx_raw(ctx, &raw);
        control = bench_raw_connect(raw.socket_path);
        if (control < 0 || bench_raw_op(control, BENCH_RAW_PING, 0, false, false) < 0)
                bench_die("the raw server does not answer");
        start = footprint_of(raw.pid);
        for (unsigned i = 0; i < MEMORY_REGIONS; i++)
                if (bench_raw_op(control, BENCH_RAW_HOLD, BENCH_PAGE_REGION, false, false) < 0)
                        bench_die("the raw server could not keep region %u", i);
        regions = footprint_of(raw.pid);
        for (unsigned i = 0; i < MEMORY_CONNECTIONS; i++) {
                conns[i] = bench_raw_connect(raw.socket_path);
                /* Answered: so it has been accepted. */
                if (conns[i] < 0 || bench_raw_op(conns[i], BENCH_RAW_PING, 0, false, false) < 0)
                        bench_die("idle connection %u to the raw server failed", i);
        }
        connections = footprint_of(raw.pid);
        measured_set(m, round, start, regions, connections);
        mfb_close_fds(conns, MEMORY_CONNECTIONS);
        close(control);
        if (!bench_raw_stop(&raw))
                bench_die("the raw server failed");
}

static void measure_broker(struct bench_ctx *ctx, struct measured *m, unsigned round, int *conns) {
        struct bench_broker broker = { 0 };
        struct footprint start, regions, connections;
        int control;

        bench_ctx_broker(ctx, &broker, NULL);
        control = bench_connect_hello(broker.socket_path);
        start = footprint_of(broker.pid);
        if (bench_create_regions(control, MEMORY_REGIONS, BENCH_PAGE_REGION, 0, NULL, 0, MFB_WIRE_REQUESTS_IN_FLIGHT_MAX, NULL) !=
            MEMORY_REGIONS)
                bench_die("the broker refused some of %u regions", MEMORY_REGIONS);
        regions = footprint_of(broker.pid);
        for (unsigned i = 0; i < MEMORY_CONNECTIONS; i++)
                conns[i] = bench_connect_hello(broker.socket_path);
        connections = footprint_of(broker.pid);
        measured_set(m, round, start, regions, connections);
        mfb_close_fds(conns, MEMORY_CONNECTIONS);
        close(control);
        if (!bench_broker_stop(&broker))
                bench_die("the broker failed");
}

static void row_of(const char *what, uint64_t *base, uint64_t *broker, unsigned rounds) {
        struct bench_row row = { .scenario = "memory", .unit = BENCH_UNIT_BYTES, .summary = true };

        snprintf(row.what, sizeof(row.what), "%s", what);
        snprintf(row.baseline, sizeof(row.baseline), "raw server");
        bench_stats(base, rounds, &row.base_median, &row.base_p99);
        bench_stats(broker, rounds, &row.median, &row.p99);
        bench_report_row(&row);
}

void bench_scenario_memory(struct bench_ctx *ctx) {
        struct measured raw = { 0 }, broker = { 0 };
        unsigned rounds = ctx->quick ? 1 : ROUNDS_MAX;
        int *conns;

        bench_report_scenario("memory", "what a live 4 KiB region and an idle connection cost the broker, against the "
                              "raw server");
        if (ctx->fd_limit < MEMORY_REGIONS + MEMORY_CONNECTIONS + 256) {
                bench_report_skip("memory", "the limit on open files is too low for 10000 regions and 1000 "
                                  "connections");
                return;
        }
        conns = bench_check_alloc(calloc(MEMORY_CONNECTIONS, sizeof(int)));
        bench_report_text("  %u round(s), each with a fresh broker and raw server, alternating: %u regions held by "
                          "one connection, then %u idle connections more", rounds, MEMORY_REGIONS, MEMORY_CONNECTIONS);
        for (unsigned r = 0; r < rounds; r++)
                if (r % 2) {
                        measure_broker(ctx, &broker, r, conns);
                        measure_raw(ctx, &raw, r, conns);
                } else {
                        measure_raw(ctx, &raw, r, conns);
                        measure_broker(ctx, &broker, r, conns);
                }
        row_of("per live region: the server's RssAnon", raw.region, broker.region, rounds);
        row_of("per idle connection: the server's RssAnon", raw.connection, broker.connection, rounds);
        bench_report_note("memory", "open fds per region: %.2f in the raw server, %.2f in the broker; per "
                          "connection: %.2f and %.2f. The kernel's objects behind them are not counted here",
                          (double) raw.region_fds / MEMORY_REGIONS, (double) broker.region_fds / MEMORY_REGIONS,
                          (double) raw.connection_fds / MEMORY_CONNECTIONS,
                          (double) broker.connection_fds / MEMORY_CONNECTIONS);
        _Static_assert(ROUNDS_MAX < 100, "with 100 rounds or more, the p99 is not the largest");
        bench_report_note("memory", "with %u round(s) the p99 is the largest", rounds);
        free(conns);
}
