/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Where a region kept across restarts is kept: the bookkeeping of persist
 * (persist.h), reached through r->kept (region.h). Here rather than in
 * persist.h because restore (restore.h), which persist calls, makes the
 * ones of the regions it restores: neither of the two includes the other's
 * header for it.
 */

#include <stdbool.h>
#include <stdint.h>

/*
 * The handle a region's control page (control.h) is parked under: its
 * region's with this bit, which no handle of a region has (they count up
 * from 1), so that the page travels in the buckets as a region of its own.
 */
#define KEPT_PAGE_BIT (UINT64_C(1) << 63)

struct kept_region {
        uint32_t parked_bucket; /* the bucket its memfd is parked in (park.h) */
        uint32_t page_bucket;   /* the bucket its control page is parked in, when page_parked */
        bool page_parked;
        uint32_t saved_slot;    /* where it is in the saved state (state.h); 0 when not saved */
        bool dirty;             /* changed since saved; waiting for persist_flush() */
};
