/* SPDX-License-Identifier: MIT */
#include <grp.h>
#include <linux/sockios.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "fdpass.h"
#include "raw.h"

/* HELLO on fd, which must succeed. */
static void hello(int fd) {
        struct mfb_wire_hello_request req = { .version_min = MFB_WIRE_VERSION, .version_max = MFB_WIRE_VERSION };

        ck_assert_int_eq(raw_request(fd, MFB_WIRE_OP_HELLO, &req, sizeof(req), NULL, 0), 0);
}

int raw_connect_hello(const struct test_broker *b) {
        int fd = test_raw_connect(b);

        ck_assert_int_ge(fd, 0);
        hello(fd);
        return fd;
}

struct connector {
        const struct test_broker *broker;
        uid_t uid;
        gid_t extra_group;
        unsigned n;
        int to_parent;
};

/* In the child: becomes the user, connects n times and passes each connection up. */
static int connect_and_pass(void *arg) {
        const struct connector *c = arg;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct timeval send_timeout = { .tv_sec = TEST_TIMEOUT_MS / 1000 };
        gid_t groups[1] = { c->extra_group };

        TEST_CHILD_CHECK(setgroups(c->extra_group ? 1 : 0, groups) == 0);
        TEST_CHILD_CHECK(setresgid(c->uid, c->uid, c->uid) == 0);
        TEST_CHILD_CHECK(setresuid(c->uid, c->uid, c->uid) == 0);
        memcpy(sa.sun_path, c->broker->socket_path, strlen(c->broker->socket_path) + 1);
        for (unsigned i = 0; i < c->n; i++) {
                int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

                TEST_CHILD_CHECK(fd >= 0);
                /* Set before connect(), which it bounds too (a full backlog); the fd keeps it. */
                TEST_CHILD_CHECK(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof(send_timeout)) == 0);
                TEST_CHILD_CHECK(connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0);
                TEST_CHILD_CHECK(mfb_record_send(c->to_parent, "c", 1, &fd, 1, 0) == 0);
                close(fd);
        }
        return 0;
}

void raw_connect_as(const struct test_broker *b, uid_t uid, gid_t extra_group, unsigned n, int *ret_fds) {
        struct connector c = { .broker = b, .uid = uid, .extra_group = extra_group, .n = n };
        int pair[2];
        pid_t pid;

        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
        c.to_parent = pair[1];
        pid = test_fork(connect_and_pass, &c);
        /* The child's end only in the child: a child that failed shows as end of file. */
        close(pair[1]);
        for (unsigned i = 0; i < n; i++) {
                char byte;

                ck_assert_msg(raw_recv(pair[0], &byte, 1, &ret_fds[i]) == 1, "uid %u could not connect", (unsigned) uid);
                ck_assert_int_ge(ret_fds[i], 0);
        }
        close(pair[0]);
        test_child_succeeded(pid);
}

int raw_connect_hello_as(const struct test_broker *b, uid_t uid) {
        int fd;

        raw_connect_as(b, uid, 0, 1, &fd);
        hello(fd);
        return fd;
}

void raw_send_flags(int fd, uint16_t opcode, uint16_t flags, const void *body, size_t len, const int *fds,
                    size_t nfds) {
        static union {
                struct mfb_wire_header h;
                uint8_t bytes[MFB_WIRE_RECORD_MAX];
        } rec;

        ck_assert_uint_le(sizeof(rec.h) + len, sizeof(rec));
        mfb_wire_header_init(&rec.h, opcode, RAW_COOKIE, 0, 0, sizeof(rec.h) + len);
        rec.h.flags = flags;
        /* An empty body (SYNC, RELEASE_QUEUE) may come as NULL, which memcpy() must not be given. */
        if (len > 0)
                memcpy(rec.bytes + sizeof(rec.h), body, len);
        ck_assert_int_eq(mfb_record_send(fd, &rec, sizeof(rec.h) + len, fds, nfds, 0), 0);
}

void raw_send(int fd, uint16_t opcode, const void *body, size_t len, const int *fds, size_t nfds) {
        raw_send_flags(fd, opcode, 0, body, len, fds, nfds);
}

