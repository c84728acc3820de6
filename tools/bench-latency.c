/* SPDX-License-Identifier: MIT */
/*
 * The latency scenarios: one client's create and open through the library,
 * one at a time, against the raw server; by region size; by the number of
 * live regions; and while another client floods the broker.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench-common.h"
#include "bench-measure.h"
#include "bench-report.h"
#include "bench-scenarios.h"
#include "macro.h"

#define GIB_REGION (UINT64_C(1) << 30)
#define OPEN_NAME "bench-open"

/* Makes a named region of size that outlives the call: the broker keeps a named region until it is removed. */
static void make_named(mfb_client *c, const char *name, uint64_t size) {
        mfb_region *r;
        int k = mfb_region_create(c, name, size, &r);

        if (k < 0)
                bench_die("creating %s: %s (%s)", name, strerror(-k), mfb_client_error_message(c));
        mfb_region_free(r);
}

static void remove_named(mfb_client *c, const char *name) {
        int k = mfb_remove(c, name);

        if (k < 0)
                bench_die("removing %s: %s", name, strerror(-k));
}

static unsigned rounds_of(const struct bench_ctx *ctx, unsigned full, unsigned quick) {
        return ctx->quick ? quick : full;
}

/* sync --------------------------------------------------------------------- */

/*
 * Per placement and operation: the raw server; the broker, with the
 * library's default releases (its release queue); the raw server again
 * with a RELEASE record after each operation (its fd kept until then), as
 * a client of the broker sends one when it releases at once; and the broker
 * with releases at once (mfb_client_set_deferred_releases(c, 0)). The
 * broker releasing at once against raw + RELEASE is what the broker's own
 * work costs, raw + RELEASE against the raw server what a release record
 * costs, which the queue saves.
 */
enum {
        SYNC_RAW,
        SYNC_BROKER,
        SYNC_RAW_RELEASE,
        SYNC_BROKER_AT_ONCE,
        SYNC_WAYS,
};
#define SYNC_STATES (2 * SYNC_WAYS)     /* create, then open */

