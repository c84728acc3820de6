/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/param.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "hashmap.h"
#include "hugetlb.h"
#include "log.h"
#include "macro.h"
#include "quota.h"
#include "region.h"

/* Debian 12's headers predate it; it is part of the kernel ABI since Linux 6.3. */
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif

/* The kernel refuses memfd names longer than this (NAME_MAX minus "memfd:"). */
#define MEMFD_NAME_MAX 249

/* Dead slots in the handle order are compacted away once there are more of them than live ones, and this many. */
#define ORDER_DEAD_MIN 64

/*
 * The handle order, for LIST: an array of slots in ascending handle order
 * (new regions have the largest handle, so they are appended). A freed
 * region leaves a dead slot that keeps its handle, so that a binary search
 * still finds any handle's place; next points at or before the next live
 * slot, and lookups shorten those chains as they follow them (path halving,
 * as in a disjoint-set forest), so skipping runs of dead slots is amortized
 * O(1). Compaction keeps the array within twice the live regions.
 */
struct order_slot {
        uint64_t handle;
        struct region *region;  /* NULL: dead */
        size_t next;            /* == own index while live */
};

struct region_table {
        struct hashmap *by_handle;
        struct hashmap *by_name;
        struct order_slot *slots;
        size_t n_slots;
        size_t n_allocated;
        uint64_t last_handle;
        uint64_t bytes;                 /* in all regions */
        uint64_t max_region_size;
        struct quota *quota;            /* borrowed */
        unsigned memfd_flags;
        bool future_write_seal;
        uint64_t hugetlb_page_size;     /* 0: no hugetlb memfds */
        region_touched_cb touched;      /* region_table_set_touched_hook() */
        void *touched_userdata;
};

/* Running out of fds is a load condition, worth a warning; other failures are errors. */
static bool errno_is_fd_shortage(int error) {
        return error == EMFILE || error == ENFILE;
}

uint64_t region_now(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * UINT64_C(1000000000) + (uint64_t) ts.tv_nsec;
}

/*
 * Whether hugetlb memfds can be made, and of what page size. Whether any
 * huge pages are free is asked at each CREATE: the administrator may
 * reserve some at any time.
 */
static void probe_hugetlb(struct region_table *t) {
        _cleanup_(closep) int fd = -1;
        uint64_t size;
        int r;

        fd = memfd_create("mfb:probe", t->memfd_flags | MFD_HUGETLB);
        if (fd < 0) {
                /* EINVAL: no hugetlbfs, or no huge page size at all. Anything else is unexpected but not fatal. */
                if (errno != EINVAL)
                        log_warning_errno(errno, "Failed to probe for hugetlb memfds, offering none: %m");
                return;
        }
        r = hugetlb_page_size(&size);
        if (r < 0) {
                log_warning_errno(r, "Failed to read the huge page size from /proc/meminfo, offering no hugetlb "
                                  "memfds: %m");
                return;
        }
        t->hugetlb_page_size = size;
}

/* What this kernel supports, found out once so that HELLO can report it. */
static int probe_kernel(struct region_table *t) {
        _cleanup_(closep) int fd = -1;

        t->memfd_flags = MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL;
        fd = memfd_create("mfb:probe", t->memfd_flags);
        if (fd < 0 && errno == EINVAL) {
                t->memfd_flags &= ~MFD_NOEXEC_SEAL;
                fd = memfd_create("mfb:probe", t->memfd_flags);
        }
        if (fd < 0)
                return negative_errno();

        t->future_write_seal = fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE) == 0;
        probe_hugetlb(t);
        log_debug("Kernel support: MFD_NOEXEC_SEAL %s, F_SEAL_FUTURE_WRITE %s, MFD_HUGETLB %s",
                  t->memfd_flags & MFD_NOEXEC_SEAL ? "yes" : "no", t->future_write_seal ? "yes" : "no",
                  t->hugetlb_page_size > 0 ? "yes" : "no");
        return 0;
}

int region_table_new(uint64_t max_region_size, struct quota *quota, struct region_table **ret) {
        struct region_table *t;
        int r;

        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->max_region_size = max_region_size;
        t->quota = quota;

        r = hashmap_new(&hashmap_u64_ops, &t->by_handle);
        if (r >= 0)
                r = hashmap_new(&hashmap_string_ops, &t->by_name);
        if (r >= 0)
                r = probe_kernel(t);
        if (r < 0) {
                region_table_free(t);
                return r;
        }
        *ret = t;
        return 0;
}

