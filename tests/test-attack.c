/* SPDX-License-Identifier: MIT */
/*
 * The attacks of issue 9, replayed as they were made: raw-protocol clients
 * of two unprivileged uids, an attacker (65534) and a victim (65533), each
 * a connection made by a forked child that dropped to its uid and handed
 * the connected socket back (the broker knows a peer by its credentials at
 * connect()). For each attack: the victim's CREATE and OPEN keep working
 * while it goes on, and afterwards the broker's fds, per-uid usage, CPU
 * time and memory are back where they were. Run as anyone but root, the
 * tests cannot switch users and say so.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <linux/sockios.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "fdpass.h"
#include "harness.h"
#include "macro.h"
#include "raw.h"
#include "suites.h"

#define UID_A 65534             /* the attacker */
#define UID_B 65533             /* the victim */
#define EXTRA_GROUP 4242        /* a supplementary group of the attacker's, where a test gives it one */
#define PAGE 4096

/* The bytes of a LIST reply with a full page of entries. */
#define LIST_REPLY_FULL (sizeof(struct mfb_wire_header) + sizeof(struct mfb_wire_list_reply) + \
                         MFB_WIRE_LIST_ENTRIES_MAX * sizeof(struct mfb_wire_region_info))

/* Returns false, after saying why, when this process cannot become other users. */
static bool can_switch_users(const char *test) {
        if (geteuid() == 0)
                return true;
        fprintf(stderr, "SKIP %s: needs root to switch to uids %d and %d\n", test, UID_A, UID_B);
        return false;
}

/* The attacks hold many connections at once: the soft limit on open files goes up to the hard one. */
static void raise_own_fd_limit(void) {
        struct rlimit rl;

        ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
        rl.rlim_cur = rl.rlim_max;
        ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

static long long now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000 };

        nanosleep(&ts, NULL);
}

/* Connections ---------------------------------------------------------- */

static int32_t hello(int fd, struct mfb_wire_hello_reply *ret) {
        struct mfb_wire_hello_request req = { .version_min = MFB_WIRE_VERSION, .version_max = MFB_WIRE_VERSION };

        raw_send(fd, MFB_WIRE_OP_HELLO, &req, sizeof(req), NULL, 0);
        return raw_reply(fd, MFB_WIRE_OP_HELLO, ret, ret ? sizeof(*ret) : 0, NULL);
}

/* A connection of uid (and extra_group, unless 0) that has done HELLO. */
static int connect_as_with_group(const struct test_broker *b, uid_t uid, gid_t extra_group) {
        int fd;

        raw_connect_as(b, uid, extra_group, 1, &fd);
        ck_assert_int_eq(hello(fd, NULL), 0);
        return fd;
}

static int connect_as(const struct test_broker *b, uid_t uid) {
        return connect_as_with_group(b, uid, 0);
}

/* Requests ------------------------------------------------------------- */

/*
 * CREATE of size bytes with name (NULL for none), mode and flags; returns
 * the status, and on success the handle and, if ret_fd is not NULL, the fd.
 */
static int32_t create(int fd, const char *name, uint64_t size, uint32_t mode, uint32_t flags, uint64_t *ret_handle,
                      int *ret_fd) {
        struct mfb_wire_create_request req = { .size = size, .mode = mode, .flags = flags };
        struct mfb_wire_region_reply reply;
        int32_t k;

        ck_assert_int_eq(mfb_wire_name_set(&req.name, name), 0);
        raw_send(fd, MFB_WIRE_OP_CREATE, &req, sizeof(req), NULL, 0);
        k = raw_reply(fd, MFB_WIRE_OP_CREATE, &reply, sizeof(reply), ret_fd);
        if (k == 0 && ret_handle)
                *ret_handle = reply.info.handle;
        return k;
}

static int32_t open_handle(int fd, uint64_t handle, uint32_t access, int *ret_fd) {
        struct mfb_wire_open_request req = { .handle = handle, .access = access };

        raw_send(fd, MFB_WIRE_OP_OPEN, &req, sizeof(req), NULL, 0);
        return raw_reply(fd, MFB_WIRE_OP_OPEN, NULL, 0, ret_fd);
}

static int32_t release(int fd, uint64_t handle) {
        struct mfb_wire_release_request req = { .handle = handle };

        return raw_request(fd, MFB_WIRE_OP_RELEASE, &req, sizeof(req), NULL, 0);
}

static int32_t set_owner(int fd, uint64_t handle, uint32_t fields, uint32_t uid, uint32_t gid) {
        struct mfb_wire_set_request req = { .handle = handle, .fields = fields, .uid = uid, .gid = gid };

        return raw_request(fd, MFB_WIRE_OP_SET, &req, sizeof(req), NULL, 0);
}

static int32_t remove_name(int fd, const char *name) {
        struct mfb_wire_lookup_request req = { 0 };

        ck_assert_int_eq(mfb_wire_name_set(&req.name, name), 0);
        return raw_request(fd, MFB_WIRE_OP_REMOVE, &req, sizeof(req), NULL, 0);
}

static void get_limits(int fd, struct mfb_wire_limits_reply *ret) {
        raw_send(fd, MFB_WIRE_OP_LIMITS, "", 0, NULL, 0);
        ck_assert_int_eq(raw_reply(fd, MFB_WIRE_OP_LIMITS, ret, sizeof(*ret), NULL), 0);
        ck_assert_uint_eq(ret->count, MFB_WIRE_RESOURCE_COUNT);
}

/* What uid holds of resource, asked on one of its connections (which counts itself). */
static uint64_t uid_used(int fd, enum mfb_wire_resource resource) {
        struct mfb_wire_limits_reply l;

        get_limits(fd, &l);
        return l.resources[resource].uid_used;
}

/* The victim's CREATE and OPEN work: pass or fail, whatever else goes on. */
static void assert_victim_served(int fd) {
        uint64_t handle = 0;
        int32_t k;

        k = create(fd, NULL, PAGE, 0, 0, &handle, NULL);
        ck_assert_msg(k == 0, "the victim's CREATE failed: %s", strerror(-k));
        k = open_handle(fd, handle, MFB_WIRE_ACCESS_READ | MFB_WIRE_ACCESS_WRITE, NULL);
        ck_assert_msg(k == 0, "the victim's OPEN failed: %s", strerror(-k));
        ck_assert_int_eq(release(fd, handle), 0);
        ck_assert_int_eq(release(fd, handle), 0);
}

/* Sends LIST without waiting for room: 0, -EAGAIN when the socket is full, or -errno once the broker dropped it. */
static int send_list_nowait(int fd, uint64_t after) {
        struct {
                struct mfb_wire_header h;
                struct mfb_wire_list_request body;
        } rec = { .body = { .after_handle = after } };

        mfb_wire_header_init(&rec.h, MFB_WIRE_OP_LIST, RAW_COOKIE, 0, 0, sizeof(rec));
        return mfb_record_send(fd, &rec, sizeof(rec), NULL, 0, MSG_DONTWAIT);
}

/* What the broker process uses ----------------------------------------- */

/* The broker's CPU time so far, user and system, in clock ticks (/proc/PID/stat). */
static uint64_t broker_cpu_ticks(const struct test_broker *b) {
        char path[64], buf[1024];
        unsigned long long user, system;
        const char *p;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) b->pid);
        ck_assert_int_gt(test_read_text(path, buf, sizeof(buf)), 0);
        /* After the command name, which may hold anything but ends at the last ')': fields 3 to 15. */
        p = strrchr(buf, ')');
        ck_assert_ptr_nonnull(p);
        ck_assert_int_eq(sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &user, &system), 2);
        return user + system;
}

