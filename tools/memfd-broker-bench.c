/* SPDX-License-Identifier: MIT */
/*
 * memfd-broker-bench: what memfd-brokerd adds to the bare syscalls.
 *
 * Every scenario measures the broker and, in the same run with rounds
 * interleaved, its raw baseline: the same work with no broker. It prints
 * medians, p99s and their ratio, next to the project's target where there
 * is one, and a summary table at the end (--json: one JSON document
 * instead). It starts its own brokers and raw servers on sockets in a
 * private folder and stops them; nothing is left running or on disk.
 *
 * See man/memfd-broker-bench.1 for the scenarios and how to read them.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench-common.h"
#include "bench-report.h"
#include "bench-scenarios.h"
#include "macro.h"

#define SERVER_CPU 0
#define OTHER_CPU 1
/* Enough for 20000 live regions, 1000 clients and their connections at once, with room to spare. */
#define FD_LIMIT_WANTED (1U << 16)

static const struct {
        const char *name;
        void (*run)(struct bench_ctx *ctx);
        const char *summary;
} scenarios[] = {
        { "sync", bench_scenario_sync, "create and open by name through the library, one at a time" },
        { "pipeline", bench_scenario_pipeline, "10000 creates from one client, pipelined" },
        { "size", bench_scenario_size, "a 1 GiB region handed over, against a 4 KiB one" },
        { "bulk", bench_scenario_bulk, "256 MiB produced, sealed and read by another process" },
        { "live", bench_scenario_live, "latency with 10 and with 20000 live regions" },
        { "clients", bench_scenario_clients, "10, 100 and 1000 client processes at once" },
        { "flood", bench_scenario_flood, "a client that floods requests and reads nothing, and the others" },
        { "memory", bench_scenario_memory, "the broker's memory per region and per idle connection" },
        { "notify", bench_scenario_notify, "notify and wait, a ping-pong between two processes, against an eventfd" },
};

void bench_ctx_broker(struct bench_ctx *ctx, struct bench_broker *b, const char *const *extra_args) {
        char path[PATH_MAX + 64];

        snprintf(path, sizeof(path), "%s/broker-%u.sock", ctx->folder, ctx->sockets++);
        bench_broker_start(b, ctx->brokerd, path, ctx->two_cpus ? ctx->server_cpu : -1, ctx->fd_limit,
                           extra_args);
}

void bench_ctx_raw(struct bench_ctx *ctx, struct bench_raw_server *s) {
        char path[PATH_MAX + 64];

        snprintf(path, sizeof(path), "%s/raw-%u.sock", ctx->folder, ctx->sockets++);
        bench_raw_start(s, path, ctx->two_cpus ? ctx->server_cpu : -1);
}

int bench_ctx_raw_connect(const char *socket_path) {
        int sock = bench_raw_connect(socket_path);

        if (sock < 0)
                bench_die("connecting to the raw server: %s", strerror(-sock));
        return sock;
}

mfb_client *bench_ctx_client(const char *socket_path) {
        mfb_client *c;
        int k = mfb_client_connect(socket_path, &c);

        if (k < 0)
                bench_die("connecting to the broker at %s: %s", socket_path, strerror(-k));
        return c;
}

const char *bench_ctx_placement(const struct bench_ctx *ctx, int cpu) {
        if (!ctx->two_cpus)
                return "placed by the kernel";
        return cpu == ctx->server_cpu ? "same CPU" : "other CPU";
}

static void read_machine(struct bench_machine *m, const char *brokerd, bool quick) {
        struct utsname u;
        char line[512];
        time_t t = time(NULL);
        FILE *f;

        snprintf(m->cpu_model, sizeof(m->cpu_model), "unknown CPU");
        f = fopen("/proc/cpuinfo", "re");
        while (f && fgets(line, sizeof(line), f)) {
                char *colon = strchr(line, ':');

                if (strncmp(line, "model name", 10) != 0 || !colon)
                        continue;
                colon += strspn(colon + 1, " \t") + 1;
                colon[strcspn(colon, "\n")] = '\0';
                snprintf(m->cpu_model, sizeof(m->cpu_model), "%s", colon);
                break;
        }
        if (f)
                fclose(f);
        f = fopen("/proc/meminfo", "re");
        while (f && fgets(line, sizeof(line), f))
                if (sscanf(line, "MemTotal: %" SCNu64 " kB", &m->mem_total_kb) == 1)
                        break;
        if (f)
                fclose(f);
        if (uname(&u) == 0)
                snprintf(m->kernel, sizeof(m->kernel), "%s %s", u.release, u.machine);
        strftime(m->date, sizeof(m->date), "%Y-%m-%d %H:%M:%S %z", localtime(&t));
        m->cpus = bench_cpus();
        m->uid = (unsigned) geteuid();
        snprintf(m->brokerd, sizeof(m->brokerd), "%s", brokerd);
        m->quick = quick;
}

