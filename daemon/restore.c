/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/param.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "activation.h"
#include "control.h"
#include "fdstore.h"
#include "hashmap.h"
#include "kept.h"
#include "log.h"
#include "macro.h"
#include "park.h"
#include "region.h"
#include "restore.h"
#include "state.h"

/* A parked fd found in a bucket, by its region's handle. */
struct region_fd {
        uint64_t handle;                /* the key */
        int fd;                         /* owned; -1 once a region took it */
};

struct restore {
        struct region_table *regions;   /* borrowed */
        struct fdstore *store;          /* borrowed */
        struct hashmap *fds;            /* handle → struct region_fd */
        struct passed_fd **buckets;     /* the buckets passed, which the caller owns */
        size_t n_buckets;
        uint64_t last_name_number;      /* the highest in a bucket's name */
        struct region **saved;          /* the regions in the saved state, without fds yet */
        size_t n_saved, n_saved_allocated;
        size_t n_restored;              /* the first n_restored of saved are in the table */
        size_t n_duplicates;
        bool out_of_memory;
        uint64_t last_handle;           /* the highest handle seen anywhere */
};

/* Closes a passed fd the broker does not keep, and has systemd close its copy. */
static void drop_passed(struct passed_fd *p) {
        int r;

        p->fd = safe_close(p->fd);
        r = fdstore_drop(p->name);
        if (r < 0)
                log_warning_errno(r, "Failed to remove %s from the service manager's fd store: %m", p->name);
}

static void saved_region_free(struct region *r) {
        control_page_free(r->page);
        free(r->kept);
        free(r->name);
        safe_close(r->fd);
        free(r);
}

/* Sorts the passed fds out: the state's, into *ret_state (NULL when none); the buckets, into rs->buckets. */
static int sort_passed(struct restore *rs, struct passed_fd *fds, size_t n_fds, struct passed_fd **ret_state) {
        struct passed_fd *state = NULL;
        bool state_ambiguous = false;

        rs->buckets = calloc(n_fds ?: 1, sizeof(*rs->buckets));
        if (!rs->buckets)
                return log_error_errno(ENOMEM, "Failed to restore the regions: %m");
        for (size_t i = 0; i < n_fds; i++) {
                struct passed_fd *p = &fds[i];
                uint64_t number;

                if (strcmp(p->name, STATE_FDNAME) == 0) {
                        if (state) {
                                state_ambiguous = true;
                                drop_passed(p);
                        } else
                                state = p;
                        continue;
                }
                number = park_name_number(p->name);
                if (number == 0) {
                        log_warning("The service manager passed an fd named %s, a name this broker does not "
                                    "store; dropping it", p->name);
                        drop_passed(p);
                        continue;
                }
                /* Two buckets of one name are both read: a region in either is found, duplicates are harmless. */
                rs->last_name_number = MAX(rs->last_name_number, number);
                rs->buckets[rs->n_buckets++] = p;
        }
        if (state_ambiguous) {
                log_warning("The service manager passed more than one saved state; dropping them");
                drop_passed(state);
                state = NULL;
        }
        *ret_state = state;
        return 0;
}

/* A parked fd, from park_read(): the first of a handle is kept, the others are copies or garbage. */
static void on_found(uint64_t handle, int fd, void *userdata) {
        struct restore *rs = userdata;
        struct region_fd *f;

        if (handle == 0 || rs->out_of_memory) {
                safe_close(fd);
                return;
        }
        /* A control page's (KEPT_PAGE_BIT) names its region's handle; it is kept under its own key. */
        rs->last_handle = MAX(rs->last_handle, handle & ~KEPT_PAGE_BIT);
        if (hashmap_get(rs->fds, &handle)) {
                rs->n_duplicates++;
                safe_close(fd);
                return;
        }
        f = calloc(1, sizeof(*f));
        if (f)
                *f = (struct region_fd) { .handle = handle, .fd = fd };
        if (!f || hashmap_put(rs->fds, &f->handle, f) < 0) {
                free(f);
                safe_close(fd);
                rs->out_of_memory = true;
        }
}

