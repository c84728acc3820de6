/* SPDX-License-Identifier: MIT */
/*
 * daemon/quota.c on its own, without a broker: the fair share of what is
 * left (dbus-broker's rule, quota.h), limits per uid, exempt uids, charges
 * of several resources at once, moves between uids, forced charges and
 * refused connections. The expected values come from a model of the rule
 * in this file, which finds the largest charge by trying one after the
 * other, not from the formula quota.c solves it with.
 */
#include <errno.h>
#include <string.h>

#include "harness.h"
#include "macro.h"
#include "quota.h"
#include "suites.h"

#define EXEMPT_UID 990          /* the broker's own */
#define UID_A 1000
#define UID_B 1001
#define UID_C 1002

/* Uneven, so that no share comes out round by chance. */
#define BYTES_MAX 997

/* quota.c's REFUSED_CONNECTIONS_MAX, which quota.h documents as the most that wait per uid. */
#define REFUSED_WAITING_MAX 8

/* Every uid whose accounts the tests look at. */
static const uid_t watched[] = { 0, EXEMPT_UID, UID_A, UID_B, UID_C };

/* The largest charge with (n + 1) * (held + charge) - held <= left, found by trying each in turn. */
static uint64_t largest_fitting_charge(uint64_t n, uint64_t held, uint64_t left) {
        uint64_t charge = 0;

        while ((n + 1) * (held + charge + 1) - held <= left)
                charge++;
        return charge;
}

/* What the test expects of the bytes: the limits, and who holds how much of them. */
struct model {
        uint64_t broker_max;
        uint64_t uid_max;                       /* MFB_WIRE_LIMIT_NONE: no limit per uid */
        uint64_t held[ELEMENTSOF(watched)];     /* by each of watched[] */
};

static bool exempt(uid_t uid) {
        return uid == 0 || uid == EXEMPT_UID;
}

static uint64_t *model_held(struct model *m, uid_t uid) {
        for (size_t i = 0; i < ELEMENTSOF(watched); i++)
                if (watched[i] == uid)
                        return &m->held[i];
        ck_abort_msg("uid %u is not one the tests watch", (unsigned) uid);
        return NULL;
}

static uint64_t model_left(const struct model *m) {
        uint64_t used = 0;

        for (size_t i = 0; i < ELEMENTSOF(watched); i++)
                used += m->held[i];
        return used >= m->broker_max ? 0 : m->broker_max - used;
}

/* The most uid may take now: for an exempt uid all that is left, for the others the rule and the limit per uid. */
static uint64_t model_available(struct model *m, uid_t uid) {
        uint64_t held = *model_held(m, uid), n = 0, most;

        if (exempt(uid))
                return model_left(m);
        /* The holders are the non-exempt uids holding some, and the caller. */
        for (size_t i = 0; i < ELEMENTSOF(watched); i++)
                if (!exempt(watched[i]) && (m->held[i] > 0 || watched[i] == uid))
                        n++;
        most = largest_fitting_charge(n, held, model_left(m));
        if (m->uid_max != MFB_WIRE_LIMIT_NONE) {
                if (held >= m->uid_max)
                        return 0;
                if (most > m->uid_max - held)
                        most = m->uid_max - held;
        }
        return most;
}

/* What quota_charge() of charge bytes to uid is to return. */
static int model_expect(struct model *m, uid_t uid, uint64_t charge) {
        if (charge > model_left(m))
                return -ENOSPC;
        if (charge > model_available(m, uid))
                return -EDQUOT;
        return 0;
}

/* Limits with the model's for the bytes, and for every other resource 100 broker-wide, none per uid. */
static struct quota_limits model_limits(const struct model *m) {
        struct quota_limits limits;

        for (unsigned i = 0; i < MFB_WIRE_RESOURCE_COUNT; i++) {
                limits.broker_max.n[i] = 100;
                limits.uid_max.n[i] = MFB_WIRE_LIMIT_NONE;
        }
        limits.broker_max.n[MFB_WIRE_RESOURCE_BYTES] = m->broker_max;
        limits.uid_max.n[MFB_WIRE_RESOURCE_BYTES] = m->uid_max;
        return limits;
}

