/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The requests of proto/PROTOCOL.md: validation, dispatch through the one
 * table of opcodes (MFB_WIRE_REQUESTS), one handler each, and the one
 * place where a failure becomes an error reply.
 */

#include <stddef.h>
#include <stdint.h>

#include "wait.h"

struct session;

/*
 * Handles one record of len bytes that s received (borrowed), which came
 * with nfds file descriptors (already closed: requests carry none).
 * Answers through s's connection, an error reply included; a record with
 * no header to trust ends the connection instead.
 */
void request_handle(struct session *s, const void *record, size_t len, size_t nfds);

/*
 * Answers a WAIT that the wait table handed back (wait_answer_t): owner is
 * the session that waits. userdata is unused.
 */
void request_wait_answer(void *owner, const struct mfb_wire_header *request, enum wait_outcome outcome,
                         struct region *r, const char *name, uint64_t timeout_ns, void *userdata);