static void region_free_unlinked(struct region *r) {
        control_page_free(r->page);
        safe_close(r->fd);
        free(r->name);
        free(r);
}

struct region_table *region_table_free(struct region_table *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_slots; i++)
                if (t->slots[i].region)
                        region_free_unlinked(t->slots[i].region);
        free(t->slots);
        hashmap_free(t->by_handle);
        hashmap_free(t->by_name);
        free(t);
        return NULL;
}

uint64_t region_table_max_region_size(const struct region_table *t) {
        return t->max_region_size;
}

uint64_t region_table_capabilities(const struct region_table *t) {
        return (t->future_write_seal ? MFB_WIRE_CAP_SEAL_FUTURE_WRITE : 0) |
               (t->memfd_flags & MFD_NOEXEC_SEAL ? MFB_WIRE_CAP_NOEXEC_SEAL : 0) |
               (t->hugetlb_page_size > 0 ? MFB_WIRE_CAP_HUGETLB : 0);
}

unsigned region_table_memfd_flags(const struct region_table *t) {
        return t->memfd_flags;
}

uint64_t region_table_hugetlb_page_size(const struct region_table *t) {
        return t->hugetlb_page_size;
}

/* The first live slot at or after i, or n_slots. */
static size_t order_find(struct region_table *t, size_t i) {
        while (i < t->n_slots && t->slots[i].next != i) {
                size_t n = t->slots[i].next;

                if (n < t->n_slots)
                        t->slots[i].next = t->slots[n].next;
                i = n;
        }
        return i;
}

static int order_append(struct region_table *t, struct region *r) {
        if (GREEDY_REALLOC(t->slots, t->n_allocated, t->n_slots + 1) < 0)
                return -ENOMEM;
        r->slot = t->n_slots;
        t->slots[t->n_slots] = (struct order_slot) { .handle = r->handle, .region = r, .next = t->n_slots };
        t->n_slots++;
        return 0;
}

static void order_compact(struct region_table *t) {
        size_t n = 0;

        for (size_t i = 0; i < t->n_slots; i++) {
                struct region *r = t->slots[i].region;

                if (!r)
                        continue;
                r->slot = n;
                t->slots[n] = (struct order_slot) { .handle = r->handle, .region = r, .next = n };
                n++;
        }
        t->n_slots = n;
}

static void order_remove(struct region_table *t, struct region *r) {
        size_t live = hashmap_size(t->by_handle), dead;

        t->slots[r->slot].region = NULL;
        t->slots[r->slot].next = r->slot + 1;
        dead = t->n_slots - live;
        if (dead >= ORDER_DEAD_MIN && dead > live)
                order_compact(t);
}

struct region *region_next(struct region_table *t, uint64_t after) {
        size_t lo = 0, hi = t->n_slots;

        /* The first slot, live or dead, with a larger handle. */
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (t->slots[mid].handle <= after)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        lo = order_find(t, lo);
        return lo < t->n_slots ? t->slots[lo].region : NULL;
}

void region_amount(const struct region *r, struct quota_amount *ret) {
        *ret = (struct quota_amount) { .n = {
                [MFB_WIRE_RESOURCE_REGIONS] = 1,
                [MFB_WIRE_RESOURCE_BYTES] = r->size,
                [MFB_WIRE_RESOURCE_FDS] = r->page ? 2 : 1,
                [MFB_WIRE_RESOURCE_KEPT] = r->kept ? 1 + r->page_kept : 0,
        } };
}

static const struct quota_amount page_amount = { .n = { [MFB_WIRE_RESOURCE_FDS] = 1 } };

int region_make_control_page(struct region_table *t, struct region *r, enum mfb_wire_resource *ret_refused) {
        int k;

        if (r->page)
                return 0;
        /* The owner's, as its memfd is: whoever asks for it, the page lives as long as the region. */
        k = quota_charge(t->quota, r->uid, &page_amount, ret_refused);
        if (k < 0)
                return k;
        k = control_page_new(t->memfd_flags, &r->page);
        if (k < 0) {
                quota_discharge(t->quota, r->uid, &page_amount);
                return log_full_errno(errno_is_fd_shortage(-k) ? LOG_WARNING : LOG_ERR, k,
                                      "Failed to make the control page of region %" PRIu64 ": %m", r->handle);
        }
        return 0;
}

void region_drop_control_page(struct region_table *t, struct region *r) {
        if (!r->page)
                return;
        region_unkeep_page(t, r);
        r->page = control_page_free(r->page);
        quota_discharge(t->quota, r->uid, &page_amount);
}

