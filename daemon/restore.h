/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Rebuilding the named regions after a restart from what systemd kept in
 * its fd store (persist.h): the saved state, and one memfd per region,
 * named by its handle.
 *
 * A region comes back with its handle, name, owner, creator, mode, times
 * and memfd (so its bytes and seals) when its state and memfd agree: a
 * memfd sealed against resizing, of the saved size, open read-write, on
 * huge pages if it was. Anything else is logged, closed and removed from
 * the store: a region whose memfd is missing or does not fit (and its
 * saved state), a memfd with no saved state (a crash between storing it
 * and saving it), an fd of a name this broker does not give. A saved state
 * that is not valid, or of a newer format, is dropped with every region
 * memfd, and the broker starts without regions. New handles start above
 * every handle found, in the state or in the names, so that none is reused.
 */

#include <stddef.h>

struct fdstore;
struct passed_fd;
struct region_table;
struct state;

/*
 * Restores into t from fds, the n_fds fds passed at start that are not
 * sockets, whose fds it takes (each is -1 afterwards). Counts in store the
 * names of the fds that stay stored. Returns 0 and the state to save into
 * from then on, which is in the store (a new one, stored, when there was
 * no valid one); or -errno after logging why.
 */
int restore(struct region_table *t, struct fdstore *store, struct passed_fd *fds, size_t n_fds,
            struct state **ret_state);