static struct quota *model_quota(const struct model *m) {
        struct quota_limits limits = model_limits(m);
        struct quota *q;

        ck_assert_int_eq(quota_new(&limits, EXEMPT_UID, &q), 0);
        return q;
}

static struct quota_amount bytes(uint64_t n) {
        struct quota_amount a = { .n = { [MFB_WIRE_RESOURCE_BYTES] = n } };

        return a;
}

/* Every watched uid holds the bytes the model says and may take the most it says; the total is theirs. */
static void assert_as_model(const struct quota *q, struct model *m) {
        uint64_t used = 0;

        for (size_t i = 0; i < ELEMENTSOF(watched); i++) {
                ck_assert_msg(quota_held(q, watched[i], MFB_WIRE_RESOURCE_BYTES) == m->held[i],
                              "uid %u holds %llu bytes, not %llu", (unsigned) watched[i],
                              (unsigned long long) quota_held(q, watched[i], MFB_WIRE_RESOURCE_BYTES),
                              (unsigned long long) m->held[i]);
                ck_assert_msg(quota_available(q, watched[i], MFB_WIRE_RESOURCE_BYTES) == model_available(m, watched[i]),
                              "uid %u may take %llu bytes more, not %llu", (unsigned) watched[i],
                              (unsigned long long) quota_available(q, watched[i], MFB_WIRE_RESOURCE_BYTES),
                              (unsigned long long) model_available(m, watched[i]));
                used += m->held[i];
        }
        ck_assert_uint_eq(quota_used(q, MFB_WIRE_RESOURCE_BYTES), used);
}

/* Charges uid with charge bytes, which must come out as the model says; the model follows. Returns the result. */
static int charge_bytes(struct quota *q, struct model *m, uid_t uid, uint64_t charge) {
        struct quota_amount amount = bytes(charge);
        enum mfb_wire_resource refused = MFB_WIRE_RESOURCE_COUNT;
        int want = model_expect(m, uid, charge), r;

        r = quota_charge(q, uid, &amount, &refused);
        ck_assert_msg(r == want, "uid %u charged %llu bytes: %s, not %s", (unsigned) uid, (unsigned long long) charge,
                      r == 0 ? "success" : strerror(-r), want == 0 ? "success" : strerror(-want));
        if (r == 0)
                *model_held(m, uid) += charge;
        else
                ck_assert_int_eq(refused, MFB_WIRE_RESOURCE_BYTES);
        assert_as_model(q, m);
        return r;
}

static void discharge_bytes(struct quota *q, struct model *m, uid_t uid, uint64_t charge) {
        struct quota_amount amount = bytes(charge);

        quota_discharge(q, uid, &amount);
        *model_held(m, uid) -= charge;
        assert_as_model(q, m);
}

/*
 * uid at its boundary: one byte more than the model allows is refused with
 * EDQUOT and changes nothing, exactly that much is taken, then not one more.
 */
static void take_the_most(struct quota *q, struct model *m, uid_t uid) {
        uint64_t most = model_available(m, uid);

        ck_assert_uint_eq(quota_available(q, uid, MFB_WIRE_RESOURCE_BYTES), most);
        ck_assert_int_eq(charge_bytes(q, m, uid, most + 1), -EDQUOT);
        if (most > 0)
                ck_assert_int_eq(charge_bytes(q, m, uid, most), 0);
        ck_assert_int_eq(charge_bytes(q, m, uid, 1), -EDQUOT);
}

/* All that the watched uids hold and may take of every resource, and the totals. */
struct snapshot {
        uint64_t held[ELEMENTSOF(watched)][MFB_WIRE_RESOURCE_COUNT];
        uint64_t available[ELEMENTSOF(watched)][MFB_WIRE_RESOURCE_COUNT];
        uint64_t used[MFB_WIRE_RESOURCE_COUNT];
};

