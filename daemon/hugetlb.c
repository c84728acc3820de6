/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>

#include "hugetlb.h"
#include "macro.h"

static void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}

/*
 * Reads the huge page lines of /proc/meminfo: the page size, and the pages
 * that are free and not reserved. A mapping of a hugetlb file reserves its
 * pages at mmap() (HugePages_Rsvd) and takes them off HugePages_Free only
 * when touched: counting those as free would let a CREATE pass whose
 * first touch then fails with SIGBUS.
 */
static int read_meminfo(uint64_t *ret_page_size, uint64_t *ret_free_pages) {
        _cleanup_(fclosep) FILE *f = NULL;
        bool have_size = false, have_free = false, have_reserved = false;
        uint64_t page_kib = 0, free_pages = 0, reserved_pages = 0;
        char line[256];

        f = fopen("/proc/meminfo", "re");
        if (!f)
                return negative_errno();
        while (!(have_size && have_free && have_reserved) && fgets(line, sizeof(line), f)) {
                if (sscanf(line, "Hugepagesize: %" SCNu64 " kB", &page_kib) == 1)
                        have_size = true;
                else if (sscanf(line, "HugePages_Free: %" SCNu64, &free_pages) == 1)
                        have_free = true;
                else if (sscanf(line, "HugePages_Rsvd: %" SCNu64, &reserved_pages) == 1)
                        have_reserved = true;
        }
        if (ferror(f))
                return -EIO;
        /* Without huge page support the lines are missing, or the size is 0. */
        if (!have_size || !have_free || page_kib == 0 || page_kib > UINT64_MAX / 1024)
                return -ENOENT;
        *ret_page_size = page_kib * 1024;
        *ret_free_pages = free_pages > reserved_pages ? free_pages - reserved_pages : 0;
        return 0;
}

int hugetlb_page_size(uint64_t *ret) {
        uint64_t free_pages;

        /* Sets *ret only on success. */
        return read_meminfo(ret, &free_pages);
}

int hugetlb_free_bytes(uint64_t *ret) {
        uint64_t size, free_pages;
        int r;

        r = read_meminfo(&size, &free_pages);
        if (r < 0)
                return r;
        *ret = free_pages > UINT64_MAX / size ? UINT64_MAX : free_pages * size;
        return 0;
}
