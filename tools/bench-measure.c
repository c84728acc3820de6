/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "bench-common.h"
#include "bench-measure.h"

void bench_interleave(struct bench_state *states, size_t n, unsigned rounds, unsigned per_round, unsigned warmup) {
        cpu_set_t saved;
        bool restore = sched_getaffinity(0, sizeof(saved), &saved) == 0;

        for (size_t i = 0; i < n; i++) {
                states[i].samples = bench_check_alloc(realloc(states[i].samples, (states[i].n + (size_t) rounds *
                                                                                   per_round) * sizeof(uint64_t)));
                if (warmup == 0)
                        continue;
                if (states[i].cpu >= 0)
                        bench_pin(states[i].cpu);
                if (states[i].round_begin)
                        states[i].round_begin(states[i].round_userdata);
                for (unsigned k = 0; k < warmup; k++)
                        states[i].op(states[i].userdata);
                if (states[i].round_end)
                        states[i].round_end(states[i].round_userdata);
        }
        for (unsigned r = 0; r < rounds; r++)
                for (size_t i = 0; i < n; i++) {
                        struct bench_state *s = &states[(r + i) % n];

                        if (s->cpu >= 0)
                                bench_pin(s->cpu);
                        uint64_t cpu = 0, wakeups = 0;

                        if (s->round_begin)
                                s->round_begin(s->round_userdata);
                        if (s->server > 0) {
                                cpu = bench_cpu_ns(s->server);
                                wakeups = bench_wakeups(s->server);
                        }
                        for (unsigned k = 0; k < per_round; k++) {
                                uint64_t start = bench_now_ns();

                                s->op(s->userdata);
                                s->samples[s->n++] = bench_now_ns() - start;
                        }
                        if (s->server > 0) {
                                s->server_cpu_ns += bench_cpu_ns(s->server) - cpu;
                                s->server_wakeups += bench_wakeups(s->server) - wakeups;
                        }
                        if (s->round_end)
                                s->round_end(s->round_userdata);
                }
        if (restore)
                sched_setaffinity(0, sizeof(saved), &saved);
}

void bench_state_note(const char *scenario, const struct bench_state *s) {
        if (s->server <= 0 || s->n == 0)
                return;
        bench_report_note(scenario, "%s: the server's CPU per operation %.1f µs, its wakeups per operation %.2f",
                          s->name, (double) s->server_cpu_ns / 1e3 / (double) s->n,
                          (double) s->server_wakeups / (double) s->n);
}

void bench_states_free(struct bench_state *states, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(states[i].samples);
                states[i].samples = NULL;
                states[i].n = 0;
        }
}

void bench_row_from_states(struct bench_row *row, struct bench_state *base, struct bench_state *broker) {
        bench_stats(base->samples, base->n, &row->base_median, &row->base_p99);
        bench_stats(broker->samples, broker->n, &row->median, &row->p99);
        row->unit = BENCH_UNIT_NS;
}

void bench_lib_create(void *userdata) {
        struct bench_lib_op *o = userdata;
        mfb_region *r;
        void *p;
        int k;

        k = mfb_region_create(o->client, NULL, o->size, &r);
        if (k < 0)
                bench_die("creating a region: %s (%s)", strerror(-k), mfb_client_error_message(o->client));
        if (o->no_map) {
                mfb_region_free(r);
                return;
        }
        k = mfb_region_map(r, &p);
        if (k < 0)
                bench_die("mapping a region: %s", strerror(-k));
        *(volatile uint8_t *) p = 1;
        mfb_region_free(r);
}

void bench_lib_open(void *userdata) {
        struct bench_lib_op *o = userdata;
        mfb_region *r;
        void *p;
        int k;

        k = mfb_region_open(o->client, o->name, O_RDONLY, &r);
        if (k < 0)
                bench_die("opening %s: %s (%s)", o->name, strerror(-k), mfb_client_error_message(o->client));
        if (o->no_map) {
                mfb_region_free(r);
                return;
        }
        k = mfb_region_map(r, &p);
        if (k < 0)
                bench_die("mapping %s: %s", o->name, strerror(-k));
        (void) *(volatile uint8_t *) p;
        mfb_region_free(r);
}

void bench_raw_create(void *userdata) {
        struct bench_raw_op_args *o = userdata;
        int k = bench_raw_op(o->sock, BENCH_RAW_CREATE, o->size, !o->no_map, o->release);

        if (k < 0)
                bench_die("the raw server's CREATE failed: %s", strerror(-k));
}

void bench_raw_open(void *userdata) {
        struct bench_raw_op_args *o = userdata;
        int k = bench_raw_op(o->sock, BENCH_RAW_OPEN, o->size, !o->no_map, o->release);

        if (k < 0)
                bench_die("the raw server's OPEN failed: %s", strerror(-k));
}
