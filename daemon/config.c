/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "config.h"
#include "parse.h"

void config_init(struct config *c) {
        *c = (struct config) {
                .max_region_size = CONFIG_MAX_REGION_SIZE_DEFAULT,
                .max_regions = CONFIG_MAX_REGIONS_DEFAULT,
                .max_holds_per_connection = CONFIG_MAX_HOLDS_PER_CONNECTION_DEFAULT,
                .max_regions_per_uid = CONFIG_MAX_REGIONS_PER_UID_DEFAULT,
                .max_bytes_per_uid = CONFIG_MAX_BYTES_PER_UID_DEFAULT,
                .max_connections_per_uid = CONFIG_MAX_CONNECTIONS_PER_UID_DEFAULT,
                .log_level = LOG_INFO,
        };
}

void config_done(struct config *c) {
        free(c->socket_path);
        c->socket_path = NULL;
}

int config_set_socket_path(struct config *c, const char *path) {
        char *copy = strdup(path);

        if (!copy)
                return -ENOMEM;
        free(c->socket_path);
        c->socket_path = copy;
        return 0;
}

int config_set_default_socket_path(struct config *c) {
        const char *env = getenv("MEMFD_BROKER_SOCKET");
        char *path;

        if (env && *env)
                return config_set_socket_path(c, env);

        env = getenv("XDG_RUNTIME_DIR");
        if (geteuid() != 0 && env && *env) {
                if (asprintf(&path, "%s/" CONFIG_SOCKET_NAME, env) < 0)
                        return -ENOMEM;
                free(c->socket_path);
                c->socket_path = path;
                return 0;
        }
        return config_set_socket_path(c, CONFIG_SOCKET_PATH_SYSTEM);
}

int config_parse_count(const char *s, uint32_t *ret) {
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