static void snapshot(const struct quota *q, struct snapshot *ret) {
        for (unsigned r = 0; r < MFB_WIRE_RESOURCE_COUNT; r++) {
                for (size_t i = 0; i < ELEMENTSOF(watched); i++) {
                        ret->held[i][r] = quota_held(q, watched[i], r);
                        ret->available[i][r] = quota_available(q, watched[i], r);
                }
                ret->used[r] = quota_used(q, r);
        }
}

static void assert_unchanged(const struct quota *q, const struct snapshot *before) {
        struct snapshot now;

        snapshot(q, &now);
        for (unsigned r = 0; r < MFB_WIRE_RESOURCE_COUNT; r++) {
                for (size_t i = 0; i < ELEMENTSOF(watched); i++) {
                        ck_assert_msg(now.held[i][r] == before->held[i][r], "uid %u holds %llu %s, not %llu as before",
                                      (unsigned) watched[i], (unsigned long long) now.held[i][r],
                                      quota_resource_name(r), (unsigned long long) before->held[i][r]);
                        ck_assert_msg(now.available[i][r] == before->available[i][r],
                                      "uid %u may take %llu %s, not %llu as before", (unsigned) watched[i],
                                      (unsigned long long) now.available[i][r], quota_resource_name(r),
                                      (unsigned long long) before->available[i][r]);
                }
                ck_assert_msg(now.used[r] == before->used[r], "%llu %s used, not %llu as before",
                              (unsigned long long) now.used[r], quota_resource_name(r),
                              (unsigned long long) before->used[r]);
        }
}

START_TEST(share_at_its_boundary_for_one_two_and_three_uids) {
        static const uid_t uids[] = { UID_A, UID_B, UID_C };
        /* By hand: 2 * 498 <= 997; 3 * 299 <= 997 - 100; 4 * 174 <= 997 - 100 - 200. */
        static const uint64_t newcomer_most[] = { 498, 299, 174 };

        for (size_t n_uids = 1; n_uids <= ELEMENTSOF(uids); n_uids++) {
                struct model m = { .broker_max = BYTES_MAX, .uid_max = MFB_WIRE_LIMIT_NONE };
                struct quota *q = model_quota(&m);

                /* The others came first and took less than their share, so they may take more later. */
                for (size_t i = 0; i + 1 < n_uids; i++)
                        ck_assert_int_eq(charge_bytes(q, &m, uids[i], 100 * (i + 1)), 0);
                /* The newcomer, which counts itself among the holders, then the others, each to its boundary. */
                ck_assert_uint_eq(model_available(&m, uids[n_uids - 1]), newcomer_most[n_uids - 1]);
                take_the_most(q, &m, uids[n_uids - 1]);
                for (size_t i = 0; i + 1 < n_uids; i++)
                        take_the_most(q, &m, uids[i]);
                quota_free(q);
        }
}
END_TEST

START_TEST(a_limit_per_uid_binds_before_the_share) {
        struct model m = { .broker_max = BYTES_MAX, .uid_max = 300 };
        struct quota_limits limits = model_limits(&m);
        struct quota *q;

        ck_assert_int_eq(quota_new(&limits, EXEMPT_UID, &q), 0);
        /* The limits are copied: changing the caller's afterwards changes nothing. */
        limits.uid_max.n[MFB_WIRE_RESOURCE_BYTES] = MFB_WIRE_LIMIT_NONE;
        ck_assert_uint_eq(quota_limits(q)->uid_max.n[MFB_WIRE_RESOURCE_BYTES], 300);

        /* Alone, A's share would be 498 bytes; its limit is 300. */
        ck_assert_uint_eq(model_available(&m, UID_A), 300);
        ck_assert_int_eq(charge_bytes(q, &m, UID_A, 250), 0);
        take_the_most(q, &m, UID_A);
        ck_assert_uint_eq(quota_held(q, UID_A, MFB_WIRE_RESOURCE_BYTES), 300);

        /* For B, the share of the 697 bytes left binds first: 3 * 232 <= 697, below the limit. */
        take_the_most(q, &m, UID_B);
        ck_assert_uint_eq(quota_held(q, UID_B, MFB_WIRE_RESOURCE_BYTES), 232);
        quota_free(q);
}
END_TEST

