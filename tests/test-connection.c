/* SPDX-License-Identifier: MIT */
/*
 * daemon/connection.c on its own, over socketpairs, on an event_base of the
 * test's: the test plays both the owner (struct connection_ops) and the
 * client (the other end of each pair). Records carry a sequence number and
 * a pattern made from it, so that each side can tell a record that came
 * whole, in order, from one that did not. The loop runs without waiting
 * (EVLOOP_NONBLOCK), pass after pass, until what a test waits for holds or
 * LOOP_PASSES_MAX passes gave up on it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "connection.h"
#include "fdpass.h"
#include "harness.h"
#include "macro.h"
#include "quota.h"
#include "schedule.h"
#include "suites.h"
#include "wire.h"

#define EXEMPT_UID 990          /* the broker's own */
#define UID_A 1000
#define UID_B 1001

#define PEERS_MAX 8
#define LOG_MAX 1024
#define LOOP_PASSES_MAX 10000U
/* Passes in which nothing is to happen, to show that nothing does. */
#define IDLE_PASSES 50U
/* Sends that fill a socket whose peer does not read, at most: it holds a few hundred KiB. */
#define SENDS_MAX 100000U

/* A reply large enough that a few fill the socket the client does not read (connection_new() sizes it). */
#define BIG_REPLY_LEN 16384U

#define NONE (-1L)

/* One end of a socketpair as the broker's connection, the other as its client. */
struct peer {
        struct connection *c;
        int client;                     /* the test's end */
        unsigned index;                 /* in peers[] and the log */
        uid_t uid;

        uint32_t next_sent;             /* sequence number of the next record the client sends */
        uint32_t next_up;               /* ... the next record expected up */
        uint32_t next_reply;            /* ... the next reply the test gives the transport */
        uint32_t next_read;             /* ... the next reply the client expects */
        unsigned n_records;             /* handed up */
        size_t last_len, last_nfds;
        unsigned n_gone;
        int gone_error;
        bool free_when_gone;            /* connection_free() in ops->gone, or later */

        /* What the owner does with the record of a sequence number (NONE: nothing). */
        size_t reply_len;               /* answers each record with a reply this long; 0: none */
        long pause_at;
        long charge_at;
        unsigned charge_turns;
        long abort_at;
        int abort_error;
        long close_at;                  /* connection_close_when_sent(), after close_replies replies */
        unsigned close_replies;
        long fds_at_record;             /* the fds this process must have open when a record comes up */
        struct peer *send_to;           /* each record answered on that one's connection instead */
        int send_to_result;
};

static struct event_base *base;
static struct quota *quota;
static struct transport *transport;
static struct peer *peers[PEERS_MAX];
static unsigned n_peers;

/* Every record handed up, in order: whose, and which. */
static struct {
        unsigned peer;
        uint32_t seq;
        size_t nfds;
} handed[LOG_MAX];
static unsigned n_handed;

/* Where the transport is: in the loop, in the test's send, in ops->record. */
static bool in_loop, in_send, in_record;

static uint8_t pattern(uint32_t seq, size_t i) {
        return (uint8_t) (seq * 31 + i);
}

/* A record of len bytes (at least 4) that says seq and has a pattern of it after. */
static void record_fill(uint8_t *buf, uint32_t seq, size_t len) {
        ck_assert_uint_ge(len, sizeof(seq));
        memcpy(buf, &seq, sizeof(seq));
        for (size_t i = sizeof(seq); i < len; i++)
                buf[i] = pattern(seq, i);
}

/* The sequence number of a record, which must have come whole. */
static uint32_t record_check(const uint8_t *buf, size_t len) {
        uint32_t seq;

        ck_assert_uint_ge(len, sizeof(seq));
        memcpy(&seq, buf, sizeof(seq));
        for (size_t i = sizeof(seq); i < len; i++)
                ck_assert_msg(buf[i] == pattern(seq, i), "record %u of %zu bytes differs at byte %zu", seq, len, i);
        return seq;
}

