/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The service manager's file-descriptor store (FDSTORE=1 in sd_notify(3)):
 * fds that systemd keeps while the broker restarts and passes to the next
 * broker, with their names, in $LISTEN_FDS and $LISTEN_FDNAMES.
 *
 * The names of all stored fds come back in that one environment variable,
 * and the kernel refuses to start a program with an environment string
 * longer than 128 KiB (MAX_ARG_STRLEN): past that, systemd could not start
 * the broker again, and every stored fd would be lost with the service.
 * So the store counts the bytes its names take, and refuses an fd that
 * would not fit.
 */

struct fdstore;

/* Returns 0 and a store that holds nothing, or -ENOMEM. */
int fdstore_new(struct fdstore **ret);

/* Frees the store; what systemd holds stays. Accepts NULL; returns NULL. */
struct fdstore *fdstore_free(struct fdstore *s);

/* Counts name, the name of an fd that systemd passed at start and that stays stored. */
void fdstore_count(struct fdstore *s, const char *name);

/*
 * Asks systemd to close the fds it passed at start under name, which were
 * not counted: ones the broker does not keep. Returns 0 or -errno of sending.
 */
int fdstore_drop(const char *name);

/*
 * Asks systemd to store a copy of fd (borrowed) under name, which must be
 * unique among the stored fds (fdname_is_valid(): printable ASCII without
 * ':'). Returns 0, -E2BIG when the name does not fit in $LISTEN_FDNAMES
 * any more, or -errno of sending.
 */
int fdstore_add(struct fdstore *s, int fd, const char *name);

/* Undoes fdstore_add() or fdstore_count() of name. Returns 0 or -errno of sending. */
int fdstore_remove(struct fdstore *s, const char *name);
