/* SPDX-License-Identifier: MIT */
/*
 * daemon/access.c on its own: the SysV rules of access.h for every mode,
 * every kind of peer and every access, against a model written from the
 * header's words; who owns a region and who may see it; group membership
 * by primary and supplementary groups; and peer_get() on a real socket.
 * The regions come from a region table of the test's (region_create()
 * and region_set_owner()), so that the test sets their owner, group,
 * creator and mode only as the broker does.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "access.h"
#include "harness.h"
#include "macro.h"
#include "quota.h"
#include "region.h"
#include "suites.h"

#define OWNER_UID 1000
#define CREATOR_UID 1001
#define MEMBER_UID 1002
#define OTHER_UID 1003
#define GROUP_GID 2000          /* the creator's primary group, so the region's */
#define OTHER_GID 3000

static struct quota *quota;
static struct region_table *table;

static void setup(void) {
        struct quota_limits limits;

        test_fd_leak_setup();
        for (unsigned i = 0; i < MFB_WIRE_RESOURCE_COUNT; i++) {
                limits.broker_max.n[i] = UINT32_MAX;
                limits.uid_max.n[i] = MFB_WIRE_LIMIT_NONE;
        }
        ck_assert_int_eq(quota_new(&limits, 0, &quota), 0);
        ck_assert_int_eq(region_table_new(UINT32_MAX, quota, &table), 0);
}

static void teardown(void) {
        table = region_table_free(table);
        quota = quota_free(quota);
        test_fd_leak_teardown();
}

/* A region of mode, created by creator_uid of primary group gid, then given to owner_uid if that is another. */
static struct region *region_of(mode_t mode, uid_t creator_uid, gid_t gid, uid_t owner_uid) {
        struct ucred creds = { .pid = getpid(), .uid = creator_uid, .gid = gid };
        enum mfb_wire_resource refused;
        struct region *r;

        ck_assert_int_eq(region_create(table, 1, NULL, mode, false, &creds, &r, &refused), 0);
        if (owner_uid != creator_uid)
                ck_assert_int_eq(region_set_owner(table, r, owner_uid, &refused), 0);
        return r;
}

/* Which bits of the mode decide for a peer, by what the header says it is to the region. */
enum class {
        CLASS_ROOT,
        CLASS_OWNER,
        CLASS_GROUP,
        CLASS_OTHER,
};

struct who {
        const char *what;
        uid_t uid;
        gid_t gid;
        const gid_t *groups;    /* sorted, as peer_get() gives them */
        size_t n_groups;
        enum class class;       /* for a region owned by OWNER_UID, created by CREATOR_UID, of group GROUP_GID */
        bool owns;
};

static const gid_t groups_with_group[] = { 100, GROUP_GID, 5000 };
static const gid_t groups_starting_with_group[] = { GROUP_GID, 2001, 2002, 2003 };
static const gid_t groups_ending_with_group[] = { 0, 1, 1999, GROUP_GID };
static const gid_t groups_around_group[] = { 1, GROUP_GID - 1, GROUP_GID + 1, UINT32_MAX - 1 };
/* Above INT32_MAX, where a comparison by subtraction would misorder them. */
static const gid_t groups_large[] = { 1, GROUP_GID, 0x80000000U, 0xfffffffeU };
static const gid_t mixed_gids[] = { 0, 1, 5, GROUP_GID, 0x7fffffffU, 0x80000000U, 0xc0000000U, 0xfffffff0U,
                                    0xfffffffeU };