static int on_saved(const struct region_meta *meta, const char *name, uint32_t slot, void *userdata) {
        struct restore *rs = userdata;
        struct region *r;

        if (GREEDY_REALLOC(rs->saved, rs->n_saved_allocated, rs->n_saved + 1) < 0)
                return -ENOMEM;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        /* Kept already: its owner is charged for that when the table adopts it. */
        *r = (struct region) { .meta = *meta, .fd = -1 };
        r->name = strdup(name);
        r->kept = calloc(1, sizeof(*r->kept));
        if (!r->name || !r->kept) {
                saved_region_free(r);
                return -ENOMEM;
        }
        r->kept->saved_slot = slot;
        rs->saved[rs->n_saved++] = r;
        rs->last_handle = MAX(rs->last_handle, meta->handle);
        return 0;
}

/* Why fd, of which st is the fstat(), cannot be r's memfd, in words for the log; NULL when it can. */
static const char *memfd_mismatch(int fd, const struct stat *st, const struct region *r, char *buf, size_t size) {
        struct statfs sfs;
        int seals, flags;

        seals = fcntl(fd, F_GET_SEALS);
        if (!S_ISREG(st->st_mode) || seals < 0)
                return "is not a memfd";
        if ((seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW))
                return "is not sealed against shrinking and growing";
        if ((uint64_t) st->st_size != r->size) {
                snprintf(buf, size, "has %" PRIu64 " bytes, not %" PRIu64, (uint64_t) st->st_size, r->size);
                return buf;
        }
        flags = fcntl(fd, F_GETFL);
        if (flags < 0 || (flags & O_ACCMODE) != O_RDWR)
                return "is not open read-write";
        if (fstatfs(fd, &sfs) < 0 || (sfs.f_type == HUGETLBFS_MAGIC) != !!(r->flags & REGION_HUGETLB))
                return r->flags & REGION_HUGETLB ? "is not backed by huge pages" : "is backed by huge pages";
        return NULL;
}

/*
 * Gives r its control page, when one was parked with it and is one: the
 * holders that come back get the page they have mapped, and their futex
 * waits go on. Without it, r gets a new page at the next NOTIFIER.
 */
static void restore_page(struct restore *rs, struct region *r) {
        uint64_t key = r->handle | KEPT_PAGE_BIT;
        struct region_fd *f = hashmap_get(rs->fds, &key);
        const char *why;
        int k;

        if (!f || f->fd < 0)
                return;
        k = control_page_adopt(TAKE_FD(f->fd), &r->page, &why);
        if (k == -EBADF)
                log_warning("The control page kept for region %s (handle %" PRIu64 ") %s; dropping it", r->name,
                            r->handle, why);
        else if (k < 0)
                log_warning_errno(k, "Failed to restore the control page of region %s (handle %" PRIu64 "), "
                                  "dropping it: %m", r->name, r->handle);
}

/*
 * Gives r (taken) its memfd and adds it to the table, or forgets it in
 * state when that cannot be. Returns 1 when r is in the table, 0 when it
 * was forgotten, or -ENOMEM: a shortage ends the restore without dropping
 * anything, for the next broker to try again.
 */
static int restore_region(struct restore *rs, struct state *state, struct region *r) {
        struct region_fd *f = hashmap_get(rs->fds, &r->handle);
        const char *why;
        struct stat st;
        char buf[64];
        int k;

        if (!f || f->fd < 0) {
                log_warning("Region %s (handle %" PRIu64 ") was saved, but its memfd was not kept; forgetting it",
                            r->name, r->handle);
                goto forget;
        }
        if (fstat(f->fd, &st) < 0)
                why = "cannot be examined";
        else
                why = memfd_mismatch(f->fd, &st, r, buf, sizeof(buf));
        if (why) {
                log_warning("The memfd kept for region %s (handle %" PRIu64 ") %s; dropping the region", r->name,
                            r->handle, why);
                f->fd = safe_close(f->fd);
                goto forget;
        }
        /* Then only holders of its read-write fd can open it: a reopen for readers is refused. */
        if (st.st_uid != geteuid())
                log_warning("The memfd of region %s (handle %" PRIu64 ") belongs to uid %u, not to this broker's "
                            "uid %u: read-only opens of it will fail. Run the broker as the same user throughout.",
                            r->name, r->handle, (unsigned) st.st_uid, (unsigned) geteuid());

        restore_page(rs, r);
        r->fd = f->fd;
        k = region_adopt(rs->regions, r);
        if (k == -ENOMEM) {
                log_error_errno(k, "Failed to restore region %" PRIu64 ": %m", r->handle);
                r->fd = -1;
                saved_region_free(r);
                return k;
        }
        if (k < 0) {
                r->fd = -1;
                log_warning_errno(k, "Failed to restore region %s (handle %" PRIu64 "), which clashes with "
                                  "another: %m", r->name, r->handle);
                f->fd = safe_close(f->fd);
                goto forget;
        }
        f->fd = -1;
        return 1;

forget:
        k = state_forget_region(state, r->kept->saved_slot);
        if (k < 0)
                log_warning_errno(k, "Failed to forget region %" PRIu64 " in the saved state: %m", r->handle);
        saved_region_free(r);
        return 0;
}

