/* SPDX-License-Identifier: MIT */
#pragma once

/* Socket activation: the listening socket systemd (or systemd-socket-activate) passes. */

/*
 * Takes the fds passed with LISTEN_FDS/LISTEN_PID (sd_listen_fds) and
 * unsets those variables. Returns 0 with *ret_fd = -1 when nothing was
 * passed; 1 with *ret_fd the one listening AF_UNIX SOCK_SEQPACKET socket
 * among them, owned by the caller. Any other passed fd is logged and closed.
 * Returns -EINVAL after logging why when fds were passed but none, or more
 * than one, is such a socket (every passed fd is closed then).
 */
int activation_listen_fd(int *ret_fd);
