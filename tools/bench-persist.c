/* SPDX-License-Identifier: MIT */
/*
 * bench-persist: what a named CREATE costs when the service manager's fd
 * store holds few entries, and when it holds many. Not a test: it prints
 * numbers, run by hand.
 *
 * It plays the service manager itself, in a thread (the stand-in): a
 * notify socket (SOCK_DGRAM, SO_PASSCRED) and a listening socket in a
 * private folder, and memfd-brokerd started on them as systemd starts a
 * socket-activated service: the socket at fd 3, $LISTEN_FDS,
 * $LISTEN_FDNAMES, $LISTEN_PID set to the broker's own pid, and
 * $NOTIFY_SOCKET. Its fd store does what systemd 252's does: FDSTORE=1
 * compares each fd received with every stored one (same_fd(): kcmp
 * KCMP_FILE, or where that is refused fstat and F_GETFL) to drop
 * duplicates, puts it in front of a linked list and adds a poll source for
 * it (epoll_ctl, which refuses memfds, as it does for systemd);
 * FDSTOREREMOVE=1 walks the whole list for the name. Messages from other
 * pids than the broker's are dropped, as NotifyAccess=main does. The
 * stand-in thread's CPU time (its thread CPU clock: what
 * getrusage(RUSAGE_THREAD) counts, to the nanosecond) is what PID 1 would
 * pay.
 *
 * Two brokers run side by side, each under a stand-in of its own: one
 * keeps --regions-low named regions, the other --regions-high. The same
 * binary on the same machine at the same time: only the number of regions
 * kept differs. Taking one broker up and down between the levels instead
 * would cost the stand-in its quadratic fill at every switch. Rounds of the
 * three states (raw, low, high) are interleaved in a rotating order, so
 * that drift of the machine hits them alike.
 *
 * A round is --ops named CREATEs of 4 KiB, each mapped and freed
 * (mfb_region_create, mfb_region_map, mfb_region_free: what a user of the
 * library does), timed one by one. Then the client sends the stand-in a
 * message of its own on the notify socket and waits until it is handled:
 * the broker queued each FDSTORE=1 before its reply, so by then the
 * stand-in has done all the work the round gave it. Last, the round's
 * regions are removed again (mfb_remove), untimed, and synced the same
 * way, so that every round starts at the level: the store holds level to
 * level + --ops regions during a round. Reported for each level: the
 * median op; the median over rounds of the round's time up to the sync,
 * per op, which counts the service manager's work also where its queue
 * hides that from the op itself (net.unix.max_dgram_qlen, printed: the
 * broker blocks in sd_notify only once that many messages wait); and the
 * stand-in's and the broker's CPU time per CREATE.
 *
 * The raw baseline, in the same run: the same work without a broker. A
 * server process makes a memfd (memfd_create, ftruncate, F_ADD_SEALS
 * shrink|grow), keeps it and sends it with SCM_RIGHTS over SOCK_SEQPACKET;
 * the client checks its size and seals, maps it, unmaps and closes it,
 * and tells the server, which closes its copy and answers. Two round
 * trips, as mfb_region_create and mfb_region_free make.
 *
 * Placement, with 2 CPUs or more: the brokers, the stand-ins and the raw
 * server on CPU 0, the client on the same CPU (the default) or on CPU 1
 * (--placement=other). On the same CPU, the service manager's work is
 * always in the client's way, as on a busy machine.
 *
 * Each kept region may cost the broker and the stand-in an fd: this
 * process raises its limit on open files (to the hard limit, or beyond
 * where it may), and the brokers inherit it; it says so when that is too
 * low. Run as root: the broker exempts root from per-uid shares, so one
 * client may keep --regions-high regions.
 *
 * Usage: bench-persist [--regions-low=N] [--regions-high=N] [--rounds=N] [--ops=N]
 *                      [--placement=same|other] [--broker=PATH | PATH]
 * The broker: --broker, PATH, $MFB_BROKERD, or ../daemon/memfd-brokerd
 * beside this program in the build tree.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/kcmp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench-common.h"
#include "macro.h"
#include "memfd-broker.h"

#define REGION_SIZE 4096U
#define SERVER_CPU 0
#define OTHER_CPU 1
#define FD_LIMIT (1U << 17)             /* what this process and the brokers ask for at least */
#define FD_SLACK 256U                   /* this process's fds besides the stand-ins' stores */

/* As systemd takes notify messages: NOTIFY_BUFFER_MAX (PIPE_BUF) bytes, NOTIFY_FD_MAX fds. */
#define NOTIFY_BUFFER_MAX 4096
#define NOTIFY_FDS_MAX 768

#define SOCKET_FDNAME "memfd-broker.socket"
#define SYNC_MESSAGE "X-BENCH-PERSIST-SYNC=1"

/* The stand-in ----------------------------------------------------------- */

struct stored {
        struct stored *next, *prev;
        int fd;                         /* owned */
        bool polled;                    /* added to the stand-in's epoll set */
        char *name;
};

