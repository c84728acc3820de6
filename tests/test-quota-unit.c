/* SPDX-License-Identifier: MIT */
/*
 * daemon/quota.c on its own, without a broker: the fair share of what is
 * left (dbus-broker's rule, quota.h), limits per uid, exempt uids, charges
 * of several resources at once, moves between uids, forced charges,
 * refused connections, and the uids USAGE pages through. The expected
 * values come from a model of the rule in this file, which finds the
 * largest charge by trying one after the other, not from the formula
 * quota.c solves it with.
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

/*
 * quota_users(), which USAGE pages through. What the tests expect is kept
 * here sorted with qsort() and searched by scanning, not with the binary
 * search of quota.c.
 */
#define LISTED_MAX 320

/* Put in a page's room beforehand; no test charges it, so that a store past what is listed shows. */
#define NOT_A_TEST_UID 0xdeadbeefU

struct listed {
        uid_t uids[LISTED_MAX];
        size_t n;
};

static int compare_uids(const void *a, const void *b) {
        uid_t x = *(const uid_t *) a, y = *(const uid_t *) b;

        return x < y ? -1 : x > y;
}

/* The position of the first uid at least uid. */
static size_t listed_find(const struct listed *l, uid_t uid) {
        size_t i = 0;

        while (i < l->n && l->uids[i] < uid)
                i++;
        return i;
}

static bool listed_has(const struct listed *l, uid_t uid) {
        size_t i = listed_find(l, uid);

        return i < l->n && l->uids[i] == uid;
}

static void listed_add(struct listed *l, uid_t uid) {
        ck_assert(!listed_has(l, uid));
        ck_assert_uint_lt(l->n, LISTED_MAX);
        l->uids[l->n++] = uid;
        qsort(l->uids, l->n, sizeof(l->uids[0]), compare_uids);
}

static void listed_remove(struct listed *l, uid_t uid) {
        size_t i = listed_find(l, uid);

        ck_assert(i < l->n && l->uids[i] == uid);
        for (l->n--; i < l->n; i++)
                l->uids[i] = l->uids[i + 1];
}

/*
 * One page of n from first_uid: the uids listed from there, no more than
 * n, nothing stored past them, and *ret_more set (from the wrong value)
 * exactly when uids follow the page, with n == 0 too.
 */
static void assert_page(const struct quota *q, const struct listed *l, uid_t first_uid, size_t n) {
        uid_t page[LISTED_MAX + 2];
        size_t from = listed_find(l, first_uid), want = n < l->n - from ? n : l->n - from, got, i;
        bool want_more = from + want < l->n, more = !want_more;

        ck_assert_uint_le(n, ELEMENTSOF(page));
        for (i = 0; i < ELEMENTSOF(page); i++)
                page[i] = NOT_A_TEST_UID;
        got = quota_users(q, first_uid, page, n, &more);
        ck_assert_msg(got == want, "from uid %u, %zu at a time: %zu uids listed, not %zu", (unsigned) first_uid, n,
                      got, want);
        /* One assertion per page, not per uid: Check records every one that passes. */
        for (i = 0; i < got && page[i] == l->uids[from + i]; i++)
                ;
        ck_assert_msg(i == got, "from uid %u, %zu at a time: uid %u listed at %zu, not %u", (unsigned) first_uid, n,
                      (unsigned) page[i], i, (unsigned) l->uids[from + i]);
        for (i = got; i < ELEMENTSOF(page) && page[i] == NOT_A_TEST_UID; i++)
                ;
        ck_assert_msg(i == ELEMENTSOF(page), "from uid %u, %zu at a time: %u stored at %zu, past the %zu listed",
                      (unsigned) first_uid, n, (unsigned) page[i], i, got);
        ck_assert_msg(more == want_more, "from uid %u, %zu at a time: more is %s with %zu of %zu uids after the page",
                      (unsigned) first_uid, n, more ? "true" : "false", l->n - from - want, l->n);
}

/*
 * Pages from at, just below and just above every listed uid (so from
 * between two, and beyond the last), of 0, 1, one fewer than the uids
 * left, as many, one more and a USAGE reply's rows.
 */
