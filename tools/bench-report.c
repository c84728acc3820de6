/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-common.h"
#include "bench-report.h"
#include "macro.h"

#define SCENARIOS_MAX 16
#define ROWS_MAX 64
#define NOTES_MAX 32

struct scenario {
        const char *name;
        const char *description;
        const char *skipped;                    /* why, or NULL */
        char *notes[NOTES_MAX];
        size_t n_notes;
        struct bench_row rows[ROWS_MAX];
        size_t n_rows;
};

static FILE *text;
static bool as_json;
static struct scenario scenarios[SCENARIOS_MAX];
static size_t n_scenarios;

void bench_report_init(bool json) {
        as_json = json;
        text = json ? stderr : stdout;
        setvbuf(stdout, NULL, _IOLBF, 0);
}

static struct scenario *scenario_get(const char *name) {
        for (size_t i = 0; i < n_scenarios; i++)
                if (strcmp(scenarios[i].name, name) == 0)
                        return &scenarios[i];
        if (n_scenarios == SCENARIOS_MAX)
                bench_die("too many scenarios");
        scenarios[n_scenarios].name = name;
        return &scenarios[n_scenarios++];
}

void bench_stats(uint64_t *v, size_t n, double *ret_median, double *ret_p99) {
        if (n == 0)
                bench_die("no samples");
        bench_sort(v, n);
        *ret_median = bench_sorted_median(v, n);
        *ret_p99 = bench_sorted_percentile(v, n, 0.99);
}

/* broker median over baseline median: a cost ratio for times and bytes, a speed ratio for rates. */
static double row_ratio(const struct bench_row *row) {
        return row->base_median > 0 ? row->median / row->base_median : 0;
}

/* Whether the row meets its target; true when it has none. */
static bool row_met(const struct bench_row *row) {
        switch (row->target) {
        case BENCH_TARGET_RATIO_MAX:
                return row_ratio(row) <= row->target_value;
        case BENCH_TARGET_RATIO_MIN:
                return row_ratio(row) >= row->target_value;
        case BENCH_TARGET_ZERO:
                return row->median == 0;
        default:
                return true;
        }
}

/* A value of the row's unit, for people. */
static const char *format_value(char *buf, size_t size, enum bench_unit unit, double v) {
        switch (unit) {
        case BENCH_UNIT_NS:
                if (v < 1e3)
                        snprintf(buf, size, "%.0f ns", v);
                else if (v < 1e6)
                        snprintf(buf, size, "%.1f µs", v / 1e3);
                else if (v < 1e9)
                        snprintf(buf, size, "%.1f ms", v / 1e6);
                else
                        snprintf(buf, size, "%.2f s", v / 1e9);
                break;
        case BENCH_UNIT_RATE:
                if (v < 1e4)
                        snprintf(buf, size, "%.0f/s", v);
                else
                        snprintf(buf, size, "%.1fk/s", v / 1e3);
                break;
        case BENCH_UNIT_BYTES:
                if (v < 10 * 1024)
                        snprintf(buf, size, "%.0f B", v);
                else if (v < 10 * 1024 * 1024)
                        snprintf(buf, size, "%.1f KiB", v / 1024);
                else
                        snprintf(buf, size, "%.1f MiB", v / 1024 / 1024);
                break;
        case BENCH_UNIT_COUNT:
                snprintf(buf, size, "%.0f", v);
                break;
        }
        return buf;
}

static const char *format_target(char *buf, size_t size, const struct bench_row *row) {
        switch (row->target) {
        case BENCH_TARGET_RATIO_MAX:
                snprintf(buf, size, "≤ %.2f×", row->target_value);
                break;
        case BENCH_TARGET_RATIO_MIN:
                snprintf(buf, size, "≥ %.2f×", row->target_value);
                break;
        case BENCH_TARGET_ZERO:
                snprintf(buf, size, "0");
                break;
        default:
                snprintf(buf, size, "-");
                break;
        }
        return buf;
}

static const char *format_ratio(char *buf, size_t size, const struct bench_row *row) {
        if (row->target == BENCH_TARGET_ZERO || row->base_median <= 0)
                snprintf(buf, size, "-");
        else
                snprintf(buf, size, "%.2f×", row_ratio(row));
        return buf;
}

static const char *met_word(const struct bench_row *row) {
        return row->target == BENCH_TARGET_NONE ? "" : row_met(row) ? "met" : "MISSED";
}

/* Width of s on a terminal: UTF-8 continuation bytes take none. */
static int display_width(const char *s) {
        int w = 0;

        for (; *s; s++)
                w += ((unsigned char) *s & 0xc0) != 0x80;
        return w;
}

/* Prints s left-aligned in width columns, counting characters rather than bytes. */
static void print_padded(FILE *f, const char *s, int width) {
        fputs(s, f);
        for (int w = display_width(s); w < width; w++)
                fputc(' ', f);
}

