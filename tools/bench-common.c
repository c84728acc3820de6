/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench-common.h"
#include "codec.h"
#include "fdpass.h"
#include "macro.h"

#define TRACKED_MAX 64

static const char *program_name = "bench";
static pid_t main_pid;
static void (*cleanup_hook)(void);
static atomic_flag dying = ATOMIC_FLAG_INIT;

/* What the emergency cleanup stops and removes; changed by the main thread only. */
static pid_t tracked_pids[TRACKED_MAX];
static char tracked_paths[TRACKED_MAX][BENCH_SOCKET_PATH_MAX];
static char folder[PATH_MAX];

/* Kills and removes what is tracked: from bench_die() and signal handlers, so async-signal-safe calls only. */
static void emergency_cleanup(void) {
        if (cleanup_hook)
                cleanup_hook();
        for (size_t i = 0; i < TRACKED_MAX; i++)
                if (tracked_pids[i] > 0) {
                        kill(tracked_pids[i], SIGKILL);
                        waitpid(tracked_pids[i], NULL, 0);
                }
        for (size_t i = 0; i < TRACKED_MAX; i++)
                if (tracked_paths[i][0])
                        unlink(tracked_paths[i]);
        if (folder[0])
                rmdir(folder);
}

/* A broker or server that died is often why the run cannot go on: say so. */
static void say_what_died(void) {
        for (size_t i = 0; i < TRACKED_MAX; i++) {
                int status;

                if (tracked_pids[i] <= 0 || waitpid(tracked_pids[i], &status, WNOHANG) != tracked_pids[i])
                        continue;
                if (WIFSIGNALED(status))
                        fprintf(stderr, "%s: process %d, which it started, was killed by signal %d\n", program_name,
                                (int) tracked_pids[i], WTERMSIG(status));
                else
                        fprintf(stderr, "%s: process %d, which it started, exited with status %d\n", program_name,
                                (int) tracked_pids[i], WEXITSTATUS(status));
                tracked_pids[i] = 0;
        }
}

static void on_signal(int sig) {
        if (getpid() == main_pid && !atomic_flag_test_and_set(&dying))
                emergency_cleanup();
        _exit(128 + sig);
}

void bench_init(const char *program, void (*cleanup)(void)) {
        program_name = program;
        cleanup_hook = cleanup;
        main_pid = getpid();
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        signal(SIGHUP, on_signal);
        signal(SIGPIPE, SIG_IGN);
}

_Noreturn void bench_die(const char *fmt, ...) {
        int saved = errno;
        bool main_process = getpid() == main_pid;
        va_list ap;

        /* Another thread is dying already and will end the process. */
        if (main_process && atomic_flag_test_and_set(&dying))
                for (;;)
                        pause();
        fflush(stdout);
        fprintf(stderr, "%s: ", program_name);
        errno = saved;
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        if (main_process)
                say_what_died();
        if (main_process)
                emergency_cleanup();
        _exit(1);
}

void *bench_check_alloc(void *p) {
        if (!p)
                bench_die("out of memory");
        return p;
}

void bench_track_pid(pid_t pid) {
        for (size_t i = 0; i < TRACKED_MAX; i++)
                if (tracked_pids[i] <= 0) {
                        tracked_pids[i] = pid;
                        return;
                }
        bench_die("more than %d processes to track", TRACKED_MAX);
}

void bench_untrack_pid(pid_t pid) {
        for (size_t i = 0; i < TRACKED_MAX; i++)
                if (tracked_pids[i] == pid)
                        tracked_pids[i] = 0;
}

void bench_track_path(const char *path) {
        if (strlen(path) >= BENCH_SOCKET_PATH_MAX)
                bench_die("%s is too long a path for a socket", path);
        for (size_t i = 0; i < TRACKED_MAX; i++)
                if (!tracked_paths[i][0]) {
                        memcpy(tracked_paths[i], path, strlen(path) + 1);
                        return;
                }
        bench_die("more than %d paths to track", TRACKED_MAX);
}

