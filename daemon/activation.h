/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What the service manager passes at start (sd_listen_fds(3)): the
 * listening socket of socket activation (systemd, or systemd-socket-activate),
 * and, under systemd, the fds the broker kept in its fd store (persist.h).
 */

#include <stddef.h>

/* A passed fd that is not a listening socket, with its name from $LISTEN_FDNAMES. */
struct passed_fd {
        int fd;                 /* owned; -1 once taken */
        char *name;             /* owned */
};

/*
 * Takes the fds passed with $LISTEN_FDS and unsets those variables. Returns
 * 0 with *ret_listen_fd the one listening AF_UNIX SOCK_SEQPACKET socket
 * among them, or -1 when no listening socket was passed; and the fds that
 * are not listening sockets (the fd store's), with their names, in
 * *ret_fds (n_fds of them; NULL when none). All are owned by the caller
 * (free them with passed_fds_free()). Other listening sockets are logged
 * and closed. Returns -EINVAL after logging why when listening sockets
 * were passed but none, or more than one, is such a socket; every passed
 * fd is closed then.
 */
int activation_take_fds(int *ret_listen_fd, struct passed_fd **ret_fds, size_t *ret_n_fds);

/* Closes the fds that are still there and frees the names and fds. Accepts NULL. */
void passed_fds_free(struct passed_fd *fds, size_t n_fds);
