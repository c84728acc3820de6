/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What the benchmark programs share: dying cleanly, clocks and statistics,
 * CPU placement, limits on open files, child processes, a broker started on
 * a socket in a private folder, and the protocol spoken record by record.
 *
 * Every bench_ function that can fail for a reason the run cannot go on
 * without calls bench_die(), so that callers read as the measurement they
 * make. Fds passed in are borrowed unless a comment says otherwise.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>

#include "wire.h"

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif

#define BENCH_TIMEOUT_MS 30000
#define BENCH_SOCKET_PATH_MAX sizeof(((struct sockaddr_un *) 0)->sun_path)

/* Dying ------------------------------------------------------------------ */

/*
 * Names the program in messages and installs handlers for SIGINT, SIGTERM
 * and SIGHUP. cleanup (may be NULL) runs when the main process dies or is
 * interrupted, before what bench_track_pid() and bench_track_path() name is
 * killed and removed, and the folder with it: it may be called from a
 * signal handler, so async-signal-safe calls only.
 */
void bench_init(const char *program, void (*cleanup)(void));

/*
 * In the main process, from any thread: stops what bench_track_pid() and
 * bench_folder_make() registered, runs the cleanup hook, prints the message
 * and exits 1. In a child: prints and exits 1.
 */
__attribute__((format(printf, 1, 2))) _Noreturn void bench_die(const char *fmt, ...);

/* bench_die() when p is NULL: for allocations. */
void *bench_check_alloc(void *p);

/* Children the emergency cleanup kills (SIGKILL) and reaps; untrack once reaped normally. */
void bench_track_pid(pid_t pid);
void bench_untrack_pid(pid_t pid);

/*
 * Makes a private folder (mode 0700, or 0755 with world_readable, so that
 * other uids reach sockets inside) under $TMPDIR or /tmp, named
 * PREFIX.XXXXXX; the emergency cleanup removes it, and the sockets in it
 * that bench_track_path() names. ret holds PATH_MAX bytes.
 */
void bench_folder_make(const char *prefix, bool world_readable, char *ret);
/* Removes the folder (which must be empty by then); false, after saying why, if it could not. */
bool bench_folder_remove(void);
void bench_track_path(const char *path);
void bench_untrack_path(const char *path);

/* Clocks and statistics --------------------------------------------------- */

uint64_t bench_now_ns(void);
void bench_sleep_ms(long ms);
void bench_sleep_until(uint64_t t_ns);

/* Sorts v[n] ascending. */
void bench_sort(uint64_t *v, size_t n);
/* Of sorted v[n] (n > 0): the median, and the value below which a fraction p of the samples lie. */
double bench_sorted_median(const uint64_t *v, size_t n);
double bench_sorted_percentile(const uint64_t *v, size_t n, double p);
/* Sorts v[n] and returns its median. */
double bench_median(uint64_t *v, size_t n);

/* CPUs and limits -------------------------------------------------------- */

long bench_cpus(void);
/* Pins the calling thread (and what it forks later) to cpu; false with fewer than 2 CPUs or if refused. */
bool bench_pin(int cpu);
/* Lets the calling thread run on every CPU again. */
void bench_unpin(void);

/*
 * Raises the limit on open files to want where allowed (root may raise the
 * hard limit), else as far as the hard limit. Returns the soft limit then.
 */
rlim_t bench_raise_fd_limit(rlim_t want);

/* Processes ------------------------------------------------------------- */

/* In a child just forked: dies with the main process, and exits at once if that is gone already. */
void bench_child_init(void);

/* Waits up to timeout_ms for the child pid to exit, killing it after that; returns its wait status. */
int bench_reap(pid_t pid, int timeout_ms);

/* The open fds of process pid (0: this one). */
unsigned bench_count_fds(pid_t pid);

/* The time of clock in ns; dies where the clock cannot be read. */
uint64_t bench_clock_ns(clockid_t clock);

/* The CPU time of process pid so far, user and system, in ns; 0 where the kernel does not tell. */
uint64_t bench_cpu_ns(pid_t pid);

/* How often process pid has gone to sleep, and so been woken (voluntary context switches); 0 if unknown. */
uint64_t bench_wakeups(pid_t pid);

/* Becomes uid, with gid the same and no supplementary groups, when running as root; anyone else stays who it is. */
void bench_become(uid_t uid);

/*
 * Forks a child joined to this process by a SOCK_SEQPACKET socketpair.
 * Returns the child's pid in the parent and 0 in the child (which has run
 * bench_child_init()); either way *ret_sock is this side's end (owned) and
 * the other end is closed. The caller tracks and reaps the child.
 */
pid_t bench_fork_pair(int *ret_sock);

/*
 * A worker: a child that runs beside a measurement until told to stop,
 * over two pipes, and then reports a number (requests sent, connections
 * dropped).
 */
