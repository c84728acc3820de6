/* SPDX-License-Identifier: MIT */
/*
 * bench-fairness: how much one user's attack on the broker slows another
 * user down. Not a test: it prints numbers, run by hand.
 *
 * It starts its own memfd-brokerd on a socket in a temporary folder, and
 * measures a victim's CREATE + RELEASE round trip (median) while the broker
 * is idle, while one uid floods LIST over 20000 regions it may not read
 * from 32 connections, and while 1000 connections of that uid read their
 * replies slowly and so keep replies queued in the broker. Rounds of each
 * state are interleaved (idle, flood, idle, slow readers, ...) so that
 * drift of the machine hits them alike. Each median is printed as a ratio
 * to the idle one, and to the raw cost of the same work without a broker:
 * memfd_create + ftruncate + F_ADD_SEALS + close in process, plus a bare
 * SOCK_SEQPACKET round trip that passes an fd from another process. The
 * goal is to stay within 2x of idle.
 *
 * Run as root, the attackers drop to uid 65534 and the victim to 65533, so
 * that the broker's per-uid shares tell them apart; the limits on open
 * files, its own and the broker's, go up so that the regions fit. Run as
 * anyone else, everything is one uid, and the numbers say less.
 *
 * Usage: bench-fairness [--placement=same|other] [MEMFD-BROKERD]   (default: $MFB_BROKERD)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

#include "codec.h"
#include "fdpass.h"
#include "macro.h"
#include "wire.h"

#define ATTACKER_UID 65534
#define VICTIM_UID 65533

#define FLOOD_REGIONS 20000U
#define FLOOD_CONNECTIONS 32U
#define FLOOD_DEPTH 4U                  /* LIST requests each flooding connection keeps in flight */
#define SLOW_CONNECTIONS 1000U
#define SLOW_READ_INTERVAL_MS 1         /* a slow reader takes one reply, of one connection, this often */

/*
 * Where the processes run, on a machine with 2 CPUs or more. A wakeup
 * across CPUs costs several times one on the same CPU in a VM, so placement
 * left to chance swings the ratios on its own: the broker and the raw
 * baseline's server are always placed alike, on SERVER_CPU, and the victim
 * either on the same CPU or on the other one (--placement). The attackers
 * run on the other CPU than the broker's: on the broker's own, they would
 * measure the kernel sharing a CPU rather than the broker. With the victim
 * there too they run at SCHED_IDLE, for the same reason.
 */
#define SERVER_CPU 0
#define OTHER_CPU 1

static int victim_cpu = SERVER_CPU;

static bool pin_to(int cpu) {
        cpu_set_t set;

        if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
                return false;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        return sched_setaffinity(0, sizeof(set), &set) == 0;
}

#define CYCLES 4U                       /* of idle, flood, idle, slow readers */
#define SAMPLES_PER_ROUND 1000U         /* an idle round takes half: idle comes twice per cycle */
#define SAMPLE_INTERVAL_US 1000         /* the victim is an ordinary client, not one more flood */
#define RAW_SAMPLES (CYCLES * SAMPLES_PER_ROUND)

#define BROKER_FD_LIMIT (1U << 17)      /* the regions, the connections, and room to spare */
#define OWN_FD_LIMIT (1U << 16)
#define TIMEOUT_MS 30000
#define GOAL 2.0

static pid_t main_pid;
static struct {
        pid_t pid;
        char dir[4096];
        char socket_path[sizeof(((struct sockaddr_un *) 0)->sun_path)];
} broker;

static uint8_t record[MFB_WIRE_RECORD_MAX];

static void stop_broker(void);

/* In the main process: stops the broker, removes its folder, and exits; in a child: exits. */
static _Noreturn void die(const char *fmt, ...) {
        int saved = errno;
        va_list ap;

        fprintf(stderr, "bench-fairness: ");
        errno = saved;
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        if (getpid() != main_pid)
                _exit(1);
        if (broker.pid > 0)
                stop_broker();
        else if (broker.dir[0])
                rmdir(broker.dir);
        exit(1);
}