void bench_scenario_sync(struct bench_ctx *ctx) {
        static const char *const ops[] = { "create+map+touch+free", "open by name (read-only)+map+free" };
        static const char *const names[2][SYNC_STATES] = {
                { "raw create, same CPU", "broker create, same CPU", "raw create with release, same CPU",
                  "broker create, releases at once, same CPU", "raw open, same CPU", "broker open, same CPU",
                  "raw open with release, same CPU", "broker open, releases at once, same CPU" },
                { "raw create, other CPU", "broker create, other CPU", "raw create with release, other CPU",
                  "broker create, releases at once, other CPU", "raw open, other CPU", "broker open, other CPU",
                  "raw open with release, other CPU", "broker open, releases at once, other CPU" },
        };
        struct bench_broker broker = { 0 };
        struct bench_raw_server raw = { 0 };
        struct bench_raw_op_args raw_args, raw_release_args;
        struct bench_lib_op lib_create, lib_open, at_once_create, at_once_open;
        struct bench_state states[2 * SYNC_STATES];
        int cpus[2] = { ctx->server_cpu, ctx->other_cpu };
        size_t n = 0, placements = ctx->two_cpus ? 2 : 1;
        unsigned rounds = rounds_of(ctx, 40, 5), per_round = 100;

        bench_report_scenario("sync", "4 KiB regions one at a time through the library, against the raw server");
        bench_ctx_raw(ctx, &raw);
        bench_ctx_broker(ctx, &broker, NULL);
        raw_args = (struct bench_raw_op_args) { .sock = bench_ctx_raw_connect(raw.socket_path),
                                                .size = BENCH_PAGE_REGION };
        raw_release_args = raw_args;
        raw_release_args.release = true;
        lib_create = (struct bench_lib_op) { .client = bench_ctx_client(broker.socket_path), .size = BENCH_PAGE_REGION };
        lib_open = lib_create;
        lib_open.name = OPEN_NAME;
        at_once_create = lib_create;
        at_once_create.client = bench_ctx_client(broker.socket_path);
        if (mfb_client_set_deferred_releases(at_once_create.client, 0) < 0)
                bench_die("the library cannot release at once");
        at_once_open = at_once_create;
        at_once_open.name = OPEN_NAME;
        make_named(lib_create.client, OPEN_NAME, BENCH_PAGE_REGION);
        if (!ctx->two_cpus)
                bench_report_note("sync", "fewer than 2 CPUs: one placement only, left to the kernel");

        /* By operation (create, open), then way. */
        void (*const op_of[2][SYNC_WAYS])(void *) = {
                { bench_raw_create, bench_lib_create, bench_raw_create, bench_lib_create },
                { bench_raw_open, bench_lib_open, bench_raw_open, bench_lib_open },
        };
        void *const args_of[2][SYNC_WAYS] = {
                { &raw_args, &lib_create, &raw_release_args, &at_once_create },
                { &raw_args, &lib_open, &raw_release_args, &at_once_open },
        };

        for (size_t p = 0; p < placements; p++)
                for (size_t i = 0; i < SYNC_STATES; i++, n++) {
                        size_t way = i % SYNC_WAYS;
                        bool broker_state = way == SYNC_BROKER || way == SYNC_BROKER_AT_ONCE;

                        states[n] = (struct bench_state) {
                                .name = names[p][i],
                                .cpu = ctx->two_cpus ? cpus[p] : -1,
                                .op = op_of[i / SYNC_WAYS][way],
                                .userdata = args_of[i / SYNC_WAYS][way],
                                .server = broker_state ? broker.pid : raw.pid,
                        };
                }
        bench_report_text("  %u samples of each, in %u interleaved rounds", rounds * per_round, rounds);
        bench_interleave(states, n, rounds, per_round, 50);

        for (size_t p = 0; p < placements; p++) {
                struct bench_state *s = states + p * SYNC_STATES;
                const char *where = bench_ctx_placement(ctx, s->cpu);

                for (size_t o = 0; o < 2; o++) {
                        struct bench_state *raw_state = &s[o * SYNC_WAYS + SYNC_RAW],
                                           *broker_state = &s[o * SYNC_WAYS + SYNC_BROKER],
                                           *release_state = &s[o * SYNC_WAYS + SYNC_RAW_RELEASE],
                                           *at_once_state = &s[o * SYNC_WAYS + SYNC_BROKER_AT_ONCE];
                        struct bench_row row = {
                                .scenario = "sync", .target = BENCH_TARGET_RATIO_MAX, .target_value = 1.15,
                                .summary = true,
                        };

                        snprintf(row.what, sizeof(row.what), "%s, 4 KiB, %s", ops[o], where);
                        snprintf(row.baseline, sizeof(row.baseline), "raw server, %s", where);
                        bench_row_from_states(&row, raw_state, broker_state);
                        bench_report_row(&row);

                        /* Each release a record: what the queue saves. No target. */
                        row = (struct bench_row) { .scenario = "sync", .summary = true };
                        snprintf(row.what, sizeof(row.what), "%s, 4 KiB, releases at once, %s", ops[o], where);
                        snprintf(row.baseline, sizeof(row.baseline), "raw server, %s", where);
                        bench_row_from_states(&row, raw_state, at_once_state);
                        bench_report_row(&row);

                        /* That broker against the raw server doing the protocol's release too: its own work. */
                        row = (struct bench_row) { .scenario = "sync", .summary = true };
                        snprintf(row.what, sizeof(row.what), "%s, 4 KiB, releases at once, %s", ops[o], where);
                        snprintf(row.baseline, sizeof(row.baseline), "raw + RELEASE, %s", where);
                        bench_row_from_states(&row, release_state, at_once_state);
                        bench_report_row(&row);

                        row = (struct bench_row) { .scenario = "sync" };
                        snprintf(row.what, sizeof(row.what), "%s, 4 KiB, %s, raw server: + RELEASE against none",
                                 ops[o], where);
                        snprintf(row.baseline, sizeof(row.baseline), "raw server, %s", where);
                        bench_row_from_states(&row, raw_state, release_state);
                        bench_report_row(&row);
                }
        }
        for (size_t i = 0; i < n; i++)
                bench_state_note("sync", &states[i]);

        remove_named(lib_create.client, OPEN_NAME);
        mfb_client_free(lib_create.client);
        mfb_client_free(at_once_create.client);
        close(raw_args.sock);
        bench_states_free(states, n);
        if (!bench_broker_stop(&broker) || !bench_raw_stop(&raw))
                bench_die("a server failed");
}