struct standin {
        const char *label;
        char notify_path[sizeof(((struct sockaddr_un *) 0)->sun_path)];
        char socket_path[sizeof(((struct sockaddr_un *) 0)->sun_path)];
        int notify_fd, listen_fd, sync_fd, stop_fd, epoll_fd;
        pid_t pid;                      /* the broker's; 0 once reaped */
        char listen_pid_env[32];        /* "LISTEN_PID=", completed in the broker's process */
        bool thread_started;
        pthread_t thread;
        clockid_t cpu_clock;            /* the stand-in thread's */
        uint64_t syncs_sent;            /* by the client */
        mfb_client *client;

        pthread_mutex_t lock;
        pthread_cond_t cond;
        /* Under lock: */
        struct stored *head;            /* newest first, as systemd's LIST_PREPEND */
        size_t n_stored;
        uint64_t syncs;                 /* handled */
        uint64_t duplicates;            /* fds dropped as already stored */
        uint64_t dropped;               /* messages not taken: truncated, or from another pid */
        bool ready;
};

static pid_t raw_pid;
static char folder[PATH_MAX];
static struct standin standins[2];
static int client_cpu = SERVER_CPU;
static _Atomic int kcmp_refused;        /* the errno of a refused kcmp(), 0 while it works */

static struct timespec deadline_after(int ms) {
        uint64_t t = bench_now_ns() + (uint64_t) ms * 1000000U;

        return (struct timespec) { .tv_sec = (time_t) (t / 1000000000U), .tv_nsec = (long) (t % 1000000000U) };
}

/* systemd's same_fd(): kcmp() where the kernel allows it, else the inode and the file status flags. */
static int same_fd(int a, int b) {
        struct stat sa, sb;
        int fa, fb;
        long r;

        if (a == b)
                return 1;
        r = syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, a, b);
        if (r == 0)
                return 1;
        if (r > 0)
                return 0;
        if (errno != ENOSYS && errno != EACCES && errno != EPERM)
                return -errno;
        kcmp_refused = errno;
        if (fstat(a, &sa) < 0 || fstat(b, &sb) < 0)
                return -errno;
        if (sa.st_dev != sb.st_dev || sa.st_ino != sb.st_ino || ((sa.st_mode ^ sb.st_mode) & S_IFMT))
                return 0;
        if (S_ISCHR(sa.st_mode) || S_ISBLK(sa.st_mode))
                return 0;
        fa = fcntl(a, F_GETFL);
        fb = fcntl(b, F_GETFL);
        if (fa < 0 || fb < 0)
                return -errno;
        return fa == fb;
}

/* FDSTORE=1 for one fd (taken), as systemd's service_add_fd_store(). Called with s->lock held. */
static void store_add(struct standin *s, int fd, const char *name) {
        struct stored *e;

        for (e = s->head; e; e = e->next) {
                int r = same_fd(e->fd, fd);

                if (r < 0)
                        bench_die("%s stand-in: comparing fds: %s", s->label, strerror(-r));
                if (r > 0) {
                        close(fd);
                        s->duplicates++;
                        return;
                }
        }
        e = bench_check_alloc(calloc(1, sizeof(*e)));
        e->name = bench_check_alloc(strdup(name));
        e->fd = fd;
        /* systemd polls every stored fd for hangup; fds that cannot be polled (memfds) give EPERM. */
        e->polled = epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &(struct epoll_event) { .events = 0 }) == 0;
        if (!e->polled && errno != EPERM)
                bench_die("%s stand-in: epoll_ctl: %m", s->label);
        e->next = s->head;
        if (s->head)
                s->head->prev = e;
        s->head = e;
        s->n_stored++;
}

static void store_unlink(struct standin *s, struct stored *e) {
        if (e->polled)
                epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, e->fd, NULL);
        close(e->fd);
        if (e->prev)
                e->prev->next = e->next;
        else
                s->head = e->next;
        if (e->next)
                e->next->prev = e->prev;
        free(e->name);
        free(e);
        s->n_stored--;
}

/* FDSTOREREMOVE=1, as systemd's service_remove_fd_store(): every entry of that name, the whole list walked. */
static void store_remove(struct standin *s, const char *name) {
        struct stored *e = s->head;

        while (e) {
                struct stored *next = e->next;

                if (strcmp(e->name, name) == 0)
                        store_unlink(s, e);
                e = next;
        }
}

static void close_fds(const int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                close(fds[i]);
}

/* One notify message: text (NUL-terminated), the fds that came with it (taken), and its sender. */
static void handle_message(struct standin *s, char *text, int *fds, size_t n_fds, pid_t sender) {
        bool ready = false, fdstore = false, fdstoreremove = false, sync = false;
        const char *name = NULL;

        for (char *line = text, *next; line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                if (strcmp(line, "READY=1") == 0)
                        ready = true;
                else if (strcmp(line, "FDSTORE=1") == 0)
                        fdstore = true;
                else if (strcmp(line, "FDSTOREREMOVE=1") == 0)
                        fdstoreremove = true;
                else if (strncmp(line, "FDNAME=", 7) == 0)
                        name = line + 7;
                else if (strcmp(line, SYNC_MESSAGE) == 0)
                        sync = true;
        }

        pthread_mutex_lock(&s->lock);
        if (sender == getpid() && sync) {
                s->syncs++;
                close_fds(fds, n_fds);
        } else if (sender != s->pid) {
                s->dropped++;
                close_fds(fds, n_fds);
        } else {
                if (ready)
                        s->ready = true;
                if (fdstoreremove && name)
                        store_remove(s, name);
                if (fdstore)
                        for (size_t i = 0; i < n_fds; i++)
                                store_add(s, fds[i], name ? name : "stored");
                else
                        close_fds(fds, n_fds);
        }
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
}

