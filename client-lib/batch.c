/* SPDX-License-Identifier: MIT */
/*
 * mfb_region_create_batch(): many anonymous regions of one size, as
 * pipelined CREATEs. The protocol has no request for many regions at once;
 * should one come, it replaces batch_create() alone.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "macro.h"

/*
 * A batch in flight. Replies come in request order, so the k-th callback
 * answers the k-th CREATE: no request needs to say which one it was.
 */
struct batch {
        mfb_region **regions;   /* n, the callbacks' results in request order (NULL for a failure) */
        size_t issued, answered;
        int error;              /* the first failure, in request order */
        char message[MFB_WIRE_ERROR_MESSAGE_MAX + 1];   /* the broker's words for it */
        bool progress;          /* a callback ran since the last wait */
};

static void batch_callback(mfb_client *c, int error, mfb_region *region, void *userdata) {
        struct batch *b = userdata;

        if (error < 0 && b->error == 0) {
                b->error = error;
                /* Later replies overwrite the client's copy before the batch returns. */
                strcpy(b->message, mfb_client_error_message(c));
        }
        b->regions[b->answered++] = region;
        b->progress = true;
}

/*
 * Keeps up to window CREATEs unanswered, making the next as each answer
 * comes: the broker works on one while the library checks the fd of the
 * one before, and the broker's limit on replies it holds for a connection
 * that does not read is never reached. After a failure it makes no more,
 * and waits only for the answers to those made already.
 */
static int batch_create(mfb_client *c, uint64_t size, size_t n, size_t window, struct batch *b) {
        while (b->answered < n) {
                while (b->error == 0 && b->issued < n && b->issued - b->answered < window) {
                        int r = mfb_region_create_async(c, NULL, size, 0, 0, batch_callback, b);

                        if (r < 0) {
                                b->error = r;
                                break;
                        }
                        b->issued++;
                }
                if (b->answered == b->issued)
                        break;

                b->progress = false;
                (void) client_wait(c, &b->progress);
                /* A failed connection ran every callback: answered caught up with issued. */
                if (!b->progress)
                        return -EIO;
        }
        return b->error;
}

_public_ int mfb_region_create_batch(mfb_client *c, uint64_t size, size_t n, mfb_region **ret_regions) {
        _cleanup_(freep) mfb_region **regions = NULL;
        struct batch b = {};
        size_t window;
        int r;

        if (!c || size == 0 || (n > 0 && !ret_regions))
                return -EINVAL;
        client_error_clear(c);
        if (n == 0)
                return 0;
        if (!client_usable(c))
                return -ENOTCONN;

        /* The caller's array stays untouched on failure: results go here first. */
        regions = calloc(n, sizeof(*regions));
        if (!regions)
                return -ENOMEM;
        b.regions = regions;

        window = c->hello.requests_in_flight_max > 0 ? c->hello.requests_in_flight_max : 1;
        /* A callback of an earlier request may free the client while the batch waits. */
        client_ref(c);
        r = batch_create(c, size, n, window, &b);
        if (r < 0) {
                /* Nothing stays: the broker has the releases before the client's next reply. */
                for (size_t i = 0; i < b.answered; i++)
                        mfb_region_free(regions[i]);
                if (r == b.error)
                        strcpy(c->error_message, b.message);
        } else
                memcpy(ret_regions, regions, n * sizeof(*regions));
        client_unref(c);
        return r;
}