static int compare_handles(const void *a, const void *b) {
        const struct region *x = *(struct region *const *) a, *y = *(struct region *const *) b;

        return x->handle < y->handle ? -1 : x->handle > y->handle;
}

/* Closes the parked fds no region took. Returns how many. */
static size_t close_unclaimed(struct restore *rs) {
        size_t n = 0;
        void *v;

        for (size_t i = 0; hashmap_iterate(rs->fds, &i, &v);) {
                struct region_fd *f = v;

                if (f->fd < 0)
                        continue;
                f->fd = safe_close(f->fd);
                n++;
        }
        return n;
}

/* Has systemd close the buckets passed, once what they held is parked again, or is not kept. */
static void drop_buckets(struct restore *rs) {
        for (size_t i = 0; i < rs->n_buckets; i++)
                drop_passed(rs->buckets[i]);
        rs->n_buckets = 0;
}

/* Loads the passed state. Returns 1 and the state, 0 when it is not valid (logged), or -errno. */
static int load(struct restore *rs, struct passed_fd *passed, struct state **ret) {
        int r;

        r = state_load(TAKE_FD(passed->fd), on_saved, rs, ret);
        if (r >= 0)
                return 1;
        if (r == -EPROTONOSUPPORT)
                log_warning("The saved state is of a newer format than this broker reads; starting without regions");
        else if (r == -EBADMSG)
                log_warning("The saved state is corrupt; starting without regions");
        else
                return log_error_errno(r, "Failed to read the saved state: %m");
        drop_passed(passed);
        return 0;
}

/* A new state, stored, for a broker that starts without regions. */
static int start_afresh(struct fdstore *store, struct state **ret) {
        struct state *state;
        int r;

        r = state_new(&state);
        if (r < 0)
                return log_error_errno(r, "Failed to create the saved state: %m");
        r = fdstore_add(store, state_fd(state), STATE_FDNAME);
        if (r < 0) {
                state_free(state);
                return log_error_errno(r, "Failed to store the saved state with the service manager: %m");
        }
        *ret = state;
        return 0;
}

/*
 * Parks the restored regions again, in new buckets, densely and in handle
 * order. A region that cannot be is still served, but forgotten in state,
 * so that the next broker does not look for it.
 */
static void repark(struct restore *rs, struct state *state, struct park *park) {
        size_t lost = 0;
        int first_error = 0;

        for (size_t i = 0; i < rs->n_restored; i++) {
                struct region *r = rs->saved[i];
                int k = park_add(park, r->handle, r->fd, &r->kept->parked_bucket);

                if (k >= 0 && r->page) {
                        enum mfb_wire_resource refused;
                        int j = region_keep_page(rs->regions, r, &refused);

                        if (j >= 0) {
                                j = park_add(park, r->handle | KEPT_PAGE_BIT, control_page_fd(r->page),
                                             &r->kept->page_bucket);
                                if (j < 0)
                                        region_unkeep_page(rs->regions, r);
                        }
                        /* The region is kept; its next broker makes a new page, which is all that is lost. */
                        if (j < 0)
                                log_warning_errno(j, "Failed to keep the control page of region %" PRIu64
                                                  " for the next restart: %m", r->handle);
                        r->kept->page_parked = j >= 0;
                }
                if (k >= 0)
                        continue;
                if (first_error == 0)
                        first_error = k;
                lost++;
                k = state_forget_region(state, r->kept->saved_slot);
                if (k < 0)
                        log_warning_errno(k, "Failed to forget region %" PRIu64 " in the saved state: %m", r->handle);
                free(region_unkeep(rs->regions, r));
        }
        if (lost > 0)
                log_error_errno(first_error, "Failed to keep %zu of the %zu restored named regions for the next "
                                "restart; they are served until then: %m", lost, rs->n_restored);
}

