/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The raw baseline of memfd-broker-bench: what handing out memfds costs
 * with no broker, only the syscalls any such server must make.
 *
 * The raw server is a process of this program serving a listening
 * SOCK_SEQPACKET socket with epoll, level-triggered, one request record per
 * wakeup of a connection: for CREATE it makes a memfd (memfd_create,
 * ftruncate, F_ADD_SEALS shrink|grow, as the broker does), sends it with
 * SCM_RIGHTS and closes it; for OPEN it sends a fresh read-only reopen
 * (/proc/self/fd) of the memfd of that size it keeps, as the broker does
 * for a read-only open; for HOLD it makes a memfd and keeps it, answering
 * without an fd (for the memory a region costs); PING only answers. It
 * handles any number of connections, each served in turn.
 *
 * CREATE or OPEN with BENCH_RAW_KEEP keeps the fd it sent until the client
 * sends RELEASE of the handle in the reply, which gets no reply: the
 * exchange of the protocol, where a client gives back each region it was
 * handed (mfb_region_free()), with none of the broker's work around it.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "bench-common.h"

enum bench_raw_op {
        BENCH_RAW_CREATE = 1,
        BENCH_RAW_OPEN = 2,
        BENCH_RAW_HOLD = 3,
        BENCH_RAW_PING = 4,
        BENCH_RAW_RELEASE = 5,
        BENCH_RAW_KEEP = 1U << 16,      /* or'ed to CREATE or OPEN */
};

struct bench_raw_server {
        pid_t pid;              /* 0 when not running */
        char socket_path[BENCH_SOCKET_PATH_MAX];
};

/* Forks the raw server listening on socket_path, pinned to cpu (-1: anywhere). Returns once it listens. */
void bench_raw_start(struct bench_raw_server *s, const char *socket_path, int cpu);

/* Stops it; false, after saying why, if it had failed. */
bool bench_raw_stop(struct bench_raw_server *s);

/* A connection to the raw server; owned by the caller. */
int bench_raw_connect(const char *socket_path);

/*
 * One request on a raw connection: op of a region of size bytes. For CREATE
 * and OPEN, what a client then does with the fd, as through the library:
 * checks it as PROTOCOL.md asks (fstat, F_GET_SEALS); with map, maps it
 * (read-write for CREATE, read-only for OPEN), writes or reads its first
 * byte and unmaps it; closes it; with release, has the server keep its fd
 * until then and sends RELEASE after closing, not waiting. HOLD and PING
 * get no fd. Returns 0, or -errno when the server failed.
 */
int bench_raw_op(int sock, enum bench_raw_op op, uint64_t size, bool map, bool release);