/* A line "Key: N kB" of /proc/PID/status, in KiB. */
static uint64_t broker_status_kib(const struct test_broker *b, const char *key) {
        char path[64], line[256];
        unsigned long long kib = 0;
        size_t len = strlen(key);
        bool found = false;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", (int) b->pid);
        f = fopen(path, "re");
        ck_assert_ptr_nonnull(f);
        while (!found && fgets(line, sizeof(line), f))
                found = strncmp(line, key, len) == 0 && line[len] == ':' &&
                        sscanf(line + len + 1, "%llu", &kib) == 1;
        fclose(f);
        ck_assert_msg(found, "no %s in %s", key, path);
        return kib;
}

static uint64_t broker_rss_kib(const struct test_broker *b) {
        return broker_status_kib(b, "VmRSS");
}

/*
 * Whether the broker's resident memory is its own to measure: under a
 * wrapper (valgrind) or AddressSanitizer, their shadow memory and the
 * quarantine of freed blocks would be measured instead.
 */
static bool rss_is_the_brokers(const char *test) {
        const char *wrapper = getenv("MFB_BROKER_WRAPPER");
        static bool said;
        bool asan = false;

#if defined(__SANITIZE_ADDRESS__)
        asan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
        asan = true;
#endif
#endif
        if (!asan && !(wrapper && *wrapper))
                return true;
        if (!said)
                fprintf(stderr, "%s: not checking the broker's RSS under %.*s\n", test,
                        asan ? (int) strlen("AddressSanitizer") : (int) strcspn(wrapper, " \t"),
                        asan ? "AddressSanitizer" : wrapper);
        said = true;
        return false;
}

/*
 * Fails if the broker goes on burning CPU with nothing to do. A connection
 * whose hangup it never handles makes epoll_wait return at once, forever:
 * about 100% of a CPU. The window is a measurement window, not a wait for
 * something to happen: the broker has nothing left to do when this runs.
 */
static void assert_broker_idle(const struct test_broker *b) {
        const long window_ms = 300;
        long ticks_per_s = sysconf(_SC_CLK_TCK);
        uint64_t before, used_ms;
        long long start = now_ms(), elapsed;

        before = broker_cpu_ticks(b);
        sleep_ms(window_ms);
        used_ms = (broker_cpu_ticks(b) - before) * 1000 / (uint64_t) ticks_per_s;
        elapsed = now_ms() - start;
        ck_assert_msg(used_ms * 5 < (uint64_t) elapsed, "the idle broker used %" PRIu64 " ms of CPU in %lld ms",
                      used_ms, elapsed);
}

/* Baselines -------------------------------------------------------------- */

struct baseline {
        unsigned fds;
        uint64_t rss_kib;
};

static void baseline_take(const struct test_broker *b, struct baseline *ret) {
        *ret = (struct baseline) { .fds = test_broker_fd_count(b), .rss_kib = broker_rss_kib(b) };
}

/* Fails unless uid holds nothing but the connection it asks on (1 connection, 1 fd). */
static void assert_uid_holds_nothing(const struct test_broker *b, uid_t uid) {
        static const char *const names[MFB_WIRE_RESOURCE_COUNT] = {
                "regions", "bytes", "fds", "connections", "queued bytes", "waiters", "kept regions",
                "region references",
        };
        struct mfb_wire_limits_reply l;
        int fd = connect_as(b, uid);

        get_limits(fd, &l);
        ck_assert_uint_eq(l.uid, uid);
        for (unsigned i = 0; i < MFB_WIRE_RESOURCE_COUNT; i++) {
                uint64_t own = i == MFB_WIRE_RESOURCE_CONNECTIONS || i == MFB_WIRE_RESOURCE_FDS ? 1 : 0;

                ck_assert_msg(l.resources[i].uid_used == own, "uid %u still holds %" PRIu64 " %s", uid,
                              l.resources[i].uid_used - own, names[i]);
        }
        close(fd);
}

/*
 * After an attack: the broker holds as many fds as before, neither uid
 * holds anything, it does not burn CPU, and (where it can be measured) its
 * memory is within rss_slack_kib of where it was.
 */
static void assert_back_to_baseline(const struct test_broker *b, const struct baseline *base, uint64_t rss_slack_kib,
                                    const char *test) {
        ck_assert_msg(test_broker_wait_fd_count(b, base->fds), "the broker has %u fds open, %u before the attack",
                      test_broker_fd_count(b), base->fds);
        assert_uid_holds_nothing(b, UID_A);
        assert_uid_holds_nothing(b, UID_B);
        ck_assert_msg(test_broker_wait_fd_count(b, base->fds), "the broker kept a connection that asked LIMITS");
        assert_broker_idle(b);
        if (rss_is_the_brokers(test)) {
                uint64_t rss = broker_rss_kib(b);

                ck_assert_msg(rss <= base->rss_kib + rss_slack_kib, "the broker's RSS is %" PRIu64 " KiB, %" PRIu64
                              " KiB before the attack", rss, base->rss_kib);
        }
}

/* Memory the broker may keep after an attack: its allocator does not give back every page at once. */
#define RSS_SLACK_KIB (8 * 1024)

/* 1. A hangup in any state ---------------------------------------------- */

/* Waits until the broker has at least want bytes of replies queued, as root's LIMITS tells. */
static void wait_queued_bytes(int root, uint64_t want) {
        long long deadline = now_ms() + TEST_TIMEOUT_MS;
        struct mfb_wire_limits_reply l;

        for (;;) {
                get_limits(root, &l);
                if (l.resources[MFB_WIRE_RESOURCE_QUEUED_BYTES].broker_used >= want)
                        return;
                ck_assert_msg(now_ms() < deadline, "the broker queued %" PRIu64 " bytes of replies, not %" PRIu64,
                              l.resources[MFB_WIRE_RESOURCE_QUEUED_BYTES].broker_used, want);
                sleep_ms(2);
        }
}

