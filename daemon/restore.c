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
#include "fdstore.h"
#include "hashmap.h"
#include "log.h"
#include "macro.h"
#include "persist.h"
#include "region.h"
#include "restore.h"
#include "state.h"

/* A passed fd whose name is a region's. */
struct region_fd {
        uint64_t handle;                /* the key */
        struct passed_fd *passed;       /* its fd is -1 once a region took it */
        bool ambiguous;                 /* another fd had the same name */
};

struct restore {
        struct region_table *regions;   /* borrowed */
        struct fdstore *store;          /* borrowed */
        struct hashmap *fds;            /* handle → struct region_fd */
        struct region **saved;          /* the regions in the saved state, without fds yet */
        size_t n_saved, n_saved_allocated;
        size_t n_restored;
        uint64_t last_handle;           /* the highest handle seen anywhere */
};

/* The handle a region memfd's name gives (see persist_region_fdname()), or 0 when it is not such a name. */
static uint64_t parse_fdname(const char *name) {
        uint64_t handle = 0;

        if (name[0] < '1' || name[0] > '9')
                return 0;
        for (const char *p = name; *p; p++) {
                uint64_t digit = (uint64_t) (*p - '0');

                if (*p < '0' || *p > '9' || handle > (UINT64_MAX - digit) / 10)
                        return 0;
                handle = handle * 10 + digit;
        }
        return handle;
}

/* Closes a passed fd the broker does not keep, and has systemd close its copy. */
static void drop_passed(struct passed_fd *p) {
        int r;

        p->fd = safe_close(p->fd);
        r = fdstore_drop(p->name);
        if (r < 0)
                log_warning_errno(r, "Failed to remove %s from the service manager's fd store: %m", p->name);
}

static void saved_region_free(struct region *r) {
        free(r->name);
        safe_close(r->fd);
        free(r);
}

/* Sorts the passed fds out: the state's, into *ret_state (NULL when none); the regions', into rs->fds. */
static int sort_passed(struct restore *rs, struct passed_fd *fds, size_t n_fds, struct passed_fd **ret_state) {
        struct passed_fd *state = NULL;
        bool state_ambiguous = false;
        int r;

        for (size_t i = 0; i < n_fds; i++) {
                struct passed_fd *p = &fds[i];
                struct region_fd *f;
                uint64_t handle;

                if (strcmp(p->name, PERSIST_STATE_FDNAME) == 0) {
                        if (state) {
                                state_ambiguous = true;
                                drop_passed(p);
                        } else
                                state = p;
                        continue;
                }
                handle = parse_fdname(p->name);
                if (handle == 0) {
                        log_warning("The service manager passed an fd named %s, a name this broker does not "
                                    "store; dropping it", p->name);
                        drop_passed(p);
                        continue;
                }
                rs->last_handle = MAX(rs->last_handle, handle);
                f = hashmap_get(rs->fds, &handle);
                if (f) {
                        log_warning("The service manager passed more than one fd named %s; dropping them",
                                    p->name);
                        f->ambiguous = true;
                        drop_passed(p);
                        continue;
                }
                f = calloc(1, sizeof(*f));
                if (!f)
                        return log_error_errno(ENOMEM, "Failed to restore the regions: %m");
                *f = (struct region_fd) { .handle = handle, .passed = p };
                r = hashmap_put(rs->fds, &f->handle, f);
                if (r < 0) {
                        free(f);
                        return log_error_errno(r, "Failed to restore the regions: %m");
                }
        }
        if (state_ambiguous) {
                log_warning("The service manager passed more than one saved state; dropping them");
                drop_passed(state);
                state = NULL;
        }
        *ret_state = state;
        return 0;
}

static int on_saved(const struct state_region *s, uint32_t slot, void *userdata) {
        struct restore *rs = userdata;
        struct region *r;

        if (rs->n_saved == rs->n_saved_allocated) {
                size_t n = rs->n_saved_allocated ? rs->n_saved_allocated * 2 : 64;
                struct region **saved = reallocarray(rs->saved, n, sizeof(*saved));

                if (!saved)
                        return -ENOMEM;
                rs->saved = saved;
                rs->n_saved_allocated = n;
        }
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        *r = (struct region) {
                .handle = s->handle,
                .size = s->size,
                .name = strdup(s->name),
                .fd = -1,
                .uid = s->uid,
                .gid = s->gid,
                .creator_uid = s->creator_uid,
                .creator_gid = s->creator_gid,
                .mode = s->mode,
                .creator_pid = s->creator_pid,
                .last_pid = s->last_pid,
                .hugetlb = s->hugetlb,
                .kept = true,
                .create_time = s->create_time,
                .attach_time = s->attach_time,
                .detach_time = s->detach_time,
                .change_time = s->change_time,
                .saved_slot = slot,
        };
        if (!r->name) {
                free(r);
                return -ENOMEM;
        }
        rs->saved[rs->n_saved++] = r;
        rs->last_handle = MAX(rs->last_handle, s->handle);
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
        if (fstatfs(fd, &sfs) < 0 || (sfs.f_type == HUGETLBFS_MAGIC) != r->hugetlb)
                return r->hugetlb ? "is not backed by huge pages" : "is backed by huge pages";
        return NULL;
}