static void on_gone(struct connection *c, int error, void *userdata);

/* The test's sends: the transport must never call ops->gone from inside one. */
static int server_send(struct peer *p, size_t len) {
        static uint8_t buf[MFB_WIRE_RECORD_MAX];
        unsigned gone_before = p->n_gone;
        int r;

        record_fill(buf, p->next_reply, len);
        in_send = true;
        r = connection_send(p->c, buf, len);
        in_send = false;
        ck_assert_uint_eq(p->n_gone, gone_before);
        if (r >= 0)
                p->next_reply++;
        return r;
}

static int server_send_consume(struct peer *p, size_t len, int *fds, size_t n_fds) {
        uint8_t buf[256];
        int r;

        ck_assert_uint_le(len, sizeof(buf));
        record_fill(buf, p->next_reply, len);
        in_send = true;
        r = connection_send_consume_fds(p->c, buf, len, fds, n_fds);
        in_send = false;
        if (r >= 0)
                p->next_reply++;
        return r;
}

static int server_send_borrowed(struct peer *p, size_t len, const int *fds, size_t n_fds) {
        uint8_t buf[256];
        int r;

        ck_assert_uint_le(len, sizeof(buf));
        record_fill(buf, p->next_reply, len);
        in_send = true;
        r = connection_send_borrowed_fds(p->c, buf, len, fds, n_fds);
        in_send = false;
        if (r >= 0)
                p->next_reply++;
        return r;
}

static void on_record(struct connection *c, const void *record, size_t len, size_t nfds, void *userdata) {
        struct peer *p = userdata;
        uint32_t seq;

        ck_assert_msg(in_loop, "a record handed up from outside the event loop");
        ck_assert_msg(!in_record, "a record handed up from inside ops->record");
        ck_assert_ptr_eq(c, p->c);
        ck_assert_uint_eq(p->n_gone, 0);
        seq = record_check(record, len);
        ck_assert_msg(seq == p->next_up, "connection %u handed up record %u, expected %u", p->index, seq, p->next_up);
        p->next_up++;
        p->n_records++;
        p->last_len = len;
        p->last_nfds = nfds;
        ck_assert_uint_lt(n_handed, LOG_MAX);
        handed[n_handed].peer = p->index;
        handed[n_handed].seq = seq;
        handed[n_handed].nfds = nfds;
        n_handed++;
        /* The fds that came with it were the transport's to close, before the call. */
        if (p->fds_at_record != NONE)
                ck_assert_uint_eq(test_fd_count(), (unsigned) p->fds_at_record);

        in_record = true;
        if (p->send_to)
                p->send_to_result = server_send(p->send_to, 64);
        if (p->reply_len > 0)
                ck_assert_int_eq(server_send(p, p->reply_len), 0);
        if ((long) seq == p->charge_at)
                connection_charge(c, p->charge_turns);
        if ((long) seq == p->pause_at)
                connection_pause(c, true);
        if ((long) seq == p->abort_at) {
                connection_abort(c, p->abort_error);
                ck_assert_uint_eq(p->n_gone, 0);
        }
        if ((long) seq == p->close_at) {
                for (unsigned i = 0; i < p->close_replies; i++)
                        ck_assert_int_eq(server_send(p, BIG_REPLY_LEN), 0);
                connection_close_when_sent(c);
        }
        in_record = false;
}

static void on_gone(struct connection *c, int error, void *userdata) {
        struct peer *p = userdata;

        ck_assert_msg(in_loop, "ops->gone called from outside the event loop");
        ck_assert_msg(!in_send, "ops->gone called from inside a send");
        ck_assert_msg(!in_record, "ops->gone called from inside ops->record");
        ck_assert_ptr_eq(c, p->c);
        ck_assert_int_le(error, 0);
        p->n_gone++;
        p->gone_error = error;
        if (p->free_when_gone) {
                connection_free(p->c);
                p->c = NULL;
        }
}

