/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What memfd-broker-bench reports: one row per comparison of the broker
 * with its baseline measured in the same run (median, p99, their ratio, and
 * the target where the project set one), notes, and scenarios skipped with
 * the reason; as text while the run goes, then a summary table, or as one
 * JSON document at the end.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum bench_unit {
        BENCH_UNIT_NS,          /* a time; lower is better */
        BENCH_UNIT_RATE,        /* operations per second; higher is better */
        BENCH_UNIT_BYTES,       /* memory; lower is better */
        BENCH_UNIT_COUNT,       /* errors; lower is better */
};

enum bench_target {
        BENCH_TARGET_NONE,
        BENCH_TARGET_RATIO_MAX, /* ratio at most target_value */
        BENCH_TARGET_RATIO_MIN, /* ratio at least target_value */
        BENCH_TARGET_ZERO,      /* the broker's median (a count) is 0 */
};

struct bench_row {
        const char *scenario;
        char what[128];         /* what was measured, and where */
        char baseline[64];      /* what it is compared with */
        enum bench_unit unit;
        double base_median, base_p99;
        double median, p99;     /* the broker's */
        enum bench_target target;
        double target_value;
        bool summary;           /* goes in the summary table */
        const char *target_note;        /* said next to the target, or NULL */
};

/* Where the machine and the run are described. */
struct bench_machine {
        char cpu_model[128];
        long cpus;
        char kernel[160];
        uint64_t mem_total_kb;
        char date[64];
        unsigned uid;
        char brokerd[4096];
        bool quick;
};

/* Text goes to stdout, or with json to stderr, leaving stdout to the JSON document. */
void bench_report_init(bool json);

/* The sample statistics of a row: sorts v[n]. */
void bench_stats(uint64_t *v, size_t n, double *ret_median, double *ret_p99);

/* Adds a row and prints it. */
void bench_report_row(const struct bench_row *row);
/* A line of text for the reader (not in the JSON). */
__attribute__((format(printf, 1, 2))) void bench_report_text(const char *fmt, ...);
/* A scenario's heading, and a note kept with it in the JSON too. */
void bench_report_scenario(const char *name, const char *description);
__attribute__((format(printf, 2, 3))) void bench_report_note(const char *scenario, const char *fmt, ...);
void bench_report_skip(const char *scenario, const char *why);

void bench_report_machine(const struct bench_machine *m);
/* The summary table (text), or the whole JSON document. Returns the number of targets missed. */
unsigned bench_report_finish(const struct bench_machine *m, double seconds);