static const struct quota_amount kept_amount = { .n = { [MFB_WIRE_RESOURCE_KEPT] = 1 } };

int region_keep(struct region_table *t, struct region *r, struct kept_region *kept,
                enum mfb_wire_resource *ret_refused) {
        int k;

        assert(!r->kept && kept);
        k = quota_charge(t->quota, r->uid, &kept_amount, ret_refused);
        if (k < 0)
                return k;
        r->kept = kept;
        return 0;
}

struct kept_region *region_unkeep(struct region_table *t, struct region *r) {
        if (!r->kept)
                return NULL;
        region_unkeep_page(t, r);
        quota_discharge(t->quota, r->uid, &kept_amount);
        return TAKE_PTR(r->kept);
}

int region_keep_page(struct region_table *t, struct region *r, enum mfb_wire_resource *ret_refused) {
        int k;

        assert(r->kept && r->page && !r->page_kept);
        k = quota_charge(t->quota, r->uid, &kept_amount, ret_refused);
        if (k < 0)
                return k;
        r->page_kept = true;
        return 0;
}

void region_unkeep_page(struct region_table *t, struct region *r) {
        if (!r->page_kept)
                return;
        quota_discharge(t->quota, r->uid, &kept_amount);
        r->page_kept = false;
}

static void region_discharge(struct region_table *t, const struct region *r) {
        struct quota_amount amount;

        region_amount(r, &amount);
        quota_discharge(t->quota, r->uid, &amount);
}

struct region *region_after(struct region_table *t, const struct region *r) {
        size_t i = order_find(t, r->slot + 1);

        return i < t->n_slots ? t->slots[i].region : NULL;
}

/* Unlinks r from every index and frees it. */
static void region_destroy(struct region_table *t, struct region *r) {
        log_debug("Region %" PRIu64 " freed", r->handle);
        t->bytes -= r->size;
        if (r->name)
                hashmap_remove(t->by_name, r->name);
        hashmap_remove(t->by_handle, &r->handle);
        order_remove(t, r);
        region_discharge(t, r);
        region_free_unlinked(r);
}

static void region_destroy_if_unused(struct region_table *t, struct region *r) {
        if (!r->name && r->nattch == 0)
                region_destroy(t, r);
}

/* The memfd of a new region, sized and sealed against resizing; the caller owns it. */
static int region_memfd_new(const struct region_table *t, uint64_t size, const char *name, bool hugetlb) {
        _cleanup_(closep) int fd = -1;
        char debug_name[MEMFD_NAME_MAX + 1];

        /* The name shows in /proc/PID/fd and in the client's /proc/PID/maps. */
        snprintf(debug_name, sizeof(debug_name), "mfb:%s", name ?: "anon");
        fd = memfd_create(debug_name, t->memfd_flags | (hugetlb ? MFD_HUGETLB : 0));
        if (fd < 0)
                return log_full_errno(errno_is_fd_shortage(errno) ? LOG_WARNING : LOG_ERR, errno,
                                      "Failed to create a memfd: %m");

        /* Only sets the size; no page is allocated until someone touches it. */
        if (ftruncate(fd, (off_t) size) < 0)
                return log_debug_errno(errno, "Failed to size a region to %" PRIu64 " bytes: %m", size);

        if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
                return log_error_errno(errno, "Failed to seal a memfd against resizing: %m");

        return TAKE_FD(fd);
}

/* Frees a region that was never linked into the table, and its quota charge. */
static void region_free_uncharge(struct region_table *t, struct region *r) {
        region_discharge(t, r);
        region_free_unlinked(r);
}

