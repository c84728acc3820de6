/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench-raw.h"
#include "fdpass.h"
#include "macro.h"

/* A request, and the same record back as its reply, with status (and for a kept fd, handle) set. */
struct raw_record {
        uint32_t op;
        int32_t status;
        uint64_t size;
        uint64_t handle;        /* BENCH_RAW_KEEP: the fd's in the replies, and RELEASE's */
};

/* The memfds OPEN reopens, one per size asked for. */
#define KEPT_MAX 8

struct raw_kept {
        uint64_t size;
        int fd;
};

static int reopen_read_only(int fd) {
        char path[64];

        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        return open(path, O_RDONLY | O_CLOEXEC);
}

/* Keeps fd until a RELEASE of the handle it returns, as the broker keeps a region for each holder. */
static uint64_t keep_until_released(int fd, int **held, size_t *n_held, size_t *held_cap) {
        if (GREEDY_REALLOC(*held, *held_cap, *n_held + 1) < 0)
                _exit(1);
        (*held)[*n_held] = fd;
        return (*n_held)++;
}

static void release(uint64_t handle, int *held, size_t *n_held) {
        if (handle >= *n_held || held[handle] < 0)
                _exit(1);       /* the benchmark's own client never does this */
        close(held[handle]);
        held[handle] = -1;
        /* One at a time, as the sync scenario goes: the table stays as short as what is kept. */
        while (*n_held > 0 && held[*n_held - 1] < 0)
                (*n_held)--;
}

/* Answers one request on sock. Returns 0, or -1 when the connection is done. */
static int serve_one(int sock, struct raw_kept *kept, int **held, size_t *n_held, size_t *held_cap) {
        struct raw_record rec;
        int fds[MFB_FDS_RECV_MAX], fd = -1, k;
        size_t nfds = 0;
        uint32_t flags;
        ssize_t n;

        n = mfb_record_recv(sock, &rec, sizeof(rec), fds, &nfds, MSG_DONTWAIT);
        if (n == -EAGAIN)
                return 0;
        mfb_close_fds(fds, nfds);
        if (n != sizeof(rec))
                return -1;

        rec.status = 0;
        flags = rec.op & BENCH_RAW_KEEP;
        rec.op &= ~BENCH_RAW_KEEP;
        switch (rec.op) {
        case BENCH_RAW_CREATE:
                fd = bench_memfd("bench-raw", rec.size);
                break;
        case BENCH_RAW_OPEN:
                for (size_t i = 0; i < KEPT_MAX; i++) {
                        if (kept[i].fd < 0) {
                                kept[i].fd = bench_memfd("bench-raw-kept", rec.size);
                                kept[i].size = rec.size;
                        }
                        if (kept[i].size == rec.size) {
                                fd = kept[i].fd < 0 ? -1 : reopen_read_only(kept[i].fd);
                                break;
                        }
                }
                break;
        case BENCH_RAW_HOLD:
                if (GREEDY_REALLOC(*held, *held_cap, *n_held + 1) < 0)
                        _exit(1);
                k = bench_memfd("bench-raw-held", rec.size);
                if (k < 0)
                        rec.status = negative_errno();
                else
                        (*held)[(*n_held)++] = k;
                return mfb_record_send(sock, &rec, sizeof(rec), NULL, 0, 0) < 0 ? -1 : 0;
        case BENCH_RAW_PING:
                return mfb_record_send(sock, &rec, sizeof(rec), NULL, 0, 0) < 0 ? -1 : 0;
        case BENCH_RAW_RELEASE:
                release(rec.handle, *held, n_held);
                return 0;       /* no reply, as the broker sends none */
        default:
                errno = EOPNOTSUPP;
                break;
        }
        if (fd < 0) {
                rec.status = negative_errno();
                return mfb_record_send(sock, &rec, sizeof(rec), NULL, 0, 0) < 0 ? -1 : 0;
        }
        if (flags & BENCH_RAW_KEEP)
                rec.handle = keep_until_released(fd, held, n_held, held_cap);
        k = mfb_record_send(sock, &rec, sizeof(rec), &fd, 1, 0);
        if (!(flags & BENCH_RAW_KEEP))
                close(fd);
        return k < 0 ? -1 : 0;
}