/* The stand-in's thread: serves the notify socket, one message per wakeup, until told to stop. */
static void *standin_run(void *userdata) {
        struct standin *s = userdata;
        sigset_t all;

        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, NULL);
        bench_pin(SERVER_CPU);

        for (;;) {
                union {
                        struct cmsghdr align;
                        char buf[CMSG_SPACE(sizeof(int) * NOTIFY_FDS_MAX) + CMSG_SPACE(sizeof(struct ucred))];
                } control;
                struct pollfd p[2] = { { .fd = s->notify_fd, .events = POLLIN }, { .fd = s->stop_fd, .events = POLLIN } };
                char text[NOTIFY_BUFFER_MAX + 1];
                struct iovec iov = { .iov_base = text, .iov_len = NOTIFY_BUFFER_MAX };
                struct msghdr msg = {
                        .msg_iov = &iov, .msg_iovlen = 1,
                        .msg_control = &control, .msg_controllen = sizeof(control),
                };
                int fds[NOTIFY_FDS_MAX];
                size_t n_fds = 0;
                pid_t sender = 0;
                ssize_t n;

                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        bench_die("%s stand-in: poll: %m", s->label);
                }
                if (p[1].revents)
                        return NULL;
                n = recvmsg(s->notify_fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                continue;
                        bench_die("%s stand-in: recvmsg: %m", s->label);
                }
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
                        if (c->cmsg_level != SOL_SOCKET)
                                continue;
                        if (c->cmsg_type == SCM_RIGHTS) {
                                size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

                                memcpy(fds + n_fds, CMSG_DATA(c), k * sizeof(int));
                                n_fds += k;
                        } else if (c->cmsg_type == SCM_CREDENTIALS &&
                                   c->cmsg_len == CMSG_LEN(sizeof(struct ucred))) {
                                struct ucred cred;

                                memcpy(&cred, CMSG_DATA(c), sizeof(cred));
                                sender = cred.pid;
                        }
                }
                /* systemd drops a message that did not fit, with whatever fds came along. */
                if ((size_t) n > NOTIFY_BUFFER_MAX || (msg.msg_flags & MSG_CTRUNC)) {
                        close_fds(fds, n_fds);
                        pthread_mutex_lock(&s->lock);
                        s->dropped++;
                        pthread_mutex_unlock(&s->lock);
                        continue;
                }
                text[n] = '\0';
                handle_message(s, text, fds, n_fds, sender);
        }
}

static void make_socket_path(char *buf, size_t size, const char *name) {
        if (snprintf(buf, size, "%s/%s", folder, name) >= (int) size)
                bench_die("the folder %s is too long a path for a socket", folder);
}