/* size --------------------------------------------------------------------- */

/*
 * The hand-over is what the broker does, and what could grow with the size:
 * the request, the fd received and checked, the region freed, without a
 * mapping. Mapping and touching a page cost the kernel more for a larger
 * mapping (page tables for a range of its own), the raw baseline as much:
 * measured apart, so that this shows.
 */
enum size_state {
        SIZE_RAW_CREATE,
        SIZE_BROKER_CREATE,
        SIZE_RAW_OPEN,
        SIZE_BROKER_OPEN,
        SIZE_RAW_MAPPED,
        SIZE_BROKER_MAPPED,
        SIZE_OPS,
};

void bench_scenario_size(struct bench_ctx *ctx) {
        static const char *const whats[SIZE_OPS] = {
                [SIZE_RAW_CREATE] = "create (fd checked, not mapped)+free",
                [SIZE_RAW_OPEN] = "open by name (read-only, not mapped)+free",
                [SIZE_RAW_MAPPED] = "create+map+touch+free",
        };
        static const uint64_t sizes[2] = { BENCH_PAGE_REGION, GIB_REGION };
        static const char *const size_names[2] = { "4 KiB", "1 GiB" };
        struct bench_broker broker = { 0 };
        struct bench_raw_server raw = { 0 };
        struct bench_raw_op_args raw_args[SIZE_OPS][2];
        struct bench_lib_op lib_args[SIZE_OPS][2];
        struct bench_state states[SIZE_OPS * 2];
        unsigned rounds = rounds_of(ctx, 20, 4), per_round = 100;
        int cpu = ctx->two_cpus ? ctx->server_cpu : -1;
        mfb_client *c;
        int sock;

        bench_report_scenario("size", "a 1 GiB region handed over against a 4 KiB one; the cost must not depend on "
                              "the size");
        bench_ctx_raw(ctx, &raw);
        bench_ctx_broker(ctx, &broker, NULL);
        sock = bench_ctx_raw_connect(raw.socket_path);
        c = bench_ctx_client(broker.socket_path);
        make_named(c, OPEN_NAME "-4k", BENCH_PAGE_REGION);
        make_named(c, OPEN_NAME "-1g", GIB_REGION);

        for (size_t z = 0; z < 2; z++)
                for (size_t o = 0; o < SIZE_OPS; o += 2) {
                        bool raw_state = true;

                        raw_args[o][z] = (struct bench_raw_op_args) {
                                .sock = sock, .size = sizes[z], .no_map = o != SIZE_RAW_MAPPED,
                        };
                        lib_args[o + 1][z] = (struct bench_lib_op) {
                                .client = c, .size = sizes[z], .no_map = o != SIZE_RAW_MAPPED,
                                .name = o == SIZE_RAW_OPEN ? (z ? OPEN_NAME "-1g" : OPEN_NAME "-4k") : NULL,
                        };
                        for (size_t b = 0; b < 2; b++, raw_state = false)
                                states[2 * (o + b) + z] = (struct bench_state) {
                                        .name = whats[o],
                                        .cpu = cpu,
                                        .op = o == SIZE_RAW_OPEN ? (raw_state ? bench_raw_open : bench_lib_open) :
                                              (raw_state ? bench_raw_create : bench_lib_create),
                                        .userdata = raw_state ? (void *) &raw_args[o][z] :
                                                    (void *) &lib_args[o + 1][z],
                                };
                }
        bench_report_text("  %u samples of each, in %u interleaved rounds, %s", rounds * per_round, rounds,
                          bench_ctx_placement(ctx, cpu));
        bench_interleave(states, ELEMENTSOF(states), rounds, per_round, 20);

        /* states[2 * k + z]: k a size_state, z 0 for 4 KiB and 1 for 1 GiB. */
        for (size_t o = 0; o < SIZE_OPS; o += 2) {
                struct bench_state *raw_small = &states[2 * o], *raw_large = &states[2 * o + 1];
                struct bench_state *small = &states[2 * (o + 1)], *large = &states[2 * (o + 1) + 1];
                bool handed = o != SIZE_RAW_MAPPED;
                struct bench_row row = { .scenario = "size" };

                snprintf(row.what, sizeof(row.what), "%s, %s", whats[o], size_names[1]);
                snprintf(row.baseline, sizeof(row.baseline), "raw server, %s", size_names[1]);
                bench_row_from_states(&row, raw_large, large);
                bench_report_row(&row);
                row = (struct bench_row) { .scenario = "size" };
                snprintf(row.what, sizeof(row.what), "%s, raw server: %s against %s", whats[o], size_names[1],
                         size_names[0]);
                snprintf(row.baseline, sizeof(row.baseline), "raw server, %s", size_names[0]);
                bench_row_from_states(&row, raw_small, raw_large);
                bench_report_row(&row);
                row = (struct bench_row) {
                        .scenario = "size", .summary = true,
                        .target = handed ? BENCH_TARGET_RATIO_MAX : BENCH_TARGET_NONE, .target_value = 1.10,
                };
                snprintf(row.what, sizeof(row.what), "%s: %s against %s", whats[o], size_names[1], size_names[0]);
                snprintf(row.baseline, sizeof(row.baseline), "the broker, %s", size_names[0]);
                bench_row_from_states(&row, small, large);
                bench_report_row(&row);
        }
        bench_report_note("size", "the size target is for the hand-over; mapping and touching a 1 GiB region costs "
                          "the kernel more page-table work than a 4 KiB one, the raw baseline as much");

        remove_named(c, OPEN_NAME "-4k");
        remove_named(c, OPEN_NAME "-1g");
        mfb_client_free(c);
        close(sock);
        bench_states_free(states, ELEMENTSOF(states));
        if (!bench_broker_stop(&broker) || !bench_raw_stop(&raw))
                bench_die("a server failed");
}