static _Noreturn void usage(const char *argv0, int status) {
        FILE *f = status ? stderr : stdout;

        fprintf(f, "Usage: %s [--broker=PATH] [--scenario=NAME[,NAME...]]... [--quick] [--json]\n"
                "       %s --list\n"
                "Measures memfd-brokerd against the bare syscalls in the same run, and prints the ratios.\n"
                "The broker: --broker, $MFB_BROKERD, or memfd-brokerd beside this program.\n", argv0, argv0);
        exit(status);
}

/* Marks the scenarios named in list (comma-separated) in selected. */
static void select_scenarios(const char *list, bool *selected, const char *argv0) {
        char *copy = bench_check_alloc(strdup(list)), *save = NULL;

        for (char *name = strtok_r(copy, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
                size_t i;

                for (i = 0; i < ELEMENTSOF(scenarios); i++)
                        if (strcmp(name, scenarios[i].name) == 0)
                                break;
                if (i == ELEMENTSOF(scenarios)) {
                        fprintf(stderr, "%s: no scenario is called '%s'; --list lists them\n", argv0, name);
                        exit(2);
                }
                selected[i] = true;
        }
        free(copy);
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "broker", required_argument, NULL, 'b' },
                { "scenario", required_argument, NULL, 's' },
                { "quick", no_argument, NULL, 'q' },
                { "json", no_argument, NULL, 'j' },
                { "list", no_argument, NULL, 'l' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        bool selected[ELEMENTSOF(scenarios)] = { false }, any = false, json = false, ok = true;
        struct bench_ctx ctx = { .server_cpu = SERVER_CPU, .other_cpu = OTHER_CPU };
        struct bench_machine machine = { 0 };
        char *beside = NULL;
        unsigned fds_at_start;
        uint64_t start;
        int opt;

        while ((opt = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (opt) {
                case 'b':
                        ctx.brokerd = optarg;
                        break;
                case 's':
                        select_scenarios(optarg, selected, argv[0]);
                        break;
                case 'q':
                        ctx.quick = true;
                        break;
                case 'j':
                        json = true;
                        break;
                case 'l':
                        for (size_t i = 0; i < ELEMENTSOF(scenarios); i++)
                                printf("%-10s %s\n", scenarios[i].name, scenarios[i].summary);
                        return 0;
                case 'h':
                        usage(argv[0], 0);
                default:
                        usage(argv[0], 2);
                }
        if (optind < argc)
                usage(argv[0], 2);
        if (!ctx.brokerd)
                ctx.brokerd = getenv("MFB_BROKERD");
        if (!ctx.brokerd || !*ctx.brokerd)
                ctx.brokerd = beside = bench_brokerd_beside();
        if (!ctx.brokerd) {
                fprintf(stderr, "%s: where is memfd-brokerd? Give --broker=PATH\n", argv[0]);
                return 2;
        }
        if (access(ctx.brokerd, X_OK) < 0) {
                fprintf(stderr, "%s: %s: %m\n", argv[0], ctx.brokerd);
                return 2;
        }
        for (size_t i = 0; i < ELEMENTSOF(scenarios); i++)
                any = any || selected[i];
        if (!any)
                for (size_t i = 0; i < ELEMENTSOF(scenarios); i++)
                        selected[i] = true;

        bench_init("memfd-broker-bench", NULL);
        bench_report_init(json);
        fds_at_start = bench_count_fds(0);
        start = bench_now_ns();
        ctx.root = geteuid() == 0;
        ctx.two_cpus = bench_cpus() >= 2 && bench_pin(SERVER_CPU);
        /* Pinned only while a scenario places it. */
        bench_unpin();
        /* The brokers, children of this process, can raise theirs exactly as far. */
        ctx.fd_limit = bench_raise_fd_limit(FD_LIMIT_WANTED);

        read_machine(&machine, ctx.brokerd, ctx.quick);
        bench_report_machine(&machine);
        bench_report_text("placement: %s; limit on open files %llu, here and in the brokers",
                          ctx.two_cpus ? "brokers and raw servers on CPU 0, clients on CPU 0 (same CPU) or CPU 1 "
                          "(other CPU)" : "left to the kernel (fewer than 2 CPUs, or pinning refused)",
                          (unsigned long long) ctx.fd_limit);
        bench_folder_make("memfd-broker-bench", ctx.root, ctx.folder);

        for (size_t i = 0; i < ELEMENTSOF(scenarios); i++)
                if (selected[i])
                        scenarios[i].run(&ctx);

        ok = bench_folder_remove();
        /* Missed targets are the report, not a failure of the run. */
        bench_report_finish(&machine, (double) (bench_now_ns() - start) / 1e9);
        if (bench_count_fds(0) != fds_at_start) {
                fprintf(stderr, "memfd-broker-bench: %u fds open at the end, %u at the start\n", bench_count_fds(0),
                        fds_at_start);
                ok = false;
        }
        free(beside);
        return ok ? 0 : 1;
}
