/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>

#include "broker.h"
#include "settings.h"
#include "parse.h"
#include "socket-path.h"
#include "log.h"

static void help(void) {
        printf("Usage: %s [OPTIONS]\n"
               "\n"
               "Creates sealed memfd shared-memory regions and hands them to clients over a Unix socket.\n"
               "\n"
               "  --socket PATH                 listen on PATH (default: $MEMFD_BROKER_SOCKET, else\n"
               "                                $XDG_RUNTIME_DIR/" MFB_SOCKET_NAME " when not root, else\n"
               "                                " MFB_SOCKET_PATH_SYSTEM ")\n"
               "  --max-region-size BYTES       largest region (default %" PRIu64 "G)\n"
               "  --max-regions N               most regions alive at once (default: what the limit on\n"
               "                                open files allows, at most %u)\n"
               "  --max-bytes BYTES             most bytes in all regions (default: physical memory)\n"
               "  --max-connections N           most connections at once (default: a quarter of what the\n"
               "                                limit on open files allows, at most %u)\n"
               "  --max-queued-bytes BYTES      most bytes of replies queued for clients that do not read\n"
               "                                them (default %" PRIu64 "M)\n"
               "  --max-waiters N               most pending WAITs (default: --max-connections)\n"
               "  --max-release-queues N        most connections with a release queue (default: at most\n"
               "                                %u, --max-connections)\n"
               "  --max-kept-regions N          most named regions kept across restarts under systemd\n"
               "                                (default: half the limit on open files, at most\n"
               "                                --max-regions)\n"
               "  --max-holds N                 most regions held by all connections, a region counted once\n"
               "                                per connection that holds it (default: %u per region)\n"
               "  --max-holds-per-connection N  most region references one connection holds (default %u)\n"
               "  --max-regions-per-uid N       most regions one uid owns (default: a quarter of --max-regions)\n"
               "  --max-bytes-per-uid BYTES     most bytes in the regions one uid owns (default: a quarter\n"
               "                                of --max-bytes)\n"
               "  --max-connections-per-uid N   most connections one uid has open (default %u)\n"
               "  --log-level LEVEL             err, warning, notice, info or debug (default info)\n"
               "  --help                        show this help\n"
               "  --version                     show the version\n"
               "\n"
               "BYTES take an optional K, M, G or T suffix. Besides its limits, a uid may take only a\n"
               "share of what is left of each; root and the broker's own uid are exempt.\n",
               program_invocation_short_name, SETTINGS_MAX_REGION_SIZE_DEFAULT >> 30, SETTINGS_MAX_REGIONS_CAP,
               SETTINGS_MAX_CONNECTIONS_CAP, SETTINGS_MAX_QUEUED_BYTES_DEFAULT >> 20, SETTINGS_MAX_RELEASE_QUEUES_CAP,
               SETTINGS_HOLDS_PER_REGION,
               SETTINGS_MAX_HOLDS_PER_CONNECTION_DEFAULT, SETTINGS_MAX_CONNECTIONS_PER_UID_DEFAULT);
}

/* Parses the value of a count option into *ret, or logs why not. */
static int parse_count_option(const char *option, const char *value, uint32_t *ret) {
        int r = settings_parse_count(value, ret);

        if (r < 0)
                return log_error_errno(r, "Invalid --%s '%s' (%m): expected 1 to %u", option, value, UINT32_MAX);
        return 0;
}

/* Parses the value of a size option into *ret, or logs why not. */
static int parse_size_option(const char *option, const char *value, uint64_t *ret) {
        int r = parse_size(value, ret);

        if (r < 0)
                return log_error_errno(r, "Invalid --%s '%s' (%m): expected 1 to 2^63-1 bytes, such as 4096, 64K "
                                       "or 16G", option, value);
        return 0;
}