static uint64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000U + (uint64_t) ts.tv_nsec;
}

static void sleep_ms(long ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000 };

        nanosleep(&ts, NULL);
}

static void sleep_until(uint64_t t_ns) {
        struct timespec ts = { .tv_sec = (time_t) (t_ns / 1000000000U), .tv_nsec = (long) (t_ns % 1000000000U) };

        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
                ;
}

static int compare_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

/* The median of v[n], which it sorts. */
static double median(uint64_t *v, size_t n) {
        qsort(v, n, sizeof(*v), compare_u64);
        return n % 2 ? (double) v[n / 2] : ((double) v[n / 2 - 1] + (double) v[n / 2]) / 2;
}

/* Identity ------------------------------------------------------------- */

static bool is_root(void) {
        return geteuid() == 0;
}

/* Becomes uid (gid the same, no supplementary groups) when running as root; anyone else stays who it is. */
static void become(uid_t uid) {
        if (!is_root())
                return;
        if (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0)
                die("cannot become uid %u: %m", (unsigned) uid);
}

/*
 * Raises the limit on open files to want, soft and hard, where root may
 * raise the hard one (CAP_SYS_RESOURCE); else the soft one to the hard.
 */
static void raise_fd_limit(rlim_t want) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                die("getrlimit: %m");
        if (rl.rlim_max < want && setrlimit(RLIMIT_NOFILE, &(struct rlimit) { want, want }) == 0)
                return;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                die("setrlimit RLIMIT_NOFILE %llu: %m", (unsigned long long) rl.rlim_max);
}

/* Speaking the protocol ------------------------------------------------- */

static int send_request(int fd, uint16_t opcode, const void *body, size_t len, int flags) {
        struct mfb_wire_header h;
        uint8_t rec[sizeof(h) + sizeof(struct mfb_wire_create_request)];

        if (len > sizeof(rec) - sizeof(h))
                die("a %s request of %zu bytes does not fit", mfb_wire_opcode_name(opcode), len);
        mfb_wire_header_init(&h, opcode, 1, 0, 0, sizeof(h) + len);
        memcpy(rec, &h, sizeof(h));
        memcpy(rec + sizeof(h), body, len);
        return mfb_record_send(fd, rec, sizeof(h) + len, NULL, 0, flags);
}

/*
 * Receives the next reply into record within TIMEOUT_MS and checks it.
 * Returns its status; the fd it carries goes to ret_fd, or is closed.
 */
static int32_t recv_reply(int fd, uint16_t opcode, int *ret_fd) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int fds[MFB_FDS_RECV_MAX];
        struct mfb_wire_header h;
        size_t nfds = 0;
        ssize_t n;

        if (poll(&p, 1, TIMEOUT_MS) != 1)
                die("no reply to %s within %d ms", mfb_wire_opcode_name(opcode), TIMEOUT_MS);
        n = mfb_record_recv(fd, record, sizeof(record), fds, &nfds, MSG_DONTWAIT);
        if (n <= 0)
                die("the broker closed a connection (%zd)", n);
        if (mfb_wire_reply_check(record, (size_t) n, nfds, &h) < 0 || h.opcode != (opcode | MFB_WIRE_REPLY))
                die("a bad reply to %s", mfb_wire_opcode_name(opcode));
        if (ret_fd && nfds > 0) {
                *ret_fd = fds[0];
                mfb_close_fds(fds + 1, nfds - 1);
        } else
                mfb_close_fds(fds, nfds);
        return h.status;
}

static int32_t call(int fd, uint16_t opcode, const void *body, size_t len) {
        if (send_request(fd, opcode, body, len, 0) < 0)
                die("sending %s: %m", mfb_wire_opcode_name(opcode));
        return recv_reply(fd, opcode, NULL);
}

static int connect_hello(void) {
        struct mfb_wire_hello_request hello = { .version_min = MFB_WIRE_VERSION, .version_max = MFB_WIRE_VERSION };
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        int32_t k;

        if (fd < 0)
                die("socket: %m");
        memcpy(sa.sun_path, broker.socket_path, strlen(broker.socket_path) + 1);
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                die("connecting to the broker: %m");
        k = call(fd, MFB_OP_HELLO, &hello, sizeof(hello));
        if (k < 0)
                die("HELLO: %s", strerror(-k));
        return fd;
}

