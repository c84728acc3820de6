/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "macro.h"

int log_max_level = LOG_INFO;

static const char *const level_names[] = {
        [LOG_ERR] = "err",
        [LOG_WARNING] = "warning",
        [LOG_NOTICE] = "notice",
        [LOG_INFO] = "info",
        [LOG_DEBUG] = "debug",
};

static const char *const level_prefixes[] = {
        [LOG_ERR] = SD_ERR,
        [LOG_WARNING] = SD_WARNING,
        [LOG_NOTICE] = SD_NOTICE,
        [LOG_INFO] = SD_INFO,
        [LOG_DEBUG] = SD_DEBUG,
};

void log_set_max_level(int level) {
        log_max_level = level;
}

int log_level_from_string(const char *s) {
        for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
                if (level_names[i] && strcmp(level_names[i], s) == 0)
                        return (int) i;
        return -EINVAL;
}

int log_internal(int level, int error, const char *format, ...) {
        char line[1024];
        va_list ap;

        assert(level >= LOG_ERR && level <= LOG_DEBUG);
        if (error != 0)
                errno = abs(error);
        va_start(ap, format);
        vsnprintf(line, sizeof(line), format, ap);
        va_end(ap);

        /* One fprintf on the unbuffered stderr is one write(): lines do not interleave. */
        fprintf(stderr, "%s%s\n", level_prefixes[level], line);
        return -abs(error);
}