static const struct connection_ops ops = {
        .record = on_record,
        .gone = on_gone,
};

static struct peer *peer_new(uid_t uid) {
        struct peer *p = calloc(1, sizeof(*p));
        int sv[2];

        ck_assert_ptr_nonnull(p);
        ck_assert_uint_lt(n_peers, PEERS_MAX);
        p->index = n_peers;
        p->uid = uid;
        p->pause_at = p->charge_at = p->abort_at = p->close_at = p->fds_at_record = NONE;
        peers[n_peers++] = p;
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        p->client = sv[1];
        ck_assert_int_eq(connection_new(transport, sv[0], uid, &ops, p, &p->c), 0);
        return p;
}

/* The client sends a record of len bytes with n_fds fds (borrowed). */
static void client_send_fds(struct peer *p, size_t len, const int *fds, size_t n_fds) {
        static uint8_t buf[MFB_WIRE_RECORD_MAX];

        record_fill(buf, p->next_sent, len);
        ck_assert_int_eq(mfb_record_send(p->client, buf, len, fds, n_fds, MSG_DONTWAIT), 0);
        p->next_sent++;
}

static void client_send(struct peer *p, size_t len) {
        client_send_fds(p, len, NULL, 0);
}

/*
 * The client reads one reply, which must be the next in order and whole.
 * Returns its length, or -EAGAIN when none is waiting; its fds in fds.
 */
static ssize_t client_read_fds(struct peer *p, int *fds, size_t *n_fds) {
        static uint8_t buf[MFB_WIRE_RECORD_MAX];
        ssize_t n;

        n = mfb_record_recv(p->client, buf, sizeof(buf), fds, n_fds, MSG_DONTWAIT);
        if (n == -EAGAIN)
                return n;
        ck_assert_int_gt(n, 0);
        ck_assert_uint_eq(record_check(buf, (size_t) n), p->next_read);
        p->next_read++;
        return n;
}

/* The client reads every reply waiting, which must carry no fds. Returns how many. */
static unsigned client_drain(struct peer *p) {
        int fds[MFB_FDS_RECV_MAX];
        unsigned n = 0;
        size_t n_fds;

        while (client_read_fds(p, fds, &n_fds) > 0) {
                ck_assert_uint_eq(n_fds, 0);
                n++;
        }
        return n;
}

static void loop_pass(void) {
        in_loop = true;
        ck_assert_int_ge(event_base_loop(base, EVLOOP_NONBLOCK), 0);
        in_loop = false;
}

/* The client reads the next reply, running the loop until it comes. */
static ssize_t client_read_next(struct peer *p, int *fds, size_t *n_fds) {
        ssize_t n = client_read_fds(p, fds, n_fds);

        for (unsigned i = 0; n == -EAGAIN && i < LOOP_PASSES_MAX; i++) {
                loop_pass();
                n = client_read_fds(p, fds, n_fds);
        }
        ck_assert_msg(n > 0, "reply %u did not come", p->next_read);
        return n;
}

/* Runs the loop until cond holds; fails the test after LOOP_PASSES_MAX passes. */
#define RUN_UNTIL(cond)                                                                         \
        do {                                                                                    \
                for (unsigned _pass = 0; !(cond) && _pass < LOOP_PASSES_MAX; _pass++)           \
                        loop_pass();                                                            \
                ck_assert_msg((cond), "still not %s after %u passes of the loop", #cond,       \
                              LOOP_PASSES_MAX);                                                 \
        } while (0)

/* As RUN_UNTIL(), the client of p reading its replies before each pass. */
#define RUN_READING_UNTIL(p, cond)                                                              \
        do {                                                                                    \
                for (unsigned _pass = 0; !(cond) && _pass < LOOP_PASSES_MAX; _pass++) {         \
                        client_drain(p);                                                        \
                        loop_pass();                                                            \
                }                                                                               \
                ck_assert_msg((cond), "still not %s after %u passes of the loop", #cond,       \
                              LOOP_PASSES_MAX);                                                 \
        } while (0)