/* The handle of the region the last CREATE reply in record made. */
static uint64_t created_handle(void) {
        struct mfb_wire_region_reply reply;

        memcpy(&reply, record + sizeof(struct mfb_wire_header), sizeof(reply));
        return reply.info.handle;
}

/*
 * Creates up to n regions of one page with mode 0600 on fd, pipelined.
 * Returns how many it made (it stops at the first refusal) and the first
 * handle in *ret_first.
 */
static unsigned create_regions(int fd, unsigned n, uint64_t *ret_first) {
        struct mfb_wire_create_request req = { .size = 4096, .mode = 0600 };
        const unsigned batch = 32;
        unsigned made = 0;
        int32_t refused = 0;

        while (made < n && refused == 0) {
                unsigned sent = n - made < batch ? n - made : batch;

                for (unsigned i = 0; i < sent; i++)
                        if (send_request(fd, MFB_OP_CREATE, &req, sizeof(req), 0) < 0)
                                die("sending CREATE: %m");
                for (unsigned i = 0; i < sent; i++) {
                        int32_t k = recv_reply(fd, MFB_OP_CREATE, NULL);

                        if (k < 0 && refused == 0)
                                refused = k;
                        if (k < 0)
                                continue;
                        if (made == 0 && ret_first)
                                *ret_first = created_handle();
                        made++;
                }
        }
        return made;
}

/* The fds the broker may hold for everyone, as LIMITS tells. */
static uint64_t broker_fds_max(int fd) {
        struct mfb_wire_limits_reply l;
        int32_t k;

        if (send_request(fd, MFB_OP_LIMITS, "", 0, 0) < 0)
                die("sending LIMITS: %m");
        k = recv_reply(fd, MFB_OP_LIMITS, NULL);
        if (k < 0)
                die("LIMITS: %s", strerror(-k));
        memcpy(&l, record + sizeof(struct mfb_wire_header), sizeof(l));
        return l.resources[MFB_RESOURCE_FDS].broker_max;
}

/* The broker ------------------------------------------------------------ */

static unsigned broker_fd_count(void) {
        char path[64];
        struct dirent *e;
        unsigned n = 0;
        DIR *d;

        snprintf(path, sizeof(path), "/proc/%d/fd", (int) broker.pid);
        d = opendir(path);
        if (!d)
                die("%s: %m", path);
        while ((e = readdir(d)))
                n += e->d_name[0] != '.';
        closedir(d);
        return n;
}

/* After an attack: until the broker has freed what it held for the attacker, the next round is not idle. */
static void wait_broker_settled(unsigned fds) {
        uint64_t deadline = now_ns() + (uint64_t) TIMEOUT_MS * 1000000;

        while (broker_fd_count() != fds) {
                if (now_ns() > deadline)
                        die("the broker holds %u fds, not %u, %d ms after an attack", broker_fd_count(), fds,
                            TIMEOUT_MS);
                sleep_ms(1);
        }
}

static void start_broker(const char *brokerd) {
        const char *tmp = getenv("TMPDIR");
        uint64_t deadline;

        snprintf(broker.dir, sizeof(broker.dir), "%s/mfb-bench.XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(broker.dir))
                die("mkdtemp %s: %m", broker.dir);
        /* The victim's and the attackers' uids reach the socket inside. */
        if (chmod(broker.dir, 0755) < 0)
                die("chmod %s: %m", broker.dir);
        if (snprintf(broker.socket_path, sizeof(broker.socket_path), "%s/s", broker.dir) >=
            (int) sizeof(broker.socket_path))
                die("the folder %s is too long a path for a socket", broker.dir);

        broker.pid = fork();
        if (broker.pid < 0)
                die("fork: %m");
        if (broker.pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGTERM);
                pin_to(SERVER_CPU);
                raise_fd_limit(BROKER_FD_LIMIT);
                close_range(3, ~0U, 0);
                execl(brokerd, brokerd, "--socket", broker.socket_path, "--log-level", "warning", (char *) NULL);
                die("exec %s: %m", brokerd);
        }

        deadline = now_ns() + (uint64_t) TIMEOUT_MS * 1000000;
        while (access(broker.socket_path, F_OK) < 0) {
                int status;

                if (waitpid(broker.pid, &status, WNOHANG) == broker.pid) {
                        broker.pid = 0;
                        die("the broker exited at startup (status 0x%x)", status);
                }
                if (now_ns() > deadline)
                        die("the broker did not listen on %s", broker.socket_path);
                sleep_ms(2);
        }
}

