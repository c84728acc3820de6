/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "config.h"

void config_init(struct config *c) {
        *c = (struct config) {
                .max_region_size = CONFIG_MAX_REGION_SIZE_DEFAULT,
                .max_regions = CONFIG_MAX_REGIONS_DEFAULT,
                .max_holds_per_connection = CONFIG_MAX_HOLDS_PER_CONNECTION_DEFAULT,
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

/* Decimal digits only: strtoull() would also take spaces, signs and "0x". */
static int parse_decimal(const char *s, char **ret_end, uint64_t *ret) {
        unsigned long long v;
        char *end;

        if (*s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        *ret_end = end;
        *ret = v;
        return 0;
}

int config_parse_size(const char *s, uint64_t *ret) {
        static const char suffixes[] = "KMGT";
        unsigned shift = 0;
        uint64_t v;
        char *end;
        int r;

        r = parse_decimal(s, &end, &v);
        if (r < 0)
                return r;
        if (*end != '\0') {
                const char *p = strchr(suffixes, *end);

                if (!p || end[1] != '\0')
                        return -EINVAL;
                shift = 10 * (unsigned) (p - suffixes + 1);
        }
        if (v == 0)
                return -EINVAL;
        if (v > (uint64_t) INT64_MAX >> shift)
                return -ERANGE;
        *ret = v << shift;
        return 0;
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
