/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The region table: every region the broker holds, by handle, by name and
 * in handle order.
 *
 * A region owns one memfd, the broker's read-write fd, sealed against
 * shrinking and growing from its creation on, so that no fd that leaves
 * the broker can be used to resize it. A region lives while it has a name
 * that was not removed, or while any connection holds it (nattch > 0);
 * when neither is true any more, the table closes its memfd and frees it.
 * A transient region's name lasts only while it is held: the last holder
 * that lets go removes it, and so frees the region.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "regionmeta.h"
#include "wire.h"

struct kept_region;

struct region {
        /*
         * What is reported and saved (regionmeta.h): the same bytes as r->meta,
         * for whoever takes all of it, and as r->uid and so on, field by field.
         */
        union {
                struct region_meta meta;
                struct {
                        REGION_META_MEMBERS
                };
        };
        char *name;             /* NULL when anonymous or removed */
        int fd;                 /* the broker's read-write memfd, owned */
        uint32_t nattch;        /* connections holding it */
        bool removed;
        /*
         * Its name goes with its last holder (MFB_WIRE_CREATE_TRANSIENT). Set
         * by the creator before the first holder is added, on named regions
         * only. Not in the meta: a transient region is never saved (persist.c).
         */
        bool transient;
        bool mode_locked;       /* its memfd is 0600 already: done before the first read-only fd leaves */
        bool seal_announced;    /* a SEAL of it woke the WAITs on its name */
        size_t slot;            /* index in the table's handle order */
        /*
         * Where persist keeps it across restarts (kept.h), owned by persist;
         * NULL when it is not kept. The table only needs to know whether it
         * is, for the quota charge. A pointer rather than a map of persist's
         * by handle: keeping a region costs one allocation and no lookup,
         * and finding its parked memfd when a bucket is packed is O(1).
         */
        struct kept_region *kept;
        /* Its control page for notifications (control.h), owned; NULL until the first NOTIFIER. */
        struct control_page *page;
        /* The page is kept with it (parked, in flight as its memfd is): charged as one kept region more. */
        bool page_kept;
};

_Static_assert(offsetof(struct region, change_time) == offsetof(struct region, meta.change_time),
               "r->meta and r's fields are the same bytes");

/* What a region was touched by, for region_touched(). */
enum region_touch {
        REGION_ATTACHED,        /* a connection holds it once more: attach_time */
        REGION_DETACHED,        /* once fewer: detach_time */
        REGION_CHANGED,         /* its owner, group, mode or seals changed: change_time */
};

/* What the table holds, for the status line. */
struct region_usage {
        size_t regions;
        size_t named;
        uint64_t bytes;
};

struct quota;
struct quota_amount;
struct region_table;

/*
 * Creates an empty table of regions up to max_region_size bytes, which
 * charges the regions to their owners in quota (borrowed; it must outlive
 * the table, and holds the limits on regions, bytes and fds), and probes
 * what the kernel supports (MFD_NOEXEC_SEAL, F_SEAL_FUTURE_WRITE,
 * MFD_HUGETLB). Returns 0 or -errno (-ENOMEM, or a failing memfd_create()).
 */
int region_table_new(uint64_t max_region_size, struct quota *quota, struct region_table **ret);

/* Closes every region's memfd and frees the table. Accepts NULL; returns NULL. */
struct region_table *region_table_free(struct region_table *t);

uint64_t region_table_max_region_size(const struct region_table *t);

/* MFB_WIRE_CAP_* bits for the HELLO reply. */
uint64_t region_table_capabilities(const struct region_table *t);

/* The flags regions' memfds are made with (memfd_create()), for the broker's other memfds. */
unsigned region_table_memfd_flags(const struct region_table *t);

/* The size of the huge pages hugetlb regions are made of, or 0 when the kernel cannot make them. */
uint64_t region_table_hugetlb_page_size(const struct region_table *t);

/*
 * Creates a region of size bytes, named name (NULL for anonymous; borrowed,
 * copied), owned by creds and charged to its uid, with permission bits
 * mode, backed by huge pages if hugetlb (the caller checked that the size
 * suits them). Its memfd is sealed against shrinking and growing, and no
 * page of it is touched. The region starts with nattch 0: the caller adds
 * its holder at once, or removes it with region_remove() (which frees it)
 * if that fails. The owner is charged a region, its bytes and an fd.
 * Returns 0 and the region (owned by the table), or -EINVAL (size 0),
 * -EFBIG (size above the limit), -EEXIST (name taken), -ENOSPC (the
 * broker-wide limit of a resource is reached) or -EDQUOT (the owner's
 * limit or share is), both with *ret_refused saying which resource,
 * -EMFILE or -ENFILE (out of file descriptors), -ENOMEM, or another -errno
 * of the kernel's.
 */
int region_create(struct region_table *t, uint64_t size, const char *name, mode_t mode, bool hugetlb,
                  const struct ucred *creds, struct region **ret, enum mfb_wire_resource *ret_refused);

/* What r is charged to its owner: a region, its bytes, an fd (two with a control page), and being kept if it is. */
void region_amount(const struct region *r, struct quota_amount *ret);

/*
 * Gives r its control page (control.h) if it has none: made now, and
 * charged to r's owner as one more fd. Returns 0 (r->page is set), or
 * the errors of quota_charge() (-EDQUOT, -ENOSPC) with *ret_refused set,
 * or those of control_page_new().
 */
int region_make_control_page(struct region_table *t, struct region *r, enum mfb_wire_resource *ret_refused);

