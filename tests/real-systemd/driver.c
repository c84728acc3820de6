/* SPDX-License-Identifier: MIT */
/*
 * The checks of tests/real-systemd/run, made inside a container whose PID 1
 * is a real systemd and whose memfd-broker.socket and .service are the
 * installed ones. Runs as root, in the container's namespaces:
 *
 *   mfb-real-systemd-driver [--user] SOCKET [REGIONS]
 *
 * Without --user it drives the system units, with all of the checks below.
 * 1. Creates REGIONS (4000) named 4 KiB regions, writes a pattern of its
 *    own into each, and frees it (the named region stays in the broker).
 *    The median CREATE+free of the last 10% may cost at most 1.3 times that
 *    of the first 10%; a round that fails this is tried again (all regions
 *    removed first), up to 3 rounds, against other work on the machine.
 * 2. PID 1 may use less than 0.5 s of CPU over the creates of each round.
 * 3. After `systemctl restart memfd-broker.service`, and again after
 *    `systemctl kill -s KILL memfd-broker.service` (Restart=on-failure
 *    starts it again), every region opens by name with the same handle and
 *    the same bytes, and the first OPEN is answered within 1 s of the
 *    command being issued.
 * 4. A 1 GiB named region, every page written, then freed by the client and
 *    removed by name, gives its memory back within 1 s: Shmem in
 *    /proc/meminfo (the whole machine's) drops by at least 0.9 GiB.
 *
 * With --user it drives the units of the calling user's service manager
 * (systemctl --user, which finds that manager through $XDG_RUNTIME_DIR):
 * 1 with REGIONS (500) regions in one round, its cost printed but not
 * judged (too few regions for a steady median); 2 for the user manager
 * instead of PID 1; 3 with systemctl --user; not 4, which the system
 * broker has shown for the same code.
 *
 * After the creates, and after each restart, it prints how many entries
 * the service manager's file-descriptor store holds (NFileDescriptorStore).
 *
 * Every number is printed; a check that fails says FAIL, and the others
 * still run when they can. Exit status: 0 when all pass, 1 when one fails,
 * 2 for a usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <memfd-broker.h>

#define REGIONS_DEFAULT 4000U
#define USER_REGIONS_DEFAULT 500U
#define REGION_SIZE ((uint64_t) 4096)
#define NAME_FORMAT "real-systemd-%05u"
#define BIG_NAME "real-systemd-big"
#define BIG_SIZE ((uint64_t) 1 << 30)
#define SERVICE "memfd-broker.service"

#define MAX_CREATE_RATIO 1.3
#define ROUNDS_MAX 3
#define MAX_MANAGER_CPU_NS (UINT64_C(500) * 1000 * 1000)
#define MAX_FIRST_OPEN_NS (UINT64_C(1000) * 1000 * 1000)
#define MAX_RECLAIM_NS (UINT64_C(1000) * 1000 * 1000)
#define MIN_RECLAIM_BYTES (BIG_SIZE / 10 * 9)
/* How long memory that is not back within MAX_RECLAIM_NS is still watched, to say when it came back. */
#define RECLAIM_WATCH_NS (UINT64_C(10) * 1000 * 1000 * 1000)
/* A broker that has not answered by then is not coming back: the driver stops there. */
#define ANSWER_TIMEOUT_S 30U
#define POLL_NS (UINT64_C(1) * 1000 * 1000)

static const char *socket_path;
/* The units of the caller's user manager rather than the system's. */
static bool user_mode;
static unsigned n_regions;
static uint64_t *handles;
static unsigned failures;

static uint64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000 + (uint64_t) ts.tv_nsec;
}

static double ms(uint64_t ns) {
        return (double) ns / 1e6;
}

static void poll_pause(void) {
        nanosleep(&(struct timespec) { .tv_nsec = POLL_NS }, NULL);
}

static void verdict(bool ok, const char *what) {
        printf("  %s: %s\n", what, ok ? "ok" : "FAIL");
        if (!ok)
                failures++;
}

/* The library blocks until the broker answers: a broker that never does ends the driver here. */
static void on_alarm(int sig) {
        static const char message[] = "FAIL: the broker gave no answer within 30 s\n";

        (void) sig;
        (void) !write(STDOUT_FILENO, message, sizeof(message) - 1);
        _exit(EXIT_FAILURE);
}

