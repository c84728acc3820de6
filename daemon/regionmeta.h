/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What the broker knows of a region beyond its memfd and its name: what
 * INFO and LIST report (region_info()), and what is saved to rebuild it
 * after a restart (state.h). One struct for all of them, so that a field
 * added here is kept and reported without a copy to extend anywhere.
 *
 * The saved state stores it as it is in memory (state.c), so its layout is
 * part of that file's format: fixed-size fields, no padding, the same
 * bytes as the format-1 record from handle to change_time. Change it only
 * with STATE_VERSION.
 */

#include <stdint.h>
#include <sys/types.h>

/* flags: */
#define REGION_HUGETLB 0x1U     /* backed by huge pages */
#define REGION_FLAGS_ALL REGION_HUGETLB

/*
 * The members, for struct region_meta and for struct region (region.h),
 * which has them both under their own names and as its meta (as the
 * kernel's struct_group_tagged() does).
 */
#define REGION_META_MEMBERS                                                                             \
        uint64_t handle;        /* from 1 up, never reused */                                           \
        uint64_t size;                                                                                  \
        uid_t uid;              /* the owner, charged for it */                                         \
        gid_t gid;                                                                                      \
        uid_t creator_uid;                                                                              \
        gid_t creator_gid;                                                                              \
        mode_t mode;            /* permission bits */                                                   \
        pid_t creator_pid;                                                                              \
        pid_t last_pid;         /* of the last CREATE, OPEN, SEAL, SET or RELEASE */                    \
        uint32_t flags;         /* REGION_* */                                                          \
        uint64_t create_time;   /* CLOCK_REALTIME nanoseconds, 0 for never */                           \
        uint64_t attach_time;                                                                           \
        uint64_t detach_time;                                                                           \
        uint64_t change_time;

struct region_meta {
        REGION_META_MEMBERS
};

_Static_assert(sizeof(uid_t) == 4 && sizeof(gid_t) == 4 && sizeof(mode_t) == 4 && sizeof(pid_t) == 4,
               "the saved state stores these in 32 bits");
_Static_assert(sizeof(struct region_meta) == 80, "region_meta has no padding: the saved state stores it whole");