static void assert_every_page(const struct quota *q, const struct listed *l) {
        assert_page(q, l, 0, l->n);
        assert_page(q, l, UINT32_MAX, 1);
        for (size_t i = 0; i < l->n; i++) {
                /* Wrapping around is fine: 0 - 1 is from beyond all, UINT32_MAX + 1 from the first. */
                const uid_t firsts[] = { l->uids[i], l->uids[i] - 1, l->uids[i] + 1 };

                for (size_t j = 0; j < ELEMENTSOF(firsts); j++) {
                        size_t left = l->n - listed_find(l, firsts[j]);

                        assert_page(q, l, firsts[j], 0);
                        assert_page(q, l, firsts[j], 1);
                        if (left > 1)
                                assert_page(q, l, firsts[j], left - 1);
                        assert_page(q, l, firsts[j], left);
                        assert_page(q, l, firsts[j], left + 1);
                        assert_page(q, l, firsts[j], MFB_WIRE_USAGE_ROWS_MAX);
                }
        }
}

/* Pages through everything n at a time as USAGE's callers do, each page from the uid after the last one. */
static void assert_walk(const struct quota *q, const struct listed *l, size_t n) {
        uid_t page[LISTED_MAX + 1], first_uid = 0;
        size_t seen = 0, got, i;
        bool more = true;

        ck_assert_uint_le(n, ELEMENTSOF(page));
        for (size_t pages = 0; more; pages++) {
                ck_assert_msg(pages <= l->n, "paging %zu at a time does not end", n);
                got = quota_users(q, first_uid, page, n, &more);
                ck_assert_msg(got <= l->n - seen, "paging %zu at a time lists %zu uids past the %zu", n,
                              got - (l->n - seen), l->n);
                for (i = 0; i < got && page[i] == l->uids[seen + i]; i++)
                        ;
                ck_assert_msg(i == got, "paging %zu at a time: uid %u listed at %zu, not %u", n, (unsigned) page[i],
                              seen + i, (unsigned) l->uids[seen + i]);
                seen += got;
                if (more) {
                        ck_assert_uint_eq(got, n);
                        first_uid = page[got - 1] + 1;
                }
        }
        ck_assert_msg(seen == l->n, "paging %zu at a time lists %zu uids, not %zu", n, seen, l->n);
}

/* Limits that let hundreds of uids each hold some of every resource. */
static struct quota *users_quota(void) {
        struct quota_limits limits;
        struct quota *q;

        for (unsigned i = 0; i < MFB_WIRE_RESOURCE_COUNT; i++) {
                limits.broker_max.n[i] = 1U << 20;
                limits.uid_max.n[i] = MFB_WIRE_LIMIT_NONE;
        }
        ck_assert_int_eq(quota_new(&limits, EXEMPT_UID, &q), 0);
        return q;
}

/* What uid is charged with: one of a resource of its own, so that entries hold different ones. */
static struct quota_amount amount_of(uid_t uid) {
        struct quota_amount a = { .n = { 0 } };

        a.n[uid % MFB_WIRE_RESOURCE_COUNT] = 1;
        return a;
}

static void charge_user(struct quota *q, struct listed *l, uid_t uid) {
        struct quota_amount a = amount_of(uid);

        ck_assert_msg(quota_charge(q, uid, &a, NULL) == 0, "charging uid %u failed", (unsigned) uid);
        listed_add(l, uid);
}

static void discharge_user(struct quota *q, struct listed *l, uid_t uid) {
        struct quota_amount a = amount_of(uid);

        quota_discharge(q, uid, &a);
        listed_remove(l, uid);
}

/* Edges of uid_t, the exempt uids and the overflow uid 65534 (nobody) with its neighbours. */
static const uid_t edge_uids[] = {
        0, 1, EXEMPT_UID, UID_A, UID_B, 65533, 65534, 65535, 65536,
        INT32_MAX, (uid_t) INT32_MAX + 1, UINT32_MAX - 1, UINT32_MAX,
};

