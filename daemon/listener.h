/* SPDX-License-Identifier: MIT */
#pragma once

/* The listening socket: an AF_UNIX SOCK_SEQPACKET socket that accepts clients. */

struct event_base;
struct listener;

/* Called with each accepted socket (non-blocking, close-on-exec), which the callee owns from then on. */
typedef void (*listener_accept_t)(int fd, void *userdata);

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