void bench_untrack_path(const char *path) {
        for (size_t i = 0; i < TRACKED_MAX; i++)
                if (strcmp(tracked_paths[i], path) == 0)
                        tracked_paths[i][0] = '\0';
}

void bench_folder_make(const char *prefix, bool world_readable, char *ret) {
        const char *tmp = getenv("TMPDIR");
        char path[PATH_MAX];

        if (folder[0])
                bench_die("a folder was made already");
        if (snprintf(path, sizeof(path), "%s/%s.XXXXXX", tmp && *tmp ? tmp : "/tmp", prefix) >= (int) sizeof(path))
                bench_die("$TMPDIR is too long");
        if (!mkdtemp(path))
                bench_die("mkdtemp %s: %m", path);
        memcpy(folder, path, sizeof(path));
        if (world_readable && chmod(folder, 0755) < 0)
                bench_die("chmod %s: %m", folder);
        memcpy(ret, folder, sizeof(folder));
}

bool bench_folder_remove(void) {
        bool ok = true;

        if (folder[0] && rmdir(folder) < 0) {
                fprintf(stderr, "%s: rmdir %s: %m\n", program_name, folder);
                ok = false;
        }
        folder[0] = '\0';
        return ok;
}

/* Clocks and statistics --------------------------------------------------- */

uint64_t bench_now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000U + (uint64_t) ts.tv_nsec;
}

void bench_sleep_ms(long ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000 };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

void bench_sleep_until(uint64_t t_ns) {
        struct timespec ts = { .tv_sec = (time_t) (t_ns / 1000000000U), .tv_nsec = (long) (t_ns % 1000000000U) };

        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
                ;
}

static int compare_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

void bench_sort(uint64_t *v, size_t n) {
        qsort(v, n, sizeof(*v), compare_u64);
}

double bench_sorted_median(const uint64_t *v, size_t n) {
        return n % 2 ? (double) v[n / 2] : ((double) v[n / 2 - 1] + (double) v[n / 2]) / 2;
}

/* The nearest rank: the smallest sample that at least a fraction p of them do not exceed. */
double bench_sorted_percentile(const uint64_t *v, size_t n, double p) {
        size_t rank = (size_t) (p * (double) n + 0.999999);

        return (double) v[rank == 0 ? 0 : rank > n ? n - 1 : rank - 1];
}

double bench_median(uint64_t *v, size_t n) {
        bench_sort(v, n);
        return bench_sorted_median(v, n);
}

/* CPUs and limits -------------------------------------------------------- */

long bench_cpus(void) {
        return sysconf(_SC_NPROCESSORS_ONLN);
}

bool bench_pin(int cpu) {
        cpu_set_t set;

        if (bench_cpus() < 2)
                return false;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        return sched_setaffinity(0, sizeof(set), &set) == 0;
}

void bench_unpin(void) {
        cpu_set_t all;

        CPU_ZERO(&all);
        for (long c = 0; c < bench_cpus() && c < CPU_SETSIZE; c++)
                CPU_SET(c, &all);
        sched_setaffinity(0, sizeof(all), &all);
}

rlim_t bench_raise_fd_limit(rlim_t want) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                bench_die("getrlimit: %m");
        if (rl.rlim_cur >= want)
                return rl.rlim_cur;
        if (setrlimit(RLIMIT_NOFILE, &(struct rlimit) { want, rl.rlim_max > want ? rl.rlim_max : want }) == 0)
                return want;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                bench_die("setrlimit RLIMIT_NOFILE %llu: %m", (unsigned long long) rl.rlim_max);
        return rl.rlim_cur;
}

/* Processes ------------------------------------------------------------- */

void bench_child_init(void) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() == 1)
                _exit(1);
}

