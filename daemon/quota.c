/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hashmap.h"
#include "log.h"
#include "macro.h"
#include "quota.h"

/*
 * Refused connections that one uid may have waiting to be told so (their
 * first request is answered -EDQUOT). Each holds an fd in the broker until
 * then, so more are closed at once, without an answer.
 */
#define REFUSED_CONNECTIONS_MAX 8U

/* A uid that keeps being refused connections is logged at most this often. */
#define LIMIT_LOG_INTERVAL_SEC 60

struct quota_user {
        uint64_t uid;           /* the key: hashmap_u64_ops wants 64 bits */
        struct quota_amount held;
        uint32_t refused;       /* refused connections waiting to be told */
        time_t limit_logged;    /* CLOCK_MONOTONIC seconds of the last notice, 0 for never */
};

struct quota {
        struct quota_limits limits;
        uid_t exempt_uid;
        struct quota_amount used;               /* by every uid, exempt ones included */
        uint64_t holders[MFB_WIRE_RESOURCE_COUNT];   /* non-exempt uids holding some */
        struct hashmap *users;                  /* uid → struct quota_user; exempt ones only for reporting */
        /*
         * The same entries in ascending uid order, for USAGE to page through
         * at a bounded cost per page. An entry comes and goes with a uid's
         * first and last charge, rarely compared with the charges
         * themselves; moving the pointers after it is cheap at any number
         * of uids a machine has.
         */
        struct quota_user **sorted;
        size_t n_sorted, n_sorted_allocated;
};

int quota_new(const struct quota_limits *limits, uid_t exempt_uid, struct quota **ret) {
        struct quota *q;
        int r;

        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->limits = *limits;
        q->exempt_uid = exempt_uid;
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
        free(q->sorted);
        free(q);
        return NULL;
}

const struct quota_limits *quota_limits(const struct quota *q) {
        return &q->limits;
}

bool quota_is_exempt(const struct quota *q, uid_t uid) {
        return uid == 0 || uid == q->exempt_uid;
}

const char *quota_resource_name(enum mfb_wire_resource resource) {
        static const char *const names[MFB_WIRE_RESOURCE_COUNT] = {
                [MFB_WIRE_RESOURCE_REGIONS] = "regions",
                [MFB_WIRE_RESOURCE_BYTES] = "bytes",
                [MFB_WIRE_RESOURCE_FDS] = "file descriptors",
                [MFB_WIRE_RESOURCE_CONNECTIONS] = "connections",
                [MFB_WIRE_RESOURCE_QUEUED_BYTES] = "bytes of queued replies",
                [MFB_WIRE_RESOURCE_WAITERS] = "pending WAITs",
                [MFB_WIRE_RESOURCE_KEPT] = "named regions kept across restarts",
                [MFB_WIRE_RESOURCE_HOLDS] = "region references",
        };

        return (unsigned) resource < MFB_WIRE_RESOURCE_COUNT ? names[resource] : "?";
}

static struct quota_user *user_get(const struct quota *q, uid_t uid) {
        uint64_t key = uid;

        return hashmap_get(q->users, &key);
}

