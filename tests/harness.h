/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The multi-process test harness: starts a real memfd-brokerd on a socket in
 * a temporary folder, counts fds, and waits on conditions with timeouts.
 * Every function fails the current Check test on error.
 */

#include <check.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/un.h>

/* How long any wait in the tests may take before it counts as a failure. */
#define TEST_TIMEOUT_MS 20000

struct test_broker {
        pid_t pid;
        char dir[PATH_MAX];
        char socket_path[sizeof(((struct sockaddr_un *) 0)->sun_path)];
};

/*
 * Starts $MFB_BROKERD (prefixed by the words of $MFB_BROKER_WRAPPER, such as
 * valgrind) with --socket in a fresh folder under $MFB_TEST_DIR, plus
 * extra_args (NULL-terminated, may be NULL), and returns once it accepts
 * connections. The broker gets SIGTERM if the test process dies first.
 */
void test_broker_start(struct test_broker *b, const char *const *extra_args);

/*
 * test_broker_start() with the broker's limit on open files (RLIMIT_NOFILE,
 * soft and hard) set to fd_limit, 0 for the test's own; raising the hard
 * limit needs root.
 */
void test_broker_start_with_fd_limit(struct test_broker *b, const char *const *extra_args, unsigned fd_limit);

/*
 * test_broker_start() with the broker running as uid and gid uid, with no
 * supplementary groups (as a service user); needs root.
 */
void test_broker_start_as(struct test_broker *b, const char *const *extra_args, uid_t uid);

/* Both: the broker as uid, with its limit on open files fd_limit. Needs root. */
void test_broker_start_as_with_fd_limit(struct test_broker *b, const char *const *extra_args, uid_t uid,
                                        unsigned fd_limit);

/*
 * As test_broker_start_as_with_fd_limit(), without $MFB_BROKER_WRAPPER: a
 * wrapper such as valgrind needs fds of its own, which would leave a broker
 * with a low fd_limit too few. uid may be the test's own.
 */
void test_broker_start_unwrapped(struct test_broker *b, const char *const *extra_args, uid_t uid, unsigned fd_limit);

/*
 * Whether uid can run $MFB_BROKERD, or a copy the harness makes in the
 * test run's folder where a build tree under a private folder (mktemp -d
 * makes them 0700) is out of its reach; test_broker_start_as() runs that
 * copy then. Needs root.
 */
bool test_uid_can_run_broker(uid_t uid);

/* SIGTERM, waits for a clean exit (status 0) and checks that the socket file and the folder are gone. */
void test_broker_stop(struct test_broker *b);

/*
 * Reads the start of the file at path, a small one such as those of /proc,
 * into buf (size bytes), NUL-terminated. Returns the bytes read, 0 for an
 * empty file, or -errno.
 */
ssize_t test_read_text(const char *path, char *buf, size_t size);

/* How many fds the broker process has open now. */
unsigned test_broker_fd_count(const struct test_broker *b);

/* Waits until the broker has exactly want fds open; false on timeout. */
bool test_broker_wait_fd_count(const struct test_broker *b, unsigned want);

/* How many fds this process has open now. */
unsigned test_fd_count(void);

/*
 * A raw SOCK_SEQPACKET connection to the broker, for speaking the protocol by
 * hand; connecting and sending give up after TEST_TIMEOUT_MS. Returns the fd
 * or -errno of connect().
 */
int test_raw_connect(const struct test_broker *b);

/* Waits up to TEST_TIMEOUT_MS for a child to exit and returns its wait status. */
int test_wait_child(pid_t pid);

/* Forks; the child runs fn(arg) and exits with its return value, or is killed if the test process dies first. */
pid_t test_fork(int (*fn)(void *arg), void *arg);

/* Checked-fixture helpers that fail a test which leaks fds. */
void test_fd_leak_setup(void);
void test_fd_leak_teardown(void);

/* A checked fixture: a broker of its own for every test, and the fd leak check. */
extern struct test_broker test_broker;
void test_broker_setup(void);
void test_broker_teardown(void);

/* Two pipes with which a test and one child step in turn. */
struct test_steps {
        int to_parent, from_parent;     /* the child's ends */
        int to_child, from_child;       /* the test's ends */
};
void test_steps_open(struct test_steps *ret);
void test_steps_close(struct test_steps *s);

/*
 * One byte through a pipe, to step two processes in turn. 0, or -1 on error
 * or when no byte came within TEST_TIMEOUT_MS; safe in children.
 */
int test_pipe_signal(int fd);
int test_pipe_wait(int fd);

/* In forked children, which must not call Check: report, and fail with the line. */
#define TEST_CHILD_CHECK(cond)                                                          \
        do {                                                                            \
                if (!(cond)) {                                                          \
                        fprintf(stderr, "%s:%d: child check failed: %s\n", __FILE__,    \
                                __LINE__, #cond);                                       \
                        return __LINE__ % 250 + 1;                                      \
                }                                                                       \
        } while (0)

/* Waits for a child from test_fork() and fails the test unless it exited 0. */
void test_child_succeeded(pid_t pid);