static void print_right(FILE *f, const char *s, int width) {
        for (int w = display_width(s); w < width; w++)
                fputc(' ', f);
        fputs(s, f);
}

void bench_report_row(const struct bench_row *row) {
        struct scenario *s = scenario_get(row->scenario);
        char bm[32], bp[32], m[32], p[32], r[32], t[32];

        if (s->n_rows == ROWS_MAX)
                bench_die("too many rows in %s", row->scenario);
        s->rows[s->n_rows++] = *row;

        fprintf(text, "  %s\n    ", row->what);
        print_padded(text, row->baseline, 26);
        print_right(text, format_value(bm, sizeof(bm), row->unit, row->base_median), 11);
        fprintf(text, "  p99 ");
        print_right(text, format_value(bp, sizeof(bp), row->unit, row->base_p99), 11);
        fprintf(text, "   broker ");
        print_right(text, format_value(m, sizeof(m), row->unit, row->median), 11);
        fprintf(text, "  p99 ");
        print_right(text, format_value(p, sizeof(p), row->unit, row->p99), 11);
        fprintf(text, "   ratio ");
        print_right(text, format_ratio(r, sizeof(r), row), 7);
        if (row->target != BENCH_TARGET_NONE)
                fprintf(text, "   target %s%s%s: %s", format_target(t, sizeof(t), row),
                        row->target_note ? " " : "", row->target_note ? row->target_note : "", met_word(row));
        fputc('\n', text);
}

void bench_report_text(const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vfprintf(text, fmt, ap);
        va_end(ap);
        fputc('\n', text);
}

void bench_report_scenario(const char *name, const char *description) {
        struct scenario *s = scenario_get(name);

        s->description = description;
        fprintf(text, "\n== %s: %s\n", name, description);
}

void bench_report_note(const char *scenario, const char *fmt, ...) {
        struct scenario *s = scenario_get(scenario);
        va_list ap;
        char *note;

        va_start(ap, fmt);
        if (vasprintf(&note, fmt, ap) < 0)
                bench_die("out of memory");
        va_end(ap);
        fprintf(text, "  (%s)\n", note);
        if (s->n_notes < NOTES_MAX)
                s->notes[s->n_notes++] = note;
        else
                free(note);
}

void bench_report_skip(const char *scenario, const char *why) {
        struct scenario *s = scenario_get(scenario);

        s->skipped = why;
        fprintf(text, "\n== %s: skipped: %s\n", scenario, why);
}

void bench_report_machine(const struct bench_machine *m) {
        fprintf(text, "memfd-broker-bench, %s\n", m->date);
        fprintf(text, "machine: %s, %ld CPUs online, Linux %s, %.1f GiB of memory\n", m->cpu_model, m->cpus,
                m->kernel, (double) m->mem_total_kb / 1024 / 1024);
        fprintf(text, "broker: %s; running as uid %u%s\n", m->brokerd, m->uid, m->quick ? "; --quick" : "");
}

static void json_string(FILE *f, const char *s) {
        fputc('"', f);
        for (; s && *s; s++) {
                unsigned char c = (unsigned char) *s;

                if (c == '"' || c == '\\')
                        fprintf(f, "\\%c", c);
                else if (c < 0x20)
                        fprintf(f, "\\u%04x", c);
                else
                        fputc(c, f);
        }
        fputc('"', f);
}

static const char *unit_name(enum bench_unit unit) {
        static const char *const names[] = {
                [BENCH_UNIT_NS] = "ns", [BENCH_UNIT_RATE] = "per_second",
                [BENCH_UNIT_BYTES] = "bytes", [BENCH_UNIT_COUNT] = "count",
        };
        return names[unit];
}

static void json_row(FILE *f, const struct bench_row *row) {
        static const char *const kinds[] = {
                [BENCH_TARGET_RATIO_MAX] = "ratio_max", [BENCH_TARGET_RATIO_MIN] = "ratio_min",
                [BENCH_TARGET_ZERO] = "zero",
        };

        fprintf(f, "{\"what\": ");
        json_string(f, row->what);
        fprintf(f, ", \"baseline\": ");
        json_string(f, row->baseline);
        fprintf(f, ", \"unit\": \"%s\", \"baseline_median\": %.6g, \"baseline_p99\": %.6g, \"median\": %.6g, "
                "\"p99\": %.6g, \"ratio\": ", unit_name(row->unit), row->base_median, row->base_p99, row->median,
                row->p99);
        /* No ratio to a baseline of nothing (memory the raw server does not spend). */
        if (row->base_median > 0)
                fprintf(f, "%.6g", row_ratio(row));
        else
                fprintf(f, "null");
        fprintf(f, ", \"summary\": %s, \"target\": ", row->summary ? "true" : "false");
        if (row->target == BENCH_TARGET_NONE)
                fprintf(f, "null, \"met\": null}");
        else {
                fprintf(f, "{\"kind\": \"%s\", \"value\": %.6g, \"note\": ", kinds[row->target], row->target_value);
                if (row->target_note)
                        json_string(f, row->target_note);
                else
                        fprintf(f, "null");
                fprintf(f, "}, \"met\": %s}", row_met(row) ? "true" : "false");
        }
}