int bench_reap(pid_t pid, int timeout_ms) {
        int pidfd = (int) syscall(SYS_pidfd_open, pid, 0), status = 0;
        struct pollfd p = { .fd = pidfd, .events = POLLIN };

        if (pidfd < 0 || poll(&p, 1, timeout_ms) != 1) {
                fprintf(stderr, "%s: process %d did not exit within %d ms: killing it\n", program_name, (int) pid,
                        timeout_ms);
                kill(pid, SIGKILL);
        }
        if (pidfd >= 0)
                close(pidfd);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        return status;
}

unsigned bench_count_fds(pid_t pid) {
        char path[64];
        struct dirent *e;
        unsigned n = 0;
        DIR *d;

        if (pid == 0)
                snprintf(path, sizeof(path), "/proc/self/fd");
        else
                snprintf(path, sizeof(path), "/proc/%d/fd", (int) pid);
        d = opendir(path);
        if (!d)
                bench_die("%s: %m", path);
        while ((e = readdir(d)))
                n += e->d_name[0] != '.';
        closedir(d);
        /* Not counting the one opendir() holds. */
        return pid == 0 ? n - 1 : n;
}

uint64_t bench_clock_ns(clockid_t clock) {
        struct timespec ts;

        if (clock_gettime(clock, &ts) < 0)
                bench_die("clock_gettime: %m");
        return (uint64_t) ts.tv_sec * 1000000000U + (uint64_t) ts.tv_nsec;
}

uint64_t bench_cpu_ns(pid_t pid) {
        struct timespec ts;
        clockid_t clock;

        if (clock_getcpuclockid(pid, &clock) != 0 || clock_gettime(clock, &ts) < 0)
                return 0;
        return (uint64_t) ts.tv_sec * 1000000000U + (uint64_t) ts.tv_nsec;
}

uint64_t bench_wakeups(pid_t pid) {
        char path[64], line[256];
        uint64_t n = 0;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "voluntary_ctxt_switches: %" SCNu64, &n) == 1)
                        break;
        fclose(f);
        return n;
}

void bench_become(uid_t uid) {
        if (geteuid() != 0)
                return;
        if (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0)
                bench_die("cannot become uid %u: %m", (unsigned) uid);
}

pid_t bench_fork_pair(int *ret_sock) {
        int pair[2];
        pid_t pid;

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0)
                bench_die("socketpair: %m");
        pid = fork();
        if (pid < 0)
                bench_die("fork: %m");
        if (pid == 0)
                bench_child_init();
        close(pair[pid == 0 ? 0 : 1]);
        *ret_sock = pair[pid == 0 ? 1 : 0];
        return pid;
}

void bench_worker_start(struct bench_worker *ret, uint64_t (*fn)(void *userdata, int ready, int stop),
                        void *userdata, const char *what) {
        int stop[2], report[2];
        char byte;

        if (pipe2(stop, O_CLOEXEC) < 0 || pipe2(report, O_CLOEXEC) < 0)
                bench_die("pipe: %m");
        ret->pid = fork();
        if (ret->pid < 0)
                bench_die("fork: %m");
        if (ret->pid == 0) {
                uint64_t result;

                bench_child_init();
                close(stop[1]);
                close(report[0]);
                result = fn(userdata, report[1], stop[0]);
                _exit(write(report[1], &result, sizeof(result)) == sizeof(result) ? 0 : 1);
        }
        close(stop[0]);
        close(report[1]);
        ret->stop = stop[1];
        ret->report = report[0];
        if (poll(&(struct pollfd) { .fd = ret->report, .events = POLLIN }, 1, BENCH_TIMEOUT_MS) != 1 ||
            read(ret->report, &byte, 1) != 1)
                bench_die("%s did not start within %d ms", what, BENCH_TIMEOUT_MS);
}

void bench_worker_ready(int ready) {
        if (write(ready, "r", 1) != 1)
                _exit(1);
}