/* Waits up to TIMEOUT_MS for pid to exit, killing it after that; returns its wait status. */
static int reap(pid_t pid) {
        int pidfd = (int) syscall(SYS_pidfd_open, pid, 0), status = 0;
        struct pollfd p = { .fd = pidfd, .events = POLLIN };

        if (pidfd < 0 || poll(&p, 1, TIMEOUT_MS) != 1)
                kill(pid, SIGKILL);
        if (pidfd >= 0)
                close(pidfd);
        waitpid(pid, &status, 0);
        return status;
}

static void stop_broker(void) {
        int status;

        kill(broker.pid, SIGTERM);
        status = reap(broker.pid);
        broker.pid = 0;
        /* The broker removes its socket when it exits cleanly; a crashed one leaves it. */
        unlink(broker.socket_path);
        if (rmdir(broker.dir) < 0)
                fprintf(stderr, "bench-fairness: rmdir %s: %m\n", broker.dir);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fprintf(stderr, "bench-fairness: the broker exited with status 0x%x\n", status);
}

/* Interrupted: the broker and its folder go too, with only async-signal-safe calls. */
static void on_signal(int sig) {
        if (getpid() == main_pid && broker.pid > 0) {
                kill(broker.pid, SIGTERM);
                waitpid(broker.pid, NULL, 0);
                unlink(broker.socket_path);
                rmdir(broker.dir);
        }
        _exit(128 + sig);
}

/* Other processes ---------------------------------------------------- */

/* In a child that dies with the benchmark. */
static void child_init(void) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() == 1)
                _exit(1);
}

/* A connection made by uid (where the benchmark may switch users) and handed to this process, after HELLO. */
static int connect_as(uid_t uid) {
        int pair[2], fds[MFB_FDS_RECV_MAX], fd;
        size_t nfds = 0;
        char byte;
        pid_t pid;

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0)
                die("socketpair: %m");
        pid = fork();
        if (pid < 0)
                die("fork: %m");
        if (pid == 0) {
                child_init();
                become(uid);
                fd = connect_hello();
                _exit(mfb_record_send(pair[1], "c", 1, &fd, 1, 0) < 0);
        }
        close(pair[1]);
        if (mfb_record_recv(pair[0], &byte, 1, fds, &nfds, 0) != 1 || nfds != 1)
                die("uid %u could not connect", (unsigned) uid);
        close(pair[0]);
        if (reap(pid) != 0)
                die("the process connecting as uid %u failed", (unsigned) uid);
        return fds[0];
}

/* An attack running in a child of the attacker's uid, until it is told to stop. */
struct attack {
        pid_t pid;
        int stop;       /* closing it stops the attack */
        int report;     /* a byte once the attack runs, then a uint32_t when it ends */
};