START_TEST(enospc_only_when_nothing_is_left) {
        struct model m = { .broker_max = BYTES_MAX, .uid_max = MFB_WIRE_LIMIT_NONE };
        struct quota *q = model_quota(&m);

        /* Over its share with room left in the broker: EDQUOT, not ENOSPC. */
        ck_assert_int_eq(charge_bytes(q, &m, UID_A, 100), 0);
        ck_assert_int_eq(charge_bytes(q, &m, UID_A, 500), -EDQUOT);
        ck_assert_int_eq(charge_bytes(q, &m, UID_B, 400), -EDQUOT);

        /* Root takes all that is left; then everyone, exempt or not, is refused with ENOSPC. */
        ck_assert_int_eq(charge_bytes(q, &m, 0, BYTES_MAX - 100), 0);
        ck_assert_uint_eq(quota_used(q, MFB_WIRE_RESOURCE_BYTES), BYTES_MAX);
        for (size_t i = 0; i < ELEMENTSOF(watched); i++) {
                ck_assert_uint_eq(quota_available(q, watched[i], MFB_WIRE_RESOURCE_BYTES), 0);
                ck_assert_int_eq(charge_bytes(q, &m, watched[i], 1), -ENOSPC);
        }

        /* With one byte left, the broker's own uid may take it, but not two. */
        discharge_bytes(q, &m, 0, 1);
        ck_assert_int_eq(charge_bytes(q, &m, EXEMPT_UID, 2), -ENOSPC);
        ck_assert_int_eq(charge_bytes(q, &m, EXEMPT_UID, 1), 0);
        ck_assert_int_eq(charge_bytes(q, &m, EXEMPT_UID, 1), -ENOSPC);

        discharge_bytes(q, &m, EXEMPT_UID, 1);
        discharge_bytes(q, &m, 0, BYTES_MAX - 101);
        discharge_bytes(q, &m, UID_A, 100);
        ck_assert_uint_eq(quota_used(q, MFB_WIRE_RESOURCE_BYTES), 0);
        quota_free(q);
}
END_TEST

START_TEST(exempt_uids_take_what_is_left_without_a_share) {
        static const uid_t exempt_uids[] = { 0, EXEMPT_UID };

        for (size_t i = 0; i < ELEMENTSOF(exempt_uids); i++) {
                uid_t x = exempt_uids[i];
                struct model m = { .broker_max = BYTES_MAX, .uid_max = 400 };
                struct quota *q = model_quota(&m);

                ck_assert(quota_is_exempt(q, x));
                ck_assert(!quota_is_exempt(q, UID_A));
                ck_assert_int_eq(charge_bytes(q, &m, UID_A, 50), 0);

                /* Past the limit per uid and any share: 600 of the 947 bytes left. */
                ck_assert_int_eq(charge_bytes(q, &m, x, 600), 0);
                ck_assert_uint_eq(quota_held(q, x, MFB_WIRE_RESOURCE_BYTES), 600);
                ck_assert_uint_eq(quota_used(q, MFB_WIRE_RESOURCE_BYTES), 650);

                /*
                 * x is no holder: B shares the 347 bytes left with A alone,
                 * 3 * 115 <= 347, where with x counted it would be 86.
                 */
                ck_assert_uint_eq(quota_available(q, UID_B, MFB_WIRE_RESOURCE_BYTES), 115);
                take_the_most(q, &m, UID_B);

                /* And x takes everything left, not a byte more. */
                ck_assert_uint_eq(quota_available(q, x, MFB_WIRE_RESOURCE_BYTES), BYTES_MAX - 650 - 115);
                ck_assert_int_eq(charge_bytes(q, &m, x, BYTES_MAX - 650 - 115 + 1), -ENOSPC);
                ck_assert_int_eq(charge_bytes(q, &m, x, BYTES_MAX - 650 - 115), 0);
                ck_assert_int_eq(charge_bytes(q, &m, x, 1), -ENOSPC);

                discharge_bytes(q, &m, x, BYTES_MAX - 50 - 115);
                ck_assert_uint_eq(quota_held(q, x, MFB_WIRE_RESOURCE_BYTES), 0);
                quota_free(q);
        }
}
END_TEST