uint64_t bench_worker_stop(struct bench_worker *w, const char *what) {
        uint64_t result = 0;

        close(w->stop);
        if (poll(&(struct pollfd) { .fd = w->report, .events = POLLIN }, 1, BENCH_TIMEOUT_MS) != 1 ||
            read(w->report, &result, sizeof(result)) != sizeof(result))
                bench_die("%s did not stop", what);
        close(w->report);
        if (bench_reap(w->pid, BENCH_TIMEOUT_MS) != 0)
                bench_die("%s failed", what);
        return result;
}

char *bench_brokerd_beside(void) {
        static const char *const candidates[] = { "../daemon/memfd-brokerd", "memfd-brokerd" };
        char exe[PATH_MAX], *slash;
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

        if (n <= 0)
                return NULL;
        exe[n] = '\0';
        slash = strrchr(exe, '/');
        if (!slash)
                return NULL;
        *slash = '\0';
        slash = strrchr(exe, '/');
        if (slash && strcmp(slash, "/.libs") == 0)
                *slash = '\0';
        for (size_t i = 0; i < ELEMENTSOF(candidates); i++) {
                char *path;

                if (asprintf(&path, "%s/%s", exe, candidates[i]) < 0)
                        return NULL;
                if (access(path, X_OK) == 0)
                        return path;
                free(path);
        }
        return NULL;
}

int bench_memfd(const char *name, uint64_t size) {
        static unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL;
        int fd = memfd_create(name, flags);

        /* Kernels before 6.3 do not know MFD_NOEXEC_SEAL, as the broker finds too. */
        if (fd < 0 && errno == EINVAL && (flags & MFD_NOEXEC_SEAL)) {
                flags &= ~MFD_NOEXEC_SEAL;
                fd = memfd_create(name, flags);
        }
        if (fd < 0)
                return -1;
        if (ftruncate(fd, (off_t) size) < 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0) {
                safe_close(fd);
                return -1;
        }
        return fd;
}

/* A broker --------------------------------------------------------------- */

/* __SO_ACCEPTCON in the Flags of /proc/net/unix: the socket listens. */
#define UNIX_FLAG_LISTENING 0x10000UL

/*
 * Whether a socket listens at path, as /proc/net/unix says. The file of a
 * Unix socket exists from bind() on, and a connect() before listen() is
 * refused: the file alone does not say the broker is ready.
 */
static bool socket_listening(const char *path) {
        FILE *f = fopen("/proc/net/unix", "re");
        char line[4096 + 128];
        bool found = false;

        if (!f)
                bench_die("/proc/net/unix: %m");
        while (!found && fgets(line, sizeof(line), f)) {
                unsigned long flags;
                char p[4096];

                line[strcspn(line, "\n")] = '\0';
                if (sscanf(line, "%*s %*s %*s %lx %*s %*s %*s %4095s", &flags, p) == 2)
                        found = (flags & UNIX_FLAG_LISTENING) && strcmp(p, path) == 0;
        }
        fclose(f);
        return found;
}

void bench_broker_start(struct bench_broker *b, const char *brokerd, const char *socket_path, int cpu,
                        rlim_t fd_limit, const char *const *extra_args) {
        const char *argv[32] = { brokerd, "--socket", socket_path, "--log-level", "warning" };
        size_t argc = 5;
        uint64_t deadline;

        for (size_t i = 0; extra_args && extra_args[i]; i++) {
                if (argc + 1 >= ELEMENTSOF(argv))
                        bench_die("too many broker arguments");
                argv[argc++] = extra_args[i];
        }
        if (strlen(socket_path) >= sizeof(b->socket_path))
                bench_die("%s is too long a path for a socket", socket_path);
        memcpy(b->socket_path, socket_path, strlen(socket_path) + 1);
        bench_track_path(b->socket_path);

        b->pid = fork();
        if (b->pid < 0)
                bench_die("fork: %m");
        if (b->pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (getppid() != main_pid)
                        _exit(127);
                if (cpu >= 0)
                        bench_pin(cpu);
                bench_raise_fd_limit(fd_limit);
                close_range(3, ~0U, 0);
                execv(brokerd, (char **) argv);
                bench_die("exec %s: %m", brokerd);
        }
        bench_track_pid(b->pid);

        deadline = bench_now_ns() + (uint64_t) BENCH_TIMEOUT_MS * 1000000;
        while (!socket_listening(b->socket_path)) {
                int status;

                if (waitpid(b->pid, &status, WNOHANG) == b->pid) {
                        bench_untrack_pid(b->pid);
                        b->pid = 0;
                        bench_die("%s exited at startup (wait status 0x%x)", brokerd, status);
                }
                if (bench_now_ns() > deadline)
                        bench_die("%s did not listen on %s within %d ms", brokerd, b->socket_path,
                                  BENCH_TIMEOUT_MS);
                bench_sleep_ms(1);
        }
}

