/* SPDX-License-Identifier: MIT */
#pragma once

/* Huge pages of the default size, as /proc/meminfo reports them. */

#include <stdint.h>

/*
 * The default huge page size in bytes ("Hugepagesize:"). Returns 0, or
 * -ENOENT when the kernel reports none, or another -errno.
 */
int hugetlb_page_size(uint64_t *ret);

/*
 * The bytes in huge pages of the default size that are free and not
 * reserved by a mapping ("HugePages_Free:" less "HugePages_Rsvd:", times
 * "Hugepagesize:"). Returns 0, or -ENOENT when the kernel reports none,
 * or another -errno.
 */
int hugetlb_free_bytes(uint64_t *ret);
