/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <event2/event.h>

#include "broker.h"
#include "config.h"
#include "parse.h"
#include "log.h"

static void help(void) {
        printf("Usage: %s [OPTIONS]\n"
               "\n"
               "Creates sealed memfd shared-memory regions and hands them to clients over a Unix socket.\n"
               "\n"
               "  --socket PATH                 listen on PATH (default: $MEMFD_BROKER_SOCKET, else\n"
               "                                $XDG_RUNTIME_DIR/" CONFIG_SOCKET_NAME " when not root, else\n"
               "                                " CONFIG_SOCKET_PATH_SYSTEM ")\n"
               "  --max-region-size BYTES       largest region, with an optional K, M, G or T suffix\n"
               "                                (default %" PRIu64 "G)\n"
               "  --max-regions N               most regions alive at once (default %u)\n"
               "  --max-holds-per-connection N  most region references one connection holds (default %u)\n"
               "  --max-regions-per-uid N       most regions one uid owns (default %u)\n"
               "  --max-bytes-per-uid BYTES     most bytes in the regions one uid owns, with an optional\n"
               "                                K, M, G or T suffix (default %" PRIu64 "G)\n"
               "  --max-connections-per-uid N   most connections one uid has open (default %u)\n"
               "                                (root is exempt from the limits per uid)\n"
               "  --log-level LEVEL             err, warning, notice, info or debug (default info)\n"
               "  --help                        show this help\n"
               "  --version                     show the version\n",
               program_invocation_short_name, CONFIG_MAX_REGION_SIZE_DEFAULT >> 30, CONFIG_MAX_REGIONS_DEFAULT,
               CONFIG_MAX_HOLDS_PER_CONNECTION_DEFAULT, CONFIG_MAX_REGIONS_PER_UID_DEFAULT,
               CONFIG_MAX_BYTES_PER_UID_DEFAULT >> 30, CONFIG_MAX_CONNECTIONS_PER_UID_DEFAULT);
}