int region_create(struct region_table *t, uint64_t size, const char *name, mode_t mode, bool hugetlb,
                  const struct ucred *creds, struct region **ret, enum mfb_wire_resource *ret_refused) {
        struct quota_amount amount = { .n = {
                [MFB_WIRE_RESOURCE_REGIONS] = 1,
                [MFB_WIRE_RESOURCE_BYTES] = size,
                [MFB_WIRE_RESOURCE_FDS] = 1,
        } };
        struct region *r;
        int fd, k;

        if (size == 0)
                return -EINVAL;
        if (size > t->max_region_size)
                return -EFBIG;
        if (name && hashmap_get(t->by_name, name))
                return -EEXIST;
        k = quota_charge(t->quota, creds->uid, &amount, ret_refused);
        if (k < 0)
                return k;

        fd = region_memfd_new(t, size, name, hugetlb);
        if (fd < 0) {
                quota_discharge(t->quota, creds->uid, &amount);
                return fd;
        }

        r = calloc(1, sizeof(*r));
        if (!r) {
                safe_close(fd);
                quota_discharge(t->quota, creds->uid, &amount);
                return -ENOMEM;
        }
        *r = (struct region) {
                .meta = {
                        .handle = t->last_handle + 1,
                        .size = size,
                        .uid = creds->uid,
                        .gid = creds->gid,
                        .creator_uid = creds->uid,
                        .creator_gid = creds->gid,
                        .mode = mode,
                        .creator_pid = creds->pid,
                        .last_pid = creds->pid,
                        .flags = hugetlb ? REGION_HUGETLB : 0,
                        .create_time = region_now(),
                },
                .fd = fd,
        };
        r->change_time = r->create_time;

        if (name) {
                r->name = strdup(name);
                if (!r->name) {
                        region_free_uncharge(t, r);
                        return -ENOMEM;
                }
        }

        k = hashmap_put(t->by_handle, &r->handle, r);
        if (k < 0) {
                region_free_uncharge(t, r);
                return k;
        }
        k = name ? hashmap_put(t->by_name, r->name, r) : 0;
        if (k >= 0)
                k = order_append(t, r);
        if (k < 0) {
                if (name)
                        hashmap_remove(t->by_name, r->name);
                hashmap_remove(t->by_handle, &r->handle);
                region_free_uncharge(t, r);
                return k;
        }

        /* Only now: a handle is never reused, but a failed create need not burn one. */
        t->last_handle = r->handle;
        t->bytes += size;
        *ret = r;
        return 0;
}

int region_adopt(struct region_table *t, struct region *r) {
        struct quota_amount amount;
        int k;

        if (r->handle <= t->last_handle)
                return -EINVAL;
        if (hashmap_get(t->by_name, r->name))
                return -EEXIST;
        region_amount(r, &amount);
        k = quota_charge_force(t->quota, r->uid, &amount);
        if (k < 0)
                return k;
        k = hashmap_put(t->by_handle, &r->handle, r);
        if (k >= 0) {
                k = hashmap_put(t->by_name, r->name, r);
                if (k >= 0) {
                        k = order_append(t, r);
                        if (k < 0)
                                hashmap_remove(t->by_name, r->name);
                }
                if (k < 0)
                        hashmap_remove(t->by_handle, &r->handle);
        }
        if (k < 0) {
                quota_discharge(t->quota, r->uid, &amount);
                return k;
        }
        t->last_handle = r->handle;
        t->bytes += r->size;
        return 0;
}

uint64_t region_table_last_handle(const struct region_table *t) {
        return t->last_handle;
}

void region_table_skip_handles(struct region_table *t, uint64_t handle) {
        t->last_handle = MAX(t->last_handle, handle);
}

void region_table_usage(const struct region_table *t, struct region_usage *ret) {
        *ret = (struct region_usage) {
                .regions = hashmap_size(t->by_handle),
                .named = hashmap_size(t->by_name),
                .bytes = t->bytes,
        };
}

struct region *region_get_by_handle(const struct region_table *t, uint64_t handle) {
        return hashmap_get(t->by_handle, &handle);
}

struct region *region_get_by_name(const struct region_table *t, const char *name) {
        return hashmap_get(t->by_name, name);
}

void region_add_holder(struct region *r) {
        r->nattch++;
}

void region_drop_holder(struct region_table *t, struct region *r) {
        assert(r->nattch > 0);
        r->nattch--;
        /*
         * Only its own last holder ends a transient name: a region removed
         * already has none, and its old name may be another region's now.
         */
        if (r->transient && r->nattch == 0 && !r->removed) {
                log_debug("Region %" PRIu64 " (%s) lost its last holder: transient, so removed", r->handle,
                          r->name);
                region_remove(t, r);
                return;
        }
        region_destroy_if_unused(t, r);
}

void region_remove(struct region_table *t, struct region *r) {
        assert(!r->removed);
        r->removed = true;
        if (r->name) {
                hashmap_remove(t->by_name, r->name);
                free(r->name);
                r->name = NULL;
        }
        region_destroy_if_unused(t, r);
}

/*
 * The broker owns its memfds: 0600 makes a reopen through /proc/PID/fd fail
 * for other users, so that a read-only fd cannot be turned into a writable
 * one by anyone but the broker's user. Done before the first read-only fd
 * leaves, not at creation: until then every fd of the region is read-write
 * already, and a CREATE or CREATE_BATCH saves the system call.
 */