START_TEST(a_charge_of_several_resources_is_all_or_nothing) {
        struct quota_limits limits;
        struct quota_amount a = { .n = {
                [MFB_WIRE_RESOURCE_REGIONS] = 1, [MFB_WIRE_RESOURCE_BYTES] = 100,
                [MFB_WIRE_RESOURCE_FDS] = 1, [MFB_WIRE_RESOURCE_HOLDS] = 1,
        } };
        enum mfb_wire_resource refused;
        struct snapshot before;
        struct quota *q;

        limits = model_limits(&(struct model) { .broker_max = BYTES_MAX, .uid_max = MFB_WIRE_LIMIT_NONE });
        limits.uid_max.n[MFB_WIRE_RESOURCE_REGIONS] = 10;
        ck_assert_int_eq(quota_new(&limits, EXEMPT_UID, &q), 0);
        ck_assert_int_eq(quota_charge(q, UID_A, &a, NULL), 0);
        snapshot(q, &before);

        /* fds in the middle refuse (A's share of the 99 left is 49): regions and bytes before, holds after stay. */
        a.n[MFB_WIRE_RESOURCE_FDS] = 50;
        refused = MFB_WIRE_RESOURCE_COUNT;
        ck_assert_int_eq(quota_charge(q, UID_A, &a, &refused), -EDQUOT);
        ck_assert_int_eq(refused, MFB_WIRE_RESOURCE_FDS);
        assert_unchanged(q, &before);
        /* Without anyone to be told which. */
        ck_assert_int_eq(quota_charge(q, UID_A, &a, NULL), -EDQUOT);
        assert_unchanged(q, &before);

        /* The first resource refuses, over the limit per uid. */
        a.n[MFB_WIRE_RESOURCE_FDS] = 1;
        a.n[MFB_WIRE_RESOURCE_REGIONS] = 10;
        ck_assert_int_eq(quota_charge(q, UID_A, &a, &refused), -EDQUOT);
        ck_assert_int_eq(refused, MFB_WIRE_RESOURCE_REGIONS);
        assert_unchanged(q, &before);

        /* The last one refuses. */
        a.n[MFB_WIRE_RESOURCE_REGIONS] = 1;
        a.n[MFB_WIRE_RESOURCE_HOLDS] = 50;
        ck_assert_int_eq(quota_charge(q, UID_A, &a, &refused), -EDQUOT);
        ck_assert_int_eq(refused, MFB_WIRE_RESOURCE_HOLDS);
        assert_unchanged(q, &before);

        /* A newcomer refused does not count as a holder: A's shares stay as they were. */
        a.n[MFB_WIRE_RESOURCE_HOLDS] = 1;
        a.n[MFB_WIRE_RESOURCE_FDS] = 50;
        ck_assert_int_eq(quota_charge(q, UID_B, &a, &refused), -EDQUOT);
        ck_assert_int_eq(refused, MFB_WIRE_RESOURCE_FDS);
        assert_unchanged(q, &before);

        /* Nothing is left of one resource: ENOSPC names it, the others stay. */
        ck_assert_int_eq(quota_charge_force(q, 0, &(struct quota_amount) { .n = { [MFB_WIRE_RESOURCE_WAITERS] = 100 } }), 0);
        snapshot(q, &before);
        a.n[MFB_WIRE_RESOURCE_FDS] = 1;
        a.n[MFB_WIRE_RESOURCE_WAITERS] = 1;
        ck_assert_int_eq(quota_charge(q, UID_A, &a, &refused), -ENOSPC);
        ck_assert_int_eq(refused, MFB_WIRE_RESOURCE_WAITERS);
        assert_unchanged(q, &before);
        quota_free(q);
}
END_TEST

