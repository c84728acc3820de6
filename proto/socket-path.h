/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Where the broker's socket is when nobody names it, shared by
 * memfd-brokerd (where it listens) and libmemfd-broker (where clients
 * connect, and so memfd-brokerctl) so that both find the same place.
 * Nothing here allocates: each side builds the path the way it stores it.
 */

/*
 * The variable that names the socket. memfd-broker.h defines the same for
 * clients; a file that includes both fails to compile if they ever differ.
 */
#define MFB_SOCKET_ENV "MEMFD_BROKER_SOCKET"

/* The socket's file name in a runtime folder, and the socket of the system's broker (root's). */
#define MFB_SOCKET_NAME "memfd-broker.sock"
#define MFB_SOCKET_PATH_SYSTEM "/run/" MFB_SOCKET_NAME

/*
 * The default socket path, as the concatenation of *ret_prefix and
 * *ret_suffix: $MEMFD_BROKER_SOCKET if non-empty (suffix ""), else
 * $XDG_RUNTIME_DIR followed by "/memfd-broker.sock" if that is non-empty
 * and the effective uid is not root, else MFB_SOCKET_PATH_SYSTEM (suffix
 * ""). The variables are read with get_env: getenv(), or secure_getenv()
 * where a setuid program must not be pointed at a socket of its caller's
 * choosing. Both strings are borrowed: from the environment (valid until
 * it changes) or static. Cannot fail; the caller checks the length against
 * its buffer or a socket address.
 */
void mfb_socket_path_default(char *(*get_env)(const char *name), const char **ret_prefix, const char **ret_suffix);