/* The notify and listening sockets of one stand-in, before its broker starts. */
static void standin_init(struct standin *s, const char *label, const char *tag) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char name[64];
        pthread_condattr_t attr;

        s->label = label;
        snprintf(name, sizeof(name), "notify-%s", tag);
        make_socket_path(s->notify_path, sizeof(s->notify_path), name);
        snprintf(name, sizeof(name), "%s.sock", tag);
        make_socket_path(s->socket_path, sizeof(s->socket_path), name);
        bench_track_path(s->notify_path);
        bench_track_path(s->socket_path);

        s->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (s->notify_fd < 0)
                bench_die("socket: %m");
        memcpy(sa.sun_path, s->notify_path, strlen(s->notify_path) + 1);
        if (bind(s->notify_fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                bench_die("bind %s: %m", s->notify_path);
        if (setsockopt(s->notify_fd, SOL_SOCKET, SO_PASSCRED, &(int) { 1 }, sizeof(int)) < 0)
                bench_die("SO_PASSCRED: %m");
        /* The client's sync messages, queued behind what the broker sent. */
        s->sync_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s->sync_fd < 0 || connect(s->sync_fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                bench_die("connecting to %s: %m", s->notify_path);

        s->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (s->listen_fd < 0)
                bench_die("socket: %m");
        memcpy(sa.sun_path, s->socket_path, strlen(s->socket_path) + 1);
        if (bind(s->listen_fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(s->listen_fd, SOMAXCONN) < 0)
                bench_die("listening on %s: %m", s->socket_path);

        s->stop_fd = eventfd(0, EFD_CLOEXEC);
        s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (s->stop_fd < 0 || s->epoll_fd < 0)
                bench_die("eventfd or epoll: %m");
        if (pthread_condattr_init(&attr) != 0 || pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
            pthread_cond_init(&s->cond, &attr) != 0 || pthread_mutex_init(&s->lock, NULL) != 0)
                bench_die("pthread setup failed");
        pthread_condattr_destroy(&attr);
        snprintf(s->listen_pid_env, sizeof(s->listen_pid_env), "LISTEN_PID=");
}

static bool has_prefix(const char *s, const char *prefix) {
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The broker's environment: ours without what a service manager sets, then what systemd sets. */
static char **broker_env(struct standin *s) {
        static const char *const unset[] = {
                "LISTEN_FDS=", "LISTEN_PID=", "LISTEN_FDNAMES=", "NOTIFY_SOCKET=", "WATCHDOG_USEC=",
                "WATCHDOG_PID=", MFB_SOCKET_ENV "=",
        };
        extern char **environ;
        size_t n = 0, k = 0;
        char **env;

        while (environ[n])
                n++;
        env = bench_check_alloc(calloc(n + 5, sizeof(char *)));
        for (size_t i = 0; i < n; i++) {
                bool keep = true;

                for (size_t j = 0; j < ELEMENTSOF(unset); j++)
                        keep = keep && !has_prefix(environ[i], unset[j]);
                if (keep)
                        env[k++] = environ[i];
        }
        if (asprintf(&env[k++], "NOTIFY_SOCKET=%s", s->notify_path) < 0)
                bench_die("out of memory");
        env[k++] = (char *) "LISTEN_FDS=1";
        env[k++] = (char *) "LISTEN_FDNAMES=" SOCKET_FDNAME;
        env[k++] = s->listen_pid_env;
        return env;
}

/* Appends pid in decimal to buf, which has room: between fork() and exec(), so no stdio. */
static void append_pid(char *buf, pid_t pid) {
        char digits[16];
        size_t n = 0, len = strlen(buf);
        unsigned long v = (unsigned long) pid;

        do
                digits[n++] = (char) ('0' + v % 10);
        while ((v /= 10) > 0);
        while (n > 0)
                buf[len++] = digits[--n];
        buf[len] = '\0';
}

/* Starts the broker as systemd starts a socket-activated service, then the stand-in's thread. */
static void standin_start(struct standin *s, const char *brokerd) {
        /* The default, half the fd limit, can be the high level itself: room for the level and a round above it. */
        char *argv[] = { (char *) brokerd, (char *) "--socket", s->socket_path, (char *) "--log-level",
                         (char *) "warning", (char *) "--max-kept-regions", (char *) "1000000", NULL };
        char **env = broker_env(s);
        pid_t parent = getpid();
        bool pin = bench_cpus() >= 2;
        cpu_set_t server_set;

        CPU_ZERO(&server_set);
        CPU_SET(SERVER_CPU, &server_set);
        s->pid = fork();
        if (s->pid < 0)
                bench_die("fork: %m");
        if (s->pid == 0) {
                /* Only async-signal-safe calls here: the other stand-in's thread may be running. */
                append_pid(s->listen_pid_env, getpid());
                if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
                        _exit(127);
                if (pin)
                        (void) sched_setaffinity(0, sizeof(server_set), &server_set);
                if (s->listen_fd == 3 ? fcntl(3, F_SETFD, 0) < 0 : dup2(s->listen_fd, 3) < 0)
                        _exit(127);
                close_range(4, ~0U, 0);
                execve(brokerd, argv, env);
                _exit(127);
        }
        bench_track_pid(s->pid);
        for (size_t i = 0; env[i]; i++)
                if (has_prefix(env[i], "NOTIFY_SOCKET="))
                        free(env[i]);
        free(env);

        /* Started after the fork, so that it knows the broker's pid; messages wait in the socket. */
        if (pthread_create(&s->thread, NULL, standin_run, s) != 0)
                bench_die("pthread_create failed");
        s->thread_started = true;
        if (pthread_getcpuclockid(s->thread, &s->cpu_clock) != 0)
                bench_die("pthread_getcpuclockid failed");
}

static void standin_wait_ready(struct standin *s) {
        struct timespec deadline = deadline_after(BENCH_TIMEOUT_MS);

        pthread_mutex_lock(&s->lock);
        while (!s->ready) {
                struct timespec slice = deadline_after(100);
                int status;

                pthread_cond_timedwait(&s->cond, &s->lock, &slice);
                if (s->ready)
                        break;
                if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
                        s->pid = 0;
                        bench_die("the %s broker exited before READY=1 (wait status 0x%x)", s->label, status);
                }
                if (bench_now_ns() > (uint64_t) deadline.tv_sec * 1000000000U + (uint64_t) deadline.tv_nsec)
                        bench_die("no READY=1 from the %s broker within %d ms", s->label, BENCH_TIMEOUT_MS);
        }
        pthread_mutex_unlock(&s->lock);
}

/*
 * Waits until the stand-in has handled every message sent to it before this
 * call: the client's own message queues behind them. Returns the entries
 * in the store then.
 */
static size_t standin_sync(struct standin *s) {
        struct timespec deadline = deadline_after(BENCH_TIMEOUT_MS);
        uint64_t want = ++s->syncs_sent;
        size_t n;

        if (send(s->sync_fd, SYNC_MESSAGE, strlen(SYNC_MESSAGE), MSG_NOSIGNAL) < 0)
                bench_die("sending to the %s stand-in: %m", s->label);
        pthread_mutex_lock(&s->lock);
        while (s->syncs < want)
                if (pthread_cond_timedwait(&s->cond, &s->lock, &deadline) == ETIMEDOUT)
                        bench_die("the %s stand-in did not catch up within %d ms", s->label, BENCH_TIMEOUT_MS);
        n = s->n_stored;
        pthread_mutex_unlock(&s->lock);
        return n;
}

static uint64_t standin_cpu_ns(struct standin *s) {
        return bench_clock_ns(s->cpu_clock);
}

/* The broker's CPU time, user and system; 0 where the kernel does not tell. */
static uint64_t broker_cpu_ns(struct standin *s) {
        return s->pid > 0 ? bench_cpu_ns(s->pid) : 0;
}

/* Stops the broker as systemctl stop does, then the stand-in; closes what it stored. Returns false on a bad exit. */
static bool standin_stop(struct standin *s) {
        bool ok = true;

        s->client = mfb_client_free(s->client);
        if (s->pid > 0) {
                int status;

                kill(s->pid, SIGTERM);
                status = bench_reap(s->pid, BENCH_TIMEOUT_MS);
                bench_untrack_pid(s->pid);
                s->pid = 0;
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                        fprintf(stderr, "bench-persist: the %s broker exited with wait status 0x%x\n", s->label,
                                status);
                        ok = false;
                }
        }
        /* Only now: the broker may block in sd_notify() until its last messages are read. */
        if (s->thread_started) {
                if (write(s->stop_fd, &(uint64_t) { 1 }, sizeof(uint64_t)) != sizeof(uint64_t))
                        bench_die("eventfd write: %m");
                pthread_join(s->thread, NULL);
                s->thread_started = false;
        }
        while (s->head)
                store_unlink(s, s->head);
        close(s->notify_fd);
        close(s->sync_fd);
        close(s->listen_fd);
        close(s->stop_fd);
        close(s->epoll_fd);
        unlink(s->notify_path);
        unlink(s->socket_path);
        bench_untrack_path(s->notify_path);
        bench_untrack_path(s->socket_path);
        s->notify_path[0] = s->socket_path[0] = '\0';
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock);
        return ok;
}

/* The raw baseline -------------------------------------------------------- */

/* The raw server: 'c' makes a memfd, keeps it and sends it; 'r' closes it and answers. */
static int raw_serve(int sock) {
        int kept = -1;

        for (;;) {
                union {
                        struct cmsghdr align;
                        char buf[CMSG_SPACE(sizeof(int))];
                } control;
                struct iovec iov;
                struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
                char op;
                ssize_t n = recv(sock, &op, 1, 0);

                if (n == 0)
                        return 0;
                if (n < 0)
                        return 1;
                if (op == 'r') {
                        if (kept >= 0)
                                close(kept);
                        kept = -1;
                        if (send(sock, "r", 1, MSG_NOSIGNAL) != 1)
                                return 1;
                        continue;
                }
                kept = bench_memfd("bench-persist", REGION_SIZE);
                if (kept < 0)
                        return 1;
                iov = (struct iovec) { .iov_base = &op, .iov_len = 1 };
                msg.msg_control = &control;
                msg.msg_controllen = sizeof(control);
                CMSG_FIRSTHDR(&msg)->cmsg_level = SOL_SOCKET;
                CMSG_FIRSTHDR(&msg)->cmsg_type = SCM_RIGHTS;
                CMSG_FIRSTHDR(&msg)->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(CMSG_FIRSTHDR(&msg)), &kept, sizeof(int));
                if (sendmsg(sock, &msg, MSG_NOSIGNAL) != 1)
                        return 1;
        }
}