/* live --------------------------------------------------------------------- */

#define LIVE_FEW 10U
#define LIVE_MANY 20000U
#define LIVE_PREFIX "bench-live"

/*
 * Fills a broker with up to want named regions of a page, as many as its
 * limits on regions and fds leave room for; returns how many. They outlive
 * the connection that made them.
 */
static unsigned fill_named(const char *socket_path, unsigned want) {
        uint64_t regions_max, fds_max, fds_used, room;
        int fd = bench_connect_hello(socket_path);
        unsigned made;

        bench_limits(fd, MFB_WIRE_RESOURCE_REGIONS, &regions_max, NULL);
        bench_limits(fd, MFB_WIRE_RESOURCE_FDS, &fds_max, &fds_used);
        /* Room for this scenario's own connections, and the regions its clients create meanwhile. */
        room = fds_max - (fds_used == MFB_WIRE_LIMIT_NONE ? 0 : fds_used);
        room = room > 64 ? room - 64 : 0;
        if (regions_max < room)
                room = regions_max > 64 ? regions_max - 64 : 0;
        made = bench_create_regions(fd, want < room ? want : (unsigned) room, BENCH_PAGE_REGION, 0600, LIVE_PREFIX, 0,
                                    MFB_WIRE_REQUESTS_IN_FLIGHT_MAX, NULL);
        close(fd);
        return made;
}