START_TEST(a_hangup_frees_the_connection_whatever_it_waits_for) {
        const char *args[] = { "--max-connections-per-uid", "4", "--max-queued-bytes", "64M", NULL };
        struct test_broker b;
        struct baseline base;
        struct mfb_wire_wait_request wait = { .timeout_ns = MFB_WIRE_WAIT_FOREVER, .access = MFB_WIRE_ACCESS_READ };
        struct mfb_wire_create_request unread = { .size = PAGE };
        int attacker, victim, root, over[2], counted[4];
        unsigned sent = 0;
        int queued;

        if (!can_switch_users(__func__))
                return;
        test_broker_start(&b, args);
        baseline_take(&b, &base);
        victim = connect_as(&b, UID_B);
        root = raw_connect_hello(&b);

        /* A WAIT pending, and behind it in the attacker's socket the reply to a CREATE it never read. */
        attacker = connect_as(&b, UID_A);
        raw_send(attacker, MFB_WIRE_OP_CREATE, &unread, sizeof(unread), NULL, 0);
        ck_assert_int_eq(mfb_wire_name_set(&wait.name, "never-sealed"), 0);
        raw_send(attacker, MFB_WIRE_OP_WAIT, &wait, sizeof(wait), NULL, 0);
        raw_wait_consumed(attacker);
        /* Waiting costs nothing while the waiter is there. */
        assert_broker_idle(&b);
        assert_victim_served(victim);
        close(attacker);
        close(victim);
        close(root);
        assert_back_to_baseline(&b, &base, RSS_SLACK_KIB, __func__);

        /* Reading paused: 64 replies of a full LIST page queued in the broker, more requests unread behind them. */
        victim = connect_as(&b, UID_B);
        root = raw_connect_hello(&b);
        attacker = connect_as(&b, UID_A);
        for (unsigned i = 0; i < MFB_WIRE_LIST_ENTRIES_MAX; i++)
                ck_assert_int_eq(create(attacker, NULL, PAGE, 0, 0, NULL, NULL), 0);
        while (sent < 2 * MFB_WIRE_REQUESTS_IN_FLIGHT_MAX && send_list_nowait(attacker, 0) == 0)
                sent++;
        ck_assert_uint_gt(sent, MFB_WIRE_REQUESTS_IN_FLIGHT_MAX);
        wait_queued_bytes(root, MFB_WIRE_REQUESTS_IN_FLIGHT_MAX * LIST_REPLY_FULL);
        ck_assert_int_eq(ioctl(attacker, SIOCOUTQ, &queued), 0);
        ck_assert_msg(queued > 0, "the broker read every request although %u replies wait",
                      MFB_WIRE_REQUESTS_IN_FLIGHT_MAX);
        assert_victim_served(victim);
        close(attacker);
        close(victim);
        close(root);
        assert_back_to_baseline(&b, &base, RSS_SLACK_KIB, __func__);

        /* Refused over the connection limit: one is told so, one hangs up without a word. */
        victim = connect_as(&b, UID_B);
        for (unsigned i = 0; i < ELEMENTSOF(counted); i++)
                counted[i] = connect_as(&b, UID_A);
        raw_connect_as(&b, UID_A, 0, ELEMENTSOF(over), over);
        ck_assert_int_eq(hello(over[0], NULL), -EDQUOT);
        ck_assert_int_eq(raw_recv(over[0], &(char) { 0 }, 1, NULL), 0);
        assert_victim_served(victim);
        for (unsigned i = 0; i < ELEMENTSOF(over); i++)
                close(over[i]);
        for (unsigned i = 0; i < ELEMENTSOF(counted); i++)
                close(counted[i]);
        close(victim);
        assert_back_to_baseline(&b, &base, RSS_SLACK_KIB, __func__);
        test_broker_stop(&b);
}
END_TEST

/* 2. Quotas cannot be dodged with SET ----------------------------------- */

START_TEST(an_owner_cannot_give_its_regions_away) {
        struct test_broker b;
        struct baseline base;
        int attacker, victim, root;
        uint64_t handle = 0;

        if (!can_switch_users(__func__))
                return;
        test_broker_start(&b, NULL);
        baseline_take(&b, &base);
        attacker = connect_as_with_group(&b, UID_A, EXTRA_GROUP);
        victim = connect_as(&b, UID_B);
        root = raw_connect_hello(&b);

        ck_assert_int_eq(create(attacker, NULL, 16 * PAGE, 0666, 0, &handle, NULL), 0);
        /* To root, which is exempt from quotas, or to another user, whose quota it would fill. */
        ck_assert_int_eq(set_owner(attacker, handle, MFB_WIRE_SET_UID, 0, 0), -EPERM);
        ck_assert_int_eq(set_owner(attacker, handle, MFB_WIRE_SET_UID, UID_B, 0), -EPERM);
        ck_assert_int_eq(set_owner(attacker, handle, MFB_WIRE_SET_UID | MFB_WIRE_SET_GID, UID_B, UID_A), -EPERM);
        /* Groups: only one the owner is in, as chown(2). */
        ck_assert_int_eq(set_owner(attacker, handle, MFB_WIRE_SET_GID, 0, UID_B), -EPERM);
        ck_assert_int_eq(set_owner(attacker, handle, MFB_WIRE_SET_GID, 0, 0), -EPERM);
        ck_assert_int_eq(set_owner(attacker, handle, MFB_WIRE_SET_GID, 0, EXTRA_GROUP), 0);
        ck_assert_int_eq(set_owner(attacker, handle, MFB_WIRE_SET_GID, 0, UID_A), 0);
        /* Its own uid is no change. */
        ck_assert_int_eq(set_owner(attacker, handle, MFB_WIRE_SET_UID, UID_A, 0), 0);

        ck_assert_uint_eq(uid_used(attacker, MFB_WIRE_RESOURCE_REGIONS), 1);
        ck_assert_uint_eq(uid_used(attacker, MFB_WIRE_RESOURCE_BYTES), 16 * PAGE);
        ck_assert_uint_eq(uid_used(victim, MFB_WIRE_RESOURCE_REGIONS), 0);
        ck_assert_uint_eq(uid_used(victim, MFB_WIRE_RESOURCE_BYTES), 0);
        assert_victim_served(victim);

        /* Root may: the new owner is charged, and the creator cannot take it back. */
        ck_assert_int_eq(set_owner(root, handle, MFB_WIRE_SET_UID, UID_B, 0), 0);
        ck_assert_uint_eq(uid_used(victim, MFB_WIRE_RESOURCE_REGIONS), 1);
        ck_assert_uint_eq(uid_used(victim, MFB_WIRE_RESOURCE_BYTES), 16 * PAGE);
        ck_assert_uint_eq(uid_used(attacker, MFB_WIRE_RESOURCE_REGIONS), 0);
        ck_assert_uint_eq(uid_used(attacker, MFB_WIRE_RESOURCE_BYTES), 0);
        ck_assert_int_eq(set_owner(attacker, handle, MFB_WIRE_SET_UID, UID_A, 0), -EPERM);

        /* The region dies with its last holder, the attacker's connection. */
        close(attacker);
        close(victim);
        close(root);
        assert_back_to_baseline(&b, &base, RSS_SLACK_KIB, __func__);
        test_broker_stop(&b);
}
END_TEST

/* 3. LIST is bounded --------------------------------------------------- */

#define FLOOD_REGIONS 3000U

static union {
        struct mfb_wire_list_reply head;
        uint8_t bytes[LIST_REPLY_FULL];
} list_page;

static int compare_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

/* How many of the sorted handles all[n] lie in (after, upto]. */
static size_t count_between(const uint64_t *all, size_t n, uint64_t after, uint64_t upto) {
        size_t k = 0;

        for (size_t i = 0; i < n; i++)
                k += all[i] > after && all[i] <= upto;
        return k;
}

/*
 * Pages through LIST on fd and returns the handles listed (at most max).
 * The broker holds the regions all[n_all] (sorted): each reply must have
 * examined at most MFB_WIRE_LIST_SCAN_MAX of them, its cursor must move on,
 * and the paging must end. *ret_empty counts the replies with no entries
 * and more to come.
 */
static size_t list_everything(int fd, const uint64_t *all, size_t n_all, uint64_t *ret, size_t max,
                              unsigned *ret_empty) {
        uint64_t after = 0;
        size_t n = 0;

        *ret_empty = 0;
        for (size_t pages = 0;; pages++) {
                struct mfb_wire_list_request req = { .after_handle = after };
                const struct mfb_wire_region_info *entries = (const void *) (list_page.bytes + sizeof(list_page.head));

                ck_assert_msg(pages <= n_all, "LIST paging did not end");
                raw_send(fd, MFB_WIRE_OP_LIST, &req, sizeof(req), NULL, 0);
                memset(&list_page, 0, sizeof(list_page));
                ck_assert_int_eq(raw_reply(fd, MFB_WIRE_OP_LIST, &list_page, sizeof(list_page), NULL), 0);
                for (uint32_t i = 0; i < list_page.head.count; i++) {
                        ck_assert_uint_gt(entries[i].handle, after);
                        ck_assert_uint_lt(n, max);
                        ret[n++] = entries[i].handle;
                }
                if (!list_page.head.more)
                        return n;
                ck_assert_uint_gt(list_page.head.next_after, after);
                if (list_page.head.count > 0)
                        ck_assert_uint_ge(list_page.head.next_after, entries[list_page.head.count - 1].handle);
                ck_assert_msg(count_between(all, n_all, after, list_page.head.next_after) <= MFB_WIRE_LIST_SCAN_MAX,
                              "one LIST examined %zu regions", count_between(all, n_all, after,
                                                                              list_page.head.next_after));
                *ret_empty += list_page.head.count == 0;
                after = list_page.head.next_after;
        }
}