START_TEST(discharge_gives_back_exactly) {
        struct quota_limits limits;
        struct quota_amount x = { .n = {
                [MFB_WIRE_RESOURCE_REGIONS] = 2, [MFB_WIRE_RESOURCE_BYTES] = 200, [MFB_WIRE_RESOURCE_FDS] = 3,
        } };
        struct quota_amount y = { .n = {
                [MFB_WIRE_RESOURCE_REGIONS] = 1, [MFB_WIRE_RESOURCE_BYTES] = 50, [MFB_WIRE_RESOURCE_HOLDS] = 4,
        } };
        struct quota_amount b = { .n = {
                [MFB_WIRE_RESOURCE_REGIONS] = 5, [MFB_WIRE_RESOURCE_BYTES] = 10, [MFB_WIRE_RESOURCE_FDS] = 5,
        } };
        struct snapshot before;
        struct quota *q;

        limits = model_limits(&(struct model) { .broker_max = BYTES_MAX, .uid_max = MFB_WIRE_LIMIT_NONE });
        ck_assert_int_eq(quota_new(&limits, EXEMPT_UID, &q), 0);
        ck_assert_int_eq(quota_charge(q, UID_B, &b, NULL), 0);
        snapshot(q, &before);

        ck_assert_int_eq(quota_charge(q, UID_A, &x, NULL), 0);
        ck_assert_int_eq(quota_charge(q, UID_A, &y, NULL), 0);
        ck_assert_int_eq(quota_charge(q, 0, &x, NULL), 0);

        /* Giving x back leaves A with y, exactly. */
        quota_discharge(q, UID_A, &x);
        for (unsigned r = 0; r < MFB_WIRE_RESOURCE_COUNT; r++) {
                ck_assert_uint_eq(quota_held(q, UID_A, r), y.n[r]);
                ck_assert_uint_eq(quota_used(q, r), b.n[r] + y.n[r] + x.n[r]);
        }

        /* Once A and root gave everything back, all is as before, A no longer a holder sharing with B. */
        quota_discharge(q, UID_A, &y);
        quota_discharge(q, 0, &x);
        assert_unchanged(q, &before);

        quota_discharge(q, UID_B, &b);
        for (unsigned r = 0; r < MFB_WIRE_RESOURCE_COUNT; r++)
                ck_assert_uint_eq(quota_used(q, r), 0);
        quota_free(q);
}
END_TEST

/*
 * Moves charge bytes from one uid to another, which must come out as the
 * model says: checked for to as a charge, as if from had let go first.
 * On refusal, nothing is to change.
 */
static int move_bytes(struct quota *q, struct model *m, uid_t from, uid_t to, uint64_t charge) {
        struct quota_amount amount = bytes(charge);
        enum mfb_wire_resource refused = MFB_WIRE_RESOURCE_COUNT;
        struct model after = *m;
        struct snapshot before;
        int want, r;

        *model_held(&after, from) -= charge;
        want = model_expect(&after, to, charge);
        snapshot(q, &before);
        r = quota_move(q, from, to, &amount, &refused);
        ck_assert_msg(r == want, "moving %llu bytes from uid %u to uid %u: %s, not %s", (unsigned long long) charge,
                      (unsigned) from, (unsigned) to, r == 0 ? "success" : strerror(-r),
                      want == 0 ? "success" : strerror(-want));
        if (r < 0) {
                ck_assert_int_eq(refused, MFB_WIRE_RESOURCE_BYTES);
                assert_unchanged(q, &before);
                return r;
        }
        *model_held(&after, to) += charge;
        *m = after;
        assert_as_model(q, m);
        return r;
}