static const struct who peers[] = {
        { "root", 0, 0, NULL, 0, CLASS_ROOT, true },
        { "root in another group", 0, OTHER_GID, NULL, 0, CLASS_ROOT, true },
        { "the owner", OWNER_UID, OTHER_GID, NULL, 0, CLASS_OWNER, true },
        /* The owner bits decide for the owner, even where the group's would give more. */
        { "the owner in the group", OWNER_UID, GROUP_GID, NULL, 0, CLASS_OWNER, true },
        { "the owner with the group as a supplementary one", OWNER_UID, OTHER_GID, groups_with_group,
          ELEMENTSOF(groups_with_group), CLASS_OWNER, true },
        /* Being the creator grants no access bits: the creator is judged as a member of the group, or as anyone. */
        { "the creator in its group", CREATOR_UID, GROUP_GID, NULL, 0, CLASS_GROUP, true },
        { "the creator, no longer in the group", CREATOR_UID, OTHER_GID, NULL, 0, CLASS_OTHER, true },
        { "a member by primary group", MEMBER_UID, GROUP_GID, NULL, 0, CLASS_GROUP, false },
        { "a member by supplementary group", MEMBER_UID, OTHER_GID, groups_with_group, ELEMENTSOF(groups_with_group),
          CLASS_GROUP, false },
        { "a member by its first supplementary group", MEMBER_UID, OTHER_GID, groups_starting_with_group,
          ELEMENTSOF(groups_starting_with_group), CLASS_GROUP, false },
        { "a member by its last supplementary group", MEMBER_UID, OTHER_GID, groups_ending_with_group,
          ELEMENTSOF(groups_ending_with_group), CLASS_GROUP, false },
        { "a member among large gids", MEMBER_UID, OTHER_GID, groups_large, ELEMENTSOF(groups_large), CLASS_GROUP,
          false },
        { "a member also in the group by primary", MEMBER_UID, GROUP_GID, groups_with_group,
          ELEMENTSOF(groups_with_group), CLASS_GROUP, false },
        { "anyone", OTHER_UID, OTHER_GID, NULL, 0, CLASS_OTHER, false },
        { "anyone with neighbouring groups", OTHER_UID, OTHER_GID, groups_around_group,
          ELEMENTSOF(groups_around_group), CLASS_OTHER, false },
        /* Numbers that match in the wrong field mean nothing. */
        { "a uid equal to the region's gid", GROUP_GID, OTHER_GID, NULL, 0, CLASS_OTHER, false },
        { "a gid equal to the owner's uid", OTHER_UID, OWNER_UID, NULL, 0, CLASS_OTHER, false },
        { "a gid equal to the creator's uid", OTHER_UID, CREATOR_UID, NULL, 0, CLASS_OTHER, false },
        /* Neighbours of root are not root. */
        { "uid 1", 1, OTHER_GID, NULL, 0, CLASS_OTHER, false },
        { "gid 0", OTHER_UID, 0, NULL, 0, CLASS_OTHER, false },
};

static struct peer peer_of(const struct who *w) {
        return (struct peer) {
                .creds = { .pid = 1, .uid = w->uid, .gid = w->gid },
                .groups = (gid_t *) w->groups,
                .n_groups = w->n_groups,
        };
}

/* What the header says access_may() answers: the bits of the peer's class must hold every bit asked for. */
static bool model_may(enum class class, mode_t mode, uint32_t access) {
        unsigned bits, need = 0;

        if (access & MFB_WIRE_ACCESS_READ)
                need |= 4;
        if (access & MFB_WIRE_ACCESS_WRITE)
                need |= 2;
        switch (class) {
        case CLASS_ROOT:
                return true;
        case CLASS_OWNER:
                bits = (mode >> 6) & 7;
                break;
        case CLASS_GROUP:
                bits = (mode >> 3) & 7;
                break;
        default:
                bits = mode & 7;
        }
        return (bits & need) == need;
}

static const uint32_t accesses[] = { MFB_WIRE_ACCESS_READ, MFB_WIRE_ACCESS_WRITE, MFB_WIRE_ACCESS_READ | MFB_WIRE_ACCESS_WRITE };

static const char *access_name(uint32_t access) {
        return access == MFB_WIRE_ACCESS_READ ? "read" : access == MFB_WIRE_ACCESS_WRITE ? "write" : "read-write";
}

/* Every mode from 0000 to 0777, every peer, every access; and who may see each region. */
START_TEST(every_mode_for_every_peer) {
        for (mode_t mode = 0; mode <= 0777; mode++) {
                struct region *r = region_of(mode, CREATOR_UID, GROUP_GID, OWNER_UID);

                for (size_t i = 0; i < ELEMENTSOF(peers); i++) {
                        struct peer p = peer_of(&peers[i]);
                        bool may_read = model_may(peers[i].class, mode, MFB_WIRE_ACCESS_READ);

                        for (size_t j = 0; j < ELEMENTSOF(accesses); j++) {
                                bool want = model_may(peers[i].class, mode, accesses[j]);

                                if (access_may(&p, r, accesses[j]) != want)
                                        ck_abort_msg("mode %04o: %s %s be granted %s access", (unsigned) mode,
                                                     peers[i].what, want ? "must" : "must not",
                                                     access_name(accesses[j]));
                        }
                        if (access_owns(&p, r) != peers[i].owns)
                                ck_abort_msg("mode %04o: %s %s own the region", (unsigned) mode, peers[i].what,
                                             peers[i].owns ? "must" : "must not");
                        if (access_may_see(&p, r) != (peers[i].owns || may_read))
                                ck_abort_msg("mode %04o: %s %s see the region", (unsigned) mode, peers[i].what,
                                             peers[i].owns || may_read ? "must" : "must not");
                }
                region_remove(table, r);
        }
}
END_TEST