START_TEST(list_examines_a_bounded_number_of_regions) {
        const char *args[] = { "--max-regions", "10000", "--max-regions-per-uid", "5000", NULL };
        const size_t n_all = FLOOD_REGIONS + 2;
        struct test_broker b;
        struct baseline base;
        uint64_t *all, *listed, own[2];
        unsigned empty;
        int attacker, victim, root;
        size_t n;

        if (!can_switch_users(__func__))
                return;
        raise_own_fd_limit();
        test_broker_start_with_fd_limit(&b, args, 4 * FLOOD_REGIONS);
        baseline_take(&b, &base);
        all = calloc(n_all, sizeof(*all));
        listed = calloc(n_all, sizeof(*listed));
        ck_assert(all && listed);
        attacker = connect_as(&b, UID_A);
        victim = connect_as(&b, UID_B);
        root = raw_connect_hello(&b);

        /* The victim's own regions, one before and one after the flood. Mode 0 means the default, 0600. */
        ck_assert_int_eq(create(victim, NULL, PAGE, 0, 0, &own[0], NULL), 0);
        for (unsigned i = 0; i < FLOOD_REGIONS; i++)
                ck_assert_int_eq(create(attacker, NULL, PAGE, 0, 0, &all[i + 1], NULL), 0);
        ck_assert_int_eq(create(victim, NULL, PAGE, 0, 0, &own[1], NULL), 0);
        all[0] = own[0];
        all[n_all - 1] = own[1];
        qsort(all, n_all, sizeof(*all), compare_u64);

        /* The victim: only its own two, through pages that found nothing but did not stop. */
        n = list_everything(victim, all, n_all, listed, n_all, &empty);
        ck_assert_uint_eq(n, 2);
        ck_assert_uint_eq(listed[0], own[0]);
        ck_assert_uint_eq(listed[1], own[1]);
        ck_assert_uint_ge(empty, 1);
        assert_victim_served(victim);

        /* Root sees everything. */
        n = list_everything(root, all, n_all, listed, n_all, &empty);
        ck_assert_uint_eq(n, n_all);
        ck_assert_int_eq(memcmp(listed, all, n_all * sizeof(*all)), 0);

        /*
         * Nor does the victim's cursor tell where the hidden regions are:
         * with holes among the attacker's handles, from any handle, live or
         * not, a page with room to spare moves on by the same range.
         */
        for (unsigned i = 1; i < 3 * MFB_WIRE_LIST_SCAN_MAX; i += 3) {
                struct mfb_wire_release_request rel = { .handle = all[i] };

                ck_assert_int_eq(raw_request(attacker, MFB_WIRE_OP_RELEASE, &rel, sizeof(rel), NULL, 0), 0);
        }
        for (uint64_t after = all[1] - 1; after <= all[1] + 2; after++) {
                struct mfb_wire_list_request req = { .after_handle = after };

                raw_send(victim, MFB_WIRE_OP_LIST, &req, sizeof(req), NULL, 0);
                ck_assert_int_eq(raw_reply(victim, MFB_WIRE_OP_LIST, &list_page, sizeof(list_page), NULL), 0);
                ck_assert_uint_eq(list_page.head.count, 0);
                ck_assert_uint_eq(list_page.head.more, 1);
                ck_assert_uint_eq(list_page.head.next_after, after + MFB_WIRE_LIST_SCAN_MAX);
        }

        free(all);
        free(listed);
        close(attacker);
        close(victim);
        close(root);
        assert_back_to_baseline(&b, &base, RSS_SLACK_KIB, __func__);
        test_broker_stop(&b);
}
END_TEST

/* 4. Unreadable regions do not exist for the caller ---------------------- */

/* The reply to one request, whole: header and body. Returns its length. */
static size_t exchange(int fd, uint16_t opcode, const void *body, size_t len, uint8_t record[MFB_WIRE_RECORD_MAX]) {
        ssize_t n;

        raw_send(fd, opcode, body, len, NULL, 0);
        n = raw_recv(fd, record, MFB_WIRE_RECORD_MAX, NULL);
        ck_assert_int_ge(n, (ssize_t) sizeof(struct mfb_wire_header));
        return (size_t) n;
}

/*
 * Fails unless a request about what (another user's unreadable region, by
 * handle or name) got exactly the reply that the same request about absent
 * (which does not exist) got, with absent's text replaced by what's.
 */
static void assert_answered_as_absent(int fd, uint16_t opcode, const void *about_what, const void *about_absent,
                                      size_t len, const char *what, const char *absent) {
        static uint8_t got[MFB_WIRE_RECORD_MAX], model[MFB_WIRE_RECORD_MAX];
        char expected[2 * MFB_WIRE_RECORD_MAX] = "", got_text[MFB_WIRE_RECORD_MAX];
        size_t got_len, model_len, absent_len = strlen(absent);
        struct mfb_wire_header gh, mh;
        const char *p, *hit;

        got_len = exchange(fd, opcode, about_what, len, got);
        model_len = exchange(fd, opcode, about_absent, len, model);
        memcpy(&gh, got, sizeof(gh));
        memcpy(&mh, model, sizeof(mh));
        ck_assert_int_lt(mh.status, 0);

        model[model_len] = '\0';
        for (p = (const char *) model + sizeof(mh); (hit = strstr(p, absent)); p = hit + absent_len) {
                strncat(expected, p, (size_t) (hit - p));
                strcat(expected, what);
        }
        strcat(expected, p);
        memcpy(got_text, got + sizeof(gh), got_len - sizeof(gh));
        got_text[got_len - sizeof(gh)] = '\0';

        ck_assert_msg(gh.status == mh.status && gh.nfds == mh.nfds && strcmp(got_text, expected) == 0 &&
                      strlen(got_text) == got_len - sizeof(gh),
                      "%s about %s: %d \"%s\"; expected as about %s: %d \"%s\"", mfb_wire_opcode_name(opcode),
                      what, gh.status, got_text, absent, mh.status, expected);
}

static void lookup_by_handle(struct mfb_wire_lookup_request *ret, uint64_t handle) {
        *ret = (struct mfb_wire_lookup_request) { .handle = handle };
}

static void lookup_by_name(struct mfb_wire_lookup_request *ret, const char *name) {
        *ret = (struct mfb_wire_lookup_request) { 0 };
        ck_assert_int_eq(mfb_wire_name_set(&ret->name, name), 0);
}

