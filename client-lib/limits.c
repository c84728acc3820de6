/* SPDX-License-Identifier: MIT */
#include <errno.h>
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