void bench_broker_wait_fds(pid_t pid, unsigned fds, const char *after) {
        uint64_t deadline = bench_now_ns() + (uint64_t) BENCH_TIMEOUT_MS * 1000000;

        while (bench_count_fds(pid) != fds) {
                if (bench_now_ns() > deadline)
                        bench_die("the broker holds %u fds, not %u, %d ms after %s", bench_count_fds(pid), fds,
                                  BENCH_TIMEOUT_MS, after);
                bench_sleep_ms(1);
        }
}

int bench_server_stop(pid_t *pid, const char *socket_path) {
        int status;

        kill(*pid, SIGTERM);
        status = bench_reap(*pid, BENCH_TIMEOUT_MS);
        bench_untrack_pid(*pid);
        *pid = 0;
        /* A broker removes its socket when it exits cleanly; a crashed one, or the raw server, leaves it. */
        unlink(socket_path);
        bench_untrack_path(socket_path);
        return status;
}

bool bench_broker_stop(struct bench_broker *b) {
        int status;

        if (b->pid <= 0)
                return true;
        status = bench_server_stop(&b->pid, b->socket_path);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "%s: the broker exited with wait status 0x%x\n", program_name, status);
                return false;
        }
        return true;
}

/* The protocol, record by record ----------------------------------------- */

/* The largest request body of this protocol version. */
#define REQUEST_BODY_MAX sizeof(struct mfb_wire_set_request)

int bench_request_send(int fd, uint16_t opcode, uint64_t cookie, const void *body, size_t len, int flags) {
        struct {
                struct mfb_wire_header header;
                uint8_t body[REQUEST_BODY_MAX];
        } rec;

        if (len > sizeof(rec.body))
                bench_die("a %s request of %zu bytes does not fit", mfb_wire_opcode_name(opcode), len);
        mfb_wire_header_init(&rec.header, opcode, cookie, 0, 0, (uint32_t) (sizeof(rec.header) + len));
        if (len > 0)
                memcpy(rec.body, body, len);
        return mfb_record_send(fd, &rec, sizeof(rec.header) + len, NULL, 0, flags);
}

int32_t bench_reply_recv(int fd, uint16_t opcode, void *record, int *ret_fd) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int fds[MFB_FDS_RECV_MAX];
        struct mfb_wire_header h;
        size_t nfds = 0;
        ssize_t n;

        if (poll(&p, 1, BENCH_TIMEOUT_MS) != 1)
                bench_die("no reply to %s within %d ms", mfb_wire_opcode_name(opcode), BENCH_TIMEOUT_MS);
        n = mfb_record_recv(fd, record, MFB_WIRE_RECORD_MAX, fds, &nfds, MSG_DONTWAIT);
        if (n <= 0)
                bench_die("the broker closed a connection (%zd)", n);
        if (mfb_wire_reply_check(record, (size_t) n, nfds, &h) < 0 || h.opcode != (opcode | MFB_WIRE_REPLY)) {
                mfb_close_fds(fds, nfds);
                bench_die("a bad reply to %s", mfb_wire_opcode_name(opcode));
        }
        if (ret_fd) {
                *ret_fd = nfds > 0 ? fds[0] : -1;
                if (nfds > 1)
                        mfb_close_fds(fds + 1, nfds - 1);
        } else
                mfb_close_fds(fds, nfds);
        return h.status;
}