/* STAT, OPEN (both ways), SET and REMOVE about handle or name against absent_handle or absent_name. */
static void assert_every_lookup_answered_as_absent(int fd, uint64_t handle, uint64_t absent_handle, const char *name,
                                                   const char *absent_name) {
        char what[32], absent[32];
        struct mfb_wire_lookup_request lw, la;
        struct mfb_wire_open_request ow, oa;
        struct mfb_wire_set_request sw, sa;

        for (int by_name = 0; by_name <= 1; by_name++) {
                const char *w = what, *a = absent;

                if (by_name) {
                        w = name;
                        a = absent_name;
                        lookup_by_name(&lw, name);
                        lookup_by_name(&la, absent_name);
                } else {
                        snprintf(what, sizeof(what), "%" PRIu64, handle);
                        snprintf(absent, sizeof(absent), "%" PRIu64, absent_handle);
                        lookup_by_handle(&lw, handle);
                        lookup_by_handle(&la, absent_handle);
                }
                assert_answered_as_absent(fd, MFB_WIRE_OP_STAT, &lw, &la, sizeof(lw), w, a);
                assert_answered_as_absent(fd, MFB_WIRE_OP_REMOVE, &lw, &la, sizeof(lw), w, a);

                for (uint32_t access = MFB_WIRE_ACCESS_READ; access <= (MFB_WIRE_ACCESS_READ | MFB_WIRE_ACCESS_WRITE); access += 2) {
                        ow = (struct mfb_wire_open_request) { .handle = lw.handle, .access = access, .name = lw.name };
                        oa = (struct mfb_wire_open_request) { .handle = la.handle, .access = access, .name = la.name };
                        assert_answered_as_absent(fd, MFB_WIRE_OP_OPEN, &ow, &oa, sizeof(ow), w, a);
                }

                sw = (struct mfb_wire_set_request) { .handle = lw.handle, .fields = MFB_WIRE_SET_MODE, .mode = 0666,
                                                     .name = lw.name };
                sa = (struct mfb_wire_set_request) { .handle = la.handle, .fields = MFB_WIRE_SET_MODE, .mode = 0666,
                                                     .name = la.name };
                assert_answered_as_absent(fd, MFB_WIRE_OP_SET, &sw, &sa, sizeof(sw), w, a);
        }
}

static void wait_request(struct mfb_wire_wait_request *ret, const char *name, uint64_t timeout_ns) {
        *ret = (struct mfb_wire_wait_request) { .timeout_ns = timeout_ns, .access = MFB_WIRE_ACCESS_READ };
        ck_assert_int_eq(mfb_wire_name_set(&ret->name, name), 0);
}

START_TEST(unreadable_regions_do_not_exist_for_others) {
        struct test_broker b;
        struct baseline base;
        struct mfb_wire_seal_request seal = { .seals = F_SEAL_WRITE };
        struct mfb_wire_wait_request ww, wa;
        struct mfb_wire_lookup_request lookup;
        uint64_t open_handle = 0, sealed_handle = 0;
        int attacker, victim, root;

        if (!can_switch_users(__func__))
                return;
        test_broker_start(&b, NULL);
        baseline_take(&b, &base);
        /* Here uid A keeps secrets and uid B probes for them. */
        attacker = connect_as(&b, UID_A);
        victim = connect_as(&b, UID_B);
        root = raw_connect_hello(&b);
        ck_assert_int_eq(create(attacker, "secret", PAGE, 0600, 0, &open_handle, NULL), 0);
        ck_assert_int_eq(create(attacker, "published", PAGE, 0600, 0, &sealed_handle, NULL), 0);
        seal.handle = sealed_handle;
        ck_assert_int_eq(raw_request(attacker, MFB_WIRE_OP_SEAL, &seal, sizeof(seal), NULL, 0), 0);

        assert_every_lookup_answered_as_absent(victim, open_handle, open_handle + 1000000, "secret", "absent");
        assert_every_lookup_answered_as_absent(victim, sealed_handle, sealed_handle + 1000000, "published", "absent");

        /* WAIT cannot tell sealed from absent either: not at once, and not after a while. */
        wait_request(&ww, "published", 0);
        wait_request(&wa, "absent", 0);
        assert_answered_as_absent(victim, MFB_WIRE_OP_WAIT, &ww, &wa, sizeof(ww), "published", "absent");
        wait_request(&ww, "published", 20 * 1000 * 1000);
        ck_assert_int_eq(raw_request(victim, MFB_WIRE_OP_WAIT, &ww, sizeof(ww), NULL, 0), -ETIMEDOUT);

        /*
         * Nor removal: the owner's REMOVE wakes no waiter that may not read
         * the region. Had it woken this one, the EIDRM would be queued before
         * the owner's REMOVE is answered, ahead of the timeout.
         */
        wait_request(&ww, "secret", 300 * 1000 * 1000);
        raw_send(victim, MFB_WIRE_OP_WAIT, &ww, sizeof(ww), NULL, 0);
        raw_wait_consumed(victim);
        ck_assert_int_eq(remove_name(attacker, "secret"), 0);
        ck_assert_int_eq(raw_reply(victim, MFB_WIRE_OP_WAIT, NULL, 0, NULL), -ETIMEDOUT);
        assert_victim_served(victim);

        /* The owner and root see everything as before. */
        lookup_by_handle(&lookup, sealed_handle);
        ck_assert_int_eq(raw_request(attacker, MFB_WIRE_OP_STAT, &lookup, sizeof(lookup), NULL, 0), 0);
        ck_assert_int_eq(raw_request(root, MFB_WIRE_OP_STAT, &lookup, sizeof(lookup), NULL, 0), 0);
        ck_assert_int_eq(remove_name(attacker, "published"), 0);

        close(attacker);
        close(victim);
        close(root);
        assert_back_to_baseline(&b, &base, RSS_SLACK_KIB, __func__);
        test_broker_stop(&b);
}
END_TEST

/* 5. File descriptors ------------------------------------------------- */

/* Few enough that one uid reaches its share quickly, enough for the broker's own fds. */
#define SHORT_FD_LIMIT 256U

START_TEST(one_user_cannot_take_every_fd) {
        struct test_broker b;
        struct baseline base;
        int connections[SHORT_FD_LIMIT];
        unsigned n = 0, created = 0;
        int32_t k = 0;
        int attacker, victim, root;

        if (!can_switch_users(__func__))
                return;
        test_broker_start_unwrapped(&b, NULL, geteuid(), SHORT_FD_LIMIT);
        baseline_take(&b, &base);

        /* Regions until the broker says no, as quota: never because it ran out for everyone. */
        attacker = connect_as(&b, UID_A);
        while (created < SHORT_FD_LIMIT && (k = create(attacker, NULL, PAGE, 0, 0, NULL, NULL)) == 0)
                created++;
        ck_assert_msg(k == -EDQUOT, "CREATE number %u of one uid got %s, not EDQUOT", created + 1, strerror(-k));
        ck_assert_uint_gt(created, 0);

        /* Then connections, until one is refused. */
        for (k = 0; k == 0; n++) {
                ck_assert_uint_lt(n, SHORT_FD_LIMIT);
                raw_connect_as(&b, UID_A, 0, 1, &connections[n]);
                k = hello(connections[n], NULL);
        }
        ck_assert_int_eq(k, -EDQUOT);
        ck_assert_int_eq(raw_recv(connections[n - 1], &(char) { 0 }, 1, NULL), 0);

        /* Everybody else still gets in and gets regions. */
        victim = connect_as(&b, UID_B);
        assert_victim_served(victim);
        root = raw_connect_hello(&b);
        ck_assert_int_eq(create(root, NULL, PAGE, 0, 0, NULL, NULL), 0);

        for (unsigned i = 0; i < n; i++)
                close(connections[i]);
        close(attacker);
        close(victim);
        close(root);
        assert_back_to_baseline(&b, &base, RSS_SLACK_KIB, __func__);
        test_broker_stop(&b);
}
END_TEST

/* 6. Memory ---------------------------------------------------------- */

#define SLOW_CONNECTIONS 200U
#define QUEUED_MAX_KIB (8 * 1024)
/* What the broker may use beyond the queued replies while 200 connections are open and dropped. */
#define RSS_TOLERANCE_KIB (16 * 1024)

/* Waits until the broker has read everything sent on fd, or dropped it. */
static void wait_consumed_or_dropped(int fd) {
        long long deadline = now_ms() + TEST_TIMEOUT_MS;
        int unread;

        for (;;) {
                ck_assert_int_eq(ioctl(fd, SIOCOUTQ, &unread), 0);
                if (unread == 0)
                        return;
                ck_assert_msg(now_ms() < deadline, "the broker neither read nor dropped a connection");
                sleep_ms(1);
        }
}

