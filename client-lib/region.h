/* SPDX-License-Identifier: MIT */
#pragma once

/* What the batch needs of regions: making them from fds the broker sent. Internal. */

#include <stdint.h>

#include "memfd-broker.h"

/*
 * Allocates a region to fill with region_init() once the broker answers:
 * before it holds a reference for us, since ENOMEM after would leak one.
 * Free it with free() if it is never filled.
 */
mfb_region *region_alloc(void);

/*
 * Checks fd (taken, always) as PROTOCOL.md asks of a received fd, and makes
 * r the region of c with that handle, size and access (O_RDONLY, O_RDWR).
 * Returns 0, or -EBADMSG with the fd closed, the reference given back
 * without waiting, and r untouched.
 */
int region_init(mfb_region *r, mfb_client *c, uint64_t handle, uint64_t size, int access, int fd);
