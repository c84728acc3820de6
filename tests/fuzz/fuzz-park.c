/* SPDX-License-Identifier: MIT */
/*
 * Reading a bucket of parked memfds (park_read() in daemon/park.c) as
 * restore.c does after a restart, on arbitrary queues: whatever a corrupt
 * or foreign store holds, it must not crash, must not leak an fd, and must
 * hand over only fds of messages that are whole and valid, one per handle.
 *
 * Input: a sequence of messages, each a byte of fds to attach (its low 3
 * bits: how many, 0 to 7; bit 3: a pipe instead of a memfd), a byte of
 * length, then that many bytes. The option bit 0x80 of the first byte of
 * a message rewrites its bytes into a valid header for the fuzzer's
 * handles, with the count taken from the first data byte, so that the
 * paths behind the magic are reached.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz-check.h"
#include "log.h"
#include "park.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MESSAGES_MAX 64U
#define FDS_PER_INPUT_MESSAGE 7U
#define OPT_VALID_HEADER 0x80U
#define OPT_PIPE 0x08U

struct seen {
        size_t n;
};

static void on_found(uint64_t handle, int fd, void *userdata) {
        struct seen *s = userdata;

        check(fd >= 0 && fcntl(fd, F_GETFD) >= 0, "a found fd is not open");
        (void) handle;
        close(fd);
        s->n++;
}

static size_t open_fds(void) {
        size_t n = 0;

        for (int fd = 0; fd < 256; fd++)
                n += fcntl(fd, F_GETFD) >= 0;
        return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static bool quiet;
        int sv[2], memfd, pipefd[2];
        size_t before, sent_fds = 0, messages = 0;
        bool sent_empty = false;
        struct seen seen = {};

        if (!quiet) {
                log_set_max_level(LOG_ERR - 1);
                quiet = true;
        }
        before = open_fds();
        check(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
        memfd = memfd_create("fuzz-park", MFD_CLOEXEC);
        check(memfd >= 0, "memfd_create");
        check(pipe2(pipefd, O_CLOEXEC) == 0, "pipe2");

        while (size >= 2 && messages < MESSAGES_MAX) {
                uint8_t options = data[0], len = data[1];
                uint8_t body[256 + sizeof(struct park_message_header)];
                size_t body_len = len < size - 2 ? len : size - 2;
                int fds[FDS_PER_INPUT_MESSAGE];
                unsigned n_fds = options & 0x7U;
                union {
                        struct cmsghdr align;
                        uint8_t buf[CMSG_SPACE(FDS_PER_INPUT_MESSAGE * sizeof(int))];
                } control = {};
                struct iovec iov = { .iov_base = body };
                struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

                memcpy(body, data + 2, body_len);
                data += 2 + body_len;
                size -= 2 + body_len;
                if (options & OPT_VALID_HEADER) {
                        struct park_message_header h = {
                                .magic = PARK_MESSAGE_MAGIC,
                                .count = body_len > 0 ? body[0] % 9U : 0,
                        };
                        uint64_t handles[8];

                        for (unsigned i = 0; i < 8; i++)
                                handles[i] = body_len > i + 1 ? body[i + 1] : i + 1;
                        memcpy(body, &h, sizeof(h));
                        memcpy(body + sizeof(h), handles, h.count * sizeof(uint64_t));
                        body_len = sizeof(h) + h.count * sizeof(uint64_t);
                }
                iov.iov_len = body_len;
                for (unsigned i = 0; i < n_fds; i++)
                        fds[i] = options & OPT_PIPE ? pipefd[i % 2] : memfd;
                if (n_fds > 0) {
                        struct cmsghdr *c;

                        msg.msg_control = control.buf;
                        msg.msg_controllen = CMSG_SPACE(n_fds * sizeof(int));
                        c = CMSG_FIRSTHDR(&msg);
                        c->cmsg_level = SOL_SOCKET;
                        c->cmsg_type = SCM_RIGHTS;
                        c->cmsg_len = CMSG_LEN(n_fds * sizeof(int));
                        memcpy(CMSG_DATA(c), fds, n_fds * sizeof(int));
                }
                check(sendmsg(sv[0], &msg, MSG_DONTWAIT) == (ssize_t) body_len, "sendmsg");
                sent_fds += n_fds;
                sent_empty |= body_len == 0;
                messages++;
        }

        /*
         * Read twice: reading takes nothing out, so the second finds as much;
         * unless the queue holds an empty message, which the kernel skips once
         * it has been peeked at (skb->peeked).
         */
        {
                size_t first = park_read(sv[1], "park.1", on_found, &seen);
                size_t second;

                check(first == seen.n && first <= sent_fds, "found more fds than were sent");
                second = park_read(sv[1], "park.1", on_found, &seen);
                check(second == first || (sent_empty && second <= sent_fds), "a second read found another number");
        }
        close(sv[0]);
        close(sv[1]);
        close(memfd);
        close(pipefd[0]);
        close(pipefd[1]);
        check(open_fds() == before, "an fd leaked");
        return 0;
}
