/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "hashmap.h"
#include "log.h"
#include "quota.h"

/*
 * Connections beyond the limit that one uid may have waiting for their
 * refusal (its first request, answered -EDQUOT). Each holds an fd in the
 * broker until then, so more are closed at once, without an answer.
 */
#define REFUSED_CONNECTIONS_MAX 8U

/* A uid that keeps hitting its connection limit is logged at most this often. */
#define LIMIT_LOG_INTERVAL_SEC 60

struct quota_user {
        uint64_t uid;           /* the key: hashmap_u64_ops wants 64 bits */
        struct quota_usage usage;
        uint32_t refused;       /* connections counted as refused */
        time_t limit_logged;    /* CLOCK_MONOTONIC seconds when the connection limit was last logged, 0 for never */
};

struct quota {
        struct quota_limits limits;
        struct hashmap *users;  /* uid → struct quota_user */
};

int quota_new(const struct quota_limits *limits, struct quota **ret) {
        struct quota *q;
        int r;

        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->limits = *limits;
        r = hashmap_new(&hashmap_u64_ops, &q->users);
        if (r < 0) {
                free(q);
                return r;
        }
        *ret = q;
        return 0;
}

struct quota *quota_free(struct quota *q) {
        void *v;

        if (!q)
                return NULL;
        for (size_t i = 0; hashmap_iterate(q->users, &i, &v);)
                free(v);
        hashmap_free(q->users);
        free(q);
        return NULL;
}

const struct quota_limits *quota_limits(const struct quota *q) {
        return &q->limits;
}

static struct quota_user *user_get(const struct quota *q, uid_t uid) {
        uint64_t key = uid;

        return hashmap_get(q->users, &key);
}

/* The entry of uid, created empty if needed; NULL when out of memory. */
static struct quota_user *user_get_or_add(struct quota *q, uid_t uid) {
        struct quota_user *u = user_get(q, uid);

        if (u)
                return u;
        u = calloc(1, sizeof(*u));
        if (!u)
                return NULL;
        u->uid = uid;
        if (hashmap_put(q->users, &u->uid, u) < 0) {
                free(u);
                return NULL;
        }
        return u;
}

/* Frees u once nothing is counted for it. */
static void user_forget_if_unused(struct quota *q, struct quota_user *u) {
        if (u->usage.regions > 0 || u->usage.bytes > 0 || u->usage.connections > 0 || u->refused > 0)
                return;
        hashmap_remove(q->users, &u->uid);
        free(u);
}

void quota_usage(const struct quota *q, uid_t uid, struct quota_usage *ret) {
        const struct quota_user *u = user_get(q, uid);

        *ret = u ? u->usage : (struct quota_usage) {};
}

static bool region_fits(const struct quota *q, const struct quota_user *u, uint64_t size) {
        /* bytes ≤ limit ≤ INT64_MAX and size ≤ INT64_MAX (a file size): the sum cannot wrap. */
        return u->usage.regions < q->limits.regions && u->usage.bytes + size <= q->limits.bytes;
}

int quota_add_region(struct quota *q, uid_t uid, uint64_t size) {
        struct quota_user *u;

        if (uid == 0)
                return 0;
        u = user_get_or_add(q, uid);
        if (!u)
                return -ENOMEM;
        if (!region_fits(q, u, size)) {
                user_forget_if_unused(q, u);
                return -EDQUOT;
        }
        u->usage.regions++;
        u->usage.bytes += size;
        return 0;
}

int quota_charge_region(struct quota *q, uid_t uid, uint64_t size) {
        struct quota_user *u;

        if (uid == 0)
                return 0;
        u = user_get_or_add(q, uid);
        if (!u)
                return -ENOMEM;
        u->usage.regions++;
        u->usage.bytes += size;
        return 0;
}

void quota_remove_region(struct quota *q, uid_t uid, uint64_t size) {
        struct quota_user *u;

        if (uid == 0)
                return;
        u = user_get(q, uid);
        assert(u && u->usage.regions > 0 && u->usage.bytes >= size);
        u->usage.regions--;
        u->usage.bytes -= size;
        user_forget_if_unused(q, u);
}

int quota_move_region(struct quota *q, uid_t from, uid_t to, uint64_t size) {
        int r;

        if (from == to)
                return 0;
        r = quota_add_region(q, to, size);
        if (r < 0)
                return r;
        quota_remove_region(q, from, size);
        return 0;
}

int quota_add_connection(struct quota *q, uid_t uid) {
        struct quota_user *u;
        struct timespec now;

        if (uid == 0)
                return 0;
        u = user_get_or_add(q, uid);
        if (!u)
                return -ENOMEM;
        if (u->usage.connections < q->limits.connections) {
                u->usage.connections++;
                return 0;
        }

        clock_gettime(CLOCK_MONOTONIC, &now);
        if (u->limit_logged == 0 || now.tv_sec - u->limit_logged >= LIMIT_LOG_INTERVAL_SEC) {
                log_notice("uid %u reached the limit of %u connections per uid; refusing more until it closes some",
                           (unsigned) uid, q->limits.connections);
                /* Never 0, which means "never logged". */
                u->limit_logged = now.tv_sec ?: 1;
        }
        if (u->refused >= REFUSED_CONNECTIONS_MAX)
                return -EDQUOT;
        u->refused++;
        return 1;
}

void quota_remove_connection(struct quota *q, uid_t uid, bool refused) {
        struct quota_user *u;

        if (uid == 0)
                return;
        u = user_get(q, uid);
        assert(u && (refused ? u->refused : u->usage.connections) > 0);
        if (refused)
                u->refused--;
        else
                u->usage.connections--;
        user_forget_if_unused(q, u);
}