void bench_scenario_live(struct bench_ctx *ctx) {
        struct bench_broker few = { 0 }, many = { 0 };
        struct bench_raw_server raw = { 0 };
        struct bench_raw_op_args raw_args;
        struct bench_lib_op create_few, create_many, open_few, open_many;
        struct bench_state states[6];
        unsigned rounds = rounds_of(ctx, 20, 4), per_round = 100, n_few, n_many;
        int cpu = ctx->two_cpus ? ctx->server_cpu : -1;
        uint64_t t;

        bench_report_scenario("live", "latency with 10 and with 20000 live regions in the broker (target: flat)");
        bench_ctx_raw(ctx, &raw);
        bench_ctx_broker(ctx, &few, NULL);
        bench_ctx_broker(ctx, &many, NULL);
        t = bench_now_ns();
        n_few = fill_named(few.socket_path, LIVE_FEW);
        n_many = fill_named(many.socket_path, LIVE_MANY);
        bench_report_text("  filled: %u and %u named regions of 4 KiB in %.1f s, pipelined", n_few, n_many,
                          (double) (bench_now_ns() - t) / 1e9);
        if (n_few < LIVE_FEW || n_many < 1000) {
                bench_report_skip("live", "the broker's limits (on open files, as this user) leave no room for "
                                  "the regions");
                goto out;
        }
        if (n_many < LIVE_MANY)
                bench_report_note("live", "only %u regions fit in the broker's limit on open files, %llu: the "
                                  "hard limit, which this process may not raise (that takes CAP_SYS_RESOURCE)",
                                  n_many, (unsigned long long) ctx->fd_limit);

        raw_args = (struct bench_raw_op_args) { .sock = bench_ctx_raw_connect(raw.socket_path),
                                                .size = BENCH_PAGE_REGION };
        create_few = (struct bench_lib_op) { .client = bench_ctx_client(few.socket_path), .size = BENCH_PAGE_REGION };
        create_many = (struct bench_lib_op) { .client = bench_ctx_client(many.socket_path), .size = BENCH_PAGE_REGION };
        /* A name from the middle of what is filled, in both. */
        open_few = create_few;
        open_few.name = LIVE_PREFIX "-5";
        open_many = create_many;
        open_many.name = LIVE_PREFIX "-5";

        states[0] = (struct bench_state) { .name = "raw create", .cpu = cpu, .op = bench_raw_create,
                                           .userdata = &raw_args };
        states[1] = (struct bench_state) { .name = "few create", .cpu = cpu, .op = bench_lib_create,
                                           .userdata = &create_few };
        states[2] = (struct bench_state) { .name = "many create", .cpu = cpu, .op = bench_lib_create,
                                           .userdata = &create_many };
        states[3] = (struct bench_state) { .name = "raw open", .cpu = cpu, .op = bench_raw_open,
                                           .userdata = &raw_args };
        states[4] = (struct bench_state) { .name = "few open", .cpu = cpu, .op = bench_lib_open,
                                           .userdata = &open_few };
        states[5] = (struct bench_state) { .name = "many open", .cpu = cpu, .op = bench_lib_open,
                                           .userdata = &open_many };
        bench_report_text("  %u samples of each, in %u interleaved rounds, %s", rounds * per_round, rounds,
                          bench_ctx_placement(ctx, cpu));
        bench_interleave(states, ELEMENTSOF(states), rounds, per_round, 20);

        for (size_t i = 0; i < ELEMENTSOF(states); i += 3) {
                const char *op = i == 0 ? "create+map+touch+free" : "open by name (read-only)+map+free";
                struct bench_row with_few = { .scenario = "live" }, with_many = { .scenario = "live" };
                struct bench_row flat = {
                        .scenario = "live", .target = BENCH_TARGET_RATIO_MAX, .target_value = 1.10,
                        .target_note = "(flat)", .summary = true,
                };

                snprintf(with_few.what, sizeof(with_few.what), "%s, %u live regions", op, n_few);
                snprintf(with_few.baseline, sizeof(with_few.baseline), "raw server");
                bench_row_from_states(&with_few, &states[i], &states[i + 1]);
                bench_report_row(&with_few);
                snprintf(with_many.what, sizeof(with_many.what), "%s, %u live regions", op, n_many);
                snprintf(with_many.baseline, sizeof(with_many.baseline), "raw server");
                bench_row_from_states(&with_many, &states[i], &states[i + 2]);
                bench_report_row(&with_many);
                snprintf(flat.what, sizeof(flat.what), "%s: %u live regions against %u", op, n_many, n_few);
                snprintf(flat.baseline, sizeof(flat.baseline), "the broker, %u live", n_few);
                bench_row_from_states(&flat, &states[i + 1], &states[i + 2]);
                bench_report_row(&flat);
        }
        mfb_client_free(create_few.client);
        mfb_client_free(create_many.client);
        close(raw_args.sock);
        bench_states_free(states, ELEMENTSOF(states));
out:
        if (!bench_broker_stop(&few) || !bench_broker_stop(&many) || !bench_raw_stop(&raw))
                bench_die("a server failed");
}