static void run_idle(void) {
        for (unsigned i = 0; i < IDLE_PASSES; i++)
                loop_pass();
}

/* The transport sends replies of len bytes on p until n of them wait in its queue. */
static void fill_queue(struct peer *p, size_t len, size_t n) {
        for (unsigned i = 0; connection_queued(p->c) < n; i++) {
                ck_assert_uint_lt(i, SENDS_MAX);
                ck_assert_int_eq(server_send(p, len), 0);
        }
        ck_assert_uint_eq(connection_queued(p->c), n);
}

static void assert_uncharged(uid_t uid) {
        ck_assert_uint_eq(quota_held(quota, uid, MFB_RESOURCE_QUEUED_BYTES), 0);
        ck_assert_uint_eq(quota_held(quota, uid, MFB_RESOURCE_FDS), 0);
}

static int memfd_new(void) {
        int fd = memfd_create("test-connection", MFD_CLOEXEC);

        ck_assert_int_ge(fd, 0);
        return fd;
}

static bool same_file(int a, int b) {
        struct stat sa, sb;

        ck_assert_int_eq(fstat(a, &sa), 0);
        ck_assert_int_eq(fstat(b, &sb), 0);
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static bool fd_is_open(int fd) {
        return fcntl(fd, F_GETFD) >= 0;
}

static void setup_with(uint64_t queued_bytes_max) {
        struct quota_limits limits;

        test_fd_leak_setup();
        for (size_t i = 0; i < MFB_RESOURCE_COUNT; i++) {
                limits.broker_max.n[i] = UINT64_C(1) << 32;
                limits.uid_max.n[i] = MFB_LIMIT_NONE;
        }
        limits.broker_max.n[MFB_RESOURCE_QUEUED_BYTES] = queued_bytes_max;
        base = event_base_new();
        ck_assert_ptr_nonnull(base);
        ck_assert_int_eq(quota_new(&limits, EXEMPT_UID, &quota), 0);
        ck_assert_int_eq(transport_new(base, quota, &transport), 0);
        n_peers = 0;
        n_handed = 0;
        in_loop = in_send = in_record = false;
}

static void setup(void) {
        setup_with(UINT64_C(1) << 32);
}

/* A uid's share of queued bytes is half of this: room for one small reply queued, not two. */
#define TINY_QUEUED_BYTES_MAX 4096U
#define TINY_REPLY_LEN 1024U

static void setup_tiny_queue(void) {
        setup_with(TINY_QUEUED_BYTES_MAX);
}

static void teardown(void) {
        for (unsigned i = 0; i < n_peers; i++) {
                connection_free(peers[i]->c);
                safe_close(peers[i]->client);
                free(peers[i]);
        }
        /* Whatever a test left queued went with its connection. */
        ck_assert_uint_eq(quota_used(quota, MFB_RESOURCE_QUEUED_BYTES), 0);
        ck_assert_uint_eq(quota_used(quota, MFB_RESOURCE_FDS), 0);
        transport = transport_free(transport);
        quota = quota_free(quota);
        event_base_free(base);
        test_fd_leak_teardown();
}

START_TEST(records_come_up_whole_in_order_one_per_call_their_fds_closed) {
        static const size_t lens[] = { 4, 5, 100, 4096, MFB_WIRE_RECORD_MAX, 7, 1000 };
        static const size_t n_fds[] = { 0, 1, 0, 3, 0, 0, 2 };
        struct peer *p = peer_new(UID_A);
        int pipe_fds[2];
        char c;

        /* Each record with fds carries the write end of a pipe, which the test closes on its side. */
        p->fds_at_record = test_fd_count();
        ck_assert_int_eq(pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK), 0);
        for (size_t i = 0; i < ELEMENTSOF(lens); i++) {
                int fds[3] = { pipe_fds[1], pipe_fds[1], pipe_fds[1] };

                client_send_fds(p, lens[i], fds, n_fds[i]);
        }
        pipe_fds[1] = safe_close(pipe_fds[1]);
        /* Only the read end is open now: what the fds in flight add, the transport must take away. */
        p->fds_at_record++;

        RUN_UNTIL(p->n_records == ELEMENTSOF(lens));
        /* on_record checked each one: whole, in order, and the fds closed before the call. */
        for (size_t i = 0; i < ELEMENTSOF(lens); i++) {
                ck_assert_uint_eq(handed[i].peer, p->index);
                ck_assert_uint_eq(handed[i].seq, i);
        }
        ck_assert_uint_eq(p->last_len, lens[ELEMENTSOF(lens) - 1]);
        ck_assert_uint_eq(p->last_nfds, n_fds[ELEMENTSOF(n_fds) - 1]);
        /* No copy of the write end is left anywhere: the pipe reads as closed. */
        ck_assert_int_eq(read(pipe_fds[0], &c, 1), 0);
        safe_close(pipe_fds[0]);
        run_idle();
        ck_assert_uint_eq(p->n_records, ELEMENTSOF(lens));
        ck_assert_uint_eq(p->n_gone, 0);
}
END_TEST

