/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>

#include <event2/event.h>

#include "activation.h"
#include "control.h"
#include "fdstore.h"
#include "kept.h"
#include "log.h"
#include "macro.h"
#include "park.h"
#include "persist.h"
#include "region.h"
#include "restore.h"
#include "state.h"

struct persist {
        struct region_table *regions;   /* borrowed */
        struct fdstore *store;
        struct state *state;
        struct park *park;
        struct event *flush_event;
        struct event *pack_event;
        bool flush_scheduled;
        int refusal_logged;             /* the last error parking gave, logged once until parking works */
        uint64_t *dirty;                /* handles of regions whose changes wait for the flush */
        size_t n_dirty, n_dirty_allocated;
};

/* The park's park_fd_cb: the memfd of a region that is still kept, or its control page (KEPT_PAGE_BIT). */
static int region_fd_of(uint64_t handle, void *userdata) {
        struct region *r = region_get_by_handle(userdata, handle & ~KEPT_PAGE_BIT);

        if (!r || !r->kept)
                return -1;
        if (handle & KEPT_PAGE_BIT)
                return r->kept->page_parked && r->page ? control_page_fd(r->page) : -1;
        return r->fd;
}

/* Saves r, a kept region. */
static int save(struct persist *p, struct region *r) {
        return state_save_region(p->state, &r->kept->saved_slot, &r->meta, r->name);
}

/* Saves r later: its attach or detach time, or last pid, changed. */
static void save_later(struct persist *p, struct region *r) {
        static const struct timeval delay = { .tv_usec = PERSIST_FLUSH_MSEC * 1000 };

        if (!r->name || !r->kept || r->kept->dirty)
                return;
        /* No room to remember it: save it now instead. */
        if (GREEDY_REALLOC(p->dirty, p->n_dirty_allocated, p->n_dirty + 1) < 0) {
                int k = save(p, r);

                if (k < 0)
                        log_warning_errno(k, "Failed to save region %" PRIu64 ": %m", r->handle);
                return;
        }
        p->dirty[p->n_dirty++] = r->handle;
        r->kept->dirty = true;
        if (!p->flush_scheduled) {
                event_add(p->flush_event, &delay);
                p->flush_scheduled = true;
        }
}

/* Saves r now: its owner, mode or seals changed. A failure is logged, and retried later. */
static void save_now(struct persist *p, struct region *r) {
        int k;

        if (!r->name || !r->kept)
                return;
        k = save(p, r);
        if (k < 0) {
                log_error_errno(k, "Failed to save region %" PRIu64 ", trying again shortly: %m", r->handle);
                save_later(p, r);
        }
}

/* The table's hook (region_touched()): what persist must save of every touch. */
static void on_touched(struct region *r, enum region_touch what, void *userdata) {
        if (what == REGION_CHANGED)
                save_now(userdata, r);
        else
                save_later(userdata, r);
}

static void on_flush(evutil_socket_t fd, short what, void *userdata) {
        persist_flush(userdata);
}

static void on_pack(evutil_socket_t fd, short what, void *userdata) {
        static const struct timeval retry = { .tv_sec = PERSIST_PACK_RETRY_MSEC / 1000,
                                              .tv_usec = PERSIST_PACK_RETRY_MSEC % 1000 * 1000 };
        struct persist *p = userdata;

        (void) park_pack(p->park);
        if (park_packing_due(p->park))
                event_add(p->pack_event, &retry);
}

/* Packs the buckets with removed regions once the requests being served are: their pages come back then. */
static void schedule_pack(struct persist *p) {
        static const struct timeval now = {};

        if (!event_pending(p->pack_event, EV_TIMEOUT, NULL))
                event_add(p->pack_event, &now);
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
                p->pack_event = evtimer_new(base, on_pack, p);
                if (!p->flush_event || !p->pack_event)
                        r = -ENOMEM;
        }
        if (r < 0) {
                passed_fds_free(fds, n_fds);
                persist_free(p);
                return log_error_errno(r, "Failed to set up keeping regions across restarts: %m");
        }

        r = restore(t, p->store, fds, n_fds, region_fd_of, t, &p->state, &p->park);
        passed_fds_free(fds, n_fds);
        if (r < 0) {
                persist_free(p);
                return r;
        }
        region_table_set_touched_hook(t, on_touched, p);
        *ret = p;
        return 0;
}

struct persist *persist_free(struct persist *p) {
        if (!p)
                return NULL;
        region_table_set_touched_hook(p->regions, NULL, NULL);
        /* The bookkeeping is persist's: with it gone, nothing is kept by this broker any more. */
        for (struct region *r = region_next(p->regions, 0); r; r = region_after(p->regions, r))
                free(region_unkeep(p->regions, r));
        if (p->flush_event)
                event_free(p->flush_event);
        if (p->pack_event)
                event_free(p->pack_event);
        free(p->dirty);
        park_free(p->park);
        state_free(p->state);
        fdstore_free(p->store);
        free(p);
        return NULL;
}