/* The bits that matter one at a time: each is needed, and the execute bits grant nothing. */
START_TEST(each_bit_alone) {
        static const struct {
                mode_t mode;
                enum class class;
                uint32_t grants;
        } cases[] = {
                { 0400, CLASS_OWNER, MFB_WIRE_ACCESS_READ },
                { 0200, CLASS_OWNER, MFB_WIRE_ACCESS_WRITE },
                { 0100, CLASS_OWNER, 0 },
                { 0600, CLASS_OWNER, MFB_WIRE_ACCESS_READ | MFB_WIRE_ACCESS_WRITE },
                { 0040, CLASS_GROUP, MFB_WIRE_ACCESS_READ },
                { 0020, CLASS_GROUP, MFB_WIRE_ACCESS_WRITE },
                { 0010, CLASS_GROUP, 0 },
                { 0060, CLASS_GROUP, MFB_WIRE_ACCESS_READ | MFB_WIRE_ACCESS_WRITE },
                { 0004, CLASS_OTHER, MFB_WIRE_ACCESS_READ },
                { 0002, CLASS_OTHER, MFB_WIRE_ACCESS_WRITE },
                { 0001, CLASS_OTHER, 0 },
                { 0006, CLASS_OTHER, MFB_WIRE_ACCESS_READ | MFB_WIRE_ACCESS_WRITE },
        };
        const struct peer owner = { .creds = { .uid = OWNER_UID, .gid = OTHER_GID } };
        const struct peer member = { .creds = { .uid = MEMBER_UID, .gid = GROUP_GID } };
        const struct peer other = { .creds = { .uid = OTHER_UID, .gid = OTHER_GID } };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct region *r = region_of(cases[i].mode, CREATOR_UID, GROUP_GID, OWNER_UID);
                const struct peer *p = cases[i].class == CLASS_OWNER ? &owner :
                                       cases[i].class == CLASS_GROUP ? &member : &other;

                for (size_t j = 0; j < ELEMENTSOF(accesses); j++)
                        ck_assert_msg(access_may(p, r, accesses[j]) == ((cases[i].grants & accesses[j]) == accesses[j]),
                                      "mode %04o, %s access", (unsigned) cases[i].mode, access_name(accesses[j]));
                /* The bits of the other classes grant this peer nothing. */
                for (size_t j = 0; j < ELEMENTSOF(accesses); j++) {
                        const struct peer *q[] = { &owner, &member, &other };

                        for (size_t k = 0; k < ELEMENTSOF(q); k++)
                                if (q[k] != p)
                                        ck_assert(!access_may(q[k], r, accesses[j]));
                }
                region_remove(table, r);
        }
}
END_TEST

/* Owner and creator the same uid: the owner bits decide, and it owns. */
START_TEST(creator_that_still_owns) {
        const struct peer creator = { .creds = { .uid = CREATOR_UID, .gid = GROUP_GID } };
        struct region *r = region_of(0460, CREATOR_UID, GROUP_GID, CREATOR_UID);

        ck_assert(access_may(&creator, r, MFB_WIRE_ACCESS_READ));
        ck_assert(!access_may(&creator, r, MFB_WIRE_ACCESS_WRITE));  /* not by the group's write bit */
        ck_assert(access_owns(&creator, r));
        ck_assert(access_may_see(&creator, r));
}
END_TEST

/*
 * The creator keeps owning through changes of owner; an owner that gave it
 * away does not, and is judged by the bits of whatever it is now.
 */
START_TEST(ownership_follows_the_owner_and_stays_with_the_creator) {
        const struct peer creator = { .creds = { .uid = CREATOR_UID, .gid = OTHER_GID } };
        const struct peer first = { .creds = { .uid = OWNER_UID, .gid = OTHER_GID } };
        const struct peer second = { .creds = { .uid = MEMBER_UID, .gid = OTHER_GID } };
        enum mfb_wire_resource refused;
        struct region *r = region_of(0004, CREATOR_UID, GROUP_GID, OWNER_UID);

        ck_assert(access_owns(&first, r));
        ck_assert(!access_owns(&second, r));
        ck_assert_int_eq(region_set_owner(table, r, MEMBER_UID, &refused), 0);
        ck_assert(!access_owns(&first, r));
        ck_assert(access_owns(&second, r));
        ck_assert(access_owns(&creator, r));

        /* The new owner's bits are 0: owning is not reading. */
        ck_assert(!access_may(&second, r, MFB_WIRE_ACCESS_READ));
        ck_assert(access_may_see(&second, r));
        /* The former owner is anyone now, whom the other bits let read. */
        ck_assert(access_may(&first, r, MFB_WIRE_ACCESS_READ));
        ck_assert(!access_may(&first, r, MFB_WIRE_ACCESS_WRITE));
        ck_assert(access_may_see(&first, r));

        /* Given back to its creator, who is owner and creator at once. */
        ck_assert_int_eq(region_set_owner(table, r, CREATOR_UID, &refused), 0);
        ck_assert(!access_owns(&second, r));
        ck_assert(access_owns(&creator, r));
        ck_assert(!access_may(&creator, r, MFB_WIRE_ACCESS_READ));
}
END_TEST