/* The position in q->sorted of the first entry whose uid is at least uid. */
static size_t sorted_find(const struct quota *q, uint64_t uid) {
        size_t lo = 0, hi = q->n_sorted;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (q->sorted[mid]->uid < uid)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* The entry of uid, created empty if needed; NULL when out of memory. */
static struct quota_user *user_get_or_add(struct quota *q, uid_t uid) {
        struct quota_user *u = user_get(q, uid);
        size_t i;

        if (u)
                return u;
        /* Room first, so that nothing is to be undone after the entry is in the table. */
        if (GREEDY_REALLOC(q->sorted, q->n_sorted_allocated, q->n_sorted + 1) < 0)
                return NULL;
        u = calloc(1, sizeof(*u));
        if (!u)
                return NULL;
        u->uid = uid;
        if (hashmap_put(q->users, &u->uid, u) < 0) {
                free(u);
                return NULL;
        }
        i = sorted_find(q, u->uid);
        memmove(q->sorted + i + 1, q->sorted + i, (q->n_sorted - i) * sizeof(q->sorted[0]));
        q->sorted[i] = u;
        q->n_sorted++;
        return u;
}

/* Frees u once it holds nothing. */
static void user_forget_if_unused(struct quota *q, struct quota_user *u) {
        size_t pos;

        if (u->refused > 0)
                return;
        for (unsigned i = 0; i < MFB_WIRE_RESOURCE_COUNT; i++)
                if (u->held.n[i] > 0)
                        return;
        pos = sorted_find(q, u->uid);
        assert(pos < q->n_sorted && q->sorted[pos] == u);
        memmove(q->sorted + pos, q->sorted + pos + 1, (q->n_sorted - pos - 1) * sizeof(q->sorted[0]));
        q->n_sorted--;
        hashmap_remove(q->users, &u->uid);
        free(u);
}

size_t quota_users(const struct quota *q, uid_t first_uid, uid_t *ret_uids, size_t n, bool *ret_more) {
        size_t i = sorted_find(q, first_uid), k = 0;

        for (; k < n && i < q->n_sorted; k++, i++)
                ret_uids[k] = (uid_t) q->sorted[i]->uid;
        *ret_more = i < q->n_sorted;
        return k;
}

static uint64_t left(const struct quota *q, enum mfb_wire_resource i) {
        uint64_t max = q->limits.broker_max.n[i];

        return q->used.n[i] >= max ? 0 : max - q->used.n[i];
}

/*
 * The most of resource i that a non-exempt uid holding held may take more:
 * its limit per uid, and the largest charge with
 * (n + 1) * (held + charge) - held <= left, that is
 * charge <= (left + held) / (n + 1) - held.
 */
static uint64_t share_available(const struct quota *q, enum mfb_wire_resource i, uint64_t held) {
        uint64_t n = q->holders[i] + (held == 0 ? 1 : 0), l = left(q, i), uid_max = q->limits.uid_max.n[i];
        uint64_t share, by_share;

        /* left + held <= broker_max <= UINT64_MAX only if used counts held; it does, but saturate anyway. */
        share = (l > UINT64_MAX - held ? UINT64_MAX : l + held) / (n + 1);
        by_share = share > held ? share - held : 0;
        if (uid_max != MFB_WIRE_LIMIT_NONE)
                return held >= uid_max ? 0 : by_share < uid_max - held ? by_share : uid_max - held;
        return by_share;
}

uint64_t quota_available(const struct quota *q, uid_t uid, enum mfb_wire_resource resource) {
        const struct quota_user *u;

        if (quota_is_exempt(q, uid))
                return left(q, resource);
        u = user_get(q, uid);
        return share_available(q, resource, u ? u->held.n[resource] : 0);
}

/* Checks amount for uid (u its entry, NULL when it has none) without charging. */
static int check(const struct quota *q, uid_t uid, const struct quota_user *u, const struct quota_amount *amount,
                 enum mfb_wire_resource *ret_refused) {
        for (unsigned i = 0; i < MFB_WIRE_RESOURCE_COUNT; i++) {
                uint64_t charge = amount->n[i];
                int r = 0;

                if (charge == 0)
                        continue;
                if (charge > left(q, i))
                        r = -ENOSPC;
                else if (!quota_is_exempt(q, uid) && charge > share_available(q, i, u ? u->held.n[i] : 0))
                        r = -EDQUOT;
                if (r < 0) {
                        if (ret_refused)
                                *ret_refused = i;
                        return r;
                }
        }
        return 0;
}

int quota_charge_force(struct quota *q, uid_t uid, const struct quota_amount *amount) {
        bool exempt = quota_is_exempt(q, uid);
        struct quota_user *u;

        u = user_get_or_add(q, uid);
        if (!u)
                return -ENOMEM;
        for (unsigned i = 0; i < MFB_WIRE_RESOURCE_COUNT; i++) {
                if (amount->n[i] == 0)
                        continue;
                /* Exempt uids take no share, so they do not make the others' smaller. */
                if (u->held.n[i] == 0 && !exempt)
                        q->holders[i]++;
                u->held.n[i] += amount->n[i];
                q->used.n[i] += amount->n[i];
        }
        /* A charge of nothing leaves no entry behind. */
        user_forget_if_unused(q, u);
        return 0;
}

int quota_charge(struct quota *q, uid_t uid, const struct quota_amount *amount, enum mfb_wire_resource *ret_refused) {
        int r;

        r = check(q, uid, user_get(q, uid), amount, ret_refused);
        if (r < 0)
                return r;
        return quota_charge_force(q, uid, amount);
}

void quota_discharge(struct quota *q, uid_t uid, const struct quota_amount *amount) {
        bool exempt = quota_is_exempt(q, uid);
        struct quota_user *u = user_get(q, uid);

        assert(u);
        for (unsigned i = 0; i < MFB_WIRE_RESOURCE_COUNT; i++) {
                if (amount->n[i] == 0)
                        continue;
                assert(q->used.n[i] >= amount->n[i] && u->held.n[i] >= amount->n[i]);
                q->used.n[i] -= amount->n[i];
                u->held.n[i] -= amount->n[i];
                if (u->held.n[i] == 0 && !exempt)
                        q->holders[i]--;
        }
        user_forget_if_unused(q, u);
}

int quota_move(struct quota *q, uid_t from, uid_t to, const struct quota_amount *amount,
               enum mfb_wire_resource *ret_refused) {
        int r;

        if (from == to)
                return 0;
        quota_discharge(q, from, amount);
        r = quota_charge(q, to, amount, ret_refused);
        if (r < 0)
                /* Cannot fail for want of room: it was held a moment ago. */
                (void) quota_charge_force(q, from, amount);
        return r;
}

uint64_t quota_held(const struct quota *q, uid_t uid, enum mfb_wire_resource resource) {
        const struct quota_user *u = user_get(q, uid);

        return u ? u->held.n[resource] : 0;
}

uint64_t quota_used(const struct quota *q, enum mfb_wire_resource resource) {
        return q->used.n[resource];
}

int quota_add_refused(struct quota *q, uid_t uid) {
        struct quota_user *u;
        struct timespec now;

        /* Exempt uids are refused only when the broker is full: never kept waiting to be told. */
        if (quota_is_exempt(q, uid))
                return -EDQUOT;
        u = user_get_or_add(q, uid);
        if (!u)
                return -EDQUOT;

        clock_gettime(CLOCK_MONOTONIC, &now);
        if (u->limit_logged == 0 || now.tv_sec - u->limit_logged >= LIMIT_LOG_INTERVAL_SEC) {
                log_notice("uid %u reached its limit or share of connections; refusing more until it closes some",
                           (unsigned) uid);
                /* Never 0, which means "never logged". */
                u->limit_logged = now.tv_sec ?: 1;
        }
        if (u->refused >= REFUSED_CONNECTIONS_MAX) {
                user_forget_if_unused(q, u);
                return -EDQUOT;
        }
        u->refused++;
        return 0;
}

void quota_remove_refused(struct quota *q, uid_t uid) {
        struct quota_user *u = user_get(q, uid);

        assert(u && u->refused > 0);
        u->refused--;
        user_forget_if_unused(q, u);
}