static bool hung_up(int fd) {
        struct pollfd p = { .fd = fd, .events = POLLIN };

        ck_assert_int_ge(poll(&p, 1, 0), 0);
        return p.revents & POLLHUP;
}

START_TEST(slow_readers_cannot_take_the_brokers_memory) {
        const char *args[] = { "--max-queued-bytes", "8M", NULL };
        int *slow = calloc(SLOW_CONNECTIONS, sizeof(int));
        bool measure = rss_is_the_brokers(__func__);
        uint64_t rss, rss_max = 0;
        struct test_broker b;
        struct baseline base;
        struct mfb_wire_limits_reply l;
        int attacker, victim, root;
        unsigned dropped = 0;

        if (!can_switch_users(__func__)) {
                free(slow);
                return;
        }
        ck_assert_ptr_nonnull(slow);
        raise_own_fd_limit();
        test_broker_start_with_fd_limit(&b, args, 4 * SLOW_CONNECTIONS + 4096);
        baseline_take(&b, &base);
        victim = connect_as(&b, UID_B);
        root = raw_connect_hello(&b);

        /* Each LIST reply a full page: 44 KiB, 64 of them on each of 200 connections that never read. */
        attacker = connect_as(&b, UID_A);
        for (unsigned i = 0; i < MFB_WIRE_LIST_ENTRIES_MAX; i++)
                ck_assert_int_eq(create(attacker, NULL, PAGE, 0, 0, NULL, NULL), 0);
        raw_connect_as(&b, UID_A, 0, SLOW_CONNECTIONS, slow);
        for (unsigned i = 0; i < SLOW_CONNECTIONS; i++) {
                ck_assert_int_eq(hello(slow[i], NULL), 0);
                for (unsigned j = 0; j < MFB_WIRE_REQUESTS_IN_FLIGHT_MAX; j++)
                        if (send_list_nowait(slow[i], 0) < 0)
                                break;
                wait_consumed_or_dropped(slow[i]);
                rss = broker_rss_kib(&b);
                rss_max = rss > rss_max ? rss : rss_max;
                if (i % 25 == 0)
                        assert_victim_served(victim);
        }
        assert_victim_served(victim);
        for (unsigned i = 0; i < SLOW_CONNECTIONS; i++)
                dropped += hung_up(slow[i]);
        ck_assert_msg(dropped > 0, "no connection of the uid that does not read was dropped");
        if (measure)
                ck_assert_msg(rss_max <= base.rss_kib + QUEUED_MAX_KIB + RSS_TOLERANCE_KIB,
                              "the broker grew from %" PRIu64 " KiB to %" PRIu64 " KiB of RSS", base.rss_kib, rss_max);

        for (unsigned i = 0; i < SLOW_CONNECTIONS; i++)
                close(slow[i]);
        free(slow);
        close(attacker);
        ck_assert(test_broker_wait_fd_count(&b, base.fds + 2));
        get_limits(root, &l);
        ck_assert_uint_eq(l.resources[MFB_WIRE_RESOURCE_QUEUED_BYTES].broker_used, 0);
        close(victim);
        close(root);
        assert_back_to_baseline(&b, &base, RSS_SLACK_KIB, __func__);
        test_broker_stop(&b);
}
END_TEST

/* 7. The default byte quota ------------------------------------------- */

/* The broker's soft limit on open files, from /proc/PID/limits. */
static uint64_t broker_fd_limit(const struct test_broker *b) {
        char path[64], line[256];
        unsigned long long soft = 0;
        bool found = false;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/limits", (int) b->pid);
        f = fopen(path, "re");
        ck_assert_ptr_nonnull(f);
        while (!found && fgets(line, sizeof(line), f))
                found = sscanf(line, "Max open files %llu", &soft) == 1;
        fclose(f);
        ck_assert(found);
        return soft;
}

START_TEST(default_quotas_fit_the_machine) {
        uint64_t memory = (uint64_t) sysconf(_SC_PHYS_PAGES) * (uint64_t) sysconf(_SC_PAGESIZE);
        struct test_broker b;
        struct baseline base;
        struct mfb_wire_limits_reply l;
        const struct mfb_wire_limit *bytes = &l.resources[MFB_WIRE_RESOURCE_BYTES];
        const struct mfb_wire_limit *regions = &l.resources[MFB_WIRE_RESOURCE_REGIONS];
        int fd, victim;

        if (!can_switch_users(__func__))
                return;
        test_broker_start(&b, NULL);
        baseline_take(&b, &base);
        fd = connect_as(&b, UID_A);
        victim = connect_as(&b, UID_B);
        get_limits(fd, &l);
        ck_assert_msg(bytes->uid_max <= memory, "a uid may hold %" PRIu64 " bytes, the machine has %" PRIu64,
                      bytes->uid_max, memory);
        ck_assert_uint_le(bytes->broker_max, memory);
        /* Every region holds an fd: more regions than fds would fail as ENOSPC for everyone. */
        ck_assert_uint_le(regions->broker_max, broker_fd_limit(&b));
        ck_assert_uint_le(regions->uid_max, regions->broker_max);
        assert_victim_served(victim);
        close(fd);
        close(victim);
        assert_back_to_baseline(&b, &base, RSS_SLACK_KIB, __func__);
        test_broker_stop(&b);
}
END_TEST

/* 9. Huge pages -------------------------------------------------------- */

#define NR_HUGEPAGES "/proc/sys/vm/nr_hugepages"

/* vm.nr_hugepages as the tcase found it, restored after it; -1 if it could not be read. */
static long saved_nr_hugepages = -1;

static long read_number(const char *path) {
        long v = -1;
        FILE *f = fopen(path, "re");

        if (!f)
                return -1;
        if (fscanf(f, "%ld", &v) != 1)
                v = -1;
        fclose(f);
        return v;
}

static bool write_number(const char *path, long v) {
        FILE *f = fopen(path, "we");
        bool ok;

        if (!f)
                return false;
        ok = fprintf(f, "%ld\n", v) > 0;
        return fclose(f) == 0 && ok;
}

/* Unchecked fixture: runs in the runner, so the setting is restored even when the test failed. */
static void save_nr_hugepages(void) {
        saved_nr_hugepages = geteuid() == 0 ? read_number(NR_HUGEPAGES) : -1;
}

static void restore_nr_hugepages(void) {
        if (saved_nr_hugepages >= 0 && read_number(NR_HUGEPAGES) != saved_nr_hugepages &&
            !write_number(NR_HUGEPAGES, saved_nr_hugepages))
                fprintf(stderr, "could not restore %s to %ld: %s\n", NR_HUGEPAGES, saved_nr_hugepages,
                        strerror(errno));
}

/* A "Key: N" line of /proc/meminfo, -1 if it is missing. */
static long meminfo(const char *key) {
        size_t len = strlen(key);
        char line[256];
        long v = -1;
        FILE *f = fopen("/proc/meminfo", "re");

        ck_assert_ptr_nonnull(f);
        while (v < 0 && fgets(line, sizeof(line), f))
                if (strncmp(line, key, len) == 0 && line[len] == ':' && sscanf(line + len + 1, "%ld", &v) != 1)
                        v = -1;
        fclose(f);
        return v;
}

/* HugePages_Free minus HugePages_Rsvd: the huge pages a new mapping can still get. */
static long huge_pages_available(void) {
        long free_pages = meminfo("HugePages_Free"), reserved = meminfo("HugePages_Rsvd");

        return free_pages < 0 || reserved < 0 ? -1 : free_pages - reserved;
}

