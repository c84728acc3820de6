/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The scenarios of memfd-broker-bench, and what they share: where the
 * broker is, the private folder for sockets, CPU placement, and how large
 * a run is.
 *
 * Placement, on a machine with 2 CPUs or more: every broker and every raw
 * server runs on server_cpu; a client runs there too ("same CPU") or on
 * other_cpu ("other CPU"). A raw server and a broker compared are always
 * placed alike, since a wakeup across CPUs costs a VM several times one on
 * the same CPU.
 */

#include <limits.h>
#include <stdbool.h>
#include <sys/resource.h>

#include "bench-common.h"
#include "bench-raw.h"
#include "memfd-broker.h"

/* The size of the small regions most scenarios make. */
#define BENCH_PAGE_REGION 4096U

struct bench_ctx {
        const char *brokerd;
        char folder[PATH_MAX];
        bool quick;
        bool root;
        bool two_cpus;
        int server_cpu;
        int other_cpu;
        rlim_t fd_limit;        /* on open files: this process's, its children's and the brokers' */
        unsigned sockets;       /* made so far, for their names */
};

/* A broker on server_cpu, on a new socket in the folder, with extra_args (NULL-terminated, or NULL). */
void bench_ctx_broker(struct bench_ctx *ctx, struct bench_broker *b, const char *const *extra_args);
/* A raw server on server_cpu, on a new socket in the folder. */
void bench_ctx_raw(struct bench_ctx *ctx, struct bench_raw_server *s);
/* A connection to the raw server at socket_path; dies when it cannot connect. */
int bench_ctx_raw_connect(const char *socket_path);
/* A library client of the broker; dies when it cannot connect. */
mfb_client *bench_ctx_client(const char *socket_path);
/* Names for where a client runs. */
const char *bench_ctx_placement(const struct bench_ctx *ctx, int cpu);

/* The scenarios; each reports its rows, or why it was skipped. */
void bench_scenario_sync(struct bench_ctx *ctx);
void bench_scenario_pipeline(struct bench_ctx *ctx);
void bench_scenario_size(struct bench_ctx *ctx);
void bench_scenario_bulk(struct bench_ctx *ctx);
void bench_scenario_live(struct bench_ctx *ctx);
void bench_scenario_clients(struct bench_ctx *ctx);
void bench_scenario_flood(struct bench_ctx *ctx);
void bench_scenario_memory(struct bench_ctx *ctx);
void bench_scenario_notify(struct bench_ctx *ctx);
