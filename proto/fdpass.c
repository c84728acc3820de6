/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "fdpass.h"
#include "macro.h"

int mfb_record_send(int sock, const void *buf, size_t len, const int *fds, size_t nfds, int flags) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * MFB_FDS_RECV_MAX)];
        } control;
        struct iovec iov = { .iov_base = (void *) buf, .iov_len = len };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t n;

        /* A zero-length SEQPACKET record reads as end of file on the other side. */
        if (len == 0 || nfds > MFB_FDS_RECV_MAX)
                return -EINVAL;

        if (nfds > 0) {
                struct cmsghdr *cmsg;

                memset(&control, 0, sizeof(control));
                msg.msg_control = control.buf;
                msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
                cmsg = CMSG_FIRSTHDR(&msg);
                cmsg->cmsg_level = SOL_SOCKET;
                cmsg->cmsg_type = SCM_RIGHTS;
                cmsg->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
                memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * nfds);
        }

        do
                n = sendmsg(sock, &msg, flags | MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return negative_errno();
        /* SOCK_SEQPACKET sends records whole or not at all. */
        return (size_t) n == len ? 0 : -EIO;
}

void mfb_close_fds(int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                fds[i] = safe_close(fds[i]);
}

ssize_t mfb_record_recv(int sock, void *buf, size_t size, int *ret_fds, size_t *ret_nfds, int flags) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * MFB_FDS_RECV_MAX)];
        } control;
        struct iovec iov = { .iov_base = buf, .iov_len = size };
        struct msghdr msg = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = control.buf,
                .msg_controllen = sizeof(control.buf),
        };
        size_t nfds = 0;
        ssize_t n;

        do
                n = recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return negative_errno();

        for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
                size_t count;

                if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS)
                        continue;
                count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                if (nfds + count > MFB_FDS_RECV_MAX)
                        count = MFB_FDS_RECV_MAX - nfds;
                memcpy(ret_fds + nfds, CMSG_DATA(cmsg), count * sizeof(int));
                nfds += count;
        }

        if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
                mfb_close_fds(ret_fds, nfds);
                *ret_nfds = 0;
                return -EMSGSIZE;
        }
        /* A zero-length record reads as end of file: nothing may come with it. */
        if (n == 0) {
                mfb_close_fds(ret_fds, nfds);
                nfds = 0;
        }
        *ret_nfds = nfds;
        return n;
}