struct bench_worker {
        pid_t pid;
        int stop;       /* closing it tells the worker to stop */
        int report;     /* a byte once the worker runs, then its result */
};

/*
 * Forks a worker that runs fn(userdata, ready, stop) after
 * bench_child_init(): fn calls bench_worker_ready(ready) once it runs,
 * works until stop polls readable, and returns its result, which the child
 * reports before it exits. Returns once the worker runs; dies, naming it by
 * what ("the flooding client"), if it does not within BENCH_TIMEOUT_MS.
 */
void bench_worker_start(struct bench_worker *ret, uint64_t (*fn)(void *userdata, int ready, int stop),
                        void *userdata, const char *what);

/* In a worker: tells the parent it runs. Exits the worker if the parent is gone. */
void bench_worker_ready(int ready);

/*
 * Tells the worker to stop, reaps it and returns its result; dies, naming
 * it by what, if it does not report within BENCH_TIMEOUT_MS or fails.
 */
uint64_t bench_worker_stop(struct bench_worker *w, const char *what);

/*
 * memfd-brokerd beside this program: ../daemon/memfd-brokerd in the build
 * tree (libtool keeps programs in .libs), or in the same folder once
 * installed. Returns a malloc()ed path, or NULL.
 */
char *bench_brokerd_beside(void);

/* A memfd as the broker makes one: sealed against shrinking and growing, size bytes. Returns it (owned), or -1. */
int bench_memfd(const char *name, uint64_t size);

/* A broker --------------------------------------------------------------- */

struct bench_broker {
        pid_t pid;              /* 0 when not running */
        char socket_path[BENCH_SOCKET_PATH_MAX];
};

/*
 * Starts brokerd listening on socket_path (whose folder must exist), on cpu
 * (-1: anywhere), with its limit on open files raised to fd_limit where
 * allowed, logging warnings only, with extra_args (NULL-terminated, or NULL)
 * after the socket. Returns once the socket listens.
 */
void bench_broker_start(struct bench_broker *b, const char *brokerd, const char *socket_path, int cpu,
                        rlim_t fd_limit, const char *const *extra_args);

/*
 * Waits until the broker pid holds fds open fds again, as it did before
 * what after names ("a flood"): until it has let go of what that took, the
 * next round is not idle. Dies after BENCH_TIMEOUT_MS.
 */
void bench_broker_wait_fds(pid_t pid, unsigned fds, const char *after);

/*
 * Stops a server this program started on socket_path (a broker, the raw
 * server) with SIGTERM, as a service manager does: reaps it within
 * BENCH_TIMEOUT_MS, removes its socket, untracks both and sets *pid to 0.
 * Returns its wait status.
 */
int bench_server_stop(pid_t *pid, const char *socket_path);

/* Stops it with SIGTERM, as a service manager does; false, after saying why, if it did not exit cleanly. */
bool bench_broker_stop(struct bench_broker *b);

/* The protocol, record by record ----------------------------------------- */

/* Sends one request of opcode with that body (len bytes) and cookie; returns 0 or -errno (-EAGAIN with MSG_DONTWAIT). */
int bench_request_send(int fd, uint16_t opcode, uint64_t cookie, const void *body, size_t len, int flags);

/*
 * Receives the next reply within BENCH_TIMEOUT_MS into record
 * (MFB_WIRE_RECORD_MAX bytes) and checks that it answers opcode. Returns its
 * status; the fd it carries goes to ret_fd (owned by the caller, -1 if none),
 * or is closed when ret_fd is NULL.
 */
int32_t bench_reply_recv(int fd, uint16_t opcode, void *record, int *ret_fd);

/* A request and its reply, without fds kept. Returns the status. */
int32_t bench_call(int fd, uint16_t opcode, const void *body, size_t len, void *record);

/* A new connection to the broker at socket_path, after HELLO; owned by the caller. */
int bench_connect_hello(const char *socket_path);

/* The handle of the region of the region reply in record. */
uint64_t bench_reply_handle(const void *record);

/*
 * Creates up to n regions of size bytes and mode on fd, with up to window
 * (at most MFB_WIRE_REQUESTS_IN_FLIGHT_MAX) CREATEs in flight; named
 * PREFIX-I (I counting from first_index) unless name_prefix is NULL. Stops
 * sending at the first refusal. The fds that come back are closed: the
 * connection holds the regions. Returns how many it made, and the first
 * handle in *ret_first unless that is NULL.
 */
unsigned bench_create_regions(int fd, unsigned n, uint64_t size, uint32_t mode, const char *name_prefix,
                              unsigned first_index, unsigned window, uint64_t *ret_first);

/* LIMITS for resource: what the broker allows in all, and what is used (MFB_WIRE_LIMIT_NONE unless exempt). */
void bench_limits(int fd, enum mfb_wire_resource resource, uint64_t *ret_max, uint64_t *ret_used);