/* flood -------------------------------------------------------------------- */

/* The uid the flooding client runs as, where this program may switch (root). */
#define FLOOD_UID 65534

struct flood {
        struct bench_ctx *ctx;
        const char *socket_path;
        pid_t broker_pid;
        unsigned settled_fds;   /* the broker's open fds when no flood runs */
        struct bench_worker worker;     /* the flooding client */
        uint64_t requests, rounds;
        uint64_t broker_cpu_ns; /* while flooded */
        uint64_t wall_ns;
        uint64_t started;
        uint64_t cpu_at_start;
};

/*
 * The flooding client: CREATE after CREATE without reading a reply, as
 * fast as the socket takes them, until told to stop. Says it runs once the
 * socket is full, and returns the requests sent.
 */
static uint64_t flood_run(void *userdata, int ready, int stop) {
        struct flood *f = userdata;
        struct mfb_wire_create_request req = { .size = BENCH_PAGE_REGION };
        bool told = false;
        int fd;
        uint64_t sent = 0;

        if (f->ctx->two_cpus)
                bench_pin(f->ctx->other_cpu);
        bench_become(FLOOD_UID);
        fd = bench_connect_hello(f->socket_path);

        for (;;) {
                struct pollfd p[2] = { { .fd = fd, .events = POLLOUT }, { .fd = stop, .events = POLLIN } };
                int k = bench_request_send(fd, MFB_WIRE_OP_CREATE, sent + 2, &req, sizeof(req), MSG_DONTWAIT);

                if (k == 0) {
                        sent++;
                        continue;
                }
                if (k != -EAGAIN)
                        bench_die("the flood was cut off: %s", strerror(-k));
                /* The socket is full: the broker stopped reading. */
                if (!told)
                        bench_worker_ready(ready);
                told = true;
                if (poll(p, 2, -1) < 0 && errno != EINTR)
                        bench_die("poll: %m");
                if (p[1].revents)
                        return sent;
        }
}

static void flood_begin(void *userdata) {
        struct flood *f = userdata;

        bench_worker_start(&f->worker, flood_run, f, "the flooding client");
        f->started = bench_now_ns();
        f->cpu_at_start = bench_cpu_ns(f->broker_pid);
}

static void flood_end(void *userdata) {
        struct flood *f = userdata;

        f->broker_cpu_ns += bench_cpu_ns(f->broker_pid) - f->cpu_at_start;
        f->wall_ns += bench_now_ns() - f->started;
        f->requests += bench_worker_stop(&f->worker, "the flooding client");
        f->rounds++;
        bench_broker_wait_fds(f->broker_pid, f->settled_fds, "a flood");
}

struct idle {
        pid_t broker_pid;
        uint64_t broker_cpu_ns, wall_ns, started, cpu_at_start;
};

static void idle_begin(void *userdata) {
        struct idle *i = userdata;

        i->started = bench_now_ns();
        i->cpu_at_start = bench_cpu_ns(i->broker_pid);
}

