/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "harness.h"
#include "macro.h"

#define ARGS_MAX 64

static long long now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Polling interval for conditions nothing notifies us of (a connectable socket, an fd count). */
static void pause_briefly(void) {
        struct timespec ts = { .tv_nsec = 2 * 1000 * 1000 };

        nanosleep(&ts, NULL);
}

static unsigned count_fds(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *e;
        unsigned n = 0;

        ck_assert_msg(d, "opendir %s: %s", dir, strerror(errno));
        while ((e = readdir(d)))
                if (e->d_name[0] != '.')
                        n++;
        closedir(d);
        return n - 1; /* the fd of the opendir itself */
}

unsigned test_fd_count(void) {
        return count_fds("/proc/self/fd");
}

unsigned test_broker_fd_count(const struct test_broker *b) {
        char path[64];

        snprintf(path, sizeof(path), "/proc/%d/fd", (int) b->pid);
        return count_fds(path) + 1; /* the opendir fd was ours, not the broker's */
}

bool test_broker_wait_fd_count(const struct test_broker *b, unsigned want) {
        long long deadline = now_ms() + TEST_TIMEOUT_MS;

        while (test_broker_fd_count(b) != want) {
                if (now_ms() > deadline)
                        return false;
                pause_briefly();
        }
        return true;
}

int test_raw_connect(const struct test_broker *b) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        /* Bounds connect() (a full backlog) and send() (a broker that stopped reading). */
        struct timeval send_timeout = { .tv_sec = TEST_TIMEOUT_MS / 1000 };
        int fd;

        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof(send_timeout)), 0);
        memcpy(sa.sun_path, b->socket_path, strlen(b->socket_path) + 1);
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

static int split_words(char *s, const char **argv, int max) {
        int n = 0;

        for (char *w = strtok(s, " \t"); w && n < max; w = strtok(NULL, " \t"))
                argv[n++] = w;
        return n;
}

/*
 * The readiness probe must be gone from the broker too before the test
 * counts its fds: a HELLO round trip proves the broker accepted it, and its
 * fd count then drops by one once it has seen the close.
 */
static void probe_and_close(const struct test_broker *b, int fd) {
        struct {
                struct mfb_wire_header h;
                struct mfb_wire_hello_request body;
        } hello = { .body = { .version_min = MFB_WIRE_VERSION, .version_max = MFB_WIRE_VERSION } };
        uint8_t reply[MFB_WIRE_RECORD_MAX];
        struct pollfd p = { .fd = fd, .events = POLLIN };
        unsigned with_probe;

        mfb_wire_header_init(&hello.h, MFB_WIRE_OP_HELLO, 1, 0, 0, sizeof(hello));
        ck_assert_int_eq(send(fd, &hello, sizeof(hello), MSG_NOSIGNAL), (ssize_t) sizeof(hello));
        ck_assert_int_eq(poll(&p, 1, TEST_TIMEOUT_MS), 1);
        ck_assert_int_gt(recv(fd, reply, sizeof(reply), 0), 0);
        with_probe = test_broker_fd_count(b);
        close(fd);
        ck_assert_msg(test_broker_wait_fd_count(b, with_probe - 1), "broker kept the probe connection");
}

/* Starts the broker with fd_limit on its open files unless 0, as uid (and gid uid) unless that is ours. */
static const char *broker_for(uid_t uid);

