/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The listening socket: an AF_UNIX SOCK_SEQPACKET socket that accepts
 * clients. One fd is kept in reserve, so that a broker out of fds can
 * still accept a client to tell it so, rather than leave it waiting in the
 * backlog, or pause accepting for everyone.
 */

#include <stdbool.h>

struct event_base;
struct listener;

/*
 * Called with each accepted socket (non-blocking, close-on-exec), which
 * the callee owns from then on. out_of_fds says that the process had no
 * fd left, and this one was accepted with the one kept in reserve for it:
 * the callee is to tell the client why and close it at once, so that the
 * reserve is back for the next, and accepting never stalls.
 */
typedef void (*listener_accept_t)(int fd, bool out_of_fds, void *userdata);

/*
 * Accepts clients on fd, a socket that is bound and listening already (as
 * socket activation passes it), which the listener owns from then on, on
 * failure too. Returns 0, or -errno after logging why.
 */
int listener_new_fd(struct event_base *base, int fd, listener_accept_t accept_cb, void *userdata,
                    struct listener **ret);

/*
 * Binds a socket at path and accepts clients on it. A stale socket file
 * there (nobody accepts on it) is replaced; a live one is left alone and
 * refused with -EADDRINUSE. The file is removed by listener_free() if it is
 * still the one this call created. path is borrowed. Returns 0, or -errno
 * after logging why.
 */
int listener_new_path(struct event_base *base, const char *path, listener_accept_t accept_cb, void *userdata,
                      struct listener **ret);

/* Stops listening and closes the socket. Accepts NULL; returns NULL. */
struct listener *listener_free(struct listener *l);