int32_t bench_call(int fd, uint16_t opcode, const void *body, size_t len, void *record) {
        if (bench_request_send(fd, opcode, 1, body, len, 0) < 0)
                bench_die("sending %s: %m", mfb_wire_opcode_name(opcode));
        return bench_reply_recv(fd, opcode, record, NULL);
}

int bench_connect_hello(const char *socket_path) {
        struct mfb_wire_hello_request hello = { .version_min = MFB_WIRE_VERSION, .version_max = MFB_WIRE_VERSION };
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_(freep) void *record = bench_check_alloc(malloc(MFB_WIRE_RECORD_MAX));
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        int32_t k;

        if (fd < 0)
                bench_die("socket: %m");
        if (strlen(socket_path) >= sizeof(sa.sun_path))
                bench_die("%s is too long a path for a socket", socket_path);
        memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                bench_die("connecting to %s: %m", socket_path);
        k = bench_call(fd, MFB_WIRE_OP_HELLO, &hello, sizeof(hello), record);
        if (k < 0)
                bench_die("HELLO: %s", strerror(-k));
        return fd;
}

uint64_t bench_reply_handle(const void *record) {
        struct mfb_wire_region_reply reply;

        memcpy(&reply, (const uint8_t *) record + sizeof(struct mfb_wire_header), sizeof(reply));
        return reply.info.handle;
}

unsigned bench_create_regions(int fd, unsigned n, uint64_t size, uint32_t mode, const char *name_prefix,
                              unsigned first_index, unsigned window, uint64_t *ret_first) {
        _cleanup_(freep) void *record = bench_check_alloc(malloc(MFB_WIRE_RECORD_MAX));
        struct mfb_wire_create_request req = { .size = size, .mode = mode };
        unsigned sent = 0, answered = 0, made = 0;
        bool refused = false;

        if (window == 0 || window > MFB_WIRE_REQUESTS_IN_FLIGHT_MAX)
                window = MFB_WIRE_REQUESTS_IN_FLIGHT_MAX;
        while (answered < sent || (sent < n && !refused)) {
                while (sent < n && !refused && sent - answered < window) {
                        if (name_prefix) {
                                char name[MFB_WIRE_NAME_MAX + 1];

                                snprintf(name, sizeof(name), "%s-%u", name_prefix, first_index + sent);
                                if (mfb_wire_name_set(&req.name, name) < 0)
                                        bench_die("bad region name %s", name);
                        }
                        if (bench_request_send(fd, MFB_WIRE_OP_CREATE, sent + 1, &req, sizeof(req), 0) < 0)
                                bench_die("sending CREATE: %m");
                        sent++;
                }
                if (bench_reply_recv(fd, MFB_WIRE_OP_CREATE, record, NULL) < 0)
                        refused = true;
                else {
                        if (made == 0 && ret_first)
                                *ret_first = bench_reply_handle(record);
                        made++;
                }
                answered++;
        }
        return made;
}

void bench_limits(int fd, enum mfb_wire_resource resource, uint64_t *ret_max, uint64_t *ret_used) {
        _cleanup_(freep) void *record = bench_check_alloc(malloc(MFB_WIRE_RECORD_MAX));
        struct mfb_wire_limits_reply l;
        int32_t k;

        k = bench_call(fd, MFB_WIRE_OP_LIMITS, NULL, 0, record);
        if (k < 0)
                bench_die("LIMITS: %s", strerror(-k));
        memcpy(&l, (const uint8_t *) record + sizeof(struct mfb_wire_header), sizeof(l));
        if (ret_max)
                *ret_max = l.resources[resource].broker_max;
        if (ret_used)
                *ret_used = l.resources[resource].broker_used;
}