static void attack_start(struct attack *ret, uint32_t (*fn)(int ready, int stop)) {
        int stop[2], report[2];
        char byte;

        if (pipe2(stop, O_CLOEXEC) < 0 || pipe2(report, O_CLOEXEC) < 0)
                die("pipe: %m");
        ret->pid = fork();
        if (ret->pid < 0)
                die("fork: %m");
        if (ret->pid == 0) {
                uint32_t result;

                child_init();
                close(stop[1]);
                close(report[0]);
                become(ATTACKER_UID);
                /* See SERVER_CPU. */
                if (pin_to(OTHER_CPU) && victim_cpu == OTHER_CPU &&
                    sched_setscheduler(0, SCHED_IDLE, &(struct sched_param) { 0 }) < 0)
                        die("sched_setscheduler: %m");
                result = fn(report[1], stop[0]);
                _exit(write(report[1], &result, sizeof(result)) == sizeof(result) ? 0 : 1);
        }
        close(stop[0]);
        close(report[1]);
        ret->stop = stop[1];
        ret->report = report[0];
        if (poll(&(struct pollfd) { .fd = ret->report, .events = POLLIN }, 1, TIMEOUT_MS) != 1 ||
            read(ret->report, &byte, 1) != 1)
                die("the attack did not start");
}

/* Stops the attack and returns what it reported. */
static uint32_t attack_stop(struct attack *a) {
        uint32_t result = 0;

        close(a->stop);
        if (poll(&(struct pollfd) { .fd = a->report, .events = POLLIN }, 1, TIMEOUT_MS) != 1 ||
            read(a->report, &result, sizeof(result)) != sizeof(result))
                die("the attack did not stop");
        close(a->report);
        if (reap(a->pid) != 0)
                die("the attack failed");
        return result;
}

static void signal_ready(int ready) {
        if (write(ready, "r", 1) != 1)
                _exit(1);
}

static bool told_to_stop(int stop, int timeout_ms) {
        return poll(&(struct pollfd) { .fd = stop, .events = POLLIN }, 1, timeout_ms) != 0;
}

static int send_list(int fd, uint64_t after, int flags) {
        struct mfb_wire_list_request req = { .after_handle = after };

        return send_request(fd, MFB_OP_LIST, &req, sizeof(req), flags);
}

/*
 * The flood: FLOOD_CONNECTIONS connections, each with FLOOD_DEPTH LISTs in
 * flight, walking the table with the broker's cursor and starting over.
 * Returns the LIST requests answered.
 */
static uint32_t flood(int ready, int stop) {
        struct pollfd p[FLOOD_CONNECTIONS + 1];
        uint64_t cursor[FLOOD_CONNECTIONS] = { 0 };
        uint32_t answered = 0;

        for (unsigned i = 0; i < FLOOD_CONNECTIONS; i++) {
                p[i] = (struct pollfd) { .fd = connect_hello(), .events = POLLIN };
                for (unsigned d = 0; d < FLOOD_DEPTH; d++)
                        if (send_list(p[i].fd, 0, 0) < 0)
                                die("sending LIST: %m");
        }
        p[FLOOD_CONNECTIONS] = (struct pollfd) { .fd = stop, .events = POLLIN };
        signal_ready(ready);

        for (;;) {
                if (poll(p, FLOOD_CONNECTIONS + 1, -1) < 0)
                        die("poll: %m");
                if (p[FLOOD_CONNECTIONS].revents)
                        return answered;
                for (unsigned i = 0; i < FLOOD_CONNECTIONS; i++) {
                        struct mfb_wire_list_reply head;

                        if (!p[i].revents)
                                continue;
                        if (recv_reply(p[i].fd, MFB_OP_LIST, NULL) < 0)
                                die("a LIST of the flood was refused");
                        memcpy(&head, record + sizeof(struct mfb_wire_header), sizeof(head));
                        cursor[i] = head.more ? head.next_after : 0;
                        if (send_list(p[i].fd, cursor[i], 0) < 0)
                                die("sending LIST: %m");
                        answered++;
                }
        }
}

/*
 * The slow readers: SLOW_CONNECTIONS connections pipeline as many LISTs
 * as the broker reads, over a full page of regions of their own, so that
 * the replies are large; then one reply is read, and one more LIST sent,
 * every SLOW_READ_INTERVAL_MS, round robin. Returns how many of the
 * connections the broker dropped.
 */