/* Logs why parking failed, once until it works again. */
static void log_refusal(struct persist *p, int error) {
        if (p->refusal_logged == error)
                return;
        p->refusal_logged = error;
        switch (error) {
        case -ETOOMANYREFS:
                log_warning("The kernel refuses the broker more fds in flight (as many as its RLIMIT_NOFILE, "
                            "counting replies clients have not read): creating named regions fails until some "
                            "are removed or read");
                break;
        case -ENOSPC:
        case -E2BIG:
                log_warning("The %u buckets that keep named regions across restarts are full, or the service "
                            "manager's fd store has no room for another: creating named regions fails until some "
                            "are removed", PARK_BUCKETS_MAX);
                break;
        default:
                log_error_errno(error, "Failed to park a named region's memfd: %m");
        }
}

int persist_region_created(struct persist *p, struct region *r, enum mfb_wire_resource *ret_refused) {
        struct kept_region *kept;
        int k;

        if (!p)
                return 0;
        k = state_reserve_handle(p->state, r->handle);
        if (k < 0)
                return log_error_errno(k, "Failed to save the handle mark: %m");
        /*
         * A transient region ends with its last holder, and every holder's
         * connection ends with this broker: it cannot outlive it, so it is
         * not kept (nor charged as kept). The handle mark above still is:
         * its handle must not come back.
         */
        if (!r->name || r->transient)
                return 0;
        kept = calloc(1, sizeof(*kept));
        if (!kept)
                return log_error_errno(ENOMEM, "Failed to keep region %" PRIu64 ": %m", r->handle);
        /* The service manager's store is shared by every uid: each may take only its share. */
        k = region_keep(p->regions, r, kept, ret_refused);
        if (k < 0) {
                free(kept);
                return k;
        }

        /* The memfd first: a crash before the state is saved leaves a memfd the next broker drops. */
        k = park_add(p->park, r->handle, r->fd, &kept->parked_bucket);
        /* A bucket it could not pack on the way is tried again shortly. */
        if (park_packing_due(p->park))
                schedule_pack(p);
        if (k < 0) {
                free(region_unkeep(p->regions, r));
                log_refusal(p, k);
                return k == -ENOSPC || k == -ENOBUFS ? -E2BIG : k;
        }
        p->refusal_logged = 0;
        k = save(p, r);
        if (k < 0) {
                log_error_errno(k, "Failed to save region %" PRIu64 ": %m", r->handle);
                park_remove(p->park, kept->parked_bucket, r->handle);
                free(region_unkeep(p->regions, r));
                schedule_pack(p);
                return k;
        }
        return 0;
}

int persist_control_page_made(struct persist *p, struct region *r, enum mfb_wire_resource *ret_refused) {
        int k;

        if (!p || !r->name || !r->kept || !r->page || r->kept->page_parked)
                return 0;
        k = region_keep_page(p->regions, r, ret_refused);
        if (k < 0)
                return k;
        k = park_add(p->park, r->handle | KEPT_PAGE_BIT, control_page_fd(r->page), &r->kept->page_bucket);
        if (park_packing_due(p->park))
                schedule_pack(p);
        if (k < 0) {
                region_unkeep_page(p->regions, r);
                log_refusal(p, k);
                return k == -ENOSPC || k == -ENOBUFS ? -E2BIG : k;
        }
        p->refusal_logged = 0;
        r->kept->page_parked = true;
        return 0;
}

void persist_region_removed(struct persist *p, struct region *r) {
        int k;

        if (!p || !r->name || !r->kept)
                return;
        /* The state first: a crash before the memfd is unparked leaves a memfd the next broker drops. */
        k = state_forget_region(p->state, r->kept->saved_slot);
        if (k < 0)
                log_warning_errno(k, "Failed to forget region %" PRIu64 " in the saved state: %m", r->handle);
        /* A parked page without its region's state is dropped by the next broker as well. */
        if (r->kept->page_parked)
                park_remove(p->park, r->kept->page_bucket, r->handle | KEPT_PAGE_BIT);
        park_remove(p->park, r->kept->parked_bucket, r->handle);
        free(region_unkeep(p->regions, r));
        schedule_pack(p);
}

void persist_flush(struct persist *p) {
        if (!p)
                return;
        for (size_t i = 0; i < p->n_dirty; i++) {
                struct region *r = region_get_by_handle(p->regions, p->dirty[i]);
                int k;

                /* Gone, or removed since (which ends its bookkeeping): nothing to save. */
                if (!r || !r->kept || !r->kept->dirty)
                        continue;
                r->kept->dirty = false;
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