/* n distinct uids, edge_uids[] among them, in a shuffled order. */
static void shuffled_uids(uid_t *uids, size_t n, uint32_t state) {
        size_t have = 0;

        ck_assert_uint_ge(n, ELEMENTSOF(edge_uids));
        for (; have < ELEMENTSOF(edge_uids); have++)
                uids[have] = edge_uids[have];
        while (have < n) {
                uid_t high = next_random(&state), uid = high << 16 | next_random(&state);
                size_t i = 0;

                /* Some close to each other too, not only spread over 32 bits. */
                if (have % 3 == 0)
                        uid = 1000 + next_random(&state) % 200;
                while (i < have && uids[i] != uid)
                        i++;
                if (i == have && uid != NOT_A_TEST_UID)
                        uids[have++] = uid;
        }
        for (size_t i = n - 1; i > 0; i--) {
                size_t j = next_random(&state) % (i + 1);
                uid_t t = uids[i];

                uids[i] = uids[j];
                uids[j] = t;
        }
}

START_TEST(users_are_listed_in_ascending_order_whatever_order_they_came_in) {
        static const size_t page_sizes[] = { 1, 2, 3, MFB_WIRE_USAGE_ROWS_MAX, 299, 300, 301 };
        uid_t order[300];
        struct listed l = { .n = 0 };
        struct quota *q = users_quota();

        shuffled_uids(order, ELEMENTSOF(order), 7);
        for (size_t i = 0; i < ELEMENTSOF(order); i++) {
                charge_user(q, &l, order[i]);
                /* The newcomer is where it belongs, and everything is in order. */
                assert_page(q, &l, order[i], 1);
                assert_page(q, &l, 0, l.n + 1);
        }
        assert_every_page(q, &l);
        for (size_t i = 0; i < ELEMENTSOF(page_sizes); i++)
                assert_walk(q, &l, page_sizes[i]);
        quota_free(q);
}
END_TEST

/* A page from first_uid of n must be exactly count uids, want[], and more. */
static void expect_page(const struct quota *q, uid_t first_uid, size_t n, const uid_t *want, size_t count,
                        bool want_more) {
        uid_t page[8];
        bool more = !want_more;
        size_t got;

        ck_assert_uint_le(n, ELEMENTSOF(page));
        for (size_t i = 0; i < ELEMENTSOF(page); i++)
                page[i] = NOT_A_TEST_UID;
        got = quota_users(q, first_uid, page, n, &more);
        ck_assert_msg(got == count, "from uid %u, %zu at a time: %zu uids listed, not %zu", (unsigned) first_uid, n,
                      got, count);
        for (size_t i = 0; i < count; i++)
                ck_assert_msg(page[i] == want[i], "from uid %u, %zu at a time: uid %u listed at %zu, not %u",
                              (unsigned) first_uid, n, (unsigned) page[i], i, (unsigned) want[i]);
        for (size_t i = count; i < ELEMENTSOF(page); i++)
                ck_assert_msg(page[i] == NOT_A_TEST_UID, "from uid %u, %zu at a time: stored past the %zu listed",
                              (unsigned) first_uid, n, count);
        ck_assert_msg(more == want_more, "from uid %u, %zu at a time: more is %s", (unsigned) first_uid, n,
                      more ? "true" : "false");
}

START_TEST(users_page_from_first_uid_n_at_a_time) {
        static const uid_t stored[] = { UINT32_MAX, 6, 65534, 0, 100, 5 };
        struct listed l = { .n = 0 };
        struct quota *q = users_quota();

        /* Nothing to list, from anywhere, of any size. */
        expect_page(q, 0, 0, NULL, 0, false);
        expect_page(q, 0, 8, NULL, 0, false);
        expect_page(q, UINT32_MAX, 1, NULL, 0, false);

        for (size_t i = 0; i < ELEMENTSOF(stored); i++)
                charge_user(q, &l, stored[i]);

        /* At a stored uid, the page starts with it; fewer than are left, more follow. */
        expect_page(q, 0, 2, (const uid_t[]) { 0, 5 }, 2, true);
        expect_page(q, 5, 2, (const uid_t[]) { 5, 6 }, 2, true);
        expect_page(q, 6, 1, (const uid_t[]) { 6 }, 1, true);
        /* Between stored uids, from the next one up. */
        expect_page(q, 1, 1, (const uid_t[]) { 5 }, 1, true);
        expect_page(q, 7, 2, (const uid_t[]) { 100, 65534 }, 2, true);
        expect_page(q, 101, 1, (const uid_t[]) { 65534 }, 1, true);
        /* Exactly as many as are left: nothing more, and the last is UINT32_MAX. */
        expect_page(q, 7, 3, (const uid_t[]) { 100, 65534, UINT32_MAX }, 3, false);
        expect_page(q, 65535, 1, (const uid_t[]) { UINT32_MAX }, 1, false);
        expect_page(q, UINT32_MAX, 1, (const uid_t[]) { UINT32_MAX }, 1, false);
        /* More room than is left. */
        expect_page(q, 7, 8, (const uid_t[]) { 100, 65534, UINT32_MAX }, 3, false);
        expect_page(q, 0, 8, (const uid_t[]) { 0, 5, 6, 100, 65534, UINT32_MAX }, 6, false);

        /* n == 0 lists nothing, and tells whether there is any uid from first_uid up. */
        expect_page(q, 0, 0, NULL, 0, true);
        expect_page(q, 7, 0, NULL, 0, true);
        expect_page(q, UINT32_MAX, 0, NULL, 0, true);

        /* Beyond the last stored uid: nothing, and nothing more. */
        discharge_user(q, &l, UINT32_MAX);
        expect_page(q, 65535, 1, NULL, 0, false);
        expect_page(q, 65535, 0, NULL, 0, false);
        expect_page(q, UINT32_MAX, 8, NULL, 0, false);
        expect_page(q, 7, 2, (const uid_t[]) { 100, 65534 }, 2, false);

        /* The same, found by the test's model of quota_users(), which the other tests rely on. */
        assert_every_page(q, &l);
        quota_free(q);
}
END_TEST

