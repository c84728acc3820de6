/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Speaking the protocol by hand, for tests that need what the library will
 * not do: malformed records, pipelining, waiting on the broker's progress.
 * Every function fails the current Check test on error. Requests carry the
 * cookie RAW_COOKIE.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "harness.h"
#include "wire.h"

#define RAW_COOKIE 0x1234U

/* A connection to b that has done HELLO. */
int raw_connect_hello(const struct test_broker *b);

/*
 * n connections to b, made in that order by a child that is uid and gid uid
 * (plus the supplementary group extra_group unless 0), so that the broker
 * counts them as that user's; they have sent nothing yet. The fds are the
 * caller's, in ret_fds; sending on them gives up after TEST_TIMEOUT_MS.
 */
void raw_connect_as(const struct test_broker *b, uid_t uid, gid_t extra_group, unsigned n, int *ret_fds);

/* A connection to b of uid (raw_connect_as()) that has done HELLO. */
int raw_connect_hello_as(const struct test_broker *b, uid_t uid);

/* Sends a request of opcode with body (len bytes) and nfds borrowed fds attached. */
void raw_send(int fd, uint16_t opcode, const void *body, size_t len, const int *fds, size_t nfds);

/* raw_send() with the header's flags set (MFB_WIRE_FLAG_*). */
void raw_send_flags(int fd, uint16_t opcode, uint16_t flags, const void *body, size_t len, const int *fds,
                    size_t nfds);

/*
 * Waits for the next record; returns its length, 0 if the broker closed the
 * connection. The fds that came with it are closed, but for the first one
 * when ret_fd is not NULL: that one is the caller's (-1 if none came).
 */
ssize_t raw_recv(int fd, void *buf, size_t size, int *ret_fd);

/*
 * Receives the reply to a request of opcode, checks it (codec, opcode,
 * cookie) and returns its status. The reply's body, if body is not NULL,
 * is copied there (body_size bytes at most); its fd as in raw_recv().
 */
int32_t raw_reply(int fd, uint16_t opcode, void *body, size_t body_size, int *ret_fd);

/* raw_send() and raw_reply(), closing any fd the reply carries. */
int32_t raw_request(int fd, uint16_t opcode, const void *body, size_t len, const int *fds, size_t nfds);

/* Sends CREATE of an anonymous 4 KiB region on fd, whose reply raw_created_handle() reads. */
void raw_send_create(int fd);

/* Reads the reply to a CREATE sent on fd, which must succeed, closes its fd, and returns the region's handle. */
uint64_t raw_created_handle(int fd);

/*
 * Waits until the broker has read everything sent on fd (SIOCOUTQ is 0):
 * since it handles a request as it reads it, the request has then been
 * handled, or is pending as a WAIT.
 */
void raw_wait_consumed(int fd);

/*
 * Whether a uid pays for what its request does in turns: with b stopped,
 * send() writes on other (of a uid other than root's) a request of
 * opcode, which must succeed, and then a CREATE follows it, while root
 * queues 3 CREATEs; once b runs again, root's must all have been served
 * before the other's CREATE. Handles are given out in order, so they tell
 * the order. With the request costing one turn only, the other's CREATE
 * would come in the second round, before root's third.
 */
void raw_assert_root_served_first(const struct test_broker *b, int root, int other, uint16_t opcode,
                                  void (*send)(int fd, void *userdata), void *userdata);
