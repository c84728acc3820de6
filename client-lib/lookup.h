/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What the broker says about regions: checking and converting its region
 * info, and the requests that address a region by name or handle without
 * holding it (STAT, REMOVE, SET, LIST). Internal.
 */

#include <stdint.h>

#include "memfd-broker.h"
#include "wire.h"

/* Checks a region info from the broker: a handle, a size, a valid name. Returns 0 or -EBADMSG. */
int region_info_check(const struct mfb_wire_region_info *info);

/* Checks a region info as region_info_check() does and converts it into *ret, untouched on failure. */
int region_info_convert(const struct mfb_wire_region_info *info, mfb_region_stat *ret);

/* STAT of the region called name (handle 0), or with that handle (name NULL). */
int lookup_stat(mfb_client *c, const char *name, uint64_t handle, mfb_region_stat *ret);

/* REMOVE of the region called name (handle 0), or with that handle (name NULL). */
int lookup_remove(mfb_client *c, const char *name, uint64_t handle);

/* REMOVE by handle, sent without waiting for the answer, which is dropped. */
void lookup_remove_nowait(mfb_client *c, uint64_t handle);