static uint32_t slow_readers(int ready, int stop) {
        int owner = connect_hello(), *fds = calloc(SLOW_CONNECTIONS, sizeof(int));
        uint64_t first = 0;
        uint32_t dropped = 0;

        if (!fds)
                die("out of memory");
        if (create_regions(owner, MFB_WIRE_LIST_ENTRIES_MAX, &first) == 0)
                die("the slow readers could not create their regions");
        for (unsigned i = 0; i < SLOW_CONNECTIONS; i++) {
                fds[i] = connect_hello();
                for (unsigned j = 0; j < MFB_WIRE_REQUESTS_IN_FLIGHT_MAX; j++)
                        if (send_list(fds[i], first - 1, MSG_DONTWAIT) < 0)
                                break;
        }
        signal_ready(ready);

        for (unsigned i = 0; !told_to_stop(stop, SLOW_READ_INTERVAL_MS); i = (i + 1) % SLOW_CONNECTIONS) {
                int got[MFB_FDS_RECV_MAX];
                size_t nfds = 0;
                ssize_t n;

                if (fds[i] < 0)
                        continue;
                n = mfb_record_recv(fds[i], record, sizeof(record), got, &nfds, MSG_DONTWAIT);
                mfb_close_fds(got, nfds);
                if (n == -EAGAIN)
                        continue;
                if (n <= 0 || send_list(fds[i], first - 1, MSG_DONTWAIT) == -EPIPE) {
                        fds[i] = safe_close(fds[i]);
                        dropped++;
                }
        }
        return dropped;
}

/* Measurements ----------------------------------------------------------- */

/* memfd_create + ftruncate + F_ADD_SEALS + close, in process: what CREATE does without a broker. */
static uint64_t raw_memfd(void) {
        uint64_t start = now_ns();
        int fd = memfd_create("bench", MFD_CLOEXEC | MFD_ALLOW_SEALING);

        if (fd < 0 || ftruncate(fd, 4096) < 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
                die("memfd: %m");
        close(fd);
        return now_ns() - start;
}

/* The other end of the bare round trip: answers each record with a memfd attached. */
static int answer_with_fd(int sock) {
        struct mfb_wire_header h;
        int fd = memfd_create("bench", MFD_CLOEXEC);

        if (fd < 0)
                return 1;
        for (;;) {
                int fds[MFB_FDS_RECV_MAX];
                size_t nfds = 0;

                if (mfb_record_recv(sock, &h, sizeof(h), fds, &nfds, 0) <= 0)
                        return 0;
                if (mfb_record_send(sock, &h, sizeof(h), &fd, 1, 0) < 0)
                        return 1;
        }
}

/* Medians of the raw costs: memfd work in process, and an fd-passing round trip to another process. */
static void measure_raw(double *ret_memfd, double *ret_round_trip) {
        uint64_t *samples = calloc(RAW_SAMPLES, sizeof(uint64_t));
        struct mfb_wire_header h;
        int pair[2];
        pid_t pid;

        if (!samples)
                die("out of memory");
        for (unsigned i = 0; i < RAW_SAMPLES; i++)
                samples[i] = raw_memfd();
        *ret_memfd = median(samples, RAW_SAMPLES);

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0)
                die("socketpair: %m");
        pid = fork();
        if (pid < 0)
                die("fork: %m");
        if (pid == 0) {
                child_init();
                pin_to(SERVER_CPU);
                close(pair[0]);
                _exit(answer_with_fd(pair[1]));
        }
        close(pair[1]);
        mfb_wire_header_init(&h, MFB_OP_CREATE, 1, 0, 0, sizeof(h));
        for (unsigned i = 0; i < RAW_SAMPLES; i++) {
                uint64_t start = now_ns();
                int fds[MFB_FDS_RECV_MAX];
                size_t nfds = 0;

                if (mfb_record_send(pair[0], &h, sizeof(h), NULL, 0, 0) < 0 ||
                    mfb_record_recv(pair[0], &h, sizeof(h), fds, &nfds, 0) != sizeof(h) || nfds != 1)
                        die("the bare round trip failed");
                mfb_close_fds(fds, nfds);
                samples[i] = now_ns() - start;
        }
        close(pair[0]);
        if (reap(pid) != 0)
                die("the bare round trip's other end failed");
        *ret_round_trip = median(samples, RAW_SAMPLES);
        free(samples);
}