/* The user and system CPU time process pid has used, in ns; 0 with *ok false when it cannot be read. */
static uint64_t cpu_ns(pid_t pid, bool *ok) {
        char path[64], buf[1024], *p;
        unsigned long long utime, stime;
        FILE *f;
        size_t n;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        f = fopen(path, "re");
        if (!f) {
                *ok = false;
                return 0;
        }
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        /* The command name may hold spaces and parentheses: fields are counted after the last ')'. */
        p = strrchr(buf, ')');
        if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2) {
                *ok = false;
                return 0;
        }
        return (uint64_t) ((utime + stime) * 1000000000ULL / (unsigned long long) sysconf(_SC_CLK_TCK));
}

/* Shmem of /proc/meminfo in bytes, or 0 when it cannot be read. */
static uint64_t shmem_bytes(void) {
        unsigned long long kib = 0;
        char line[256];
        FILE *f;

        f = fopen("/proc/meminfo", "re");
        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "Shmem: %llu kB", &kib) == 1)
                        break;
        fclose(f);
        return (uint64_t) kib * 1024;
}

/* Runs argv and waits for it; returns its exit status, or -1 when it did not exit normally. */
static int run(char *const argv[]) {
        int status;
        pid_t pid;

        fflush(stdout);
        pid = fork();
        if (pid < 0)
                return -1;
        if (pid == 0) {
                execvp(argv[0], argv);
                _exit(127);
        }
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/*
 * A property of unit, as `systemctl show -P` prints it, into buf; "" when
 * there is none. user: ask the caller's user manager (systemctl --user).
 */
static void unit_property(bool user, const char *unit, const char *property, char *buf, size_t size) {
        char command[160];
        FILE *p;

        buf[0] = '\0';
        snprintf(command, sizeof(command), "systemctl %sshow -P %s %s", user ? "--user " : "", property, unit);
        fflush(stdout);
        p = popen(command, "re");
        if (!p)
                return;
        if (!fgets(buf, (int) size, p))
                buf[0] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        pclose(p);
}

/* A property of the broker's service, of the manager the driver drives. */
static void service_property(const char *property, char *buf, size_t size) {
        unit_property(user_mode, SERVICE, property, buf, size);
}

/* The service manager that runs the broker: PID 1, or the caller's user manager (0 when unknown). */
static pid_t manager_pid(void) {
        char unit[64], buf[32];

        if (!user_mode)
                return 1;
        snprintf(unit, sizeof(unit), "user@%u.service", (unsigned) getuid());
        unit_property(false, unit, "MainPID", buf, sizeof(buf));
        return (pid_t) atoi(buf);
}

static const char *manager_name(void) {
        return user_mode ? "the user manager" : "PID 1";
}

static pid_t broker_pid(void) {
        char buf[32];

        service_property("MainPID", buf, sizeof(buf));
        return (pid_t) atoi(buf);
}

/* The bytes region i holds: a word that says which region and where, unlike any other. */
static void pattern(unsigned i, uint64_t *words, size_t n) {
        for (size_t w = 0; w < n; w++)
                words[w] = ((uint64_t) i << 32 | w) ^ UINT64_C(0x6d66622d72656c21);
}

static int compare_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return (x > y) - (x < y);
}