START_TEST(a_user_that_gives_everything_back_leaves_the_pages_and_comes_back_in_place) {
        uid_t order[300], chosen[4];
        struct listed l = { .n = 0 };
        struct quota *q = users_quota();
        uint32_t state = 11;

        shuffled_uids(order, ELEMENTSOF(order), 3);
        for (size_t i = 0; i < ELEMENTSOF(order); i++)
                charge_user(q, &l, order[i]);

        /* The first, the last and two neighbours in the middle, then half of all in the shuffled order. */
        chosen[0] = l.uids[0];
        chosen[1] = l.uids[l.n - 1];
        chosen[2] = l.uids[l.n / 2];
        chosen[3] = l.uids[l.n / 2 + 1];
        for (size_t i = 0; i < ELEMENTSOF(chosen); i++) {
                discharge_user(q, &l, chosen[i]);
                assert_page(q, &l, 0, l.n + 1);
                assert_page(q, &l, chosen[i], 1);
        }
        assert_every_page(q, &l);
        for (size_t i = 0; i < ELEMENTSOF(chosen); i++) {
                charge_user(q, &l, chosen[i]);
                assert_page(q, &l, 0, l.n + 1);
                assert_page(q, &l, chosen[i], 1);
        }

        /* Half of them one after the other, then back in another order. */
        for (size_t i = 0; i < ELEMENTSOF(order) / 2; i++) {
                discharge_user(q, &l, order[i]);
                assert_page(q, &l, 0, l.n + 1);
        }
        assert_every_page(q, &l);
        for (size_t i = ELEMENTSOF(order) / 2; i > 0; i--) {
                size_t j = next_random(&state) % i;
                uid_t t = order[i - 1];

                order[i - 1] = order[j];
                order[j] = t;
                charge_user(q, &l, order[i - 1]);
                assert_page(q, &l, 0, l.n + 1);
        }
        assert_every_page(q, &l);

        /* All of them: an empty table, as at first. */
        for (size_t i = 0; i < ELEMENTSOF(order); i++)
                discharge_user(q, &l, order[i]);
        ck_assert_uint_eq(l.n, 0);
        assert_page(q, &l, 0, 1);
        assert_page(q, &l, 0, 0);
        quota_free(q);
}
END_TEST