START_TEST(reserved_huge_pages_are_not_free) {
        struct mfb_wire_hello_reply caps;
        struct test_broker b;
        struct baseline base;
        long available = huge_pages_available();
        uint64_t size;
        int attacker, victim, region_fd = -1;
        void *mem;

        if (!can_switch_users(__func__))
                return;
        if (saved_nr_hugepages < 0 || available < 0 || meminfo("Hugepagesize") <= 0 ||
            !write_number(NR_HUGEPAGES, saved_nr_hugepages - available + 2) || huge_pages_available() != 2) {
                fprintf(stderr, "SKIP %s: cannot make exactly 2 huge pages available through %s\n", __func__,
                        NR_HUGEPAGES);
                return;
        }
        size = 2 * (uint64_t) meminfo("Hugepagesize") * 1024;
        test_broker_start(&b, NULL);
        baseline_take(&b, &base);
        raw_connect_as(&b, UID_A, 0, 1, &attacker);
        ck_assert_int_eq(hello(attacker, &caps), 0);
        if (!(caps.capabilities & MFB_WIRE_CAP_HUGETLB)) {
                fprintf(stderr, "SKIP %s: the broker cannot make hugetlb regions here\n", __func__);
                close(attacker);
                test_broker_stop(&b);
                return;
        }
        victim = connect_as(&b, UID_B);

        /* A shared mapping reserves the pages: still free, no longer available. */
        ck_assert_int_eq(create(attacker, NULL, size, 0, MFB_WIRE_CREATE_HUGETLB, NULL, &region_fd), 0);
        mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, region_fd, 0);
        ck_assert(mem != MAP_FAILED);
        ck_assert_int_eq(huge_pages_available(), 0);
        ck_assert_int_eq(meminfo("HugePages_Free"), 2);

        /* Refused now, rather than a SIGBUS at the first touch. */
        ck_assert_int_eq(create(victim, NULL, size, 0, MFB_WIRE_CREATE_HUGETLB, NULL, NULL), -ENOMEM);
        assert_victim_served(victim);

        munmap(mem, size);
        close(region_fd);
        close(attacker);
        close(victim);
        assert_back_to_baseline(&b, &base, RSS_SLACK_KIB, __func__);
        test_broker_stop(&b);
}
END_TEST

/* 10. Every holder has an open file of its own ----------------------- */

START_TEST(co_writers_do_not_share_an_open_file) {
        struct test_broker b;
        struct baseline base;
        uint64_t handle = 0;
        int creator, co_writer, root, mine = -1, theirs = -1, later = -1;
        char buf[5];

        if (!can_switch_users(__func__))
                return;
        test_broker_start(&b, NULL);
        baseline_take(&b, &base);
        /* Here uid A is the victim, whose co-writer of uid B changes the fd it was given. */
        creator = connect_as(&b, UID_A);
        co_writer = connect_as(&b, UID_B);
        root = raw_connect_hello(&b);
        ck_assert_int_eq(create(creator, NULL, PAGE, 0666, 0, &handle, &mine), 0);
        ck_assert_int_eq(open_handle(co_writer, handle, MFB_WIRE_ACCESS_READ | MFB_WIRE_ACCESS_WRITE, &theirs), 0);
        ck_assert_int_eq(fcntl(theirs, F_SETFL, O_APPEND), 0);
        ck_assert_int_eq(lseek(theirs, 1000, SEEK_SET), 1000);

        ck_assert_int_eq(fcntl(mine, F_GETFL) & O_APPEND, 0);
        ck_assert_int_eq(lseek(mine, 0, SEEK_CUR), 0);
        /* With O_APPEND these would write past the end, which the grow seal refuses (EPERM). */
        ck_assert_int_eq(pwrite(mine, "hello", 5, 0), 5);
        ck_assert_int_eq(write(mine, "abc", 3), 3);
        ck_assert_int_eq(lseek(mine, 0, SEEK_CUR), 3);
        ck_assert_int_eq(lseek(theirs, 0, SEEK_CUR), 1000);
        ck_assert_int_eq(pread(theirs, buf, sizeof(buf), 0), (ssize_t) sizeof(buf));
        ck_assert_int_eq(memcmp(buf, "abclo", sizeof(buf)), 0);

        /* A holder that comes later starts afresh too. */
        ck_assert_int_eq(open_handle(root, handle, MFB_WIRE_ACCESS_READ | MFB_WIRE_ACCESS_WRITE, &later), 0);
        ck_assert_int_eq(fcntl(later, F_GETFL) & O_APPEND, 0);
        ck_assert_int_eq(lseek(later, 0, SEEK_CUR), 0);
        assert_victim_served(creator);

        close(later);
        close(theirs);
        close(mine);
        close(creator);
        close(co_writer);
        close(root);
        assert_back_to_baseline(&b, &base, RSS_SLACK_KIB, __func__);
        test_broker_stop(&b);
}
END_TEST

/* Its fds in flight, as the kernel counts them, are capped at this: the broker's RLIMIT_NOFILE below. */
#define IN_FLIGHT_FD_LIMIT 2000U
#define IN_FLIGHT_BROKER_UID 65532      /* a user of its own: the kernel's cap binds it, as under the unit */
#define IN_FLIGHT_CONNECTIONS 40U
#define OPEN_REPLY_LEN (sizeof(struct mfb_wire_header) + sizeof(struct mfb_wire_region_reply))

/*
 * Sends a read-only OPEN of name up to n times without reading a reply, and
 * without waiting: until the socket is full or the broker gave up on the
 * connection. Returns how many went.
 */
static unsigned send_opens_nowait(int fd, const char *name, unsigned n) {
        struct {
                struct mfb_wire_header h;
                struct mfb_wire_open_request body;
        } rec = { .body = { .access = MFB_WIRE_ACCESS_READ } };
        unsigned i = 0;

        ck_assert_int_eq(mfb_wire_name_set(&rec.body.name, name), 0);
        mfb_wire_header_init(&rec.h, MFB_WIRE_OP_OPEN, RAW_COOKIE, 0, 0, sizeof(rec));
        while (i < n && mfb_record_send(fd, &rec, sizeof(rec), NULL, 0, MSG_DONTWAIT) == 0)
                i++;
        return i;
}

/*
 * Starts b as IN_FLIGHT_BROKER_UID with RLIMIT_NOFILE fd_limit, without a
 * wrapper, takes its baseline, and connects the victim as UID_B, which
 * creates "bait", a page others may open read-only. Or says why it cannot
 * and returns false: the test is skipped then.
 */
static bool in_flight_broker_start(struct test_broker *b, const char *test, const char *const *args,
                                   unsigned fd_limit, struct baseline *ret_base, int *ret_victim) {
        int fd;

        if (!can_switch_users(test))
                return false;
        if (!test_uid_can_run_broker(IN_FLIGHT_BROKER_UID)) {
                fprintf(stderr, "SKIP %s: uid %d cannot run the broker in this build tree\n", test,
                        IN_FLIGHT_BROKER_UID);
                return false;
        }
        raise_own_fd_limit();
        test_broker_start_unwrapped(b, args, IN_FLIGHT_BROKER_UID, fd_limit);
        baseline_take(b, ret_base);
        *ret_victim = connect_as(b, UID_B);
        ck_assert_int_eq(create(*ret_victim, "bait", PAGE, 0644, 0, NULL, &fd), 0);
        close(fd);
        return true;
}

