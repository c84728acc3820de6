/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "macro.h"

/* The public resources are the wire's, so that entries copy across as they are. */
#define SAME(a, b) ((int) (a) == (int) (b))
_Static_assert(SAME(MFB_LIMIT_REGIONS, MFB_WIRE_RESOURCE_REGIONS) && SAME(MFB_LIMIT_BYTES, MFB_WIRE_RESOURCE_BYTES) &&
               SAME(MFB_LIMIT_FDS, MFB_WIRE_RESOURCE_FDS) && SAME(MFB_LIMIT_CONNECTIONS, MFB_WIRE_RESOURCE_CONNECTIONS) &&
               SAME(MFB_LIMIT_QUEUED_BYTES, MFB_WIRE_RESOURCE_QUEUED_BYTES) &&
               SAME(MFB_LIMIT_WAITERS, MFB_WIRE_RESOURCE_WAITERS) && SAME(MFB_LIMIT_KEPT, MFB_WIRE_RESOURCE_KEPT) &&
               SAME(MFB_LIMIT_HOLDS, MFB_WIRE_RESOURCE_HOLDS) && SAME(MFB_LIMIT_COUNT, MFB_WIRE_RESOURCE_COUNT),
               "public and wire resources agree");
_Static_assert(MFB_UNLIMITED == MFB_WIRE_LIMIT_NONE && MFB_UNKNOWN == MFB_WIRE_LIMIT_NONE, "public and wire markers agree");

/* What mfb_limits() fills, and how many entries the broker reported. */
struct limits_out {
        size_t n;
        mfb_limit *limits;
        uid_t *uid;
};

static int limits_parse(mfb_client *c, const struct client_reply *reply, void *userdata) {
        struct limits_out *out = userdata;
        struct mfb_wire_limits_reply limits;

        /* The body's size is fixed in this version, so a count other than its own would misdescribe it. */
        memcpy(&limits, reply->body, sizeof(limits));
        if (limits.count != MFB_WIRE_RESOURCE_COUNT)
                return client_protocol_error(c);

        for (size_t i = 0; i < out->n && i < MFB_WIRE_RESOURCE_COUNT; i++)
                out->limits[i] = (mfb_limit) {
                        .broker_max = limits.resources[i].broker_max,
                        .broker_used = limits.resources[i].broker_used,
                        .uid_max = limits.resources[i].uid_max,
                        .uid_used = limits.resources[i].uid_used,
                        .uid_available = limits.resources[i].uid_available,
                };
        if (out->uid)
                *out->uid = (uid_t) limits.uid;
        return 0;
}

_public_ int mfb_limits(mfb_client *c, size_t n, mfb_limit *ret_limits, uid_t *ret_uid) {
        struct limits_out out = { .n = n, .limits = ret_limits, .uid = ret_uid };
        int r;

        if (!c || (!ret_limits && n > 0))
                return -EINVAL;

        client_error_clear(c);
        r = client_call(c, MFB_WIRE_OP_LIMITS, NULL, 0, limits_parse, &out);
        if (r < 0)
                return r;
        return MFB_WIRE_RESOURCE_COUNT;
}

/* What mfb_usage() has gathered so far. */
struct usage_state {
        size_t n_resources;             /* entries per row the caller asked for */
        uint32_t first_uid;             /* the first_uid of the next request */
        uid_t *uids;
        mfb_limit *limits;              /* n_resources per row */
        size_t n, uids_allocated, limits_allocated;
        bool more;
};

/* Appends the rows of one USAGE reply to s, and moves s->first_uid on. */
static int usage_parse(mfb_client *c, const struct client_reply *reply, void *userdata) {
        struct usage_state *s = userdata;
        struct mfb_wire_usage_reply head;
        size_t rows = offsetof(struct mfb_wire_usage_reply, rows);
        uint64_t next = s->first_uid;  /* the least uid the next row may have */

        /* The body's size is fixed; only count says how many rows are meant. */
        memcpy(&head, reply->body, rows);
        if (head.count > MFB_WIRE_USAGE_ROWS_MAX || head.more > 1)
                return client_protocol_error(c);
        if (GREEDY_REALLOC(s->uids, s->uids_allocated, s->n + head.count) < 0 ||
            GREEDY_REALLOC(s->limits, s->limits_allocated, (s->n + head.count) * s->n_resources) < 0)
                return -ENOMEM;

        for (uint32_t i = 0; i < head.count; i++) {
                struct mfb_wire_limits_reply row;
                mfb_limit *out = s->limits + (s->n + i) * s->n_resources;

                memcpy(&row, reply->body + rows + i * sizeof(row), sizeof(row));
                /* Ascending uids from first_uid: no row twice; and the count of a LIMITS reply. */
                if (row.uid < next || row.count != MFB_WIRE_RESOURCE_COUNT)
                        return client_protocol_error(c);
                next = (uint64_t) row.uid + 1;
                s->uids[s->n + i] = (uid_t) row.uid;
                for (size_t j = 0; j < s->n_resources; j++)
                        out[j] = j < MFB_WIRE_RESOURCE_COUNT ? (mfb_limit) {
                                .broker_max = row.resources[j].broker_max,
                                .broker_used = row.resources[j].broker_used,
                                .uid_max = row.resources[j].uid_max,
                                .uid_used = row.resources[j].uid_used,
                                .uid_available = row.resources[j].uid_available,
                        } : (mfb_limit) { MFB_UNKNOWN, MFB_UNKNOWN, MFB_UNKNOWN, MFB_UNKNOWN, MFB_UNKNOWN };
        }
        s->n += head.count;

        /* A cursor that does not move on would have us ask forever; one at or below a row, list it twice. */
        s->more = head.more;
        if (head.more) {
                if (head.next_uid <= s->first_uid || head.next_uid < next)
                        return client_protocol_error(c);
                s->first_uid = head.next_uid;
        }
        return 0;
}

_public_ int mfb_usage(mfb_client *c, size_t n, uid_t **ret_uids, mfb_limit **ret_limits, size_t *ret_count) {
        struct usage_state s = { .n_resources = n };
        int r;

        if (!c || !ret_uids || !ret_limits || !ret_count)
                return -EINVAL;

        client_error_clear(c);
        do {
                struct mfb_wire_usage_request request = { .first_uid = s.first_uid };

                r = client_call(c, MFB_WIRE_OP_USAGE, &request, sizeof(request), usage_parse, &s);
                if (r < 0) {
                        free(s.uids);
                        free(s.limits);
                        return r;
                }
        } while (s.more);

        if (s.n == 0 || n == 0) {
                free(s.limits);
                s.limits = NULL;
        }
        if (s.n == 0) {
                free(s.uids);
                s.uids = NULL;
        }
        *ret_uids = s.uids;
        *ret_limits = s.limits;
        *ret_count = s.n;
        return MFB_WIRE_RESOURCE_COUNT;
}