static _Noreturn void serve(int listen_fd) {
        struct raw_kept kept[KEPT_MAX];
        int epoll_fd = epoll_create1(EPOLL_CLOEXEC), *held = NULL;
        size_t n_held = 0, held_cap = 0;

        for (size_t i = 0; i < KEPT_MAX; i++)
                kept[i] = (struct raw_kept) { .fd = -1 };
        if (epoll_fd < 0 ||
            epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &(struct epoll_event) { .events = EPOLLIN, .data.fd = -1 }) < 0)
                _exit(1);
        for (;;) {
                struct epoll_event ev[64];
                int n = epoll_wait(epoll_fd, ev, ELEMENTSOF(ev), -1);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        _exit(1);
                for (int i = 0; i < n; i++) {
                        if (ev[i].data.fd < 0) {
                                int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);

                                if (c >= 0 && epoll_ctl(epoll_fd, EPOLL_CTL_ADD, c,
                                                        &(struct epoll_event) { .events = EPOLLIN, .data.fd = c }) < 0)
                                        close(c);
                                continue;
                        }
                        if (serve_one(ev[i].data.fd, kept, &held, &n_held, &held_cap) < 0)
                                close(ev[i].data.fd);
                }
        }
}

void bench_raw_start(struct bench_raw_server *s, const char *socket_path, int cpu) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (strlen(socket_path) >= sizeof(sa.sun_path))
                bench_die("%s is too long a path for a socket", socket_path);
        memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);
        memcpy(s->socket_path, socket_path, strlen(socket_path) + 1);
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
                bench_die("socket: %m");
        bench_track_path(s->socket_path);
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || chmod(socket_path, 0666) < 0 ||
            listen(fd, SOMAXCONN) < 0)
                bench_die("listening on %s: %m", socket_path);

        s->pid = fork();
        if (s->pid < 0)
                bench_die("fork: %m");
        if (s->pid == 0) {
                bench_child_init();
                if (cpu >= 0)
                        bench_pin(cpu);
                signal(SIGTERM, SIG_DFL);
                serve(fd);
        }
        bench_track_pid(s->pid);
        close(fd);
}

bool bench_raw_stop(struct bench_raw_server *s) {
        int status;

        if (s->pid <= 0)
                return true;
        status = bench_server_stop(&s->pid, s->socket_path);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGTERM) {
                fprintf(stderr, "the raw server failed (wait status 0x%x)\n", status);
                return false;
        }
        return true;
}

int bench_raw_connect(const char *socket_path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

        if (fd < 0)
                return negative_errno();
        memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                int k = negative_errno();

                close(fd);
                return k;
        }
        return fd;
}

/* Sends RELEASE of a kept fd, not waiting: the broker sends no reply to one either. */
static int send_release(int sock, uint64_t handle) {
        struct raw_record rec = { .op = BENCH_RAW_RELEASE, .handle = handle };

        return mfb_record_send(sock, &rec, sizeof(rec), NULL, 0, 0);
}

int bench_raw_op(int sock, enum bench_raw_op op, uint64_t size, bool map, bool release) {
        struct raw_record rec = { .op = op | (release ? BENCH_RAW_KEEP : 0), .size = size };
        int fds[MFB_FDS_RECV_MAX], fd, seals, k;
        size_t nfds = 0;
        struct stat st;
        uint8_t *p;
        ssize_t n;

        k = mfb_record_send(sock, &rec, sizeof(rec), NULL, 0, 0);
        if (k < 0)
                return k;
        n = mfb_record_recv(sock, &rec, sizeof(rec), fds, &nfds, 0);
        if (n != sizeof(rec) || rec.status < 0 || nfds != (op == BENCH_RAW_HOLD || op == BENCH_RAW_PING ? 0U : 1U)) {
                mfb_close_fds(fds, nfds);
                return n < 0 ? (int) n : rec.status < 0 ? rec.status : -EBADMSG;
        }
        if (op == BENCH_RAW_HOLD || op == BENCH_RAW_PING)
                return 0;
        fd = fds[0];
        seals = fcntl(fd, F_GET_SEALS);
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t) st.st_size < size || seals < 0 ||
            (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW)) {
                close(fd);
                return -EBADMSG;
        }
        if (!map) {
                close(fd);
                return release ? send_release(sock, rec.handle) : 0;
        }
        if (op == BENCH_RAW_CREATE) {
                p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                if (p != MAP_FAILED)
                        *(volatile uint8_t *) p = 1;
        } else {
                p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
                if (p != MAP_FAILED)
                        (void) *(volatile uint8_t *) p;
        }
        k = p == MAP_FAILED ? negative_errno() : 0;
        if (p != MAP_FAILED)
                munmap(p, size);
        close(fd);
        if (k == 0 && release)
                k = send_release(sock, rec.handle);
        return k;
}
