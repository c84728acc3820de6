/* SPDX-License-Identifier: MIT */
/*
 * bench-fairness: how much one user's attack on the broker slows another
 * user down. Not a test: it prints numbers, run by hand.
 *
 * It starts its own memfd-brokerd on a socket in a temporary folder, and
 * measures a victim's CREATE + RELEASE round trip (median) while the broker
 * is idle, while one uid floods LIST over 20000 regions it may not read
 * from 32 connections, while 1000 connections of that uid read their
 * replies slowly and so keep replies queued in the broker, and while 1000
 * connections of that uid WAIT for a name that one more then seals, over
 * and over, so that one SEAL answers 1000 WAITs. Rounds of each state are
 * interleaved (idle, flood, idle, slow readers, idle, sealed waits, ...)
 * so that drift of the machine hits them alike. Each median is printed as
 * a ratio to the idle one, and to the raw cost of the same work without a
 * broker: memfd_create + ftruncate + F_ADD_SEALS + close in process, plus
 * a bare SOCK_SEQPACKET round trip that passes an fd from another process;
 * and the p99, which shows what happens once in a while (a SEAL's turn).
 * The goal is to stay within 2x of idle at the median. The p99 has none:
 * with the victim on the broker's CPU, a broker busy with an attack takes
 * the CPU from it for up to a time slice of the kernel's, whatever the
 * broker does: the p99 of every state that keeps it busy reached about
 * 1.5 ms here in some runs.
 *
 * Run as root, the attackers drop to uid 65534 and the victim to 65533, so
 * that the broker's per-uid shares tell them apart; the limits on open
 * files, its own and the broker's, go up so that the regions fit. Run as
 * anyone else, everything is one uid, and the numbers say less.
 *
 * Usage: bench-fairness [--placement=same|other] [MEMFD-BROKERD]   (default: $MFB_BROKERD)
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench-common.h"
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
#define WAIT_CONNECTIONS 1000U

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

#define CYCLES 4U                       /* of idle, flood, idle, slow readers, idle, sealed waits */
#define SAMPLES_PER_ROUND 1200U         /* an idle round takes a third: idle comes three times per cycle */
#define SAMPLE_INTERVAL_US 1000         /* the victim is an ordinary client, not one more flood */
#define RAW_SAMPLES (CYCLES * SAMPLES_PER_ROUND)

#define BROKER_FD_LIMIT (1U << 17)      /* the regions, the connections, and room to spare */
#define OWN_FD_LIMIT (1U << 16)
#define GOAL 2.0

static struct bench_broker broker;
static uint8_t record[MFB_WIRE_RECORD_MAX];

static bool is_root(void) {
        return geteuid() == 0;
}

/* Speaking the protocol ------------------------------------------------- */

static int32_t recv_reply(int fd, uint16_t opcode, int *ret_fd) {
        return bench_reply_recv(fd, opcode, record, ret_fd);
}

static int32_t call(int fd, uint16_t opcode, const void *body, size_t len) {
        return bench_call(fd, opcode, body, len, record);
}

static int connect_hello(void) {
        return bench_connect_hello(broker.socket_path);
}

/* Other processes ---------------------------------------------------- */

/* A connection made by uid (where the benchmark may switch users) and handed to this process, after HELLO. */
static int connect_as(uid_t uid) {
        int sock, fds[MFB_FDS_RECV_MAX], fd;
        size_t nfds = 0;
        char byte;
        pid_t pid;

        pid = bench_fork_pair(&sock);
        if (pid == 0) {
                bench_become(uid);
                fd = connect_hello();
                _exit(mfb_record_send(sock, "c", 1, &fd, 1, 0) < 0);
        }
        if (mfb_record_recv(sock, &byte, 1, fds, &nfds, 0) != 1 || nfds != 1)
                bench_die("uid %u could not connect", (unsigned) uid);
        close(sock);
        if (bench_reap(pid, BENCH_TIMEOUT_MS) != 0)
                bench_die("the process connecting as uid %u failed", (unsigned) uid);
        return fds[0];
}