static void idle_end(void *userdata) {
        struct idle *i = userdata;

        i->broker_cpu_ns += bench_cpu_ns(i->broker_pid) - i->cpu_at_start;
        i->wall_ns += bench_now_ns() - i->started;
}

void bench_scenario_flood(struct bench_ctx *ctx) {
        struct bench_broker broker = { 0 };
        struct bench_raw_server raw = { 0 };
        struct bench_raw_op_args raw_args;
        struct bench_lib_op victim;
        struct bench_state states[3];
        struct flood flood;
        struct idle idle;
        struct bench_row row = { .scenario = "flood" };
        unsigned rounds = rounds_of(ctx, 16, 3), per_round = ctx->quick ? 100 : 125;
        int cpu = ctx->two_cpus ? ctx->server_cpu : -1;

        bench_report_scenario("flood", "one client sends CREATE after CREATE and reads no reply; another's latency");
        bench_ctx_raw(ctx, &raw);
        bench_ctx_broker(ctx, &broker, NULL);
        raw_args = (struct bench_raw_op_args) { .sock = bench_ctx_raw_connect(raw.socket_path),
                                                .size = BENCH_PAGE_REGION };
        victim = (struct bench_lib_op) { .client = bench_ctx_client(broker.socket_path), .size = BENCH_PAGE_REGION };
        flood = (struct flood) { .ctx = ctx, .socket_path = broker.socket_path, .broker_pid = broker.pid,
                                 .settled_fds = bench_count_fds(broker.pid) };
        idle = (struct idle) { .broker_pid = broker.pid };
        if (ctx->root)
                bench_report_note("flood", "the flooding client runs as uid %u, the measured one as root", FLOOD_UID);
        else
                bench_report_note("flood", "not root: the flooding client and the measured one are the same uid");

        states[0] = (struct bench_state) { .name = "raw", .cpu = cpu, .op = bench_raw_create, .userdata = &raw_args };
        states[1] = (struct bench_state) { .name = "idle", .cpu = cpu, .op = bench_lib_create, .userdata = &victim,
                                           .round_begin = idle_begin, .round_end = idle_end,
                                           .round_userdata = &idle };
        states[2] = (struct bench_state) { .name = "flooded", .cpu = cpu, .op = bench_lib_create,
                                           .userdata = &victim, .round_begin = flood_begin,
                                           .round_end = flood_end, .round_userdata = &flood };
        bench_report_text("  %u samples of each, in %u interleaved rounds; the measured client %s, the flooding one "
                          "%s", rounds * per_round, rounds, bench_ctx_placement(ctx, cpu),
                          ctx->two_cpus ? "on the other CPU" : "placed by the kernel");
        bench_interleave(states, ELEMENTSOF(states), rounds, per_round, 20);

        snprintf(row.what, sizeof(row.what), "create+map+touch+free, 4 KiB, idle broker");
        snprintf(row.baseline, sizeof(row.baseline), "raw server");
        bench_row_from_states(&row, &states[0], &states[1]);
        bench_report_row(&row);
        row = (struct bench_row) {
                .scenario = "flood", .target = BENCH_TARGET_RATIO_MAX, .target_value = 1.30, .summary = true,
        };
        snprintf(row.what, sizeof(row.what), "create+map+touch+free, 4 KiB, while a client floods");
        snprintf(row.baseline, sizeof(row.baseline), "the broker, idle");
        bench_row_from_states(&row, &states[1], &states[2]);
        bench_report_row(&row);
        bench_report_note("flood", "the flooding client sent %.0f requests per round before its socket filled; the "
                          "broker's CPU per measured operation: %.1f µs flooded, %.1f µs idle",
                          (double) flood.requests / (double) flood.rounds,
                          (double) flood.broker_cpu_ns / 1e3 / (double) states[2].n,
                          (double) idle.broker_cpu_ns / 1e3 / (double) states[1].n);

        mfb_client_free(victim.client);
        close(raw_args.sock);
        bench_states_free(states, ELEMENTSOF(states));
        if (!bench_broker_stop(&broker) || !bench_raw_stop(&raw))
                bench_die("a server failed");
}
