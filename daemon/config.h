/* SPDX-License-Identifier: MIT */
#pragma once

/* The broker's settings, their defaults, and parsers for option values. */

#include <stdint.h>

#define CONFIG_MAX_REGION_SIZE_DEFAULT          (UINT64_C(64) << 30)
#define CONFIG_MAX_REGIONS_DEFAULT              262144U
#define CONFIG_MAX_HOLDS_PER_CONNECTION_DEFAULT 65536U
#define CONFIG_MAX_REGIONS_PER_UID_DEFAULT      65536U
#define CONFIG_MAX_BYTES_PER_UID_DEFAULT        (UINT64_C(256) << 30)
#define CONFIG_MAX_CONNECTIONS_PER_UID_DEFAULT  1024U
#define CONFIG_SOCKET_NAME                      "memfd-broker.sock"
#define CONFIG_SOCKET_PATH_SYSTEM               "/run/" CONFIG_SOCKET_NAME

struct config {
        char *socket_path;
        uint64_t max_region_size;
        uint32_t max_regions;
        uint32_t max_holds_per_connection;
        uint32_t max_regions_per_uid;           /* root is exempt from the per-uid limits */
        uint64_t max_bytes_per_uid;
        uint32_t max_connections_per_uid;
        int log_level;
};

/* Fills c with the defaults; socket_path stays NULL until set or defaulted. */
void config_init(struct config *c);

/* Frees what c owns. */
void config_done(struct config *c);

/* Sets c->socket_path to a copy of path. Returns 0 or -ENOMEM. path is borrowed. */
int config_set_socket_path(struct config *c, const char *path);

/*
 * The socket path when none was given: $MEMFD_BROKER_SOCKET if non-empty,
 * else $XDG_RUNTIME_DIR/memfd-broker.sock for a non-root user with
 * XDG_RUNTIME_DIR set, else /run/memfd-broker.sock. Returns 0 or -ENOMEM.
 */
int config_set_default_socket_path(struct config *c);

/* Parses a decimal count from 1 to UINT32_MAX. Returns 0, -EINVAL or -ERANGE. */
int config_parse_count(const char *s, uint32_t *ret);