START_TEST(users_are_listed_while_they_hold_something_or_wait_to_be_refused) {
        struct quota_amount two = { .n = { [MFB_WIRE_RESOURCE_REGIONS] = 1, [MFB_WIRE_RESOURCE_BYTES] = 10 } };
        struct quota_amount regions = { .n = { [MFB_WIRE_RESOURCE_REGIONS] = 1 } };
        struct quota_amount bytes10 = bytes(10), all = bytes(1U << 20), nothing = { .n = { 0 } };
        struct listed l = { .n = 0 };
        struct quota *q = users_quota();

        charge_user(q, &l, UID_A);
        charge_user(q, &l, UID_C);
        charge_user(q, &l, 65534);

        /* Charged nothing, or refused: no entry is left behind. */
        ck_assert_int_eq(quota_charge(q, UID_B, &nothing, NULL), 0);
        ck_assert_int_eq(quota_charge_force(q, UID_B, &nothing), 0);
        ck_assert_int_eq(quota_charge(q, UID_B, &all, NULL), -EDQUOT);
        assert_every_page(q, &l);

        /* Giving back one of two resources is not giving back everything. */
        ck_assert_int_eq(quota_charge(q, UID_B, &two, NULL), 0);
        listed_add(&l, UID_B);
        quota_discharge(q, UID_B, &bytes10);
        assert_every_page(q, &l);
        quota_discharge(q, UID_B, &regions);
        listed_remove(&l, UID_B);
        assert_every_page(q, &l);

        /* A refused connection waiting to be told keeps its uid listed, holding nothing or once it gave all back. */
        ck_assert_int_eq(quota_add_refused(q, UID_B), 0);
        listed_add(&l, UID_B);
        assert_every_page(q, &l);
        ck_assert_int_eq(quota_add_refused(q, UID_A), 0);
        discharge_user(q, &l, UID_A);
        listed_add(&l, UID_A);
        assert_every_page(q, &l);
        quota_remove_refused(q, UID_A);
        listed_remove(&l, UID_A);
        quota_remove_refused(q, UID_B);
        listed_remove(&l, UID_B);
        assert_every_page(q, &l);

        /* A move of all a uid holds takes it off the pages and puts the other on. */
        ck_assert_int_eq(quota_charge(q, UID_B, &bytes10, NULL), 0);
        listed_add(&l, UID_B);
        ck_assert_int_eq(quota_move(q, UID_B, UID_A, &bytes10, NULL), 0);
        listed_remove(&l, UID_B);
        listed_add(&l, UID_A);
        assert_every_page(q, &l);
        /*
         * A refused one puts back in place the uid that let go of all it
         * held for a moment (what it holds, with A's, is more than the
         * broker has room for), and lists no newcomer.
         */
        ck_assert_int_eq(quota_charge_force(q, UID_B, &all), 0);
        listed_add(&l, UID_B);
        ck_assert_int_eq(quota_move(q, UID_B, 4242, &all, NULL), -ENOSPC);
        assert_every_page(q, &l);
        quota_free(q);
}
END_TEST

START_TEST(exempt_uids_are_listed_while_they_hold_something) {
        struct quota_amount a = bytes(10);
        struct listed l = { .n = 0 };
        struct quota *q = users_quota();

        charge_user(q, &l, UID_A);
        charge_user(q, &l, 1);

        /* Root and the broker's own uid, exempt from the shares, are listed like any other. */
        ck_assert_int_eq(quota_charge(q, EXEMPT_UID, &a, NULL), 0);
        listed_add(&l, EXEMPT_UID);
        ck_assert_int_eq(quota_charge_force(q, 0, &a), 0);
        listed_add(&l, 0);
        assert_every_page(q, &l);

        /* And leave the pages once they gave everything back. */
        quota_discharge(q, EXEMPT_UID, &a);
        listed_remove(&l, EXEMPT_UID);
        assert_every_page(q, &l);
        quota_discharge(q, 0, &a);
        listed_remove(&l, 0);
        assert_every_page(q, &l);

        /* They never wait to be refused, so a refused connection of theirs lists nothing. */
        ck_assert_int_eq(quota_add_refused(q, 0), -EDQUOT);
        ck_assert_int_eq(quota_add_refused(q, EXEMPT_UID), -EDQUOT);
        assert_every_page(q, &l);
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
        tcase_add_test(tc, users_are_listed_in_ascending_order_whatever_order_they_came_in);
        tcase_add_test(tc, users_page_from_first_uid_n_at_a_time);
        tcase_add_test(tc, a_user_that_gives_everything_back_leaves_the_pages_and_comes_back_in_place);
        tcase_add_test(tc, users_are_listed_while_they_hold_something_or_wait_to_be_refused);
        tcase_add_test(tc, exempt_uids_are_listed_while_they_hold_something);
        suite_add_tcase(s, tc);
        return s;
}
