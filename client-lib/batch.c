/* SPDX-License-Identifier: MIT */
/*
 * mfb_region_create_batch(): many anonymous regions of one size. With a
 * broker that serves CREATE_BATCH, up to 253 regions come in one request
 * and one reply; with an older one, as pipelined CREATEs. Either way all
 * or nothing.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "fdpass.h"
#include "macro.h"
#include "region.h"

/*
 * How many regions the CREATE_BATCH path keeps asked for and unanswered:
 * two requests' worth, so that the broker makes the next batch while the
 * library checks the fds of the one before.
 */
#define WIRE_WINDOW (2 * MFB_WIRE_CREATE_BATCH_MAX)

/* A batch in flight. Replies come in request order, so regions are made in request order too. */
struct batch {
        uint64_t size;
        mfb_region **regions;   /* the regions made so far, n at most */
        size_t made;
        size_t issued, answered;        /* regions asked for, and those whose answer came */
        int error;              /* the first failure, in request order */
        char message[MFB_WIRE_ERROR_MESSAGE_MAX + 1];   /* the broker's words for it */
        bool progress;          /* an answer came since the last wait */
};

static void batch_failed(mfb_client *c, struct batch *b, int error) {
        if (b->error != 0)
                return;
        b->error = error;
        /* Later replies overwrite the client's copy before the batch returns. */
        strcpy(b->message, mfb_client_error_message(c));
}

/* Waits for an answer to come. Returns 0, or -EIO when none can (every callback ran already). */
static int batch_wait(mfb_client *c, struct batch *b) {
        b->progress = false;
        (void) client_wait(c, &b->progress);
        return b->progress ? 0 : -EIO;
}

/* One CREATE_BATCH on its way: the regions its answer will fill, allocated before it was asked. */
struct chunk {
        struct batch *batch;
        size_t count;
        mfb_region *slots[];
};

/* Makes the regions of a CREATE_BATCH reply. Every fd is taken, whatever happens. */
static int chunk_parse(mfb_client *c, struct chunk *k, const struct client_reply *reply) {
        struct batch *b = k->batch;
        struct mfb_wire_create_batch_reply head;
        int r = 0;

        /* mfb_wire_reply_check() matched the body's size and the fds to count. */
        memcpy(&head, reply->body, sizeof(head));
        if (head.count != k->count || head.access != (MFB_WIRE_ACCESS_READ | MFB_WIRE_ACCESS_WRITE) || head.size != b->size) {
                mfb_close_fds(reply->fds, reply->nfds);
                return client_protocol_error(c);
        }

        for (size_t i = 0; i < k->count; i++) {
                uint64_t handle;
                int q;

                memcpy(&handle, reply->body + sizeof(head) + i * sizeof(handle), sizeof(handle));
                if (handle == 0) {
                        mfb_close_fds(reply->fds + i, reply->nfds - i);
                        return client_protocol_error(c);
                }
                /* One bad fd fails the batch; the others are made still, to be freed with the rest. */
                q = region_init(k->slots[i], c, handle, b->size, O_RDWR, reply->fds[i]);
                reply->fds[i] = -1;
                if (q < 0) {
                        r = r < 0 ? r : q;
                        continue;
                }
                b->regions[b->made++] = TAKE_PTR(k->slots[i]);
        }
        return r;
}

static int chunk_handler(mfb_client *c, void *data, int status, const struct client_reply *reply) {
        struct chunk *k = data;
        struct batch *b = k->batch;

        if (status == 0)
                status = chunk_parse(c, k, reply);
        if (status < 0)
                batch_failed(c, b, status);
        for (size_t i = 0; i < k->count; i++)
                free(k->slots[i]);
        b->answered += k->count;
        b->progress = true;
        return 0;
}

/* Asks for count regions in one CREATE_BATCH. */
static int chunk_request(mfb_client *c, struct batch *b, size_t count) {
        struct mfb_wire_create_batch_request request = {
                .size = b->size,
                .count = (uint32_t) count,
        };
        mfb_region *slots[MFB_WIRE_CREATE_BATCH_MAX] = {};
        struct chunk *k;
        int r;

        assert(count > 0 && count <= MFB_WIRE_CREATE_BATCH_MAX);

        for (size_t i = 0; i < count; i++) {
                slots[i] = region_alloc();
                if (!slots[i]) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        r = client_request(c, MFB_WIRE_OP_CREATE_BATCH, &request, sizeof(request), chunk_handler,
                           sizeof(*k) + count * sizeof(k->slots[0]), (void **) &k);
        if (r < 0)
                goto fail;
        k->batch = b;
        k->count = count;
        memcpy(k->slots, slots, count * sizeof(slots[0]));
        b->issued += count;
        return 0;

fail:
        for (size_t i = 0; i < count; i++)
                free(slots[i]);
        return r;
}

static void pipelined_callback(mfb_client *c, int error, mfb_region *region, void *userdata) {
        struct batch *b = userdata;

        if (error < 0)
                batch_failed(c, b, error);
        else
                b->regions[b->made++] = region;
        b->answered++;
        b->progress = true;
}

/* Asks for the next regions: as many as one CREATE_BATCH takes, or one CREATE from an older broker. */
static int batch_issue(mfb_client *c, struct batch *b, size_t n, bool wire) {
        size_t count = n - b->issued;
        int r;

        if (wire)
                return chunk_request(c, b, count < MFB_WIRE_CREATE_BATCH_MAX ? count : MFB_WIRE_CREATE_BATCH_MAX);

        r = mfb_region_create_async(c, NULL, b->size, 0, 0, pipelined_callback, b);
        if (r < 0)
                return r;
        b->issued++;
        return 0;
}

/*
 * Keeps up to window regions asked for and unanswered, asking for more as
 * answers come: the broker makes the next while the library checks the fds
 * of the ones before, and the broker's limit on replies it holds for a
 * connection that does not read is never reached. After a failure it asks
 * for no more, and waits only for the answers to what it asked already.
 */
static int batch_create(mfb_client *c, size_t n, size_t window, bool wire, struct batch *b) {
        while (b->answered < n) {
                while (b->error == 0 && b->issued < n && b->issued - b->answered < window) {
                        int r = batch_issue(c, b, n, wire);

                        if (r < 0) {
                                b->error = r;
                                break;
                        }
                }
                if (b->answered == b->issued)
                        break;
                if (batch_wait(c, b) < 0)
                        return -EIO;
        }
        return b->error;
}

_public_ int mfb_region_create_batch(mfb_client *c, uint64_t size, size_t n, mfb_region **ret_regions) {
        _cleanup_(freep) mfb_region **regions = NULL;
        struct batch b = { .size = size };
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

        /* A callback of an earlier request may free the client while the batch waits. */
        client_ref(c);
        if (c->hello.capabilities & MFB_WIRE_CAP_CREATE_BATCH)
                r = batch_create(c, n, WIRE_WINDOW, true, &b);
        else
                r = batch_create(c, n, c->hello.requests_in_flight_max ?: 1, false, &b);
        if (r < 0) {
                /* Nothing stays: the broker has the releases before the client's next reply. */
                for (size_t i = 0; i < b.made; i++)
                        mfb_region_free(regions[i]);
                if (r == b.error)
                        strcpy(c->error_message, b.message);
        } else
                memcpy(ret_regions, regions, n * sizeof(*regions));
        client_unref(c);
        return r;
}