/* The median of n values (sorted in place). */
static uint64_t median(uint64_t *values, size_t n) {
        qsort(values, n, sizeof(*values), compare_u64);
        return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

/* Connects, retrying while the socket is not there (a restart in progress); NULL after ANSWER_TIMEOUT_S. */
static mfb_client *connect_broker(void) {
        uint64_t deadline = now_ns() + (uint64_t) ANSWER_TIMEOUT_S * 1000000000;
        mfb_client *c;
        int r;

        for (;;) {
                r = mfb_client_connect(socket_path, &c);
                if (r >= 0)
                        return c;
                if ((r != -ENOENT && r != -ECONNREFUSED) || now_ns() > deadline) {
                        printf("FAIL: cannot connect to %s: %s\n", socket_path, strerror(-r));
                        return NULL;
                }
                poll_pause();
        }
}

static void region_name(unsigned i, char *buf, size_t size) {
        snprintf(buf, size, NAME_FORMAT, i);
}

/*
 * One round of 1 and 2: creates the regions on c, prints what they cost and
 * what the service manager and the broker spent, and tells whether the cost
 * stayed flat and the manager idle. costs has room for n_regions values.
 */
static int create_round(mfb_client *c, unsigned round, uint64_t *costs, bool *ret_flat, bool *ret_idle) {
        uint64_t words[REGION_SIZE / sizeof(uint64_t)];
        uint64_t start, elapsed, first, last, manager_before, manager_after, broker_before, broker_after;
        unsigned tenth = n_regions / 10;
        bool manager_ok = true, broker_ok = true;
        char name[64], store[32];
        pid_t manager = manager_pid(), broker = broker_pid();
        int r;

        manager_before = cpu_ns(manager, &manager_ok);
        broker_before = cpu_ns(broker, &broker_ok);
        start = now_ns();
        for (unsigned i = 0; i < n_regions; i++) {
                mfb_region *region;
                uint64_t t0, t1, t2;
                void *addr;

                region_name(i, name, sizeof(name));
                t0 = now_ns();
                r = mfb_region_create(c, name, REGION_SIZE, &region);
                t1 = now_ns();
                if (r < 0) {
                        printf("FAIL: create %s: %s (%s)\n", name, strerror(-r), mfb_client_error_message(c));
                        return r;
                }
                r = mfb_region_map_writable(region, &addr);
                if (r < 0) {
                        printf("FAIL: map %s: %s\n", name, strerror(-r));
                        mfb_region_free(region);
                        return r;
                }
                pattern(i, words, sizeof(words) / sizeof(words[0]));
                memcpy(addr, words, sizeof(words));
                handles[i] = mfb_region_handle(region);
                t2 = now_ns();
                mfb_region_free(region);
                costs[i] = (t1 - t0) + (now_ns() - t2);
        }
        elapsed = now_ns() - start;

        /*
         * The manager handles what the broker sends to its notify socket
         * before any D-Bus call, so by the time this answers it has done all
         * the creates asked of it.
         */
        service_property("NFileDescriptorStore", store, sizeof(store));
        manager_after = cpu_ns(manager, &manager_ok);
        broker_after = cpu_ns(broker, &broker_ok);

        first = median(costs, tenth);
        last = median(costs + n_regions - tenth, tenth);
        printf("  round %u: created in %.2f s; CREATE+free median: first %u %.3f ms, last %u %.3f ms, ratio %.2f\n",
               round, (double) elapsed / 1e9, tenth, ms(first), tenth, ms(last), (double) last / (double) first);
        printf("           CPU over the creates: %s", manager_name());
        if (user_mode)
                printf(" (pid %d)", (int) manager);
        printf(" ");
        if (manager_ok)
                printf("%.3f s", (double) (manager_after - manager_before) / 1e9);
        else
                printf("unknown (no /proc/%d/stat)", (int) manager);
        printf(", broker (pid %d) ", (int) broker);
        if (broker_ok)
                printf("%.3f s", (double) (broker_after - broker_before) / 1e9);
        else
                printf("unknown");
        printf("; fds in systemd's store: %s\n", store[0] ? store : "unknown");

        *ret_flat = (double) last <= MAX_CREATE_RATIO * (double) first;
        *ret_idle = manager_ok && manager_after - manager_before < MAX_MANAGER_CPU_NS;
        return 0;
}

/* Removes the regions create_round() made, by name. */
static int remove_regions(mfb_client *c) {
        char name[64];
        int r;

        for (unsigned i = 0; i < n_regions; i++) {
                region_name(i, name, sizeof(name));
                r = mfb_remove(c, name);
                if (r < 0) {
                        printf("FAIL: remove %s: %s (%s)\n", name, strerror(-r), mfb_client_error_message(c));
                        return r;
                }
        }
        return 0;
}

/*
 * 1 and 2. The two windows of the cost check last some 20 ms each here: a
 * burst of other work on the machine in one of them is enough to skew it.
 * A round whose cost is not flat is tried again, with all its regions
 * removed first, up to ROUNDS_MAX times: a cost that does grow with the
 * regions stored grows in every round. PID 1 must stay idle in every round.
 * Under the user manager there is one round, whose cost is printed only:
 * the manager must stay idle in it.
 */
static int create_regions(void) {
        bool flat = false, idle = true;
        uint64_t *costs;
        mfb_client *c;
        int r = 0;

        if (user_mode)
                printf("%u named CREATEs of %" PRIu64 " bytes (create, write, free); the user manager below %.1f s\n",
                       n_regions, REGION_SIZE, (double) MAX_MANAGER_CPU_NS / 1e9);
        else
                printf("%u named CREATEs of %" PRIu64 " bytes (create, write, free); the ratio at most %.1f, "
                       "PID 1 below %.1f s\n", n_regions, REGION_SIZE, MAX_CREATE_RATIO,
                       (double) MAX_MANAGER_CPU_NS / 1e9);
        costs = calloc(n_regions, sizeof(*costs));
        if (!costs)
                return -ENOMEM;
        c = connect_broker();
        if (!c) {
                free(costs);
                return -ENOTCONN;
        }
        for (unsigned round = 1; round <= ROUNDS_MAX && !flat; round++) {
                bool round_idle;

                if (round > 1) {
                        r = remove_regions(c);
                        if (r < 0)
                                goto out;
                }
                r = create_round(c, round, costs, &flat, &round_idle);
                if (r < 0)
                        goto out;
                idle = idle && round_idle;
                if (user_mode)
                        break;
        }
        if (user_mode)
                verdict(idle, "the user manager stays idle");
        else {
                verdict(flat, "flat CREATE cost");
                verdict(idle, "PID 1 stays idle");
        }
out:
        mfb_client_free(c);
        free(costs);
        return r;
}

/* Opens every region by name and compares its handle and bytes with what was created; the count that differ. */
static unsigned verify_regions(mfb_client *c) {
        uint64_t words[REGION_SIZE / sizeof(uint64_t)];
        unsigned bad = 0;
        char name[64];

        for (unsigned i = 0; i < n_regions; i++) {
                mfb_region *region;
                const char *why = NULL;
                void *addr;
                int r;

                region_name(i, name, sizeof(name));
                r = mfb_region_open(c, name, O_RDONLY, &region);
                if (r < 0) {
                        if (bad++ < 5)
                                printf("  %s: open: %s\n", name, strerror(-r));
                        continue;
                }
                pattern(i, words, sizeof(words) / sizeof(words[0]));
                if (mfb_region_handle(region) != handles[i])
                        why = "another handle";
                else if (mfb_region_size(region) != REGION_SIZE)
                        why = "another size";
                else if (mfb_region_map(region, &addr) < 0)
                        why = "cannot map it";
                else if (memcmp(addr, words, sizeof(words)) != 0)
                        why = "other bytes";
                if (why && bad++ < 5)
                        printf("  %s: %s\n", name, why);
                mfb_region_free(region);
        }
        return bad;
}

/* 3: the command makes the service start again; every region must come back, answering within 1 s. */
static int after_command(const char *what, char *const argv[]) {
        uint64_t start, issued, answered, verified;
        pid_t before, after;
        mfb_region *region;
        mfb_client *c;
        unsigned bad;
        char name[64], store[32];
        int r;

        before = broker_pid();
        printf("%s (broker pid %d)\n", what, (int) before);
        alarm(ANSWER_TIMEOUT_S);
        start = now_ns();
        r = run(argv);
        issued = now_ns();
        if (r != 0) {
                alarm(0);
                printf("FAIL: %s exited with %d\n", what, r);
                return -ECHILD;
        }
        c = connect_broker();
        if (!c) {
                alarm(0);
                return -ENOTCONN;
        }
        region_name(0, name, sizeof(name));
        r = mfb_region_open(c, name, O_RDONLY, &region);
        answered = now_ns();
        alarm(0);
        if (r < 0) {
                printf("FAIL: first OPEN of %s: %s (%s)\n", name, strerror(-r), mfb_client_error_message(c));
                mfb_client_free(c);
                return r;
        }
        mfb_region_free(region);
        after = broker_pid();
        printf("  command done in %.1f ms; first OPEN answered %.1f ms after it was issued (at most %.0f ms)\n",
               ms(issued - start), ms(answered - start), ms(MAX_FIRST_OPEN_NS));
        verdict(answered - start <= MAX_FIRST_OPEN_NS, "first OPEN in time");
        printf("  broker pid now %d\n", (int) after);
        verdict(after > 0 && after != before, "a new broker process");

        bad = verify_regions(c);
        verified = now_ns();
        printf("  %u of %u regions back with their handle and bytes (checked in %.2f s)\n", n_regions - bad, n_regions,
               (double) (verified - answered) / 1e9);
        verdict(bad == 0, "every region kept");
        /* The new broker parked the regions again and had the old buckets removed before it served. */
        service_property("NFileDescriptorStore", store, sizeof(store));
        printf("  fds in the service manager's store: %s\n", store[0] ? store : "unknown");
        mfb_client_free(c);
        return 0;
}

/* 4: a removed 1 GiB region nobody holds gives its pages back at once. */
static int reclaim(void) {
        uint64_t before, filled, removing, now, start, drop = 0;
        mfb_region *region;
        mfb_client *c;
        void *addr;
        int r;

        printf("REMOVE of a %" PRIu64 " MiB named region nobody holds\n", BIG_SIZE >> 20);
        c = connect_broker();
        if (!c)
                return -ENOTCONN;
        before = shmem_bytes();
        r = mfb_region_create(c, BIG_NAME, BIG_SIZE, &region);
        if (r < 0) {
                printf("FAIL: create " BIG_NAME ": %s (%s)\n", strerror(-r), mfb_client_error_message(c));
                goto out;
        }
        r = mfb_region_map_writable(region, &addr);
        if (r < 0) {
                printf("FAIL: map " BIG_NAME ": %s\n", strerror(-r));
                mfb_region_free(region);
                goto out;
        }
        memset(addr, 0x5a, BIG_SIZE);
        filled = shmem_bytes();
        mfb_region_free(region);
        printf("  Shmem %.1f MiB before, %.1f MiB with the region written\n", (double) before / 1048576,
               (double) filled / 1048576);
        verdict(filled >= before + MIN_RECLAIM_BYTES, "the region's pages are counted in Shmem");

        removing = shmem_bytes();
        start = now_ns();
        r = mfb_remove(c, BIG_NAME);
        if (r < 0) {
                printf("FAIL: remove " BIG_NAME ": %s (%s)\n", strerror(-r), mfb_client_error_message(c));
                goto out;
        }
        for (;;) {
                uint64_t shmem = shmem_bytes();

                now = now_ns();
                drop = removing > shmem ? removing - shmem : 0;
                if (drop >= MIN_RECLAIM_BYTES || now - start > RECLAIM_WATCH_NS)
                        break;
                poll_pause();
        }
        if (drop >= MIN_RECLAIM_BYTES)
                printf("  Shmem dropped by %.1f MiB %.1f ms after the REMOVE was sent (within %.0f ms)\n",
                       (double) drop / 1048576, ms(now - start), ms(MAX_RECLAIM_NS));
        else
                printf("  Shmem dropped by only %.1f MiB in %.0f s after the REMOVE was sent\n",
                       (double) drop / 1048576, (double) RECLAIM_WATCH_NS / 1e9);
        verdict(drop >= MIN_RECLAIM_BYTES && now - start <= MAX_RECLAIM_NS, "memory back in time");
        r = 0;
out:
        mfb_client_free(c);
        return r;
}

int main(int argc, char *argv[]) {
        char *restart[] = { "systemctl", "restart", SERVICE, NULL };
        char *kill_service[] = { "systemctl", "kill", "-s", "KILL", SERVICE, NULL };
        char *user_restart[] = { "systemctl", "--user", "restart", SERVICE, NULL };
        char *user_kill_service[] = { "systemctl", "--user", "kill", "-s", "KILL", SERVICE, NULL };
        int arg = 1;

        if (argc > 1 && strcmp(argv[1], "--user") == 0) {
                user_mode = true;
                arg++;
        }
        if (argc - arg < 1 || argc - arg > 2) {
                fprintf(stderr, "usage: %s [--user] SOCKET [REGIONS]\n", argv[0]);
                return 2;
        }
        socket_path = argv[arg++];
        n_regions = user_mode ? USER_REGIONS_DEFAULT : REGIONS_DEFAULT;
        if (arg < argc) {
                char *end;
                unsigned long n = strtoul(argv[arg], &end, 10);

                if (*end || n < 10 || n > 100000) {
                        fprintf(stderr, "%s: REGIONS must be 10 to 100000\n", argv[0]);
                        return 2;
                }
                n_regions = (unsigned) n;
        }
        setvbuf(stdout, NULL, _IOLBF, 0);
        signal(SIGALRM, on_alarm);
        handles = calloc(n_regions, sizeof(*handles));
        if (!handles)
                return EXIT_FAILURE;

        if (user_mode) {
                if (create_regions() < 0 ||
                    after_command("systemctl --user restart " SERVICE, user_restart) < 0 ||
                    after_command("systemctl --user kill -s KILL " SERVICE, user_kill_service) < 0)
                        failures++;
        } else if (create_regions() < 0 ||
                   after_command("systemctl restart " SERVICE, restart) < 0 ||
                   after_command("systemctl kill -s KILL " SERVICE, kill_service) < 0 ||
                   reclaim() < 0)
                failures++;

        free(handles);
        printf("%s\n", failures ? "some checks FAILED" : "all checks passed");
        return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}