ssize_t raw_recv(int fd, void *buf, size_t size, int *ret_fd) {
        int fds[MFB_FDS_RECV_MAX];
        struct pollfd p = { .fd = fd, .events = POLLIN };
        size_t nfds = 0;
        ssize_t n;

        ck_assert_int_eq(poll(&p, 1, TEST_TIMEOUT_MS), 1);
        n = mfb_record_recv(fd, buf, size, fds, &nfds, MSG_DONTWAIT);
        ck_assert_int_ge(n, 0);
        if (ret_fd) {
                *ret_fd = nfds > 0 ? fds[0] : -1;
                if (nfds > 0)
                        mfb_close_fds(fds + 1, nfds - 1);
        } else
                mfb_close_fds(fds, nfds);
        return n;
}

int32_t raw_reply(int fd, uint16_t opcode, void *body, size_t body_size, int *ret_fd) {
        static uint8_t rec[MFB_WIRE_RECORD_MAX];
        struct mfb_wire_header h;
        int got_fd = -1;
        ssize_t n;

        n = raw_recv(fd, rec, sizeof(rec), &got_fd);
        ck_assert_int_gt(n, 0);
        ck_assert_int_eq(mfb_wire_reply_check(rec, n, got_fd >= 0 ? 1 : 0, &h), 0);
        ck_assert_uint_eq(h.opcode, opcode | MFB_WIRE_REPLY);
        ck_assert_uint_eq(h.cookie, RAW_COOKIE);
        if (body)
                memcpy(body, rec + sizeof(h),
                       (size_t) n - sizeof(h) < body_size ? (size_t) n - sizeof(h) : body_size);
        if (ret_fd)
                *ret_fd = got_fd;
        else if (got_fd >= 0)
                close(got_fd);
        return h.status;
}

int32_t raw_request(int fd, uint16_t opcode, const void *body, size_t len, const int *fds, size_t nfds) {
        raw_send(fd, opcode, body, len, fds, nfds);
        return raw_reply(fd, opcode, NULL, 0, NULL);
}

void raw_send_create(int fd) {
        struct mfb_wire_create_request req = { .size = 4096 };

        raw_send(fd, MFB_WIRE_OP_CREATE, &req, sizeof(req), NULL, 0);
}

uint64_t raw_created_handle(int fd) {
        struct mfb_wire_region_reply reply;
        int region_fd = -1;

        ck_assert_int_eq(raw_reply(fd, MFB_WIRE_OP_CREATE, &reply, sizeof(reply), &region_fd), 0);
        close(region_fd);
        return reply.info.handle;
}

void raw_wait_consumed(int fd) {
        struct timespec pause = { .tv_nsec = 1000 * 1000 };
        int queued;

        for (int waited_ms = 0;; waited_ms++) {
                ck_assert_int_eq(ioctl(fd, SIOCOUTQ, &queued), 0);
                if (queued == 0)
                        return;
                ck_assert_msg(waited_ms < TEST_TIMEOUT_MS, "the broker did not read the request");
                nanosleep(&pause, NULL);
        }
}

/* CREATEs root queues against the other uid's requests in raw_assert_root_served_first(). */
#define ROOT_CREATES 3

void raw_assert_root_served_first(const struct test_broker *b, int root, int other, uint16_t opcode,
                                  void (*send)(int fd, void *userdata), void *userdata) {
        uint64_t root_last = 0, other_handle;

        ck_assert_int_eq(kill(b->pid, SIGSTOP), 0);
        send(other, userdata);
        raw_send_create(other);
        for (int i = 0; i < ROOT_CREATES; i++)
                raw_send_create(root);
        ck_assert_int_eq(kill(b->pid, SIGCONT), 0);

        ck_assert_int_eq(raw_reply(other, opcode, NULL, 0, NULL), 0);
        other_handle = raw_created_handle(other);
        for (int i = 0; i < ROOT_CREATES; i++)
                root_last = raw_created_handle(root);
        ck_assert_uint_lt(root_last, other_handle);
}