/* One victim's CREATE of a page and RELEASE of it, in nanoseconds. */
static uint64_t victim_create_release(int fd) {
        struct mfb_wire_create_request create = { .size = 4096 };
        struct mfb_wire_release_request release;
        uint64_t start = now_ns();
        int region = -1;
        int32_t k;

        if (send_request(fd, MFB_OP_CREATE, &create, sizeof(create), 0) < 0)
                die("sending CREATE: %m");
        k = recv_reply(fd, MFB_OP_CREATE, &region);
        if (k < 0)
                die("the victim's CREATE failed: %s", strerror(-k));
        release.handle = created_handle();
        close(region);
        k = call(fd, MFB_OP_RELEASE, &release, sizeof(release));
        if (k < 0)
                die("the victim's RELEASE failed: %s", strerror(-k));
        return now_ns() - start;
}

/*
 * How many of the FLOOD_REGIONS fit in the broker's fds (each holds one)
 * with room for the attackers' connections and regions, of which one uid
 * may take only half of what is left, and for the victim's.
 */
static unsigned regions_that_fit(uint64_t fds_max) {
        uint64_t room = 2 * (SLOW_CONNECTIONS + FLOOD_CONNECTIONS + MFB_WIRE_LIST_ENTRIES_MAX + 1) + 64;

        if (fds_max <= room)
                return 0;
        return fds_max - room < FLOOD_REGIONS ? (unsigned) (fds_max - room) : FLOOD_REGIONS;
}

/* The broker's CPU time so far, user and system, in nanoseconds (/proc/PID/stat). */
static uint64_t broker_cpu_ns(void) {
        unsigned long long user, system;
        char path[64], buf[1024];
        const char *p;
        ssize_t n;
        int fd;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) broker.pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                die("%s: %m", path);
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                die("%s: %m", path);
        buf[n] = '\0';
        /* Fields 14 and 15, counted after the command name, which ends at the last ')'. */
        p = strrchr(buf, ')');
        if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &user, &system) != 2)
                die("cannot parse %s", path);
        return (user + system) * 1000000000ULL / (uint64_t) sysconf(_SC_CLK_TCK);
}

struct state {
        const char *name;
        uint32_t (*attack)(int ready, int stop);
        uint64_t *samples;
        size_t n;
        uint64_t attack_result;         /* summed over its rounds */
        uint64_t wall_ns, broker_cpu_ns;
};

static void round_of(struct state *s, int victim, unsigned samples) {
        struct attack a = { .pid = -1, .stop = -1, .report = -1 };
        uint64_t start, cpu;

        if (s->attack)
                attack_start(&a, s->attack);
        start = now_ns();
        cpu = broker_cpu_ns();
        for (unsigned i = 0; i < samples; i++) {
                uint64_t next = now_ns() + SAMPLE_INTERVAL_US * 1000;

                s->samples[s->n++] = victim_create_release(victim);
                sleep_until(next);
        }
        s->broker_cpu_ns += broker_cpu_ns() - cpu;
        s->wall_ns += now_ns() - start;
        if (s->attack)
                s->attack_result += attack_stop(&a);
}