START_TEST(a_refused_move_leaves_both_uids_as_they_were) {
        struct model m = { .broker_max = BYTES_MAX, .uid_max = 450 };
        struct quota_amount both = { .n = { [MFB_WIRE_RESOURCE_REGIONS] = 2, [MFB_WIRE_RESOURCE_BYTES] = 110 } };
        enum mfb_wire_resource refused;
        struct snapshot before;
        struct quota *q = model_quota(&m);

        ck_assert_int_eq(charge_bytes(q, &m, UID_A, 400), 0);
        ck_assert_int_eq(charge_bytes(q, &m, UID_B, 100), 0);
        ck_assert_int_eq(charge_bytes(q, &m, UID_C, 10), 0);

        /* Part of A's, over B's share of what is left with A still holding some. */
        ck_assert_int_eq(move_bytes(q, &m, UID_A, UID_B, 300), -EDQUOT);
        /* All of A's, which would take B past its limit per uid and its share: A holds all of it again. */
        ck_assert_int_eq(move_bytes(q, &m, UID_A, UID_B, 400), -EDQUOT);
        /* Within B's share: 4 * (100 + 50) - 100 <= 537. */
        ck_assert_int_eq(move_bytes(q, &m, UID_A, UID_B, 50), 0);
        ck_assert_uint_eq(quota_held(q, UID_A, MFB_WIRE_RESOURCE_BYTES), 350);
        ck_assert_uint_eq(quota_held(q, UID_B, MFB_WIRE_RESOURCE_BYTES), 150);
        /* An exempt uid takes it regardless of shares, and gives it back to a uid within its share. */
        ck_assert_int_eq(move_bytes(q, &m, UID_A, 0, 300), 0);
        ck_assert_int_eq(move_bytes(q, &m, 0, UID_C, 300), -EDQUOT);
        ck_assert_int_eq(move_bytes(q, &m, 0, UID_C, 100), 0);
        /* A uid to itself: nothing moves. */
        snapshot(q, &before);
        ck_assert_int_eq(quota_move(q, UID_B, UID_B, &both, &refused), 0);
        assert_unchanged(q, &before);

        /* All that C holds, of two resources, the bytes refusing after the regions: C keeps its regions too. */
        ck_assert_int_eq(quota_charge(q, UID_C, &(struct quota_amount) { .n = { [MFB_WIRE_RESOURCE_REGIONS] = 2 } }, NULL),
                         0);
        snapshot(q, &before);
        ck_assert_int_eq(quota_move(q, UID_C, UID_B, &both, &refused), -EDQUOT);
        ck_assert_int_eq(refused, MFB_WIRE_RESOURCE_BYTES);
        assert_unchanged(q, &before);
        quota_free(q);
}
END_TEST

/* A small deterministic generator, so that a failure repeats. */
static uint32_t next_random(uint32_t *state) {
        *state = *state * 1103515245U + 12345U;
        return *state >> 16;
}

START_TEST(available_is_the_largest_charge_that_succeeds) {
        struct model m = { .broker_max = BYTES_MAX, .uid_max = 300 };
        struct quota *q = model_quota(&m);
        uint32_t state = 9;

        /* Charges and discharges of uids in turn, exempt ones too; at every step each uid's boundary is tried. */
        for (unsigned step = 0; step < 300; step++) {
                uid_t uid = watched[next_random(&state) % ELEMENTSOF(watched)];
                uint64_t held = *model_held(&m, uid);

                if (held > 0 && next_random(&state) % 3 == 0)
                        discharge_bytes(q, &m, uid, 1 + next_random(&state) % held);
                else
                        (void) charge_bytes(q, &m, uid, 1 + next_random(&state) % 200);

                for (size_t i = 0; i < ELEMENTSOF(watched); i++) {
                        uint64_t most = quota_available(q, watched[i], MFB_WIRE_RESOURCE_BYTES);

                        ck_assert_uint_eq(most, model_available(&m, watched[i]));
                        ck_assert_int_lt(charge_bytes(q, &m, watched[i], most + 1), 0);
                        if (most > 0) {
                                ck_assert_int_eq(charge_bytes(q, &m, watched[i], most), 0);
                                discharge_bytes(q, &m, watched[i], most);
                        }
                }
        }
        quota_free(q);
}
END_TEST

