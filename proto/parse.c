/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"

int parse_decimal(const char *s, char **ret_end, uint64_t *ret) {
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

int parse_size(const char *s, uint64_t *ret) {
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