/* Undoes region_make_control_page() for a page no one has seen yet. */
void region_drop_control_page(struct region_table *t, struct region *r);

/*
 * Charges r's owner for keeping r across restarts (MFB_WIRE_RESOURCE_KEPT), and
 * makes kept (persist's, not NULL) r->kept. Returns 0, or the errors of
 * quota_charge() with *ret_refused set; r is not kept then.
 */
int region_keep(struct region_table *t, struct region *r, struct kept_region *kept,
                enum mfb_wire_resource *ret_refused);

/*
 * Undoes region_keep(), and region_keep_page(): returns what r->kept was,
 * for the caller to free, or NULL when r was not kept.
 */
struct kept_region *region_unkeep(struct region_table *t, struct region *r);

/*
 * Charges the owner of r, kept and with a control page, one kept region
 * more for keeping the page too: parked, the page is in flight as r's
 * memfd is, and --max-kept-regions bounds what is. Returns 0, or the
 * errors of quota_charge() with *ret_refused set.
 */
int region_keep_page(struct region_table *t, struct region *r, enum mfb_wire_resource *ret_refused);

/* Undoes region_keep_page(); nothing if r's page is not kept. */
void region_unkeep_page(struct region_table *t, struct region *r);

/*
 * Adds r, a region kept across a restart of the broker, which the table
 * owns from then on: allocated with calloc(), its name with malloc(), its
 * meta, fd and kept set, not removed and held by nobody. Handles must come in
 * ascending order, each above every handle the table has given. Its owner
 * is charged for it even beyond the limits per uid, which may have been
 * lowered since: it exists already. Returns 0, -EINVAL (handle not above
 * the last), -EEXIST (name taken) or -ENOMEM; r is the caller's again on
 * failure.
 */
int region_adopt(struct region_table *t, struct region *r);

/* The highest handle given so far (0 for none): what any CREATE tells its caller anyway. */
uint64_t region_table_last_handle(const struct region_table *t);

/* Makes the table give handles above handle from now on, if it would not already. */
void region_table_skip_handles(struct region_table *t, uint64_t handle);

void region_table_usage(const struct region_table *t, struct region_usage *ret);

/* The region with this handle, removed ones included, or NULL. */
struct region *region_get_by_handle(const struct region_table *t, uint64_t handle);

/* The region with this name (never a removed one), or NULL. name is borrowed. */
struct region *region_get_by_name(const struct region_table *t, const char *name);

/*
 * The first region whose handle is above after, in handle order, or NULL.
 * O(log n) for any after, even a handle that no longer exists.
 */
struct region *region_next(struct region_table *t, uint64_t after);

/* The region after r in handle order, or NULL: region_next(t, r->handle) without its search. */
struct region *region_after(struct region_table *t, const struct region *r);

/* Counts one more connection holding r. */
void region_add_holder(struct region *r);

/*
 * Counts one connection fewer; frees r if that ends its life. For a
 * transient region the last holder removes its name first, as
 * region_remove() does: the name is free at once.
 */
void region_drop_holder(struct region_table *t, struct region *r);

/*
 * Removes r's name (which may be reused at once) and marks it removed, so
 * that no one can open it; frees r if nobody holds it. r must not be
 * removed already.
 */
void region_remove(struct region_table *t, struct region *r);

/*
 * A new fd of r's memfd, read-write if writable, else read-only: a fresh
 * open of it with an open file description of its own, never a copy of
 * the broker's fd, so that no holder can change another's file flags or
 * offset. Before the first read-only one, makes the memfd 0600 (see
 * region.c). Owned by the caller. Returns the fd, or -errno (-EMFILE or
 * -ENFILE when the broker is out of file descriptors).
 */
int region_open(struct region *r, bool writable);

/* The memfd's seals (F_SEAL_*), read from the kernel, or -errno. */
int region_get_seals(const struct region *r);

/*
 * Adds seal, F_SEAL_WRITE or F_SEAL_FUTURE_WRITE (the seal already being
 * there is success). Returns 0, -EBUSY for F_SEAL_WRITE while a writable
 * shared mapping of the region exists, -EPERM when F_SEAL_SEAL forbids new
 * seals, or another -errno.
 */
int region_seal(struct region *r, int seal);

/* Whether r is sealed against writes (F_SEAL_WRITE or F_SEAL_FUTURE_WRITE), seals read live. */
bool region_is_sealed(const struct region *r);

/*
 * Makes uid the owner of r, moving the quota charge for it. Returns 0, or
 * the errors of quota_move() (-EDQUOT, -ENOSPC with *ret_refused set,
 * -ENOMEM); r is unchanged then.
 */
int region_set_owner(struct region_table *t, struct region *r, uid_t uid, enum mfb_wire_resource *ret_refused);

/*
 * r was attached, detached or changed by pid at now (region_now()): sets
 * its last pid and the time that goes with what, and tells the table's
 * hook, which saves it (persist.h).
 */
void region_touched(struct region_table *t, struct region *r, pid_t pid, enum region_touch what, uint64_t now);

/*
 * Has cb called with userdata after every region_touched(); NULL for none.
 * One hook at a time: the broker's persist, when there is one.
 */
typedef void (*region_touched_cb)(struct region *r, enum region_touch what, void *userdata);
void region_table_set_touched_hook(struct region_table *t, region_touched_cb cb, void *userdata);

/* Fills the wire description of r, seals read live. */
void region_info(const struct region *r, struct mfb_wire_region_info *ret);

/* CLOCK_REALTIME in nanoseconds, for the region times. */
uint64_t region_now(void);
