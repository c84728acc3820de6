/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "settings.h"
#include "parse.h"
#include "socket-path.h"

void settings_init(struct settings *c) {
        *c = (struct settings) {
                .max_region_size = SETTINGS_MAX_REGION_SIZE_DEFAULT,
                .max_holds_per_connection = SETTINGS_MAX_HOLDS_PER_CONNECTION_DEFAULT,
                .max_connections_per_uid = SETTINGS_MAX_CONNECTIONS_PER_UID_DEFAULT,
                .max_queued_bytes = SETTINGS_MAX_QUEUED_BYTES_DEFAULT,
                .log_level = LOG_INFO,
        };
}

void settings_done(struct settings *c) {
        free(c->socket_path);
        c->socket_path = NULL;
}

int settings_set_socket_path(struct settings *c, const char *path) {
        char *copy = strdup(path);

        if (!copy)
                return -ENOMEM;
        free(c->socket_path);
        c->socket_path = copy;
        return 0;
}

int settings_set_default_socket_path(struct settings *c) {
        const char *prefix, *suffix;
        char *path;

        mfb_socket_path_default(getenv, &prefix, &suffix);
        if (asprintf(&path, "%s%s", prefix, suffix) < 0)
                return -ENOMEM;
        free(c->socket_path);
        c->socket_path = path;
        return 0;
}

static uint64_t min_u64(uint64_t a, uint64_t b) {
        return a < b ? a : b;
}

static uint64_t max_u64(uint64_t a, uint64_t b) {
        return a > b ? a : b;
}

/* A quarter of limit, at least 1. */
static uint64_t quarter_of(uint64_t limit) {
        return limit / SETTINGS_SHARE_PER_UID_DIVISOR ?: 1;
}

void settings_derive_limits(struct settings *c, uint64_t fd_limit, uint64_t physical_memory) {
        uint64_t parked;

        /* An unlimited or huge limit: the kernel's own cap on open files per process (fs.nr_open) is 2^20 by default. */
        fd_limit = min_u64(fd_limit, UINT64_C(1) << 20);
        c->max_fds = fd_limit > 2 * SETTINGS_FD_RESERVE ? fd_limit - SETTINGS_FD_RESERVE : fd_limit / 2 ?: 1;

        if (c->max_regions == 0)
                c->max_regions = (uint32_t) min_u64(SETTINGS_MAX_REGIONS_CAP, c->max_fds);
        if (c->max_regions_per_uid == 0)
                c->max_regions_per_uid = (uint32_t) quarter_of(c->max_regions);
        if (c->max_bytes == 0)
                c->max_bytes = physical_memory ?: UINT64_C(1) << 30;
        if (c->max_bytes_per_uid == 0)
                c->max_bytes_per_uid = quarter_of(c->max_bytes);
        if (c->max_connections == 0)
                c->max_connections = (uint32_t) min_u64(SETTINGS_MAX_CONNECTIONS_CAP, quarter_of(c->max_fds));
        if (c->max_kept_regions == 0)
                c->max_kept_regions = (uint32_t) min_u64(c->max_regions, fd_limit / SETTINGS_KEPT_REGIONS_DIVISOR ?: 1);
        if (c->max_holds == 0)
                c->max_holds = (uint64_t) c->max_regions * SETTINGS_HOLDS_PER_REGION;
        /* A limit per uid above the broker's says more than it means. */
        c->max_regions_per_uid = (uint32_t) min_u64(c->max_regions_per_uid, c->max_regions);
        c->max_bytes_per_uid = min_u64(c->max_bytes_per_uid, c->max_bytes);
        c->max_connections_per_uid = (uint32_t) min_u64(c->max_connections_per_uid, c->max_connections);
        /* A connection has at most one pending WAIT, and one release queue. */
        if (c->max_waiters == 0)
                c->max_waiters = c->max_connections;
        if (c->max_release_queues == 0)
                c->max_release_queues = (uint32_t) min_u64(SETTINGS_MAX_RELEASE_QUEUES_CAP, c->max_connections);
        /* A fair share: one uid's connections do not take every queue from the others. */
        c->max_release_queues_per_uid = (uint32_t) quarter_of(c->max_release_queues);
        /*
         * The kernel's cap on the fds a user has in flight is its
         * RLIMIT_NOFILE (unless it has CAP_SYS_RESOURCE): shared by the
         * memfds parked for kept regions and the fds of replies not read
         * yet. At least a quarter of it for the replies: with a limit so low
         * that the kept regions would leave less, they rarely fill it (the
         * unit raises the limit, and without a service manager nothing is
         * parked), and clients could not pipeline.
         */
        parked = (uint64_t) c->max_kept_regions + SETTINGS_PARK_PACKING_FDS;
        c->max_fds_in_flight = fd_limit > parked ? fd_limit - parked : 0;
        c->max_fds_in_flight = max_u64(max_u64(c->max_fds_in_flight, fd_limit / 4), SETTINGS_FDS_IN_FLIGHT_MIN);
}

int settings_parse_count(const char *s, uint32_t *ret) {
        uint64_t v;
        char *end;
        int r;

        r = parse_decimal(s, &end, &v);
        if (r < 0)
                return r;
        if (*end != '\0' || v == 0)
                return -EINVAL;
        if (v > UINT32_MAX)
                return -ERANGE;
        *ret = (uint32_t) v;
        return 0;
}
