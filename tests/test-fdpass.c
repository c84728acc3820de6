/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fdpass.h"
#include "harness.h"
#include "macro.h"
#include "suites.h"

static int pair[2] = { -1, -1 };

static void pair_setup(void) {
        test_fd_leak_setup();
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
}

static void pair_teardown(void) {
        pair[0] = safe_close(pair[0]);
        pair[1] = safe_close(pair[1]);
        test_fd_leak_teardown();
}

START_TEST(record_with_fd) {
        int fds[MFB_FDS_RECV_MAX], sent[2];
        char buf[64];
        size_t nfds;

        ck_assert_int_eq(pipe2(sent, O_CLOEXEC), 0);
        ck_assert_int_eq(mfb_record_send(pair[0], "hello", 5, &sent[1], 1, 0), 0);
        ck_assert_int_eq(mfb_record_recv(pair[1], buf, sizeof(buf), fds, &nfds, MSG_DONTWAIT), 5);
        ck_assert_uint_eq(nfds, 1);
        ck_assert(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);

        /* The received fd is the same pipe: what goes in comes out of ours. */
        ck_assert_int_eq(write(fds[0], "x", 1), 1);
        ck_assert_int_eq(read(sent[0], buf, 1), 1);
        ck_assert_int_eq(buf[0], 'x');
        mfb_close_fds(fds, nfds);
        mfb_close_fds(sent, 2);
}
END_TEST

START_TEST(truncated_record_closes_fds) {
        int fds[MFB_FDS_RECV_MAX], p[2];
        char big[256] = { 0 }, small[16];
        size_t nfds = 99;
        unsigned before;

        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        ck_assert_int_eq(mfb_record_send(pair[0], big, sizeof(big), p, 2, 0), 0);
        mfb_close_fds(p, 2);
        before = test_fd_count();
        ck_assert_int_eq(mfb_record_recv(pair[1], small, sizeof(small), fds, &nfds, MSG_DONTWAIT), -EMSGSIZE);
        ck_assert_uint_eq(nfds, 0);
        ck_assert_uint_eq(test_fd_count(), before);
}
END_TEST

START_TEST(empty_and_eof) {
        int fds[MFB_FDS_RECV_MAX];
        char buf[16] = { 0 };
        size_t nfds;

        ck_assert_int_eq(mfb_record_send(pair[0], buf, 0, NULL, 0, 0), -EINVAL);
        ck_assert_int_eq(mfb_record_recv(pair[1], buf, sizeof(buf), fds, &nfds, MSG_DONTWAIT), -EAGAIN);
        pair[0] = safe_close(pair[0]);
        ck_assert_int_eq(mfb_record_recv(pair[1], buf, sizeof(buf), fds, &nfds, MSG_DONTWAIT), 0);
}
END_TEST

Suite *fdpass_suite(void) {
        Suite *s = suite_create("fdpass");
        TCase *tc = tcase_create("fdpass");

        tcase_add_checked_fixture(tc, pair_setup, pair_teardown);
        tcase_add_test(tc, record_with_fd);
        tcase_add_test(tc, truncated_record_closes_fds);
        tcase_add_test(tc, empty_and_eof);
        suite_add_tcase(s, tc);
        return s;
}
