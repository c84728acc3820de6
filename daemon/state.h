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

#include "wire.h"

/*
 * Handles are reserved this many at a time: the mark is written once per
 * that many CREATEs, and a restart skips at most that many handles.
 */
#define STATE_HANDLE_RESERVE 4096U

/* What is saved of one region. Seals are not: they live on the memfd. */
struct state_region {
        uint64_t handle;
        uint64_t size;
        uid_t uid;
        gid_t gid;
        uid_t creator_uid;
        gid_t creator_gid;
        mode_t mode;
        pid_t creator_pid;
        pid_t last_pid;
        bool hugetlb;
        uint64_t create_time;
        uint64_t attach_time;
        uint64_t detach_time;
        uint64_t change_time;
        char name[MFB_WIRE_NAME_MAX + 1];       /* never empty: only named regions are saved */
};

struct state;

/*
 * Called by state_load() for each saved region, with the slot it is saved
 * in (for state_save_region() and state_forget_region()). r is borrowed.
 * A negative return aborts the load with that error.
 */
typedef int (*state_region_cb)(const struct state_region *r, uint32_t slot, void *userdata);

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
 * Saves r in the slot *slot, or in a free slot when *slot is 0, which is
 * then stored in *slot. Returns 0 or -errno; *slot is untouched on failure.
 */
int state_save_region(struct state *s, uint32_t *slot, const struct state_region *r);

/* Empties slot, so that the region saved there is not restored. Returns 0 or -errno. */
int state_forget_region(struct state *s, uint32_t slot);
