/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Keeping the named regions across restarts of the broker under systemd.
 *
 * The memfd of each named region is parked in a bucket (park.h), a socket
 * that the service manager's fd store (fdstore.h) holds, and what the
 * table knows of it is in the saved state (state.h), a memfd stored as
 * "state". So systemd holds a few fds, whatever the number of regions. A
 * named region is saved before its CREATE is answered, so that a client
 * that got a handle can rely on it; saved again when a SEAL or SET changes
 * it (region_touched(), which persist hooks); and forgotten, state first and then memfd, when it is removed: its
 * bucket is packed, which closes the parked copy, once the requests being
 * served are, so that a burst of removals packs each bucket once. Opens
 * and releases change only times and the last pid, which are saved within
 * PERSIST_FLUSH_MSEC rather than at each request, and when the broker
 * stops. A restart by SIGKILL loses at most those.
 *
 * Anonymous regions, transient ones and removed ones are not kept: the connections that
 * hold them do not survive a restart. Neither is anything when the broker
 * does not run under systemd: then there is no persist, and every function
 * here takes NULL and does nothing, at the cost of that one test.
 */

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

#define PERSIST_FLUSH_MSEC 100
/* A bucket that could not be packed is tried again after this long. */
#define PERSIST_PACK_RETRY_MSEC 1000

struct event_base;
struct passed_fd;
struct persist;
struct region;
struct region_table;

/*
 * Restores into t the named regions that systemd kept (restore.h) from
 * fds, the n_fds fds passed at start that are not listening sockets, and
 * keeps t's named regions from then on, with timers on base; hooks
 * region_touched() for it (region_table_set_touched_hook()). Takes fds, the
 * array and what it holds, on failure too. t is borrowed and must outlive
 * the persist. Returns 0, or -errno after logging why.
 */
int persist_new(struct event_base *base, struct region_table *t, struct passed_fd *fds, size_t n_fds,
                struct persist **ret);

/*
 * Frees p and unhooks it; the regions of the table are not kept by this
 * broker any more, but what systemd holds stays, for the next broker.
 * Accepts NULL; returns NULL.
 */
struct persist *persist_free(struct persist *p);

/*
 * Saves r, a region just created, before any fd of it leaves the broker:
 * the handle mark, and for a named region its memfd and state, charging
 * its owner one kept region (region_keep()). Returns 0; -EDQUOT or
 * -ENOSPC when the owner may keep no more (*ret_refused says so); -E2BIG
 * when the buckets are full, or the fd store or the socket buffers have no room
 * for another; -ETOOMANYREFS when the kernel refuses the broker more fds in
 * flight (both logged once until it works again); or another -errno after
 * logging why. Nothing of r is kept on failure: remove it.
 *
 * From then on, region_touched() saves r now when it changed (its owner,
 * mode or seals; a failure is logged, and retried later), and later, within
 * PERSIST_FLUSH_MSEC, when it was attached or detached.
 */
int persist_region_created(struct persist *p, struct region *r, enum mfb_wire_resource *ret_refused);

/*
 * Parks the control page just made for r (r->page), when r is kept, so
 * that the next broker gives the same page to its holders: their mappings
 * and futex waits go on across the restart; charged as a kept region of
 * its owner (region_keep_page()). Returns 0, also when r is not kept; or
 * the errors of persist_region_created(), with *ret_refused set for
 * -EDQUOT and -ENOSPC; the page is not kept then.
 */
int persist_control_page_made(struct persist *p, struct region *r, enum mfb_wire_resource *ret_refused);

/* Forgets r, which is about to be removed, and unparks its memfd soon. Call it while r has its name. */
void persist_region_removed(struct persist *p, struct region *r);

/* Saves at once what region_touched() left for later: the broker is stopping. */
void persist_flush(struct persist *p);
