/* SPDX-License-Identifier: MIT */
#pragma once

/* The broker's settings, their defaults, and parsers for option values. */

#include <stdint.h>

#define SETTINGS_MAX_REGION_SIZE_DEFAULT          (UINT64_C(64) << 30)
#define SETTINGS_MAX_REGIONS_CAP                  262144U /* the default --max-regions when fds allow it */
#define SETTINGS_MAX_CONNECTIONS_CAP              65536U  /* the default --max-connections when fds allow it */
#define SETTINGS_MAX_HOLDS_PER_CONNECTION_DEFAULT 65536U
#define SETTINGS_MAX_CONNECTIONS_PER_UID_DEFAULT  1024U
#define SETTINGS_MAX_QUEUED_BYTES_DEFAULT         (UINT64_C(64) << 20)
/* The default --max-release-queues, at most --max-connections: each is a mapping, of vm.max_map_count (65530). */
#define SETTINGS_MAX_RELEASE_QUEUES_CAP           16384U
/* The default --max-kept-regions is fd_limit over this: parked memfds count against the fd limit (park.h). */
#define SETTINGS_KEPT_REGIONS_DIVISOR             2U
#define SETTINGS_SHARE_PER_UID_DIVISOR            4U      /* per-uid defaults: a quarter of the broker's */
#define SETTINGS_HOLDS_PER_REGION                 4U      /* the default --max-holds: this many per region */

/*
 * File descriptors kept out of the budget the users share: the listener,
 * the event loop, logging, the spare kept for accept(), the reopens made
 * while answering, and the service manager's socket.
 */
#define SETTINGS_FD_RESERVE 64U

/*
 * Fds in flight kept out of what replies may have unread: packing parked
 * memfds has a message of them, SCM_MAX_FD, in flight twice (park.h). And
 * at least this many for replies, and a quarter of the fd limit, whatever
 * --max-kept-regions leaves.
 */
#define SETTINGS_PARK_PACKING_FDS 506U
#define SETTINGS_FDS_IN_FLIGHT_MIN 64U

/*
 * The broker's settings. A limit of 0 is "not set": settings_derive_limits()
 * derives it from the machine. Root and the broker's own uid are exempt
 * from the limits per uid and from the fair shares (quota.h).
 */
struct settings {
        char *socket_path;
        uint64_t max_region_size;
        uint32_t max_regions;
        uint32_t max_holds_per_connection;
        uint32_t max_regions_per_uid;
        uint64_t max_bytes;
        uint64_t max_bytes_per_uid;
        uint32_t max_connections;
        uint32_t max_connections_per_uid;
        uint64_t max_queued_bytes;
        uint32_t max_waiters;
        uint32_t max_release_queues;
        uint32_t max_release_queues_per_uid;    /* derived only: a quarter of max_release_queues */
        uint32_t max_kept_regions;
        uint64_t max_holds;
        uint64_t max_fds;                       /* derived only: the fds the users share */
        uint64_t max_fds_in_flight;             /* derived only: the fds replies may have unread, in all */
        int log_level;
};

/* Fills c with the defaults; socket_path stays NULL until set or defaulted. */
void settings_init(struct settings *c);

/* Frees what c owns. */
void settings_done(struct settings *c);

/* Sets c->socket_path to a copy of path. Returns 0 or -ENOMEM. path is borrowed. */
int settings_set_socket_path(struct settings *c, const char *path);

/*
 * The socket path when none was given: $MEMFD_BROKER_SOCKET if non-empty,
 * else $XDG_RUNTIME_DIR/memfd-broker.sock for a non-root user with
 * XDG_RUNTIME_DIR set, else /run/memfd-broker.sock. Returns 0 or -ENOMEM.
 */
int settings_set_default_socket_path(struct settings *c);

/*
 * Fills the limits left unset from the machine: fd_limit, the soft limit
 * on open files (RLIM_INFINITY allowed), and physical_memory in bytes.
 * The fds the users share are fd_limit less SETTINGS_FD_RESERVE; regions
 * and connections default to what those fds allow, capped; bytes to the
 * physical memory; kept regions to half fd_limit, since the kernel counts
 * parked memfds in flight against it; each limit per uid to a quarter of
 * the broker's. The fds replies may have unread in all are what fd_limit
 * leaves in flight beyond the kept regions and a park's packing, and at
 * least a quarter of it.
 */
void settings_derive_limits(struct settings *c, uint64_t fd_limit, uint64_t physical_memory);

/* Parses a decimal count from 1 to UINT32_MAX. Returns 0, -EINVAL or -ERANGE. */
int settings_parse_count(const char *s, uint32_t *ret);