int restore(struct region_table *t, struct fdstore *store, struct passed_fd *fds, size_t n_fds,
            park_fd_cb fd_of, void *userdata, struct state **ret_state, struct park **ret_park) {
        struct restore rs = { .regions = t, .store = store };
        struct passed_fd *state_passed = NULL;
        struct state *state = NULL;
        struct park *park = NULL;
        size_t i = 0, n, found = 0;
        void *v;
        int r;

        r = hashmap_new(&hashmap_u64_ops, &rs.fds);
        if (r < 0) {
                log_error_errno(r, "Failed to restore the regions: %m");
                goto finish;
        }
        r = sort_passed(&rs, fds, n_fds, &state_passed);
        if (r < 0)
                goto finish;
        r = state_passed ? load(&rs, state_passed, &state) : 0;
        if (r < 0)
                goto finish;

        if (!state) {
                /* Read all the same, for the handles they name: none of them is given again. */
                for (size_t b = 0; b < rs.n_buckets; b++)
                        (void) park_read(rs.buckets[b]->fd, rs.buckets[b]->name, on_found, &rs);
                n = close_unclaimed(&rs);
                if (rs.n_buckets > 0)
                        log_warning("Dropped %zu buckets with %zu named regions kept without a valid saved state",
                                    rs.n_buckets, n);
                drop_buckets(&rs);
                r = start_afresh(store, &state);
                if (r < 0)
                        goto finish;
        } else {
                fdstore_count(store, STATE_FDNAME);
                for (size_t b = 0; b < rs.n_buckets; b++)
                        found += park_read(rs.buckets[b]->fd, rs.buckets[b]->name, on_found, &rs);
                if (rs.out_of_memory) {
                        r = log_error_errno(ENOMEM, "Failed to restore the regions: %m");
                        goto finish;
                }
                qsort(rs.saved, rs.n_saved, sizeof(*rs.saved), compare_handles);
                for (; i < rs.n_saved; i++) {
                        r = restore_region(&rs, state, rs.saved[i]);
                        if (r < 0) {
                                i++;
                                goto finish;
                        }
                        /* Kept in saved, in handle order, for repark(): the table owns it now. */
                        if (r > 0)
                                rs.saved[rs.n_restored++] = rs.saved[i];
                }
                n = close_unclaimed(&rs);
                if (n > 0)
                        log_notice("Dropped %zu parked memfds without saved state, left by a broker that stopped "
                                   "while creating or removing them", n);
                if (rs.n_saved > 0 || found > 0)
                        log_notice("Restored %zu of %zu saved named regions from %zu parked fds in %zu buckets",
                                   rs.n_restored, rs.n_saved, found, rs.n_buckets);
        }

        r = park_new(store, rs.last_name_number, fd_of, userdata, &park);
        if (r < 0) {
                log_error_errno(r, "Failed to restore the regions: %m");
                goto finish;
        }
        repark(&rs, state, park);
        /* Only now: until the regions are parked anew, the old buckets are what keeps them. */
        drop_buckets(&rs);

        region_table_skip_handles(t, MAX(rs.last_handle, state_handle_mark(state)));
        *ret_state = TAKE_PTR(state);
        *ret_park = TAKE_PTR(park);
        r = 0;

finish:
        /* What restore_region() did not take: all of them when the state could not be read. */
        for (; i < rs.n_saved; i++)
                saved_region_free(rs.saved[i]);
        free(rs.saved);
        free(rs.buckets);
        for (size_t j = 0; rs.fds && hashmap_iterate(rs.fds, &j, &v);) {
                struct region_fd *f = v;

                safe_close(f->fd);
                free(f);
        }
        hashmap_free(rs.fds);
        state_free(state);
        park_free(park);
        return r;
}