/* Returns 1 to run, 0 to exit successfully (--help, --version), or -errno after logging why. */
static int parse_args(int argc, char *argv[], struct settings *c) {
        enum {
                ARG_SOCKET = 0x100,
                ARG_MAX_REGION_SIZE,
                ARG_MAX_REGIONS,
                ARG_MAX_BYTES,
                ARG_MAX_CONNECTIONS,
                ARG_MAX_QUEUED_BYTES,
                ARG_MAX_WAITERS,
                ARG_MAX_RELEASE_QUEUES,
                ARG_MAX_KEPT_REGIONS,
                ARG_MAX_HOLDS,
                ARG_MAX_HOLDS_PER_CONNECTION,
                ARG_MAX_REGIONS_PER_UID,
                ARG_MAX_BYTES_PER_UID,
                ARG_MAX_CONNECTIONS_PER_UID,
                ARG_LOG_LEVEL,
                ARG_VERSION,
        };
        static const struct option options[] = {
                { "socket", required_argument, NULL, ARG_SOCKET },
                { "max-region-size", required_argument, NULL, ARG_MAX_REGION_SIZE },
                { "max-regions", required_argument, NULL, ARG_MAX_REGIONS },
                { "max-bytes", required_argument, NULL, ARG_MAX_BYTES },
                { "max-connections", required_argument, NULL, ARG_MAX_CONNECTIONS },
                { "max-queued-bytes", required_argument, NULL, ARG_MAX_QUEUED_BYTES },
                { "max-waiters", required_argument, NULL, ARG_MAX_WAITERS },
                { "max-release-queues", required_argument, NULL, ARG_MAX_RELEASE_QUEUES },
                { "max-kept-regions", required_argument, NULL, ARG_MAX_KEPT_REGIONS },
                { "max-holds", required_argument, NULL, ARG_MAX_HOLDS },
                { "max-holds-per-connection", required_argument, NULL, ARG_MAX_HOLDS_PER_CONNECTION },
                { "max-regions-per-uid", required_argument, NULL, ARG_MAX_REGIONS_PER_UID },
                { "max-bytes-per-uid", required_argument, NULL, ARG_MAX_BYTES_PER_UID },
                { "max-connections-per-uid", required_argument, NULL, ARG_MAX_CONNECTIONS_PER_UID },
                { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {}
        };
        const char *name;
        int opt, index, r;

        opterr = 0;
        while ((opt = getopt_long(argc, argv, ":h", options, &index)) >= 0) {
                name = opt >= ARG_SOCKET && opt < ARG_VERSION ? options[index].name : NULL;
                switch (opt) {
                case ARG_SOCKET:
                        if (!*optarg) {
                                log_error("--socket needs a path");
                                return -EINVAL;
                        }
                        r = settings_set_socket_path(c, optarg);
                        if (r < 0)
                                return log_error_errno(r, "Failed to set the socket path: %m");
                        break;
                case ARG_MAX_REGION_SIZE:
                        r = parse_size_option(name, optarg, &c->max_region_size);
                        break;
                case ARG_MAX_REGIONS:
                        r = parse_count_option(name, optarg, &c->max_regions);
                        break;
                case ARG_MAX_BYTES:
                        r = parse_size_option(name, optarg, &c->max_bytes);
                        break;
                case ARG_MAX_CONNECTIONS:
                        r = parse_count_option(name, optarg, &c->max_connections);
                        break;
                case ARG_MAX_QUEUED_BYTES:
                        r = parse_size_option(name, optarg, &c->max_queued_bytes);
                        break;
                case ARG_MAX_WAITERS:
                        r = parse_count_option(name, optarg, &c->max_waiters);
                        break;
                case ARG_MAX_RELEASE_QUEUES:
                        r = parse_count_option(name, optarg, &c->max_release_queues);
                        break;
                case ARG_MAX_KEPT_REGIONS:
                        r = parse_count_option(name, optarg, &c->max_kept_regions);
                        break;
                case ARG_MAX_HOLDS: {
                        uint32_t n;

                        r = parse_count_option(name, optarg, &n);
                        if (r >= 0)
                                c->max_holds = n;
                        break;
                }
                case ARG_MAX_HOLDS_PER_CONNECTION:
                        r = parse_count_option(name, optarg, &c->max_holds_per_connection);
                        break;
                case ARG_MAX_REGIONS_PER_UID:
                        r = parse_count_option(name, optarg, &c->max_regions_per_uid);
                        break;
                case ARG_MAX_BYTES_PER_UID:
                        r = parse_size_option(name, optarg, &c->max_bytes_per_uid);
                        break;
                case ARG_MAX_CONNECTIONS_PER_UID:
                        r = parse_count_option(name, optarg, &c->max_connections_per_uid);
                        break;
                case ARG_LOG_LEVEL:
                        r = log_level_from_string(optarg);
                        if (r < 0)
                                return log_error_errno(r, "Invalid --log-level '%s': expected err, warning, notice, "
                                                       "info or debug", optarg);
                        c->log_level = r;
                        log_set_max_level(r);
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        puts("memfd-brokerd " PACKAGE_VERSION);
                        return 0;
                case ':':
                        log_error("Option %s needs a value; see --help", argv[optind - 1]);
                        return -EINVAL;
                default:
                        log_error("Unknown option %s; see --help", argv[optind - 1]);
                        return -EINVAL;
                }
                if (r < 0)
                        return r;
        }
        if (optind < argc) {
                log_error("Unexpected argument %s; see --help", argv[optind]);
                return -EINVAL;
        }
        return 1;
}

/*
 * Lifts the soft limit on open files to the hard one. Returns the limit
 * in force then, RLIM_INFINITY included.
 */
static uint64_t raise_fd_limit(void) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
                log_warning_errno(errno, "Failed to read the limit on open files, assuming 1024: %m");
                return 1024;
        }
        if (rl.rlim_cur == rl.rlim_max)
                return rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
                log_warning_errno(errno, "Failed to raise the limit on open files to %llu: %m",
                                  (unsigned long long) rl.rlim_max);
                return getrlimit(RLIMIT_NOFILE, &rl) < 0 ? 1024 : rl.rlim_cur;
        }
        log_debug("Raised the limit on open files to %llu", (unsigned long long) rl.rlim_max);
        return rl.rlim_max;
}

