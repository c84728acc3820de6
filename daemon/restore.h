/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Rebuilding the named regions after a restart from what systemd kept in
 * its fd store (persist.h): the saved state, and the buckets the memfds
 * are parked in (park.h).
 *
 * Every bucket is read without emptying it. A region comes back with its
 * handle, name, owner, creator, mode, times and memfd (so its bytes and
 * seals) when its state and a parked memfd agree: a memfd sealed against
 * resizing, of the saved size, open read-write, on huge pages if it was.
 * Anything else is logged and closed: a region whose memfd is missing or
 * does not fit (and its saved state), a parked memfd with no saved state
 * (a broker killed between parking and saving it, or between forgetting
 * and unparking it), a second copy of one (killed while packing), the
 * rest of a bucket from a message that is not valid on, an fd of a name
 * this broker does not give. A saved state that is not valid, or of a
 * newer format, is dropped with every bucket, and the broker starts
 * without regions. New handles start above every handle found, in the
 * state or in the buckets, so that none is reused.
 *
 * The regions restored are then parked again, densely, in new buckets;
 * only after that does systemd close the old ones, so that a broker
 * killed while restoring loses nothing either.
 */

#include <stddef.h>

#include "park.h"

struct fdstore;
struct passed_fd;
struct region_table;
struct state;

/*
 * Restores into t from fds, the n_fds fds passed at start that are not
 * listening sockets, whose fds it takes or drops (each is -1 afterwards,
 * on success). Counts in store the names of the fds that stay stored.
 * Returns 0, the state to save into from then on, which is in the store
 * (a new one, stored, when there was no valid one), and the park that
 * holds the restored regions' memfds (fd_of and userdata are its
 * park_fd_cb); or -errno after logging why.
 */
int restore(struct region_table *t, struct fdstore *store, struct passed_fd *fds, size_t n_fds,
            park_fd_cb fd_of, void *userdata, struct state **ret_state, struct park **ret_park);