/* Starts the raw server; returns the client's end of its socket. */
static int raw_start(void) {
        int sock;

        raw_pid = bench_fork_pair(&sock);
        if (raw_pid == 0) {
                bench_pin(SERVER_CPU);
                _exit(raw_serve(sock));
        }
        bench_track_pid(raw_pid);
        return sock;
}

/* One raw op, in nanoseconds: a memfd from the server, checked, mapped, unmapped, closed, given back. */
static uint64_t raw_op(int sock) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int))];
        } control;
        uint64_t start = bench_now_ns();
        char byte;
        struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                              .msg_controllen = sizeof(control) };
        struct cmsghdr *c;
        struct stat st;
        void *p;
        int fd;

        if (send(sock, "c", 1, MSG_NOSIGNAL) != 1 || recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1)
                bench_die("the raw server failed: %m");
        c = CMSG_FIRSTHDR(&msg);
        if (!c || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int)))
                bench_die("the raw server sent no fd");
        memcpy(&fd, CMSG_DATA(c), sizeof(int));
        /* What a receiver checks before it maps, as the library does. */
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < REGION_SIZE ||
            (fcntl(fd, F_GET_SEALS) & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW))
                bench_die("the raw server's memfd is not as made");
        p = mmap(NULL, REGION_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
                bench_die("mmap: %m");
        munmap(p, REGION_SIZE);
        close(fd);
        if (send(sock, "r", 1, MSG_NOSIGNAL) != 1 || recv(sock, &byte, 1, 0) != 1)
                bench_die("the raw server failed: %m");
        return bench_now_ns() - start;
}

