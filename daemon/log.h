/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Logging to stderr, one line per message. When stderr is the journal's
 * stream ($JOURNAL_STREAM names it), each line starts with the sd-daemon.h
 * priority prefix ("<3>") that journald turns into the entry's priority;
 * elsewhere (a terminal, a file) lines are plain text.
 */

#include <stdlib.h>
#include <syslog.h>

/* Messages above this level (LOG_ERR .. LOG_DEBUG) are dropped. */
extern int log_max_level;

void log_set_max_level(int level);

/* "err", "warning", "notice", "info" or "debug" to its LOG_* value, or -EINVAL. */
int log_level_from_string(const char *s);

/*
 * Writes one line at level. error is 0 or an errno (either sign): errno is
 * set to it while formatting, so that %m names it. Returns -abs(error),
 * so that `return log_error_errno(r, "...: %m");` reports and propagates.
 */
int log_internal(int level, int error, const char *format, ...) __attribute__((format(printf, 3, 4)));

/* The arguments are not evaluated when the level is off: debug logs cost nothing. */
#define log_full_errno(level, error, ...)                                       \
        ({                                                                      \
                int _level = (level), _error = (error);                         \
                log_max_level >= _level ? log_internal(_level, _error, __VA_ARGS__) : -abs(_error); \
        })

#define log_error_errno(error, ...)   log_full_errno(LOG_ERR, error, __VA_ARGS__)
#define log_warning_errno(error, ...) log_full_errno(LOG_WARNING, error, __VA_ARGS__)
#define log_debug_errno(error, ...)   log_full_errno(LOG_DEBUG, error, __VA_ARGS__)

#define log_error(...)   ((void) log_full_errno(LOG_ERR, 0, __VA_ARGS__))
#define log_warning(...) ((void) log_full_errno(LOG_WARNING, 0, __VA_ARGS__))
#define log_notice(...)  ((void) log_full_errno(LOG_NOTICE, 0, __VA_ARGS__))
#define log_info(...)    ((void) log_full_errno(LOG_INFO, 0, __VA_ARGS__))
#define log_debug(...)   ((void) log_full_errno(LOG_DEBUG, 0, __VA_ARGS__))
