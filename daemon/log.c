/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

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

/* Whether stderr is the journal's stream: -1 until the first message asks. */
static int stderr_journal = -1;

/* "N" in decimal, nothing else (no sign, no space, no empty string), to *ret. */
static bool parse_decimal(const char *s, const char *end, unsigned long long *ret) {
        unsigned long long v = 0;

        if (s == end)
                return false;
        for (; s < end; s++) {
                if (*s < '0' || *s > '9' || v > (ULLONG_MAX - (unsigned) (*s - '0')) / 10)
                        return false;
                v = v * 10 + (unsigned) (*s - '0');
        }
        *ret = v;
        return true;
}

/*
 * systemd sets $JOURNAL_STREAM to "DEV:INODE" of the stream it connected to
 * stdout or stderr. The variable is inherited by children and survives
 * redirections, so only a stderr that is that very stream is the journal;
 * anything else (a terminal, a file, a pipe) is read by a person or a tool,
 * for whom "<6>" is noise. This is the test systemd's own tools make.
 */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM"), *colon;
        unsigned long long dev, ino;
        struct stat st;

        if (!e)
                return false;
        colon = strchr(e, ':');
        if (!colon || !parse_decimal(e, colon, &dev) || !parse_decimal(colon + 1, colon + strlen(colon), &ino))
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

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

        /* Decided once: stderr does not change under a running broker. */
        if (stderr_journal < 0)
                stderr_journal = stderr_is_journal();

        /* One fprintf on the unbuffered stderr is one write(): lines do not interleave. */
        fprintf(stderr, "%s%s\n", stderr_journal ? level_prefixes[level] : "", line);
        return -abs(error);
}