/* Each record's nfds as the owner is told it, one call per record, in the order sent. */
START_TEST(nfds_is_counted_per_record) {
        static const size_t n_fds[] = { 0, 1, 2, 0, 5, MFB_FDS_RECV_MAX, 1 };
        struct peer *p = peer_new(UID_A);
        int fd = memfd_new(), fds[MFB_FDS_RECV_MAX];

        for (size_t k = 0; k < ELEMENTSOF(fds); k++)
                fds[k] = fd;
        for (size_t i = 0; i < ELEMENTSOF(n_fds); i++)
                client_send_fds(p, 8, fds, n_fds[i]);
        safe_close(fd);
        RUN_UNTIL(p->n_records == ELEMENTSOF(n_fds));
        for (size_t i = 0; i < ELEMENTSOF(n_fds); i++) {
                ck_assert_uint_eq(handed[i].seq, i);
                ck_assert_msg(handed[i].nfds == n_fds[i], "record %zu came up with %zu fds, sent with %zu", i,
                              handed[i].nfds, n_fds[i]);
        }
}
END_TEST

START_TEST(consumed_fds_go_to_the_client_and_the_sender_s_are_closed) {
        struct peer *p = peer_new(UID_A);
        int fd = memfd_new(), kept = memfd_new(), taken = fd, got[MFB_FDS_RECV_MAX];
        size_t n_got;

        /* The same file as fd, to compare with once fd is gone. */
        ck_assert_int_eq(close(kept), 0);
        kept = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        ck_assert_int_ge(kept, 0);

        ck_assert_int_eq(server_send_consume(p, 16, &fd, 1), 0);
        ck_assert_int_eq(fd, -1);
        ck_assert_msg(!fd_is_open(taken), "fd %d still open after it was sent and consumed", taken);

        ck_assert_int_eq(client_read_fds(p, got, &n_got), 16);
        ck_assert_uint_eq(n_got, 1);
        ck_assert(same_file(got[0], kept));
        safe_close(got[0]);
        safe_close(kept);
        assert_uncharged(UID_A);
}
END_TEST

/* The largest record goes out whole, whatever the system's default send buffer. */
START_TEST(a_reply_of_the_largest_record_size_is_sent_whole) {
        struct peer *p = peer_new(UID_A);
        int fds[MFB_FDS_RECV_MAX];
        size_t n_fds;

        ck_assert_int_eq(server_send(p, MFB_WIRE_RECORD_MAX), 0);
        RUN_UNTIL(connection_queued(p->c) == 0);
        ck_assert_int_eq(client_read_fds(p, fds, &n_fds), MFB_WIRE_RECORD_MAX);
        ck_assert_uint_eq(n_fds, 0);
        ck_assert_uint_eq(p->n_gone, 0);
}
END_TEST