/* Seeing is owning or reading: not writing alone. */
START_TEST(write_alone_does_not_show_a_region) {
        const struct peer member = { .creds = { .uid = MEMBER_UID, .gid = GROUP_GID } };
        const struct peer other = { .creds = { .uid = OTHER_UID, .gid = OTHER_GID } };
        struct region *r = region_of(0622, CREATOR_UID, GROUP_GID, OWNER_UID);

        ck_assert(access_may(&member, r, MFB_WIRE_ACCESS_WRITE));
        ck_assert(!access_may_see(&member, r));
        ck_assert(access_may(&other, r, MFB_WIRE_ACCESS_WRITE));
        ck_assert(!access_may_see(&other, r));
}
END_TEST

START_TEST(group_membership) {
        gid_t many[200];
        struct peer p = { .creds = { .uid = OTHER_UID, .gid = 7 } };

        /* No supplementary groups: the primary one only. */
        ck_assert(access_in_group(&p, 7));
        ck_assert(!access_in_group(&p, 6));
        ck_assert(!access_in_group(&p, 8));
        ck_assert(!access_in_group(&p, 0));

        /* Every even gid from 10 to 408: each found, each odd one between and the ends beyond not. */
        for (size_t i = 0; i < ELEMENTSOF(many); i++)
                many[i] = (gid_t) (10 + 2 * i);
        p.groups = many;
        for (size_t n = 1; n <= ELEMENTSOF(many); n++) {
                p.n_groups = n;
                for (size_t i = 0; i < n; i++)
                        if (!access_in_group(&p, many[i]) || access_in_group(&p, many[i] + 1))
                                ck_abort_msg("with %zu groups: gid %u or the next wrong", n, (unsigned) many[i]);
                if (access_in_group(&p, 9) || access_in_group(&p, many[n - 1] + 2) || !access_in_group(&p, 7))
                        ck_abort_msg("with %zu groups: the ends wrong", n);
        }

        /*
         * Small and large gids (past INT32_MAX, where a comparison by
         * subtraction goes wrong) together: in every run of them, each member
         * found and each of the others not.
         */
        p.creds.gid = 3;
        for (size_t a = 0; a < ELEMENTSOF(mixed_gids); a++)
                for (size_t b = a + 1; b <= ELEMENTSOF(mixed_gids); b++) {
                        p.groups = (gid_t *) &mixed_gids[a];
                        p.n_groups = b - a;
                        for (size_t i = 0; i < ELEMENTSOF(mixed_gids); i++)
                                if (access_in_group(&p, mixed_gids[i]) != (i >= a && i < b))
                                        ck_abort_msg("groups %zu to %zu: gid %#x wrong", a, b - 1,
                                                     (unsigned) mixed_gids[i]);
                }
}
END_TEST

static bool sorted(const gid_t *g, size_t n) {
        for (size_t i = 1; i < n; i++)
                if (g[i - 1] > g[i])
                        return false;
        return true;
}

static bool contains(const gid_t *g, size_t n, gid_t gid) {
        for (size_t i = 0; i < n; i++)
                if (g[i] == gid)
                        return true;
        return false;
}

/* Whether the supplementary groups of p are the n_want gids of want (distinct), in any order. */
static bool same_groups(const struct peer *p, const gid_t *want, size_t n_want) {
        if (p->n_groups != n_want)
                return false;
        for (size_t i = 0; i < n_want; i++)
                if (!contains(p->groups, p->n_groups, want[i]) || !access_in_group(p, want[i]))
                        return false;
        return true;
}