static void broker_start(struct test_broker *b, const char *const *extra_args, unsigned fd_limit, uid_t uid,
                         bool wrapped) {
        bool switch_user = uid != geteuid();
        const char *brokerd = switch_user ? broker_for(uid) : getenv("MFB_BROKERD");
        const char *base = getenv("MFB_TEST_DIR");
        const char *wrapper = wrapped ? getenv("MFB_BROKER_WRAPPER") : NULL;
        char wrapper_copy[1024] = "";
        const char *argv[ARGS_MAX];
        long long deadline;
        int argc = 0;

        ck_assert_msg(brokerd, switch_user ? "uid %u can run no copy of $MFB_BROKERD" : "MFB_BROKERD is not set",
                      (unsigned) uid);
        ck_assert_msg(base, "MFB_TEST_DIR is not set");

        memset(b, 0, sizeof(*b));
        snprintf(b->dir, sizeof(b->dir), "%s/broker.XXXXXX", base);
        ck_assert_msg(mkdtemp(b->dir), "mkdtemp: %s", strerror(errno));
        /* Other uids (the access tests) must reach the socket inside. */
        ck_assert_msg(chmod(b->dir, 0755) == 0, "chmod: %s", strerror(errno));
        /* The broker's own user makes its socket in there. */
        if (switch_user)
                ck_assert_msg(chown(b->dir, uid, uid) == 0, "chown: %s", strerror(errno));
        ck_assert_int_lt(snprintf(b->socket_path, sizeof(b->socket_path), "%s/s", b->dir),
                         (int) sizeof(b->socket_path));

        if (wrapper)
                snprintf(wrapper_copy, sizeof(wrapper_copy), "%s", wrapper);
        argc = split_words(wrapper_copy, argv, ARGS_MAX - 8);
        argv[argc++] = brokerd;
        argv[argc++] = "--socket";
        argv[argc++] = b->socket_path;
        argv[argc++] = "--log-level";
        argv[argc++] = "warning";
        for (; extra_args && *extra_args && argc < ARGS_MAX - 1; extra_args++)
                argv[argc++] = *extra_args;
        argv[argc] = NULL;

        b->pid = fork();
        ck_assert_int_ge(b->pid, 0);
        if (b->pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGTERM);
                /* Only stdio: the broker's fd counts must not include the test runner's pipes. */
                close_range(3, ~0U, 0);
                if (fd_limit > 0 && setrlimit(RLIMIT_NOFILE, &(struct rlimit) { fd_limit, fd_limit }) < 0) {
                        fprintf(stderr, "setrlimit RLIMIT_NOFILE %u: %s\n", fd_limit, strerror(errno));
                        _exit(127);
                }
                if (switch_user && (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 ||
                                    setresuid(uid, uid, uid) < 0)) {
                        fprintf(stderr, "becoming uid %u: %s\n", (unsigned) uid, strerror(errno));
                        _exit(127);
                }
                execvp(argv[0], (char **) argv);
                fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
                _exit(127);
        }

        deadline = now_ms() + TEST_TIMEOUT_MS;
        for (;;) {
                int status, fd = test_raw_connect(b);

                if (fd >= 0) {
                        probe_and_close(b, fd);
                        return;
                }
                ck_assert_msg(waitpid(b->pid, &status, WNOHANG) == 0, "broker exited at startup (status 0x%x)", status);
                ck_assert_msg(now_ms() < deadline, "broker did not accept connections on %s", b->socket_path);
                pause_briefly();
        }
}

void test_broker_start(struct test_broker *b, const char *const *extra_args) {
        broker_start(b, extra_args, 0, geteuid(), true);
}

void test_broker_start_with_fd_limit(struct test_broker *b, const char *const *extra_args, unsigned fd_limit) {
        broker_start(b, extra_args, fd_limit, geteuid(), true);
}

void test_broker_start_as(struct test_broker *b, const char *const *extra_args, uid_t uid) {
        broker_start(b, extra_args, 0, uid, true);
}

void test_broker_start_as_with_fd_limit(struct test_broker *b, const char *const *extra_args, uid_t uid,
                                        unsigned fd_limit) {
        broker_start(b, extra_args, fd_limit, uid, true);
}

void test_broker_start_unwrapped(struct test_broker *b, const char *const *extra_args, uid_t uid, unsigned fd_limit) {
        broker_start(b, extra_args, fd_limit, uid, false);
}

ssize_t test_read_text(const char *path, char *buf, size_t size) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n;

        ck_assert_uint_gt(size, 0);
        if (fd < 0)
                return -errno;
        n = read(fd, buf, size - 1);
        if (n < 0)
                n = -errno;
        close(fd);
        buf[n < 0 ? 0 : n] = '\0';
        return n;
}

static bool uid_can_exec(uid_t uid, const char *path) {
        pid_t pid = fork();

        ck_assert_int_ge(pid, 0);
        if (pid == 0)
                _exit(setgroups(0, NULL) == 0 && setresgid(uid, uid, uid) == 0 && setresuid(uid, uid, uid) == 0 &&
                      access(path, X_OK) == 0 ? 0 : 1);
        return test_wait_child(pid) == 0;
}

/* Copies from to a new file to, mode 0755. */
static bool copy_executable(const char *from, const char *to) {
        int in = open(from, O_RDONLY | O_CLOEXEC), out = -1;
        bool ok = false;
        char buf[65536];
        ssize_t n;

        if (in >= 0)
                out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
        if (out >= 0) {
                while ((n = read(in, buf, sizeof(buf))) > 0)
                        if (write(out, buf, (size_t) n) != n)
                                break;
                ok = n == 0 && fchmod(out, 0755) == 0;
        }
        safe_close(out);
        safe_close(in);
        return ok;
}

/*
 * The broker that uid is to run: $MFB_BROKERD, or, where uid cannot reach
 * it (a build tree under a private folder, as mktemp -d and many CI
 * checkouts make them), a copy in the folder of the test run, which every
 * uid reaches and the run removes. NULL when uid can run neither.
 */
static const char *broker_for(uid_t uid) {
        static char copy[4096];
        const char *brokerd = getenv("MFB_BROKERD"), *base = getenv("MFB_TEST_DIR");

        ck_assert_ptr_nonnull(brokerd);
        if (uid == geteuid() || uid_can_exec(uid, brokerd))
                return brokerd;
        ck_assert_msg(base, "MFB_TEST_DIR is not set");
        ck_assert_int_lt(snprintf(copy, sizeof(copy), "%s/memfd-brokerd", base), (int) sizeof(copy));
        if (access(copy, X_OK) < 0 && !copy_executable(brokerd, copy))
                return NULL;
        return uid_can_exec(uid, copy) ? copy : NULL;
}