START_TEST(borrowed_fds_stay_the_caller_s_and_a_queued_record_gets_copies) {
        struct peer *p = peer_new(UID_A);
        int fd = memfd_new(), ref, got[MFB_FDS_RECV_MAX];
        uint32_t borrowed_seq;
        unsigned fds_before;
        size_t n_got;

        /* Sent at once: no copy is made, and the caller's fd stays open. */
        fds_before = test_fd_count();
        ck_assert_int_eq(server_send_borrowed(p, 16, &fd, 1), 0);
        ck_assert_uint_eq(connection_queued(p->c), 0);
        ck_assert(fd_is_open(fd));
        ck_assert_uint_eq(test_fd_count(), fds_before);
        ck_assert_int_eq(client_read_fds(p, got, &n_got), 16);
        ck_assert_uint_eq(n_got, 1);
        ck_assert(same_file(got[0], fd));
        safe_close(got[0]);
        fd = safe_close(fd);

        /* The client does not read: the socket fills and the next records queue. */
        fill_queue(p, BIG_REPLY_LEN, 1);
        fd = memfd_new();
        ref = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        ck_assert_int_ge(ref, 0);
        borrowed_seq = p->next_reply;
        fds_before = test_fd_count();
        ck_assert_int_eq(server_send_borrowed(p, 20, &fd, 1), 0);
        ck_assert_uint_eq(connection_queued(p->c), 2);
        /* The queue holds a copy of its own, charged to the uid, and the caller's stays open. */
        ck_assert(fd_is_open(fd));
        ck_assert_uint_eq(test_fd_count(), fds_before + 1);
        ck_assert_uint_eq(quota_held(quota, UID_A, MFB_RESOURCE_FDS), 1);
        ck_assert_int_eq(server_send(p, 24), 0);

        /*
         * The caller is done with its fd, whose number goes to another file:
         * what the client gets must be the copy, after the records before it.
         */
        ck_assert_int_eq(close(fd), 0);
        fd = memfd_new();
        ck_assert(!same_file(fd, ref));
        while (p->next_read < borrowed_seq) {
                ck_assert_int_eq(client_read_next(p, got, &n_got), BIG_REPLY_LEN);
                ck_assert_uint_eq(n_got, 0);
        }
        ck_assert_int_eq(client_read_next(p, got, &n_got), 20);
        ck_assert_uint_eq(n_got, 1);
        ck_assert_msg(same_file(got[0], ref), "the queued record carried another file than the one borrowed");
        safe_close(got[0]);
        ck_assert_int_eq(client_read_next(p, got, &n_got), 24);
        ck_assert_uint_eq(n_got, 0);
        ck_assert_uint_eq(connection_queued(p->c), 0);
        assert_uncharged(UID_A);
        safe_close(fd);
        safe_close(ref);
        ck_assert_uint_eq(p->n_gone, 0);
}
END_TEST

Suite *connection_suite(void) {
        Suite *s = suite_create("connection");
        TCase *tc = tcase_create("connection");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, records_come_up_whole_in_order_one_per_call_their_fds_closed);
        tcase_add_test(tc, nfds_is_counted_per_record);
        tcase_add_test(tc, consumed_fds_go_to_the_client_and_the_sender_s_are_closed);
        tcase_add_test(tc, a_reply_of_the_largest_record_size_is_sent_whole);
        tcase_add_test(tc, borrowed_fds_stay_the_caller_s_and_a_queued_record_gets_copies);
        suite_add_tcase(s, tc);
        (void) setup_tiny_queue;
        return s;
}
