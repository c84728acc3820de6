/* SPDX-License-Identifier: MIT */
#pragma once

/* The requests of proto/PROTOCOL.md: validation, dispatch, one handler each. */

#include <stddef.h>

struct connection;

/*
 * Handles one record of len bytes received on c, which came with nfds file
 * descriptors (already closed by the caller: they are refused). record is
 * borrowed. Replies through connection_reply(), an error reply included.
 * Returns 0, or -errno when the connection must be dropped (a header that
 * cannot be trusted, or a broken socket).
 */
int request_handle(struct connection *c, const void *record, size_t len, size_t nfds);
