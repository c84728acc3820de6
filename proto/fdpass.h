/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Sending and receiving one SOCK_SEQPACKET record with file descriptors
 * (SCM_RIGHTS), shared by the daemon and the client library.
 */

#include <stddef.h>
#include <sys/types.h>

/* The kernel's SCM_MAX_FD: no record can carry more, so the control buffer holds this many. */
#define MFB_FDS_RECV_MAX 253U

/*
 * Sends one record of len bytes (len > 0) with nfds file descriptors
 * attached. The fds are borrowed: they stay open, and since the kernel took
 * its own reference once sendmsg() succeeded, the caller may close them then.
 * flags are extra send flags (MSG_DONTWAIT); MSG_NOSIGNAL is always added.
 * Returns 0, or -errno from sendmsg() (-EAGAIN when the socket is full, the
 * record unsent), or -EINVAL for len 0 or nfds above MFB_FDS_RECV_MAX.
 */
int mfb_record_send(int sock, const void *buf, size_t len, const int *fds, size_t nfds, int flags);

/*
 * Receives one record into buf (size bytes) and the fds attached to it into
 * ret_fds (room for MFB_FDS_RECV_MAX), opened O_CLOEXEC and owned by the
 * caller from then on; *ret_nfds says how many. flags are extra receive
 * flags (MSG_DONTWAIT). Returns the record's length, 0 at end of file (the
 * peer closed, or sent an empty record, whose fds are closed), or -errno: -EAGAIN when nothing is waiting, -EMSGSIZE when
 * the record or its control data was truncated (every fd that came with it
 * has been closed; the connection is no longer trustworthy), or what
 * recvmsg() failed with.
 */
ssize_t mfb_record_recv(int sock, void *buf, size_t size, int *ret_fds, size_t *ret_nfds, int flags);

/* Closes n fds from fds and sets them to -1. */
void mfb_close_fds(int *fds, size_t n);
