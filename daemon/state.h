/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The saved state: what the broker must know to rebuild its named regions
 * after a restart, kept in a memfd that the service manager holds in its
 * file-descriptor store while the broker restarts (persist.h).
 *
 * The file is a header, then numbered slots of two fixed-size copies each,
 * written in place with pwrite(). Slot 0 holds the handle mark (no handle
 * above it was ever handed out); every other slot holds one region or
 * nothing. An update never overwrites the current copy of its slot: it
 * writes the other one, with a sequence number above every other in the
 * file and a checksum, and that copy becomes the current one. A broker
 * killed in the middle of a write leaves that one copy torn, which fails
 * its checksum, and the copy before it stands. So the file is valid at
 * every instant, an update costs one pwrite() of one record whatever the
 * number of regions, and nothing ever needs compacting: the file is as
 * large as the most regions saved at once, and the service manager keeps
 * the same file throughout. A forgotten region's slot is written free in
 * both copies, and the pages that then hold only free slots are given back
 * (FALLOC_FL_PUNCH_HOLE; they read as zeroes, which is free): the file
 * takes memory for the pages with regions in them, not for the most it
 * ever held.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "regionmeta.h"

/*
 * Handles are reserved this many at a time: the mark is written once per
 * that many CREATEs, and a restart skips at most that many handles.
 */
#define STATE_HANDLE_RESERVE 4096U

/* The fd store name of the saved state. */
#define STATE_FDNAME "state"

/*
 * What is saved of one region is its meta, as it is (regionmeta.h), and its
 * name, never empty: only named regions are saved. Seals are not: they
 * live on the memfd.
 */

struct state;

/*
 * Called by state_load() for each saved region, with its name (valid and
 * NUL-terminated) and the slot it is saved in (for state_save_region() and
 * state_forget_region()). meta and name are borrowed. A negative return
 * aborts the load with that error.
 */
typedef int (*state_region_cb)(const struct region_meta *meta, const char *name, uint32_t slot, void *userdata);

/* Creates an empty state in a new memfd. Returns 0, or -errno. */
int state_new(struct state **ret);

/*
 * Reads the state in fd, which the state owns from then on (it is closed
 * on failure too), and calls cb for each saved region. Returns 0; -EBADMSG
 * for a file that is not a valid state (not a state file, a torn header,
 * or any slot with neither copy valid, which no crash leaves behind);
 * -EPROTONOSUPPORT for a state of a newer format; the error of cb; or
 * another -errno.
 */
int state_load(int fd, state_region_cb cb, void *userdata, struct state **ret);

/* Closes the memfd and frees the state. Accepts NULL; returns NULL. */
struct state *state_free(struct state *s);

/* The memfd, borrowed: for the service manager to store. */
int state_fd(const struct state *s);

/* The handle mark: no handle above it was handed out. */
uint64_t state_handle_mark(const struct state *s);

/*
 * Makes sure the mark is at least handle, writing a new one if it is not
 * (handle plus STATE_HANDLE_RESERVE - 1). Call it before handing out
 * handle. Returns 0 or -errno.
 */
int state_reserve_handle(struct state *s, uint64_t handle);

/*
 * Saves the region of meta and name in the slot *slot, or in a free slot
 * when *slot is 0, which is then stored in *slot. Returns 0, -EINVAL or
 * -ENAMETOOLONG for a name that is empty or not valid, or another -errno;
 * *slot is untouched on failure.
 */
int state_save_region(struct state *s, uint32_t *slot, const struct region_meta *meta, const char *name);

/* Empties slot, so that the region saved there is not restored. Returns 0 or -errno. */
int state_forget_region(struct state *s, uint32_t slot);