/* Returns 1 to run, 0 to exit successfully (--help, --version), or -errno after logging why. */
static int parse_args(int argc, char *argv[], struct config *c) {
        enum {
                ARG_SOCKET = 0x100,
                ARG_MAX_REGION_SIZE,
                ARG_MAX_REGIONS,
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
                { "max-holds-per-connection", required_argument, NULL, ARG_MAX_HOLDS_PER_CONNECTION },
                { "max-regions-per-uid", required_argument, NULL, ARG_MAX_REGIONS_PER_UID },
                { "max-bytes-per-uid", required_argument, NULL, ARG_MAX_BYTES_PER_UID },
                { "max-connections-per-uid", required_argument, NULL, ARG_MAX_CONNECTIONS_PER_UID },
                { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {}
        };
        int opt, r;

        opterr = 0;
        while ((opt = getopt_long(argc, argv, ":h", options, NULL)) >= 0) {
                switch (opt) {
                case ARG_SOCKET:
                        if (!*optarg) {
                                log_error("--socket needs a path");
                                return -EINVAL;
                        }
                        r = config_set_socket_path(c, optarg);
                        if (r < 0)
                                return log_error_errno(r, "Failed to set the socket path: %m");
                        break;
                case ARG_MAX_REGION_SIZE:
                        r = parse_size(optarg, &c->max_region_size);
                        if (r < 0)
                                return log_error_errno(r, "Invalid --max-region-size '%s' (%m): expected 1 to 2^63-1 "
                                                       "bytes, such as 4096, 64K or 16G", optarg);
                        break;
                case ARG_MAX_REGIONS:
                        r = config_parse_count(optarg, &c->max_regions);
                        if (r < 0)
                                return log_error_errno(r, "Invalid --max-regions '%s' (%m): expected 1 to %u",
                                                       optarg, UINT32_MAX);
                        break;
                case ARG_MAX_HOLDS_PER_CONNECTION:
                        r = config_parse_count(optarg, &c->max_holds_per_connection);
                        if (r < 0)
                                return log_error_errno(r, "Invalid --max-holds-per-connection '%s' (%m): "
                                                       "expected 1 to %u", optarg, UINT32_MAX);
                        break;
                case ARG_MAX_REGIONS_PER_UID:
                        r = config_parse_count(optarg, &c->max_regions_per_uid);
                        if (r < 0)
                                return log_error_errno(r, "Invalid --max-regions-per-uid '%s' (%m): expected 1 to %u",
                                                       optarg, UINT32_MAX);
                        break;
                case ARG_MAX_BYTES_PER_UID:
                        r = parse_size(optarg, &c->max_bytes_per_uid);
                        if (r < 0)
                                return log_error_errno(r, "Invalid --max-bytes-per-uid '%s' (%m): expected 1 to "
                                                       "2^63-1 bytes, such as 4096, 64K or 16G", optarg);
                        break;
                case ARG_MAX_CONNECTIONS_PER_UID:
                        r = config_parse_count(optarg, &c->max_connections_per_uid);
                        if (r < 0)
                                return log_error_errno(r, "Invalid --max-connections-per-uid '%s' (%m): "
                                                       "expected 1 to %u", optarg, UINT32_MAX);
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
        }
        if (optind < argc) {
                log_error("Unexpected argument %s; see --help", argv[optind]);
                return -EINVAL;
        }
        return 1;
}

/*
 * Descriptors the broker needs besides one per region: the listener, the
 * event loop, logging, and a few connections. A hard limit below
 * --max-regions plus this is worth a notice: the region limit is then out
 * of reach, and a CREATE meets ENOSPC first. Under systemd that happens
 * without an error where the system allows less than LimitNOFILE=: systemd
 * then gives the service as much as it can.
 */
#define FD_LIMIT_HEADROOM 64U

/* Lifts the soft limit on open files to the hard one, and says when even that is short. */
static void raise_fd_limit(const struct config *c) {
        uint64_t wanted = (uint64_t) c->max_regions + FD_LIMIT_HEADROOM;
        struct rlimit rl;
        rlim_t limit;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
                log_warning_errno(errno, "Failed to read the limit on open files: %m");
                return;
        }
        limit = rl.rlim_cur;
        if (rl.rlim_cur != rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                        log_warning_errno(errno, "Failed to raise the limit on open files to %llu: %m",
                                          (unsigned long long) rl.rlim_max);
                else {
                        limit = rl.rlim_max;
                        log_debug("Raised the limit on open files to %llu", (unsigned long long) limit);
                }
        }
        if (limit != RLIM_INFINITY && limit < wanted)
                log_notice("The limit on open files, %llu, is below the %" PRIu64 " that --max-regions=%" PRIu32
                           " needs: regions will run out of file descriptors first, and CREATE fail with ENOSPC.",
                           (unsigned long long) limit, wanted, c->max_regions);
}

int main(int argc, char *argv[]) {
        struct broker *b = NULL;
        struct config config;
        int r;

        config_init(&config);
        log_set_max_level(config.log_level);
        r = parse_args(argc, argv, &config);
        if (r > 0 && !config.socket_path) {
                r = config_set_default_socket_path(&config);
                if (r < 0)
                        log_error_errno(r, "Failed to find the socket path: %m");
                else
                        r = 1;
        }
        if (r <= 0) {
                config_done(&config);
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        }

        raise_fd_limit(&config);
        /* Replies use MSG_NOSIGNAL; this covers everything else that could write to a closed peer. */
        signal(SIGPIPE, SIG_IGN);

        r = broker_new(&config, &b);
        if (r >= 0) {
                r = broker_run(b);
                log_info("memfd-brokerd stopped");
        }

        broker_free(b);
        config_done(&config);
        /* Frees libevent's global state, so that leak checkers see a clean exit. */
        libevent_global_shutdown();
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