/* The worker of an attack, as the attacker's uid; userdata points to the attack (a state's). */
static uint64_t attack_run(void *userdata, int ready, int stop) {
        uint32_t (*fn)(int ready, int stop) = *(uint32_t (**)(int, int)) userdata;

        bench_become(ATTACKER_UID);
        /* See SERVER_CPU. */
        if (bench_pin(OTHER_CPU) && victim_cpu == OTHER_CPU &&
            sched_setscheduler(0, SCHED_IDLE, &(struct sched_param) { 0 }) < 0)
                bench_die("sched_setscheduler: %m");
        return fn(ready, stop);
}

static bool told_to_stop(int stop, int timeout_ms) {
        return poll(&(struct pollfd) { .fd = stop, .events = POLLIN }, 1, timeout_ms) != 0;
}

static int send_list(int fd, uint64_t after, int flags) {
        struct mfb_wire_list_request req = { .after_handle = after };

        return bench_request_send(fd, MFB_WIRE_OP_LIST, 1, &req, sizeof(req), flags);
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
                                bench_die("sending LIST: %m");
        }
        p[FLOOD_CONNECTIONS] = (struct pollfd) { .fd = stop, .events = POLLIN };
        bench_worker_ready(ready);

        for (;;) {
                if (poll(p, FLOOD_CONNECTIONS + 1, -1) < 0)
                        bench_die("poll: %m");
                if (p[FLOOD_CONNECTIONS].revents)
                        return answered;
                for (unsigned i = 0; i < FLOOD_CONNECTIONS; i++) {
                        struct mfb_wire_list_reply head;

                        if (!p[i].revents)
                                continue;
                        if (recv_reply(p[i].fd, MFB_WIRE_OP_LIST, NULL) < 0)
                                bench_die("a LIST of the flood was refused");
                        memcpy(&head, record + sizeof(struct mfb_wire_header), sizeof(head));
                        cursor[i] = head.more ? head.next_after : 0;
                        if (send_list(p[i].fd, cursor[i], 0) < 0)
                                bench_die("sending LIST: %m");
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
        int owner = connect_hello(), *fds = bench_check_alloc(calloc(SLOW_CONNECTIONS, sizeof(int)));
        uint64_t first = 0;
        uint32_t dropped = 0;

        if (bench_create_regions(owner, MFB_WIRE_LIST_ENTRIES_MAX, 4096, 0600, NULL, 0, 32, &first) == 0)
                bench_die("the slow readers could not create their regions");
        for (unsigned i = 0; i < SLOW_CONNECTIONS; i++) {
                fds[i] = connect_hello();
                for (unsigned j = 0; j < MFB_WIRE_REQUESTS_IN_FLIGHT_MAX; j++)
                        if (send_list(fds[i], first - 1, MSG_DONTWAIT) < 0)
                                break;
        }
        bench_worker_ready(ready);

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

/* Waits until the broker has read all that was sent on fd: a WAIT is pending then. */
static void wait_consumed(int fd) {
        uint64_t deadline = bench_now_ns() + (uint64_t) BENCH_TIMEOUT_MS * 1000000;
        int queued;

        while (ioctl(fd, SIOCOUTQ, &queued) == 0 && queued > 0) {
                if (bench_now_ns() > deadline)
                        bench_die("the broker did not read a WAIT within %d ms", BENCH_TIMEOUT_MS);
                bench_sleep_ms(1);
        }
}

/*
 * The sealed waits: WAIT_CONNECTIONS connections WAIT for a name; once the
 * broker holds every WAIT, one more connection creates a region of that
 * name and seals it, which answers them all; each releases what it got,
 * the region is removed, and it starts over with the next name. Returns
 * the WAITs answered.
 */
static uint32_t sealed_waits(int ready, int stop) {
        int owner = connect_hello(), *fds = bench_check_alloc(calloc(WAIT_CONNECTIONS, sizeof(int)));
        uint32_t answered = 0;

        for (unsigned i = 0; i < WAIT_CONNECTIONS; i++)
                fds[i] = connect_hello();
        bench_worker_ready(ready);

        for (unsigned k = 0; !told_to_stop(stop, 0); k++) {
                struct mfb_wire_wait_request wait = { .timeout_ns = MFB_WIRE_WAIT_FOREVER,
                                                      .access = MFB_WIRE_ACCESS_READ };
                struct mfb_wire_create_request create = { .size = 4096, .mode = 0644 };
                struct mfb_wire_seal_request seal = { .seals = F_SEAL_WRITE };
                struct mfb_wire_lookup_request remove = {};
                struct mfb_wire_release_request release;
                char name[32];
                int region = -1;

                snprintf(name, sizeof(name), "sealed-waits-%u", k);
                if (mfb_wire_name_set(&wait.name, name) < 0 || mfb_wire_name_set(&create.name, name) < 0 ||
                    mfb_wire_name_set(&remove.name, name) < 0)
                        bench_die("a bad name: %s", name);
                for (unsigned i = 0; i < WAIT_CONNECTIONS; i++)
                        if (bench_request_send(fds[i], MFB_WIRE_OP_WAIT, 1, &wait, sizeof(wait), 0) < 0)
                                bench_die("sending WAIT: %m");
                for (unsigned i = 0; i < WAIT_CONNECTIONS; i++)
                        wait_consumed(fds[i]);

                if (bench_request_send(owner, MFB_WIRE_OP_CREATE, 1, &create, sizeof(create), 0) < 0 ||
                    recv_reply(owner, MFB_WIRE_OP_CREATE, &region) < 0)
                        bench_die("the sealed waits could not create %s", name);
                close(region);
                seal.handle = release.handle = bench_reply_handle(record);
                if (call(owner, MFB_WIRE_OP_SEAL, &seal, sizeof(seal)) < 0)
                        bench_die("the sealed waits could not seal %s", name);

                for (unsigned i = 0; i < WAIT_CONNECTIONS; i++) {
                        struct mfb_wire_release_request mine;

                        if (recv_reply(fds[i], MFB_WIRE_OP_WAIT, NULL) < 0)
                                bench_die("a WAIT of the sealed waits was refused");
                        mine.handle = bench_reply_handle(record);
                        if (bench_request_send(fds[i], MFB_WIRE_OP_RELEASE, 1, &mine, sizeof(mine), 0) < 0)
                                bench_die("sending RELEASE: %m");
                        answered++;
                }
                for (unsigned i = 0; i < WAIT_CONNECTIONS; i++)
                        if (recv_reply(fds[i], MFB_WIRE_OP_RELEASE, NULL) < 0)
                                bench_die("a RELEASE of the sealed waits was refused");
                if (call(owner, MFB_WIRE_OP_REMOVE, &remove, sizeof(remove)) < 0 ||
                    call(owner, MFB_WIRE_OP_RELEASE, &release, sizeof(release)) < 0)
                        bench_die("the sealed waits could not remove %s", name);
        }
        for (unsigned i = 0; i < WAIT_CONNECTIONS; i++)
                close(fds[i]);
        free(fds);
        close(owner);
        return answered;
}

/* Measurements ----------------------------------------------------------- */

/* memfd_create + ftruncate + F_ADD_SEALS + close, in process: what CREATE does without a broker. */
static uint64_t raw_memfd(void) {
        uint64_t start = bench_now_ns();
        int fd = bench_memfd("bench", 4096);

        if (fd < 0)
                bench_die("memfd: %m");
        close(fd);
        return bench_now_ns() - start;
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
        uint64_t *samples = bench_check_alloc(calloc(RAW_SAMPLES, sizeof(uint64_t)));
        struct mfb_wire_header h;
        int sock;
        pid_t pid;

        for (unsigned i = 0; i < RAW_SAMPLES; i++)
                samples[i] = raw_memfd();
        *ret_memfd = bench_median(samples, RAW_SAMPLES);

        pid = bench_fork_pair(&sock);
        if (pid == 0) {
                bench_pin(SERVER_CPU);
                _exit(answer_with_fd(sock));
        }
        mfb_wire_header_init(&h, MFB_WIRE_OP_CREATE, 1, 0, 0, sizeof(h));
        for (unsigned i = 0; i < RAW_SAMPLES; i++) {
                uint64_t start = bench_now_ns();
                int fds[MFB_FDS_RECV_MAX];
                size_t nfds = 0;

                if (mfb_record_send(sock, &h, sizeof(h), NULL, 0, 0) < 0 ||
                    mfb_record_recv(sock, &h, sizeof(h), fds, &nfds, 0) != sizeof(h) || nfds != 1)
                        bench_die("the bare round trip failed");
                mfb_close_fds(fds, nfds);
                samples[i] = bench_now_ns() - start;
        }
        close(sock);
        if (bench_reap(pid, BENCH_TIMEOUT_MS) != 0)
                bench_die("the bare round trip's other end failed");
        *ret_round_trip = bench_median(samples, RAW_SAMPLES);
        free(samples);
}

/* One victim's CREATE of a page and RELEASE of it, in nanoseconds. */
static uint64_t victim_create_release(int fd) {
        struct mfb_wire_create_request create = { .size = 4096 };
        struct mfb_wire_release_request release;
        uint64_t start = bench_now_ns();
        int region = -1;
        int32_t k;

        if (bench_request_send(fd, MFB_WIRE_OP_CREATE, 1, &create, sizeof(create), 0) < 0)
                bench_die("sending CREATE: %m");
        k = recv_reply(fd, MFB_WIRE_OP_CREATE, &region);
        if (k < 0)
                bench_die("the victim's CREATE failed: %s", strerror(-k));
        release.handle = bench_reply_handle(record);
        close(region);
        k = call(fd, MFB_WIRE_OP_RELEASE, &release, sizeof(release));
        if (k < 0)
                bench_die("the victim's RELEASE failed: %s", strerror(-k));
        return bench_now_ns() - start;
}

/*
 * How many of the FLOOD_REGIONS fit in the broker's fds (each holds one)
 * with room for the attackers' connections and regions, of which one uid
 * may take only half of what is left, and for the victim's.
 */
static unsigned regions_that_fit(uint64_t fds_max) {
        uint64_t room = 2 * (SLOW_CONNECTIONS + WAIT_CONNECTIONS + FLOOD_CONNECTIONS + MFB_WIRE_LIST_ENTRIES_MAX + 2) +
                        64;

        if (fds_max <= room)
                return 0;
        return fds_max - room < FLOOD_REGIONS ? (unsigned) (fds_max - room) : FLOOD_REGIONS;
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
        struct bench_worker a = { .pid = -1, .stop = -1, .report = -1 };
        uint64_t start, cpu;

        if (s->attack)
                bench_worker_start(&a, attack_run, &s->attack, "the attack");
        start = bench_now_ns();
        cpu = bench_cpu_ns(broker.pid);
        for (unsigned i = 0; i < samples; i++) {
                uint64_t next = bench_now_ns() + SAMPLE_INTERVAL_US * 1000;

                s->samples[s->n++] = victim_create_release(victim);
                bench_sleep_until(next);
        }
        s->broker_cpu_ns += bench_cpu_ns(broker.pid) - cpu;
        s->wall_ns += bench_now_ns() - start;
        if (s->attack)
                s->attack_result += bench_worker_stop(&a, "the attack");
}

int main(int argc, char **argv) {
        const char *brokerd = getenv("MFB_BROKERD");
        struct state idle = { .name = "idle" };
        struct state flooded = { .name = "LIST flood", .attack = flood };
        struct state slow = { .name = "slow readers", .attack = slow_readers };
        struct state sealed = { .name = "sealed waits", .attack = sealed_waits };
        struct state *states[] = { &idle, &flooded, &slow, &sealed };
        double raw_memfd_ns, raw_trip_ns, raw_ns, idle_ns = 0, idle_p99_ns = 0;
        unsigned regions, settled;
        uint64_t fds_max;
        char folder[PATH_MAX], socket_path[PATH_MAX + 8];
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
        bench_init("bench-fairness", NULL);
        setvbuf(stdout, NULL, _IOLBF, 0);
        bench_raise_fd_limit(OWN_FD_LIMIT);
        /* Inherited by every child, which the servers leave for their own CPU. */
        if (bench_pin(victim_cpu))
                printf("placement: the broker and the raw baseline's server on CPU %d, the victim on %s CPU, the "
                       "attackers on CPU %d%s\n", SERVER_CPU, victim_cpu == SERVER_CPU ? "the same" : "the other",
                       OTHER_CPU, victim_cpu == OTHER_CPU ? " at SCHED_IDLE" : "");
        else
                printf("placement: left to the kernel (fewer than 2 CPUs, or pinning refused)\n");
        for (size_t i = 0; i < ELEMENTSOF(states); i++)
                states[i]->samples = bench_check_alloc(calloc(CYCLES * SAMPLES_PER_ROUND, sizeof(uint64_t)));

        measure_raw(&raw_memfd_ns, &raw_trip_ns);
        raw_ns = raw_memfd_ns + raw_trip_ns;
        printf("raw: memfd_create + ftruncate + F_ADD_SEALS + close %.1f us, fd-passing round trip %.1f us: "
               "%.1f us together\n", raw_memfd_ns / 1000, raw_trip_ns / 1000, raw_ns / 1000);

        /* The victim's and the attackers' uids reach the socket inside. */
        bench_folder_make("mfb-bench", true, folder);
        snprintf(socket_path, sizeof(socket_path), "%s/s", folder);
        bench_broker_start(&broker, brokerd, socket_path, SERVER_CPU, BROKER_FD_LIMIT, NULL);
        if (!is_root())
                printf("not root: the attackers and the victim are all uid %u, so the broker cannot tell them "
                       "apart\n", (unsigned) getuid());
        /* Regions the flooding uid may not read: root's (or, not as root, as many as the broker allows). */
        root = connect_hello();
        bench_limits(root, MFB_WIRE_RESOURCE_FDS, &fds_max, NULL);
        regions = bench_create_regions(root, regions_that_fit(fds_max), 4096, 0600, NULL, 0, 32, NULL);
        victim = connect_as(VICTIM_UID);
        settled = bench_count_fds(broker.pid);
        printf("broker %s: %u regions of mode 0600 in its table; %u samples per state, rounds interleaved\n",
               brokerd, regions, CYCLES * SAMPLES_PER_ROUND);

        for (unsigned c = 0; c < CYCLES; c++) {
                round_of(&idle, victim, SAMPLES_PER_ROUND / 3);
                round_of(&flooded, victim, SAMPLES_PER_ROUND);
                bench_broker_wait_fds(broker.pid, settled, "an attack");
                round_of(&idle, victim, SAMPLES_PER_ROUND / 3);
                round_of(&slow, victim, SAMPLES_PER_ROUND);
                bench_broker_wait_fds(broker.pid, settled, "an attack");
                round_of(&idle, victim, SAMPLES_PER_ROUND / 3);
                round_of(&sealed, victim, SAMPLES_PER_ROUND);
                bench_broker_wait_fds(broker.pid, settled, "an attack");
        }

        printf("victim CREATE + RELEASE, median and p99:\n");
        for (size_t i = 0; i < ELEMENTSOF(states); i++) {
                struct state *s = states[i];
                double m = bench_median(s->samples, s->n), p99 = bench_sorted_percentile(s->samples, s->n, 0.99);

                if (s == &idle) {
                        idle_ns = m;
                        idle_p99_ns = p99;
                }
                printf("  %-14s %8.1f us  %5.2fx idle  %5.2fx raw   p99 %8.1f us  %5.2fx idle   broker busy %3.0f%%",
                       s->name, m / 1000, m / idle_ns, m / raw_ns, p99 / 1000, p99 / idle_p99_ns,
                       100.0 * (double) s->broker_cpu_ns / (double) s->wall_ns);
                if (s == &flooded)
                        printf("   (%u connections, %" PRIu64 " LISTs answered)", FLOOD_CONNECTIONS,
                               s->attack_result);
                else if (s == &slow)
                        printf("   (%u connections, %" PRIu64 " dropped by the broker)", SLOW_CONNECTIONS,
                               s->attack_result);
                else if (s == &sealed)
                        printf("   (%u connections, %" PRIu64 " WAITs answered)", WAIT_CONNECTIONS, s->attack_result);
                printf("\n");
                met = met && m <= GOAL * idle_ns;
        }
        printf("goal, within %.0fx of idle at the median: %s\n", GOAL, met ? "met" : "missed");

        close(victim);
        close(root);
        bench_broker_stop(&broker);
        bench_folder_remove();
        for (size_t i = 0; i < ELEMENTSOF(states); i++)
                free(states[i]->samples);
        return 0;
}
