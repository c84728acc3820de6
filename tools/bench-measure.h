/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Timing operations in interleaved rounds: every state (the raw baseline,
 * the broker, the broker under some condition) takes its turn, round after
 * round, the order rotating, so that drift of the machine hits them alike.
 * And the operations most scenarios time, through the library and raw.
 */

#include <stddef.h>
#include <stdint.h>

#include "bench-raw.h"
#include "bench-report.h"
#include "memfd-broker.h"

struct bench_state {
        const char *name;
        int cpu;                        /* the client's during its rounds; -1 leaves it */
        void (*op)(void *userdata);     /* one timed operation; dies on failure */
        void *userdata;
        void (*round_begin)(void *round_userdata);      /* untimed, around each round; may be NULL */
        void (*round_end)(void *round_userdata);
        void *round_userdata;
        pid_t server;                   /* the process that answers, whose work is counted; 0: none */
        uint64_t *samples;              /* ns, allocated by bench_interleave() */
        size_t n;
        uint64_t server_cpu_ns;         /* the server's CPU time and wakeups during the timed rounds */
        uint64_t server_wakeups;
};

/*
 * Times rounds × per_round operations of each state, after warmup untimed
 * ones each, rotating the order every round. Then restores the caller's CPU
 * placement.
 */
void bench_interleave(struct bench_state *states, size_t n, unsigned rounds, unsigned per_round, unsigned warmup);

/* Says how much CPU time and how many wakeups the state's server spent per operation. */
void bench_state_note(const char *scenario, const struct bench_state *s);

/* Frees the samples. */
void bench_states_free(struct bench_state *states, size_t n);

/* A row comparing state broker with state base, of their samples. */
void bench_row_from_states(struct bench_row *row, struct bench_state *base, struct bench_state *broker);

/* The operations ------------------------------------------------------------ */

struct bench_lib_op {
        mfb_client *client;
        uint64_t size;
        const char *name;               /* for open */
        bool no_map;                    /* the region is only handed over and freed */
};

/* mfb_region_create (anonymous), mfb_region_map, a write to the first byte, mfb_region_free. */
void bench_lib_create(void *userdata);
/* mfb_region_open (by name, O_RDONLY), mfb_region_map, a read of the first byte, mfb_region_free. */
void bench_lib_open(void *userdata);

struct bench_raw_op_args {
        int sock;
        uint64_t size;
        bool no_map;
        bool release;                   /* the server keeps its fd until a RELEASE, as the broker does */
};

/* bench_raw_op() CREATE and OPEN, as the library's two above. */
void bench_raw_create(void *userdata);
void bench_raw_open(void *userdata);