static void json_document(const struct bench_machine *m, double seconds, unsigned missed) {
        FILE *f = stdout;

        fprintf(f, "{\n  \"machine\": {\"cpu_model\": ");
        json_string(f, m->cpu_model);
        fprintf(f, ", \"cpus\": %ld, \"kernel\": ", m->cpus);
        json_string(f, m->kernel);
        fprintf(f, ", \"mem_total_kb\": %llu},\n  \"date\": ", (unsigned long long) m->mem_total_kb);
        json_string(f, m->date);
        fprintf(f, ",\n  \"uid\": %u,\n  \"broker\": ", m->uid);
        json_string(f, m->brokerd);
        fprintf(f, ",\n  \"quick\": %s,\n  \"seconds\": %.1f,\n  \"targets_missed\": %u,\n  \"scenarios\": [",
                m->quick ? "true" : "false", seconds, missed);
        for (size_t i = 0; i < n_scenarios; i++) {
                const struct scenario *s = &scenarios[i];

                fprintf(f, "%s\n    {\"name\": ", i ? "," : "");
                json_string(f, s->name);
                fprintf(f, ", \"description\": ");
                json_string(f, s->description);
                fprintf(f, ", \"skipped\": ");
                if (s->skipped)
                        json_string(f, s->skipped);
                else
                        fprintf(f, "null");
                fprintf(f, ",\n     \"notes\": [");
                for (size_t j = 0; j < s->n_notes; j++) {
                        fprintf(f, "%s", j ? ", " : "");
                        json_string(f, s->notes[j]);
                }
                fprintf(f, "],\n     \"rows\": [");
                for (size_t j = 0; j < s->n_rows; j++) {
                        fprintf(f, "%s\n       ", j ? "," : "");
                        json_row(f, &s->rows[j]);
                }
                fprintf(f, "]}");
        }
        fprintf(f, "\n  ]\n}\n");
}

static void summary_table(unsigned missed) {
        static const int widths[] = { 9, 64, 30, 11, 11, 7, 8, 6 };
        static const char *const heads[] = { "scenario", "what", "baseline", "baseline", "broker", "ratio", "target",
                                             "met" };

        fprintf(text, "\n== summary (medians; ratio = broker / baseline)\n");
        for (size_t c = 0; c < ELEMENTSOF(heads); c++) {
                fputs(c ? " " : "", text);
                (c >= 3 && c <= 5 ? print_right : print_padded)(text, heads[c], widths[c]);
        }
        fputc('\n', text);
        for (size_t i = 0; i < n_scenarios; i++) {
                const struct scenario *s = &scenarios[i];

                if (s->skipped) {
                        print_padded(text, s->name, widths[0]);
                        fprintf(text, " skipped: %s\n", s->skipped);
                        continue;
                }
                for (size_t j = 0; j < s->n_rows; j++) {
                        const struct bench_row *row = &s->rows[j];
                        char bm[32], m[32], r[32], t[32];

                        if (!row->summary)
                                continue;
                        print_padded(text, s->name, widths[0]);
                        fputc(' ', text);
                        print_padded(text, row->what, widths[1]);
                        fputc(' ', text);
                        print_padded(text, row->baseline, widths[2]);
                        fputc(' ', text);
                        print_right(text, format_value(bm, sizeof(bm), row->unit, row->base_median), widths[3]);
                        fputc(' ', text);
                        print_right(text, format_value(m, sizeof(m), row->unit, row->median), widths[4]);
                        fputc(' ', text);
                        print_right(text, format_ratio(r, sizeof(r), row), widths[5]);
                        fputc(' ', text);
                        print_padded(text, format_target(t, sizeof(t), row), widths[6]);
                        fprintf(text, " %s\n", met_word(row));
                }
        }
        fprintf(text, "targets missed: %u\n", missed);
}

unsigned bench_report_finish(const struct bench_machine *m, double seconds) {
        unsigned missed = 0;

        for (size_t i = 0; i < n_scenarios; i++)
                for (size_t j = 0; j < scenarios[i].n_rows; j++)
                        missed += !row_met(&scenarios[i].rows[j]);
        if (as_json)
                json_document(m, seconds, missed);
        else
                summary_table(missed);
        fprintf(text, "run took %.1f s\n", seconds);
        for (size_t i = 0; i < n_scenarios; i++) {
                for (size_t j = 0; j < scenarios[i].n_notes; j++)
                        free(scenarios[i].notes[j]);
                scenarios[i].n_notes = 0;
        }
        return missed;
}
