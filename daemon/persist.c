/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <event2/event.h>

#include "activation.h"
#include "fdstore.h"
#include "log.h"
#include "macro.h"
#include "persist.h"
#include "region.h"
#include "restore.h"
#include "state.h"

struct persist {
        struct region_table *regions;   /* borrowed */
        struct fdstore *store;
        struct state *state;
        struct event *flush_event;
        bool flush_scheduled;
        bool full_logged;               /* that the fd store has no room for more names */
        uint64_t *dirty;                /* handles of regions whose changes wait for the flush */
        size_t n_dirty, n_dirty_allocated;
};

void persist_region_fdname(uint64_t handle, char buf[static PERSIST_FDNAME_MAX]) {
        snprintf(buf, PERSIST_FDNAME_MAX, "%" PRIu64, handle);
}

static int save(struct persist *p, struct region *r) {
        struct state_region saved = {
                .handle = r->handle,
                .size = r->size,
                .uid = r->uid,
                .gid = r->gid,
                .creator_uid = r->creator_uid,
                .creator_gid = r->creator_gid,
                .mode = r->mode,
                .creator_pid = r->creator_pid,
                .last_pid = r->last_pid,
                .hugetlb = r->hugetlb,
                .create_time = r->create_time,
                .attach_time = r->attach_time,
                .detach_time = r->detach_time,
                .change_time = r->change_time,
        };

        snprintf(saved.name, sizeof(saved.name), "%s", r->name);
        return state_save_region(p->state, &r->saved_slot, &saved);
}

static void on_flush(evutil_socket_t fd, short what, void *userdata) {
        persist_flush(userdata);
}

int persist_new(struct event_base *base, struct region_table *t, struct passed_fd *fds, size_t n_fds,
                struct persist **ret) {
        struct persist *p;
        int r;

        p = calloc(1, sizeof(*p));
        if (!p) {
                passed_fds_free(fds, n_fds);
                return log_error_errno(ENOMEM, "Failed to set up keeping regions across restarts: %m");
        }
        p->regions = t;
        r = fdstore_new(&p->store);
        if (r >= 0) {
                p->flush_event = evtimer_new(base, on_flush, p);
                if (!p->flush_event)
                        r = -ENOMEM;
        }
        if (r < 0) {
                passed_fds_free(fds, n_fds);
                persist_free(p);
                return log_error_errno(r, "Failed to set up keeping regions across restarts: %m");
        }

        r = restore(t, p->store, fds, n_fds, &p->state);
        passed_fds_free(fds, n_fds);
        if (r < 0) {
                persist_free(p);
                return r;
        }
        *ret = p;
        return 0;
}

struct persist *persist_free(struct persist *p) {
        if (!p)
                return NULL;
        if (p->flush_event)
                event_free(p->flush_event);
        free(p->dirty);
        state_free(p->state);
        fdstore_free(p->store);
        free(p);
        return NULL;
}

int persist_region_created(struct persist *p, struct region *r, enum mfb_wire_resource *ret_refused) {
        char fdname[PERSIST_FDNAME_MAX];
        int k;

        if (!p)
                return 0;
        k = state_reserve_handle(p->state, r->handle);
        if (k < 0)
                return log_error_errno(k, "Failed to save the handle mark: %m");
        if (!r->name)
                return 0;
        /* The service manager's store is shared by every uid: each may take only its share. */
        k = region_keep(p->regions, r, ret_refused);
        if (k < 0)
                return k;

        /* The memfd first: a crash before the state is saved leaves a memfd the next broker drops. */
        persist_region_fdname(r->handle, fdname);
        k = fdstore_add(p->store, r->fd, fdname);
        if (k < 0)
                region_unkeep(p->regions, r);
        if (k == -E2BIG) {
                /* Once: every CREATE of a named region fails the same way until some are removed. */
                if (!p->full_logged)
                        log_warning("The service manager's fd store has no room for the name of one more "
                                    "region: creating named regions fails until some are removed");
                p->full_logged = true;
                return k;
        }
        if (k < 0)
                return log_error_errno(k, "Failed to store the memfd of region %" PRIu64 " with the service "
                                       "manager: %m", r->handle);
        k = save(p, r);
        if (k < 0) {
                log_error_errno(k, "Failed to save region %" PRIu64 ": %m", r->handle);
                (void) fdstore_remove(p->store, fdname);
                region_unkeep(p->regions, r);
                return k;
        }
        return 0;
}

void persist_region_touched(struct persist *p, struct region *r) {
        static const struct timeval delay = { .tv_usec = PERSIST_FLUSH_MSEC * 1000 };

        if (!p || !r->name || r->saved_dirty)
                return;
        if (p->n_dirty == p->n_dirty_allocated) {
                size_t n = p->n_dirty_allocated ? p->n_dirty_allocated * 2 : 64;
                uint64_t *dirty = reallocarray(p->dirty, n, sizeof(*dirty));

                /* No room to remember it: save it now instead. */
                if (!dirty) {
                        int k = save(p, r);

                        if (k < 0)
                                log_warning_errno(k, "Failed to save region %" PRIu64 ": %m", r->handle);
                        return;
                }
                p->dirty = dirty;
                p->n_dirty_allocated = n;
        }
        p->dirty[p->n_dirty++] = r->handle;
        r->saved_dirty = true;
        if (!p->flush_scheduled) {
                event_add(p->flush_event, &delay);
                p->flush_scheduled = true;
        }
}

void persist_region_changed(struct persist *p, struct region *r) {
        int k;

        if (!p || !r->name)
                return;
        k = save(p, r);
        if (k < 0) {
                log_error_errno(k, "Failed to save region %" PRIu64 ", trying again shortly: %m", r->handle);
                persist_region_touched(p, r);
        }
}

void persist_region_removed(struct persist *p, struct region *r) {
        char fdname[PERSIST_FDNAME_MAX];
        int k;

        if (!p || !r->name)
                return;
        /* The state first: a crash before the memfd is removed leaves a memfd the next broker drops. */
        k = state_forget_region(p->state, r->saved_slot);
        if (k < 0)
                log_warning_errno(k, "Failed to forget region %" PRIu64 " in the saved state: %m", r->handle);
        r->saved_slot = 0;
        persist_region_fdname(r->handle, fdname);
        k = fdstore_remove(p->store, fdname);
        if (k < 0)
                log_warning_errno(k, "Failed to remove the memfd of region %" PRIu64 " from the service "
                                  "manager's store: %m", r->handle);
        region_unkeep(p->regions, r);
}

void persist_flush(struct persist *p) {
        if (!p)
                return;
        for (size_t i = 0; i < p->n_dirty; i++) {
                struct region *r = region_get_by_handle(p->regions, p->dirty[i]);
                int k;

                /* Gone, or removed since: nothing to save. */
                if (!r || !r->saved_dirty)
                        continue;
                r->saved_dirty = false;
                if (!r->name)
                        continue;
                k = save(p, r);
                if (k < 0)
                        log_warning_errno(k, "Failed to save region %" PRIu64 ": %m", r->handle);
        }
        p->n_dirty = 0;
        event_del(p->flush_event);
        p->flush_scheduled = false;
}
