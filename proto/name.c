/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include "name.h"
#include "wire.h"

int mfb_name_check(const char *name) {
        size_t len;

        if (!name || !*name)
                return -EINVAL;
        len = strnlen(name, MFB_WIRE_NAME_MAX + 1);
        if (len > MFB_WIRE_NAME_MAX)
                return -ENAMETOOLONG;
        for (size_t i = 0; i < len; i++)
                if (name[i] < 0x21 || name[i] > 0x7e)
                        return -EINVAL;
        return 0;
}
