/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdio.h>

#include "size.h"

const char *mfb_size_format(uint64_t size, const char *separator, char buf[static MFB_SIZE_STRING_MAX]) {
        static const char units[] = "KMGTPE";
        unsigned u = 0;

        while (u < sizeof(units) - 1 && size >> (10 * (u + 1)) >= 1)
                u++;
        if (u == 0)
                snprintf(buf, MFB_SIZE_STRING_MAX, "%" PRIu64 "%sB", size, separator);
        else if (size % (UINT64_C(1) << (10 * u)) == 0)
                snprintf(buf, MFB_SIZE_STRING_MAX, "%" PRIu64 "%s%ciB", size >> (10 * u), separator, units[u - 1]);
        else
                snprintf(buf, MFB_SIZE_STRING_MAX, "%.1f%s%ciB", (double) size / (double) (UINT64_C(1) << (10 * u)),
                         separator, units[u - 1]);
        return buf;
}