static uint64_t physical_memory(void) {
        long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);

        return pages > 0 && page_size > 0 ? (uint64_t) pages * (uint64_t) page_size : 0;
}

/*
 * Derives the limits not given from the machine, and says when a limit
 * given is out of reach: under systemd that happens without an error
 * where the system allows less than LimitNOFILE=, and systemd then gives
 * the service as much as it can.
 */
static void derive_limits(struct settings *c) {
        uint64_t limit = raise_fd_limit();

        settings_derive_limits(c, limit, physical_memory());
        if ((uint64_t) c->max_regions > c->max_fds)
                log_notice("The limit on open files, %llu, is below the %" PRIu64 " that --max-regions=%" PRIu32
                           " needs: regions will run out of file descriptors first, and CREATE fail with ENOSPC.",
                           (unsigned long long) limit, (uint64_t) c->max_regions + SETTINGS_FD_RESERVE,
                           c->max_regions);
        log_debug("Limits: %" PRIu32 " regions (%" PRIu32 " per uid), %" PRIu64 " bytes (%" PRIu64 " per uid), %"
                  PRIu64 " fds, %" PRIu32 " connections (%" PRIu32 " per uid), %" PRIu64 " queued bytes, %" PRIu32
                  " waiters, %" PRIu32 " release queues (%" PRIu32 " per uid), %" PRIu32 " kept regions, %" PRIu64
                  " holds, %" PRIu64 " fds in flight unread",
                  c->max_regions, c->max_regions_per_uid, c->max_bytes, c->max_bytes_per_uid, c->max_fds,
                  c->max_connections, c->max_connections_per_uid, c->max_queued_bytes, c->max_waiters,
                  c->max_release_queues, c->max_release_queues_per_uid,
                  c->max_kept_regions, c->max_holds, c->max_fds_in_flight);
}

int main(int argc, char *argv[]) {
        struct broker *b = NULL;
        struct settings config;
        int r;

        settings_init(&config);
        log_set_max_level(config.log_level);
        r = parse_args(argc, argv, &config);
        if (r > 0 && !config.socket_path) {
                r = settings_set_default_socket_path(&config);
                if (r < 0)
                        log_error_errno(r, "Failed to find the socket path: %m");
                else
                        r = 1;
        }
        if (r <= 0) {
                settings_done(&config);
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        }

        derive_limits(&config);
        /* Replies use MSG_NOSIGNAL; this covers everything else that could write to a closed peer. */
        signal(SIGPIPE, SIG_IGN);

        r = broker_new(&config, &b);
        if (r >= 0) {
                r = broker_run(b);
                log_info("memfd-brokerd stopped");
        }

        broker_free(b);
        settings_done(&config);
        /* Frees libevent's global state, so that leak checkers see a clean exit. */
        libevent_global_shutdown();
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