START_TEST(peer_of_a_socket_is_this_process) {
        gid_t groups[NGROUPS_MAX];
        int n = getgroups(NGROUPS_MAX, groups), fds[2];
        struct peer p;

        ck_assert_int_ge(n, 0);
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), 0);
        ck_assert_int_eq(peer_get(fds[0], &p), 0);
        ck_assert_int_eq(p.creds.pid, getpid());
        ck_assert_uint_eq(p.creds.uid, geteuid());
        ck_assert_uint_eq(p.creds.gid, getegid());
        ck_assert(p.n_groups == 0 ? p.groups == NULL : p.groups != NULL);
        ck_assert_uint_eq(p.n_groups, (size_t) n);
        ck_assert(sorted(p.groups, p.n_groups));
        ck_assert(same_groups(&p, groups, (size_t) n));
        peer_done(&p);
        ck_assert_ptr_null(p.groups);
        ck_assert_uint_eq(p.n_groups, 0);
        peer_done(&p);  /* twice is harmless */
        safe_close(fds[0]);
        safe_close(fds[1]);
}
END_TEST

START_TEST(peer_of_what_is_not_a_socket) {
        struct peer p = { .creds = { .pid = 77, .uid = 78, .gid = 79 } };
        int fds[2];

        ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
        ck_assert_int_eq(peer_get(fds[0], &p), -ENOTSOCK);
        /* Untouched on failure. */
        ck_assert_int_eq(p.creds.pid, 77);
        ck_assert_uint_eq(p.creds.uid, 78);
        ck_assert_uint_eq(p.creds.gid, 79);
        ck_assert_ptr_null(p.groups);
        safe_close(fds[0]);
        safe_close(fds[1]);
}
END_TEST

/*
 * Supplementary groups of any number: none, one, around the 32 peer_get()
 * reads without allocating, and many; given out of order, read back sorted.
 * In a child, which becomes a member of them (root only).
 */
static int groups_child(void *arg) {
        size_t n = (size_t) (uintptr_t) arg;
        gid_t set[100];
        struct peer p;
        int fds[2];

        TEST_CHILD_CHECK(n <= ELEMENTSOF(set));
        /* Distinct, out of order, and half of them past INT32_MAX. */
        for (size_t i = 0; i < n; i++)
                set[i] = i % 2 ? (gid_t) (0x90000000U - i) : (gid_t) (60000 - 7 * ((i * 37) % n));
        TEST_CHILD_CHECK(setgroups(n, set) == 0);
        TEST_CHILD_CHECK(setresgid(OTHER_GID, OTHER_GID, OTHER_GID) == 0);
        TEST_CHILD_CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) == 0);
        TEST_CHILD_CHECK(peer_get(fds[1], &p) == 0);
        TEST_CHILD_CHECK(p.creds.gid == OTHER_GID);
        TEST_CHILD_CHECK(p.n_groups == n);
        TEST_CHILD_CHECK(n == 0 ? p.groups == NULL : p.groups != NULL);
        TEST_CHILD_CHECK(sorted(p.groups, p.n_groups));
        TEST_CHILD_CHECK(same_groups(&p, set, n));
        TEST_CHILD_CHECK(!access_in_group(&p, 60001));
        peer_done(&p);
        return 0;
}

START_TEST(peer_groups_of_any_number) {
        static const size_t counts[] = { 0, 1, 2, 31, 32, 33, 100 };

        if (geteuid() != 0) {
                fprintf(stderr, "SKIP peer_groups_of_any_number: needs root to set supplementary groups\n");
                return;
        }
        for (size_t i = 0; i < ELEMENTSOF(counts); i++) {
                pid_t pid = test_fork(groups_child, (void *) (uintptr_t) counts[i]);
                int status;

                /*
                 * The child does not block, so waitpid() is enough; unlike
                 * test_child_succeeded(), it needs no pidfd_open(), which
                 * valgrind does not know.
                 */
                ck_assert_int_eq(waitpid(pid, &status, 0), pid);
                ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "with %zu groups: child failed (status %#x)",
                              counts[i], (unsigned) status);
        }
}
END_TEST

Suite *access_unit_suite(void) {
        Suite *s = suite_create("access-unit");
        TCase *tc = tcase_create("access-unit");

        tcase_set_timeout(tc, 60);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, every_mode_for_every_peer);
        tcase_add_test(tc, each_bit_alone);
        tcase_add_test(tc, creator_that_still_owns);
        tcase_add_test(tc, ownership_follows_the_owner_and_stays_with_the_creator);
        tcase_add_test(tc, write_alone_does_not_show_a_region);
        tcase_add_test(tc, group_membership);
        tcase_add_test(tc, peer_of_a_socket_is_this_process);
        tcase_add_test(tc, peer_of_what_is_not_a_socket);
        tcase_add_test(tc, peer_groups_of_any_number);
        suite_add_tcase(s, tc);
        return s;
}