static int region_lock_mode(struct region *r) {
        if (r->mode_locked)
                return 0;
        if (fchmod(r->fd, 0600) < 0)
                return log_error_errno(errno, "Failed to chmod the memfd of region %" PRIu64 ": %m", r->handle);
        r->mode_locked = true;
        return 0;
}

int region_open(struct region *r, bool writable) {
        char path[sizeof("/proc/self/fd/") + 3 * sizeof(int)];
        int fd;

        if (!writable) {
                int k = region_lock_mode(r);

                if (k < 0)
                        return k;
        }

        /*
         * A new open file description: O_RDONLY for real, unlike a copy of
         * the broker's fd; and for writers, flags and an offset of their
         * own, which no other holder can change (O_APPEND, lseek).
         */
        snprintf(path, sizeof(path), "/proc/self/fd/%d", r->fd);
        fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
        if (fd < 0)
                return log_full_errno(errno_is_fd_shortage(errno) ? LOG_WARNING : LOG_ERR, errno,
                                      "Failed to reopen region %" PRIu64 " %s: %m", r->handle,
                                      writable ? "read-write" : "read-only");
        return fd;
}

int region_get_seals(const struct region *r) {
        int seals = fcntl(r->fd, F_GET_SEALS);

        return seals < 0 ? negative_errno() : seals;
}

int region_seal(struct region *r, int seal) {
        int seals = region_get_seals(r);

        assert(seal == F_SEAL_WRITE || seal == F_SEAL_FUTURE_WRITE);
        if (seals < 0)
                return log_error_errno(seals, "Failed to read the seals of region %" PRIu64 ": %m", r->handle);
        if (seals & seal)
                return 0;
        /* A holder of the read-write fd may have added F_SEAL_SEAL itself. */
        if (seals & F_SEAL_SEAL)
                return -EPERM;
        /* Only F_SEAL_WRITE waits for writable mappings to go; F_SEAL_FUTURE_WRITE lets them be. */
        if (fcntl(r->fd, F_ADD_SEALS, seal) < 0) {
                if (errno == EBUSY)
                        return -EBUSY;
                return log_error_errno(errno, "Failed to seal region %" PRIu64 ": %m", r->handle);
        }
        return 0;
}

bool region_is_sealed(const struct region *r) {
        int seals = region_get_seals(r);

        return seals >= 0 && (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE));
}

int region_set_owner(struct region_table *t, struct region *r, uid_t uid, enum mfb_wire_resource *ret_refused) {
        struct quota_amount amount;
        int k;

        region_amount(r, &amount);
        k = quota_move(t->quota, r->uid, uid, &amount, ret_refused);
        if (k < 0)
                return k;
        r->uid = uid;
        return 0;
}

void region_touched(struct region_table *t, struct region *r, pid_t pid, enum region_touch what, uint64_t now) {
        switch (what) {
        case REGION_ATTACHED:
                r->attach_time = now;
                break;
        case REGION_DETACHED:
                r->detach_time = now;
                break;
        case REGION_CHANGED:
                r->change_time = now;
                break;
        }
        r->last_pid = pid;
        if (t->touched)
                t->touched(r, what, t->touched_userdata);
}

void region_table_set_touched_hook(struct region_table *t, region_touched_cb cb, void *userdata) {
        t->touched = cb;
        t->touched_userdata = userdata;
}

/* The one place where the meta meets the wire: the wire's fields are its own, in the protocol's order and types. */
void region_info(const struct region *r, struct mfb_wire_region_info *ret) {
        const struct region_meta *m = &r->meta;
        int seals = region_get_seals(r);

        *ret = (struct mfb_wire_region_info) {
                .handle = m->handle,
                .size = m->size,
                .uid = m->uid,
                .gid = m->gid,
                .creator_uid = m->creator_uid,
                .creator_gid = m->creator_gid,
                .mode = m->mode,
                .creator_pid = (uint32_t) m->creator_pid,
                .last_pid = (uint32_t) m->last_pid,
                .nattch = r->nattch,
                .seals = seals < 0 ? 0 : (uint32_t) seals,
                .state = (r->removed ? MFB_WIRE_STATE_REMOVED : 0) |
                         (m->flags & REGION_HUGETLB ? MFB_WIRE_STATE_HUGETLB : 0) |
                         (r->transient ? MFB_WIRE_STATE_TRANSIENT : 0),
                .create_time = m->create_time,
                .attach_time = m->attach_time,
                .detach_time = m->detach_time,
                .change_time = m->change_time,
        };
        if (r->name)
                memcpy(ret->name.bytes, r->name, strlen(r->name));
}