START_TEST(a_forced_charge_goes_beyond_every_limit) {
        struct model m = { .broker_max = 100, .uid_max = 10 };
        struct quota_amount amount = bytes(150);
        struct quota *q = model_quota(&m);

        /* Regions kept across a restart: A holds them already, past its limit and the broker's. */
        ck_assert_int_eq(quota_charge_force(q, UID_A, &amount), 0);
        *model_held(&m, UID_A) += 150;
        assert_as_model(q, &m);
        ck_assert_uint_eq(quota_used(q, MFB_WIRE_RESOURCE_BYTES), 150);
        for (size_t i = 0; i < ELEMENTSOF(watched); i++)
                ck_assert_int_eq(charge_bytes(q, &m, watched[i], 1), -ENOSPC);

        /* Then A counts as a holder: with 10 left, B's share is 3 (3 * 3 <= 10), not 5. */
        discharge_bytes(q, &m, UID_A, 60);
        ck_assert_uint_eq(quota_available(q, UID_B, MFB_WIRE_RESOURCE_BYTES), 3);
        take_the_most(q, &m, UID_B);
        ck_assert_int_eq(charge_bytes(q, &m, UID_A, 1), -EDQUOT);

        /* An exempt uid too. */
        ck_assert_int_eq(quota_charge_force(q, EXEMPT_UID, &amount), 0);
        *model_held(&m, EXEMPT_UID) += 150;
        assert_as_model(q, &m);

        discharge_bytes(q, &m, EXEMPT_UID, 150);
        discharge_bytes(q, &m, UID_A, 90);
        discharge_bytes(q, &m, UID_B, 3);
        quota_free(q);
}
END_TEST

START_TEST(refused_connections_wait_at_most_eight_per_uid) {
        struct model m = { .broker_max = BYTES_MAX, .uid_max = MFB_WIRE_LIMIT_NONE };
        struct quota *q = model_quota(&m);
        struct snapshot before;

        snapshot(q, &before);
        for (int i = 0; i < REFUSED_WAITING_MAX; i++) {
                ck_assert_int_eq(quota_add_refused(q, UID_A), 0);
                ck_assert_int_eq(quota_add_refused(q, UID_B), 0);
        }
        /* The ninth of a uid is closed at once, uncounted: after one is told, there is room for one. */
        ck_assert_int_eq(quota_add_refused(q, UID_A), -EDQUOT);
        ck_assert_int_eq(quota_add_refused(q, UID_A), -EDQUOT);
        quota_remove_refused(q, UID_A);
        ck_assert_int_eq(quota_add_refused(q, UID_A), 0);
        ck_assert_int_eq(quota_add_refused(q, UID_A), -EDQUOT);
        ck_assert_int_eq(quota_add_refused(q, UID_B), -EDQUOT);
        /* Every uid has eight of its own. */
        ck_assert_int_eq(quota_add_refused(q, UID_C), 0);
        quota_remove_refused(q, UID_C);

        /* Exempt uids are refused only when the broker is full: they are never kept waiting. */
        ck_assert_int_eq(quota_add_refused(q, 0), -EDQUOT);
        ck_assert_int_eq(quota_add_refused(q, EXEMPT_UID), -EDQUOT);

        /* Waiting connections hold nothing that is shared. */
        assert_unchanged(q, &before);
        for (int i = 0; i < REFUSED_WAITING_MAX; i++) {
                quota_remove_refused(q, UID_A);
                quota_remove_refused(q, UID_B);
        }
        ck_assert_int_eq(quota_add_refused(q, UID_A), 0);
        quota_remove_refused(q, UID_A);
        quota_free(q);
}
END_TEST

Suite *quota_unit_suite(void) {
        Suite *s = suite_create("quota-unit");
        TCase *tc = tcase_create("quota-unit");

        tcase_add_checked_fixture(tc, test_fd_leak_setup, test_fd_leak_teardown);
        tcase_add_test(tc, share_at_its_boundary_for_one_two_and_three_uids);
        tcase_add_test(tc, a_limit_per_uid_binds_before_the_share);
        tcase_add_test(tc, enospc_only_when_nothing_is_left);
        tcase_add_test(tc, exempt_uids_take_what_is_left_without_a_share);
        tcase_add_test(tc, a_charge_of_several_resources_is_all_or_nothing);
        tcase_add_test(tc, discharge_gives_back_exactly);
        tcase_add_test(tc, a_refused_move_leaves_both_uids_as_they_were);
        tcase_add_test(tc, available_is_the_largest_charge_that_succeeds);
        tcase_add_test(tc, a_forced_charge_goes_beyond_every_limit);
        tcase_add_test(tc, refused_connections_wait_at_most_eight_per_uid);
        suite_add_tcase(s, tc);
        return s;
}