/*
 * The kernel counts the fds the broker sent that nobody has read against
 * the broker's RLIMIT_NOFILE, and beyond it refuses the broker every fd it
 * sends (ETOOMANYREFS), unless it has CAP_SYS_RESOURCE, which the unit does
 * not give. The attacker opens a region over and over on many connections,
 * reads nothing, and has the broker drop each connection while it keeps
 * its end, fds and all: together far more than that cap. It gets only its
 * share of the room, its connections fail beyond it, and the victim is
 * sent its fds as ever.
 */
START_TEST(unread_fds_cannot_take_fd_passing_from_the_others) {
        /* Few kept regions, so that most of the room in flight is the replies'. */
        static const char *const args[] = { "--max-kept-regions", "10", NULL };
        int conns[IN_FLIGHT_CONNECTIONS], victim;
        unsigned unread_fds = 0, failed = 0;
        struct test_broker b;
        struct baseline base;

        if (!in_flight_broker_start(&b, __func__, args, IN_FLIGHT_FD_LIMIT, &base, &victim))
                return;

        for (unsigned i = 0; i < IN_FLIGHT_CONNECTIONS; i++) {
                int queued;

                conns[i] = connect_as(&b, UID_A);
                (void) send_opens_nowait(conns[i], "bait", MFB_WIRE_REQUESTS_IN_FLIGHT_MAX);
                wait_consumed_or_dropped(conns[i]);
                ck_assert_int_eq(ioctl(conns[i], SIOCINQ, &queued), 0);
                unread_fds += (unsigned) queued / OPEN_REPLY_LEN;
                /*
                 * A record that is no request: the broker drops the connection,
                 * the attacker keeps its end. Unless it dropped it already, at
                 * the attacker's share: then the broker shut it down.
                 */
                if (send(conns[i], "bad", 3, MSG_NOSIGNAL) < 0)
                        ck_assert_msg(errno == EPIPE || errno == ECONNRESET, "send: %s", strerror(errno));
                wait_consumed_or_dropped(conns[i]);
                if (i % 10 == 0)
                        assert_victim_served(victim);
        }
        assert_victim_served(victim);
        for (unsigned i = 0; i < IN_FLIGHT_CONNECTIONS; i++)
                failed += hung_up(conns[i]);
        /* It asked for more than the kernel's cap, and got at most what leaves the others room. */
        ck_assert_uint_gt(IN_FLIGHT_CONNECTIONS * MFB_WIRE_REQUESTS_IN_FLIGHT_MAX, IN_FLIGHT_FD_LIMIT);
        ck_assert_uint_lt(unread_fds, IN_FLIGHT_FD_LIMIT / 2);
        ck_assert_uint_eq(failed, IN_FLIGHT_CONNECTIONS);

        /* Its ends closed, the broker lets go of the sockets it kept for them: what stays is the named region. */
        for (unsigned i = 0; i < IN_FLIGHT_CONNECTIONS; i++)
                close(conns[i]);
        close(victim);
        ck_assert_msg(test_broker_wait_fd_count(&b, base.fds + 1), "the broker kept %u fds, not %u",
                      test_broker_fd_count(&b), base.fds + 1);
        assert_victim_served(victim = connect_as(&b, UID_B));
        close(victim);
        test_broker_stop(&b);
}
END_TEST

/* Few fds for the broker, so that a uid reaches its share of them with a few hundred regions. */
#define SHARE_FD_LIMIT 700U
#define SHARE_OPENS 64U


/*
 * A connection dropped while its client holds fds unread is kept until the
 * client lets go of them, its socket then one of its uid's fds as it was
 * the connection's. A uid that uses its whole share of the broker's fds
 * (regions, connections) must be able to have it kept all the same, and
 * so get back its room in flight once its client closes its end: were the
 * socket counted twice, the connection would be closed at once and its
 * unread fds charged to the uid in flight for as long as the broker runs.
 */
START_TEST(a_uid_at_its_fd_share_gets_back_its_room_in_flight) {
        static const char *const args[] = { "--max-kept-regions", "10", "--max-regions-per-uid", "100000", NULL };
        int victim, filler, leaver, later, fd, queued;
        unsigned regions = 0;
        struct test_broker b;
        struct baseline base;

        if (!in_flight_broker_start(&b, __func__, args, SHARE_FD_LIMIT, &base, &victim))
                return;

        /* Replies with fds, unread, well within the uid's share of the room in flight. */
        leaver = connect_as(&b, UID_A);
        ck_assert_uint_eq(send_opens_nowait(leaver, "bait", SHARE_OPENS), SHARE_OPENS);
        wait_consumed_or_dropped(leaver);
        ck_assert_int_eq(ioctl(leaver, SIOCINQ, &queued), 0);
        ck_assert_uint_eq((unsigned) queued / OPEN_REPLY_LEN, SHARE_OPENS);
        ck_assert(!hung_up(leaver));

        /* Then the uid takes every fd of the broker's its share leaves it. */
        filler = connect_as(&b, UID_A);
        while (create(filler, NULL, PAGE, 0, 0, NULL, NULL) == 0)
                ck_assert_uint_lt(regions++, SHARE_FD_LIMIT);
        ck_assert_uint_gt(regions, 0);
        ck_assert_uint_eq(uid_used(filler, MFB_WIRE_RESOURCE_REGIONS), regions);

        /* A record that is no request: the broker drops the connection, whose client keeps its end. */
        ck_assert_int_eq(send(leaver, "bad", 3, MSG_NOSIGNAL), 3);
        wait_consumed_or_dropped(leaver);
        close(filler);
        /* Its client lets go of what it left unread: the room in flight is the uid's again. */
        close(leaver);
        ck_assert_msg(test_broker_wait_fd_count(&b, base.fds + 2), "the broker kept %u fds, not %u",
                      test_broker_fd_count(&b), base.fds + 2);

        later = connect_as(&b, UID_A);
        ck_assert_uint_eq(send_opens_nowait(later, "bait", SHARE_OPENS), SHARE_OPENS);
        for (unsigned i = 0; i < SHARE_OPENS; i++) {
                ck_assert_int_eq(raw_reply(later, MFB_WIRE_OP_OPEN, NULL, 0, &fd), 0);
                close(fd);
        }
        close(later);
        assert_victim_served(victim);
        close(victim);
        test_broker_stop(&b);
}
END_TEST

Suite *attack_suite(void) {
        Suite *s = suite_create("attack");
        TCase *tc = tcase_create("attack"), *huge = tcase_create("huge pages");

        tcase_set_timeout(tc, 120);
        tcase_add_checked_fixture(tc, test_fd_leak_setup, test_fd_leak_teardown);
        tcase_add_test(tc, a_hangup_frees_the_connection_whatever_it_waits_for);
        tcase_add_test(tc, an_owner_cannot_give_its_regions_away);
        tcase_add_test(tc, list_examines_a_bounded_number_of_regions);
        tcase_add_test(tc, unreadable_regions_do_not_exist_for_others);
        tcase_add_test(tc, one_user_cannot_take_every_fd);
        tcase_add_test(tc, slow_readers_cannot_take_the_brokers_memory);
        tcase_add_test(tc, default_quotas_fit_the_machine);
        tcase_add_test(tc, co_writers_do_not_share_an_open_file);
        tcase_add_test(tc, unread_fds_cannot_take_fd_passing_from_the_others);
        tcase_add_test(tc, a_uid_at_its_fd_share_gets_back_its_room_in_flight);
        suite_add_tcase(s, tc);

        tcase_set_timeout(huge, 60);
        tcase_add_unchecked_fixture(huge, save_nr_hugepages, restore_nr_hugepages);
        tcase_add_checked_fixture(huge, test_fd_leak_setup, test_fd_leak_teardown);
        tcase_add_test(huge, reserved_huge_pages_are_not_free);
        suite_add_tcase(s, huge);
        return s;
}