/*
 * Gives r (taken) its memfd and adds it to the table, or forgets it in
 * state when that cannot be. Returns 0, or -ENOMEM: a shortage ends the
 * restore without dropping anything, for the next broker to try again.
 */
static int restore_region(struct restore *rs, struct state *state, struct region *r) {
        struct region_fd *f = hashmap_get(rs->fds, &r->handle);
        const char *why;
        struct stat st;
        char buf[64];
        int k;

        if (!f || f->ambiguous || f->passed->fd < 0) {
                log_warning("Region %s (handle %" PRIu64 ") was saved, but its memfd was not kept; forgetting it",
                            r->name, r->handle);
                goto forget;
        }
        if (fstat(f->passed->fd, &st) < 0)
                why = "cannot be examined";
        else
                why = memfd_mismatch(f->passed->fd, &st, r, buf, sizeof(buf));
        if (why) {
                log_warning("The memfd kept for region %s (handle %" PRIu64 ") %s; dropping the region", r->name,
                            r->handle, why);
                drop_passed(f->passed);
                goto forget;
        }
        /* Then only holders of its read-write fd can open it: a reopen for readers is refused. */
        if (st.st_uid != geteuid())
                log_warning("The memfd of region %s (handle %" PRIu64 ") belongs to uid %u, not to this broker's "
                            "uid %u: read-only opens of it will fail. Run the broker as the same user throughout.",
                            r->name, r->handle, (unsigned) st.st_uid, (unsigned) geteuid());

        r->fd = f->passed->fd;
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
                drop_passed(f->passed);
                goto forget;
        }
        f->passed->fd = -1;
        fdstore_count(rs->store, f->passed->name);
        rs->n_restored++;
        return 0;

forget:
        k = state_forget_region(state, r->saved_slot);
        if (k < 0)
                log_warning_errno(k, "Failed to forget region %" PRIu64 " in the saved state: %m", r->handle);
        saved_region_free(r);
        return 0;
}

static int compare_handles(const void *a, const void *b) {
        const struct region *x = *(struct region *const *) a, *y = *(struct region *const *) b;

        return x->handle < y->handle ? -1 : x->handle > y->handle;
}

/* Drops the region memfds no region took. Returns how many. */
static size_t drop_unclaimed(struct restore *rs) {
        size_t n = 0;
        void *v;

        for (size_t i = 0; hashmap_iterate(rs->fds, &i, &v);) {
                struct region_fd *f = v;

                if (f->passed->fd < 0 && !f->ambiguous)
                        continue;
                drop_passed(f->passed);
                n++;
        }
        return n;
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
        r = fdstore_add(store, state_fd(state), PERSIST_STATE_FDNAME);
        if (r < 0) {
                state_free(state);
                return log_error_errno(r, "Failed to store the saved state with the service manager: %m");
        }
        *ret = state;
        return 0;
}

int restore(struct region_table *t, struct fdstore *store, struct passed_fd *fds, size_t n_fds,
            struct state **ret_state) {
        struct restore rs = { .regions = t, .store = store };
        struct passed_fd *state_passed = NULL;
        struct state *state = NULL;
        size_t i = 0, dropped;
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
                dropped = drop_unclaimed(&rs);
                if (dropped > 0)
                        log_warning("Dropped %zu region memfds kept without a valid saved state", dropped);
                r = start_afresh(store, &state);
                if (r < 0)
                        goto finish;
        } else {
                fdstore_count(store, PERSIST_STATE_FDNAME);
                qsort(rs.saved, rs.n_saved, sizeof(*rs.saved), compare_handles);
                for (; i < rs.n_saved; i++) {
                        r = restore_region(&rs, state, rs.saved[i]);
                        if (r < 0) {
                                i++;
                                goto finish;
                        }
                }
                dropped = drop_unclaimed(&rs);
                if (dropped > 0)
                        log_notice("Dropped %zu kept region memfds without saved state, left by a broker that "
                                   "stopped while creating them", dropped);
                if (rs.n_saved > 0)
                        log_notice("Restored %zu of %zu saved named regions", rs.n_restored, rs.n_saved);
        }

        region_table_skip_handles(t, MAX(rs.last_handle, state_handle_mark(state)));
        *ret_state = TAKE_PTR(state);
        r = 0;

finish:
        /* What restore_region() did not take: all of them when the state could not be read. */
        for (; i < rs.n_saved; i++)
                saved_region_free(rs.saved[i]);
        free(rs.saved);
        for (size_t j = 0; rs.fds && hashmap_iterate(rs.fds, &j, &v);)
                free(v);
        hashmap_free(rs.fds);
        state_free(state);
        return r;
}