bool test_uid_can_run_broker(uid_t uid) {
        return broker_for(uid) != NULL;
}

/*
 * test_wait_child() without pidfd_open(), which valgrind does not know:
 * SIGCHLD blocked, waited for with sigtimedwait() between looks.
 */
static int wait_child_by_signal(pid_t pid) {
        sigset_t chld, old;
        struct timespec deadline, now, left;
        int status;
        pid_t r;

        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        ck_assert_int_eq(sigprocmask(SIG_BLOCK, &chld, &old), 0);
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += TEST_TIMEOUT_MS / 1000;
        while ((r = waitpid(pid, &status, WNOHANG)) == 0) {
                clock_gettime(CLOCK_MONOTONIC, &now);
                left.tv_sec = deadline.tv_sec - now.tv_sec;
                left.tv_nsec = deadline.tv_nsec - now.tv_nsec;
                if (left.tv_nsec < 0) {
                        left.tv_sec--;
                        left.tv_nsec += 1000000000L;
                }
                if (left.tv_sec < 0) {
                        kill(pid, SIGKILL);
                        waitpid(pid, &status, 0);
                        sigprocmask(SIG_SETMASK, &old, NULL);
                        ck_abort_msg("process %d did not exit in time", (int) pid);
                }
                /* Another child's SIGCHLD wakes it too: it looks again. */
                (void) sigtimedwait(&chld, NULL, &left);
        }
        sigprocmask(SIG_SETMASK, &old, NULL);
        ck_assert_int_eq(r, pid);
        return status;
}

int test_wait_child(pid_t pid) {
        int pidfd, status;
        struct pollfd p;

        pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        if (pidfd < 0 && errno == ENOSYS)
                return wait_child_by_signal(pid);
        ck_assert_msg(pidfd >= 0, "pidfd_open: %s", strerror(errno));
        p = (struct pollfd) { .fd = pidfd, .events = POLLIN };
        if (poll(&p, 1, TEST_TIMEOUT_MS) != 1) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                close(pidfd);
                ck_abort_msg("process %d did not exit in time", (int) pid);
        }
        close(pidfd);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        return status;
}

void test_broker_stop(struct test_broker *b) {
        int status;

        ck_assert_int_eq(kill(b->pid, SIGTERM), 0);
        status = test_wait_child(b->pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "broker exit status 0x%x", status);
        ck_assert_msg(access(b->socket_path, F_OK) < 0 && errno == ENOENT, "broker left its socket behind");
        ck_assert_msg(rmdir(b->dir) == 0, "rmdir %s: %s", b->dir, strerror(errno));
        b->pid = 0;
}

pid_t test_fork(int (*fn)(void *arg), void *arg) {
        pid_t parent = getpid(), pid;

        fflush(NULL);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                /* A test that failed (or was killed at its timeout) leaves no child waiting behind. */
                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
                        _exit(127);
                _exit(fn(arg));
        }
        return pid;
}

static unsigned fds_at_setup;

void test_fd_leak_setup(void) {
        fds_at_setup = test_fd_count();
}

void test_fd_leak_teardown(void) {
        ck_assert_uint_eq(test_fd_count(), fds_at_setup);
}

struct test_broker test_broker;

void test_broker_setup(void) {
        test_fd_leak_setup();
        test_broker_start(&test_broker, NULL);
}

void test_broker_teardown(void) {
        test_broker_stop(&test_broker);
        test_fd_leak_teardown();
}

int test_pipe_signal(int fd) {
        char c = 1;

        return write(fd, &c, 1) == 1 ? 0 : -1;
}

int test_pipe_wait(int fd) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        char c;

        /* Both processes hold both ends, so a peer that died sends no EOF: only the deadline ends the wait. */
        if (poll(&p, 1, TEST_TIMEOUT_MS) != 1)
                return -1;
        return read(fd, &c, 1) == 1 ? 0 : -1;
}

void test_child_succeeded(pid_t pid) {
        int status = test_wait_child(pid);

        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "child %d failed (status 0x%x)", (int) pid, status);
}

void test_steps_open(struct test_steps *ret) {
        int up[2], down[2];

        ck_assert_int_eq(pipe2(up, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(down, O_CLOEXEC), 0);
        *ret = (struct test_steps) {
                .to_parent = up[1], .from_child = up[0],
                .to_child = down[1], .from_parent = down[0],
        };
}

void test_steps_close(struct test_steps *s) {
        s->to_parent = safe_close(s->to_parent);
        s->from_parent = safe_close(s->from_parent);
        s->to_child = safe_close(s->to_child);
        s->from_child = safe_close(s->from_child);
}