/* Measuring -------------------------------------------------------------- */

static unsigned next_name;

static void region_name(char *buf, size_t size) {
        snprintf(buf, size, "bench-persist-%u", next_name++);
}

/* One named CREATE of 4 KiB, mapped and freed, in nanoseconds. */
static uint64_t broker_op(struct standin *s, const char *name) {
        uint64_t start = bench_now_ns();
        mfb_region *r;
        void *p;
        int k;

        k = mfb_region_create(s->client, name, REGION_SIZE, &r);
        if (k < 0)
                bench_die("%s broker: CREATE %s: %s (%s)", s->label, name, strerror(-k),
                    mfb_client_error_message(s->client));
        k = mfb_region_map(r, &p);
        if (k < 0)
                bench_die("mapping region %s: %s", name, strerror(-k));
        mfb_region_free(r);
        return bench_now_ns() - start;
}

/* Fills the broker with n named regions; returns the entries of its stand-in's store then. */
static size_t fill(struct standin *s, unsigned n) {
        uint64_t start = bench_now_ns(), cpu = standin_cpu_ns(s);
        size_t entries;

        for (unsigned i = 0; i < n; i++) {
                char name[64];

                region_name(name, sizeof(name));
                broker_op(s, name);
        }
        entries = standin_sync(s);
        printf("%s broker: filled with %u named regions in %.2f s, the stand-in busy %.2f s of it; its fd store "
               "holds %zu entries\n", s->label, n, (double) (bench_now_ns() - start) / 1e9,
               (double) (standin_cpu_ns(s) - cpu) / 1e9, entries);
        return entries;
}

struct state {
        const char *name;
        struct standin *standin;        /* NULL for the raw baseline */
        unsigned regions;
        uint64_t *ops;                  /* each op */
        size_t n_ops;
        uint64_t *rounds;               /* each round's time up to the sync, per op */
        size_t n_rounds;
        uint64_t standin_create_ns, standin_remove_ns, broker_create_ns;
        size_t entries_min, entries_max;
};

static void raw_round(struct state *st, int sock, unsigned ops) {
        uint64_t start = bench_now_ns();

        for (unsigned i = 0; i < ops; i++)
                st->ops[st->n_ops++] = raw_op(sock);
        st->rounds[st->n_rounds++] = (bench_now_ns() - start) / ops;
}

static void note_entries(struct state *st, size_t entries) {
        if (st->entries_max == 0 || entries < st->entries_min)
                st->entries_min = entries;
        if (entries > st->entries_max)
                st->entries_max = entries;
}

/* ops named CREATEs, timed, up to the stand-in's catching up; then their REMOVEs, untimed, back to the level. */
static void broker_round(struct state *st, unsigned ops, char (*names)[64]) {
        struct standin *s = st->standin;
        uint64_t start, cpu, broker_cpu;
        int k;

        note_entries(st, standin_sync(s));
        start = bench_now_ns();
        cpu = standin_cpu_ns(s);
        broker_cpu = broker_cpu_ns(s);
        for (unsigned i = 0; i < ops; i++) {
                region_name(names[i], sizeof(names[i]));
                st->ops[st->n_ops++] = broker_op(s, names[i]);
        }
        note_entries(st, standin_sync(s));
        st->rounds[st->n_rounds++] = (bench_now_ns() - start) / ops;
        st->standin_create_ns += standin_cpu_ns(s) - cpu;
        st->broker_create_ns += broker_cpu_ns(s) - broker_cpu;

        cpu = standin_cpu_ns(s);
        for (unsigned i = 0; i < ops; i++) {
                k = mfb_remove(s->client, names[i]);
                if (k < 0)
                        bench_die("%s broker: REMOVE %s: %s (%s)", s->label, names[i], strerror(-k),
                            mfb_client_error_message(s->client));
        }
        standin_sync(s);
        st->standin_remove_ns += standin_cpu_ns(s) - cpu;
}

/* Setup ------------------------------------------------------------------ */

static long read_sysctl(const char *path) {
        FILE *f = fopen(path, "re");
        long v = -1;

        if (f) {
                if (fscanf(f, "%ld", &v) != 1)
                        v = -1;
                fclose(f);
        }
        return v;
}

static unsigned parse_count(const char *option, const char *value) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(value, &end, 10);
        if (errno || end == value || *end || v == 0 || v > 10000000)
                bench_die("--%s wants a count from 1 to 10000000, not '%s'", option, value);
        return (unsigned) v;
}

static _Noreturn void usage(const char *argv0) {
        fprintf(stderr, "Usage: %s [--regions-low=N] [--regions-high=N] [--rounds=N] [--ops=N]\n"
                "       [--placement=same|other] [--broker=PATH | PATH]\n"
                "The broker: --broker, PATH, $MFB_BROKERD, or ../daemon/memfd-brokerd beside this program.\n",
                argv0);
        exit(2);
}