int main(int argc, char **argv) {
        const char *brokerd = getenv("MFB_BROKERD");
        struct state idle = { .name = "idle" };
        struct state flooded = { .name = "LIST flood", .attack = flood };
        struct state slow = { .name = "slow readers", .attack = slow_readers };
        struct state *states[] = { &idle, &flooded, &slow };
        double raw_memfd_ns, raw_trip_ns, raw_ns, idle_ns = 0;
        unsigned regions, settled;
        int root, victim;
        bool met = true;

        int arg = 1;

        if (arg < argc && strncmp(argv[arg], "--placement=", 12) == 0) {
                const char *p = argv[arg++] + 12;

                if (strcmp(p, "other") == 0)
                        victim_cpu = OTHER_CPU;
                else if (strcmp(p, "same") != 0)
                        brokerd = NULL;
        }
        if (arg < argc && argv[arg][0] != '-')
                brokerd = argv[arg++];
        if (!brokerd || arg < argc) {
                fprintf(stderr, "Usage: %s [--placement=same|other] [MEMFD-BROKERD]   (default: $MFB_BROKERD)\n",
                        argv[0]);
                return 2;
        }
        main_pid = getpid();
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        signal(SIGHUP, on_signal);
        setvbuf(stdout, NULL, _IOLBF, 0);
        raise_fd_limit(OWN_FD_LIMIT);
        /* Inherited by every child, which the servers leave for their own CPU. */
        if (pin_to(victim_cpu))
                printf("placement: the broker and the raw baseline's server on CPU %d, the victim on %s CPU, the "
                       "attackers on CPU %d%s\n", SERVER_CPU, victim_cpu == SERVER_CPU ? "the same" : "the other",
                       OTHER_CPU, victim_cpu == OTHER_CPU ? " at SCHED_IDLE" : "");
        else
                printf("placement: left to the kernel (fewer than 2 CPUs, or pinning refused)\n");
        for (size_t i = 0; i < ELEMENTSOF(states); i++) {
                states[i]->samples = calloc(CYCLES * SAMPLES_PER_ROUND, sizeof(uint64_t));
                if (!states[i]->samples)
                        die("out of memory");
        }

        measure_raw(&raw_memfd_ns, &raw_trip_ns);
        raw_ns = raw_memfd_ns + raw_trip_ns;
        printf("raw: memfd_create + ftruncate + F_ADD_SEALS + close %.1f us, fd-passing round trip %.1f us: "
               "%.1f us together\n", raw_memfd_ns / 1000, raw_trip_ns / 1000, raw_ns / 1000);

        start_broker(brokerd);
        if (!is_root())
                printf("not root: the attackers and the victim are all uid %u, so the broker cannot tell them "
                       "apart\n", (unsigned) getuid());
        /* Regions the flooding uid may not read: root's (or, not as root, as many as the broker allows). */
        root = connect_hello();
        regions = create_regions(root, regions_that_fit(broker_fds_max(root)), NULL);
        victim = connect_as(VICTIM_UID);
        settled = broker_fd_count();
        printf("broker %s: %u regions of mode 0600 in its table; %u samples per state, rounds interleaved\n",
               brokerd, regions, CYCLES * SAMPLES_PER_ROUND);

        for (unsigned c = 0; c < CYCLES; c++) {
                round_of(&idle, victim, SAMPLES_PER_ROUND / 2);
                round_of(&flooded, victim, SAMPLES_PER_ROUND);
                wait_broker_settled(settled);
                round_of(&idle, victim, SAMPLES_PER_ROUND / 2);
                round_of(&slow, victim, SAMPLES_PER_ROUND);
                wait_broker_settled(settled);
        }

        printf("victim CREATE + RELEASE, median:\n");
        for (size_t i = 0; i < ELEMENTSOF(states); i++) {
                struct state *s = states[i];
                double m = median(s->samples, s->n);

                if (s == &idle)
                        idle_ns = m;
                printf("  %-14s %8.1f us  %5.2fx idle  %5.2fx raw   broker busy %3.0f%%", s->name, m / 1000,
                       m / idle_ns, m / raw_ns, 100.0 * (double) s->broker_cpu_ns / (double) s->wall_ns);
                if (s == &flooded)
                        printf("   (%u connections, %" PRIu64 " LISTs answered)", FLOOD_CONNECTIONS,
                               s->attack_result);
                else if (s == &slow)
                        printf("   (%u connections, %" PRIu64 " dropped by the broker)", SLOW_CONNECTIONS,
                               s->attack_result);
                printf("\n");
                met = met && m <= GOAL * idle_ns;
        }
        printf("goal, within %.0fx of idle: %s\n", GOAL, met ? "met" : "missed");

        close(victim);
        close(root);
        stop_broker();
        for (size_t i = 0; i < ELEMENTSOF(states); i++)
                free(states[i]->samples);
        return 0;
}