static void print_row(struct state *st, double raw_op_ns, double raw_round_ns, unsigned ops, unsigned rounds) {
        double op = bench_median(st->ops, st->n_ops), round = bench_median(st->rounds, st->n_rounds);
        uint64_t creates = (uint64_t) ops * rounds;
        char entries[48] = "-", standin[48] = "-", broker[24] = "-";

        if (st->standin) {
                snprintf(entries, sizeof(entries), "%zu-%zu", st->entries_min, st->entries_max);
                snprintf(standin, sizeof(standin), "%8.1f us %8.1f us", (double) st->standin_create_ns / 1e3 /
                         (double) creates, (double) st->standin_remove_ns / 1e3 / (double) creates);
                if (st->broker_create_ns)
                        snprintf(broker, sizeof(broker), "%8.1f us",
                                 (double) st->broker_create_ns / 1e3 / (double) creates);
        }
        printf("  %-24s %13s %9.1f us %6.2fx %9.1f us %6.2fx   %-22s %s\n", st->name, entries, op / 1e3,
               op / raw_op_ns, round / 1e3, round / raw_round_ns, standin, broker);
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "regions-low", required_argument, NULL, 'l' },
                { "regions-high", required_argument, NULL, 'H' },
                { "rounds", required_argument, NULL, 'r' },
                { "ops", required_argument, NULL, 'o' },
                { "placement", required_argument, NULL, 'p' },
                { "broker", required_argument, NULL, 'b' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        unsigned low = 100, high = 10000, rounds = 20, ops = 50;
        const char *brokerd = NULL;
        char *beside = NULL, (*names)[64];
        struct state raw = { .name = "raw (no broker)" }, at_low, at_high;
        struct state *states[] = { &raw, &at_low, &at_high };
        char label_low[48], label_high[48], row_low[48], row_high[48];
        unsigned fds_at_start;
        size_t entries_low, entries_high;
        rlim_t fd_limit, fds_needed;
        double raw_op_ns, raw_round_ns, op_low, op_high, round_low, round_high;
        bool ok = true;
        int opt, raw_sock;

        while ((opt = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (opt) {
                case 'l':
                        low = parse_count("regions-low", optarg);
                        break;
                case 'H':
                        high = parse_count("regions-high", optarg);
                        break;
                case 'r':
                        rounds = parse_count("rounds", optarg);
                        break;
                case 'o':
                        ops = parse_count("ops", optarg);
                        break;
                case 'p':
                        if (strcmp(optarg, "other") == 0)
                                client_cpu = OTHER_CPU;
                        else if (strcmp(optarg, "same") != 0)
                                usage(argv[0]);
                        break;
                case 'b':
                        brokerd = optarg;
                        break;
                default:
                        usage(argv[0]);
                }
        if (optind < argc && !brokerd)
                brokerd = argv[optind++];
        if (optind < argc)
                usage(argv[0]);
        if (!brokerd)
                brokerd = getenv("MFB_BROKERD");
        if (!brokerd)
                brokerd = beside = bench_brokerd_beside();
        if (!brokerd) {
                fprintf(stderr, "bench-persist: where is memfd-brokerd? Give --broker=PATH\n");
                usage(argv[0]);
        }

        bench_init("bench-persist", NULL);
        setvbuf(stdout, NULL, _IOLBF, 0);
        fds_at_start = bench_count_fds(0);

        /* The stand-ins hold an fd per stored entry, and so, today, does each broker per kept region. */
        fds_needed = (rlim_t) low + high + 2 * (rlim_t) ops + FD_SLACK;
        fd_limit = bench_raise_fd_limit(fds_needed > FD_LIMIT ? fds_needed : FD_LIMIT);
        if (fd_limit < fds_needed)
                bench_die("the limit on open files is %llu, and this process and the broker need %llu: raise the hard "
                    "limit (ulimit -Hn, as root) or lower --regions-high", (unsigned long long) fd_limit,
                    (unsigned long long) fds_needed);

        if (bench_pin(client_cpu))
                printf("placement: the brokers, the stand-ins and the raw server on CPU %d, the client on %s CPU\n",
                       SERVER_CPU, client_cpu == SERVER_CPU ? "the same" : "the other");
        else
                printf("placement: left to the kernel (fewer than 2 CPUs, or pinning refused)\n");
        printf("broker: %s; limit on open files %llu, here and in the brokers; %s\n", brokerd,
               (unsigned long long) fd_limit, geteuid() == 0 ? "as root" :
               "not root: the broker's per-uid shares may refuse the regions");

        bench_folder_make("bench-persist", false, folder);

        /* Forked first, while this process has no other threads. */
        raw_sock = raw_start();

        snprintf(label_low, sizeof(label_low), "%u-region", low);
        snprintf(label_high, sizeof(label_high), "%u-region", high);
        standin_init(&standins[0], label_low, "low");
        standin_init(&standins[1], label_high, "high");
        for (size_t i = 0; i < 2; i++) {
                int k;

                standin_start(&standins[i], brokerd);
                standin_wait_ready(&standins[i]);
                k = mfb_client_connect(standins[i].socket_path, &standins[i].client);
                if (k < 0)
                        bench_die("connecting to the %s broker: %s", standins[i].label, strerror(-k));
        }
        entries_low = standin_sync(&standins[0]);
        entries_high = standin_sync(&standins[1]);
        printf("stand-ins: %zu and %zu fd store entries after READY=1; net.unix.max_dgram_qlen %ld (the notify "
               "messages that wait before the broker blocks in sd_notify; systemd's sysctl.d sets 512)\n",
               entries_low, entries_high, read_sysctl("/proc/sys/net/unix/max_dgram_qlen"));

        fill(&standins[0], low);
        fill(&standins[1], high);

        snprintf(row_low, sizeof(row_low), "broker, %u kept", low);
        snprintf(row_high, sizeof(row_high), "broker, %u kept", high);
        at_low = (struct state) { .name = row_low, .standin = &standins[0], .regions = low };
        at_high = (struct state) { .name = row_high, .standin = &standins[1], .regions = high };
        names = bench_check_alloc(calloc(ops, sizeof(*names)));
        for (size_t i = 0; i < ELEMENTSOF(states); i++) {
                states[i]->ops = bench_check_alloc(calloc((size_t) ops * rounds, sizeof(uint64_t)));
                states[i]->rounds = bench_check_alloc(calloc(rounds, sizeof(uint64_t)));
        }

        printf("%u rounds of %u named CREATE + map + free of 4 KiB per state; raw, low and high interleaved\n",
               rounds, ops);
        for (unsigned r = 0; r < rounds; r++)
                for (unsigned i = 0; i < 3; i++) {
                        struct state *st = states[(r + i) % 3];

                        if (st->standin)
                                broker_round(st, ops, names);
                        else
                                raw_round(st, raw_sock, ops);
                }

        raw_op_ns = bench_median(raw.ops, raw.n_ops);
        raw_round_ns = bench_median(raw.rounds, raw.n_rounds);
        printf("\n  %-24s %13s %12s %7s %12s %7s   %-22s %s\n", "", "fd store", "op", "", "round", "",
               "stand-in CPU per", "broker CPU");
        printf("  %-24s %13s %12s %7s %12s %7s   %-22s %s\n", "", "entries", "median", "x raw", "per op", "x raw",
               "   CREATE     REMOVE", "per CREATE");
        for (size_t i = 0; i < 3; i++)
                print_row(states[i], raw_op_ns, raw_round_ns, ops, rounds);
        op_low = bench_median(at_low.ops, at_low.n_ops);
        op_high = bench_median(at_high.ops, at_high.n_ops);
        round_low = bench_median(at_low.rounds, at_low.n_rounds);
        round_high = bench_median(at_high.rounds, at_high.n_rounds);
        printf("  %-24s %13s %12s %6.2fx %12s %6.2fx   %8.2fx\n", "high / low", "", "", op_high / op_low, "",
               round_high / round_low, (double) at_high.standin_create_ns / (double) at_low.standin_create_ns);
        printf("\nnamed CREATE with %u regions kept costs %.2fx what it costs with %u, counting the service "
               "manager's work (a round up to the stand-in catching up, per op); %.2fx by the median op, which "
               "can miss that work, as the broker runs ahead of the stand-in by up to net.unix.max_dgram_qlen "
               "messages. The stand-in, PID 1's part, "
               "works %.1f us per CREATE at %u and %.1f us at %u; its same_fd() used %s.\n", high,
               round_high / round_low, low, op_high / op_low,
               (double) at_high.standin_create_ns / 1e3 / ((double) ops * rounds), high,
               (double) at_low.standin_create_ns / 1e3 / ((double) ops * rounds), low,
               kcmp_refused ? "fstat (kcmp refused)" : "kcmp");
        for (size_t i = 0; i < 2; i++) {
                pthread_mutex_lock(&standins[i].lock);
                if (standins[i].duplicates || standins[i].dropped)
                        printf("%s stand-in: %" PRIu64 " duplicate fds dropped, %" PRIu64 " messages refused\n",
                               standins[i].label, standins[i].duplicates, standins[i].dropped);
                pthread_mutex_unlock(&standins[i].lock);
        }

        for (size_t i = 0; i < 2; i++)
                ok = standin_stop(&standins[i]) && ok;
        close(raw_sock);
        if (bench_reap(raw_pid, BENCH_TIMEOUT_MS) != 0) {
                fprintf(stderr, "bench-persist: the raw server failed\n");
                ok = false;
        }
        bench_untrack_pid(raw_pid);
        raw_pid = 0;
        if (!bench_folder_remove())
                ok = false;
        for (size_t i = 0; i < 3; i++) {
                free(states[i]->ops);
                free(states[i]->rounds);
        }
        free(names);
        free(beside);
        if (bench_count_fds(0) != fds_at_start) {
                fprintf(stderr, "bench-persist: %u fds open at the end, %u at the start\n", bench_count_fds(0),
                        fds_at_start);
                ok = false;
        }
        return ok ? 0 : 1;
}
