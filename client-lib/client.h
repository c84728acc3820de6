/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The client's connection to the broker: HELLO, and the request queue every
 * other part of the library goes through. Internal.
 *
 * Requests are queued in the order they are made and written to the socket
 * as it takes them; replies come back in that same order (PROTOCOL.md), so
 * the oldest request still waiting is the one the next reply answers. A
 * request's handler runs when its reply is read, or when it can no longer
 * come (the connection failed, or the client was freed). A request nobody
 * waits for (a RELEASE, a REMOVE) goes quiet where the broker offers it:
 * answered only if it fails, forgotten once written.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "memfd-broker.h"
#include "releasequeue.h"
#include "wire.h"

/* Requests in the order they were made. */
TAILQ_HEAD(request_queue, client_request);

/* How releases go (mfb_client_set_deferred_releases()). */
enum release_mode {
        RELEASE_AUTO,           /* the default: in the release queue when the broker offers one, else at once */
        RELEASE_DEFERRED,       /* in the queue, else carried by the next request */
        RELEASE_EAGER,          /* each a RELEASE record, at once */
};

struct mfb_client {
        int fd;                         /* the connection; -1 once mfb_client_free() closed it */
        int error;                      /* 0, or why the connection is unusable (then shut down) */
        bool freed;                     /* mfb_client_free() was called */
        unsigned n_refs;                /* the caller's until freed, one per region, one per call running */
        uint64_t next_cookie;
        struct request_queue unsent;    /* not written to the socket yet */
        struct request_queue sent;      /* written, their replies not read yet; all older than the unsent */
        uint64_t last_quiet;            /* cookie of the newest quiet request (answered only on failure), or 0 */
        uint64_t last_answered;         /* cookie of the newest reply read, or 0 */
        enum release_mode release_mode; /* mfb_client_set_deferred_releases() */
        size_t n_releases_waiting;      /* deferred releases, to ride in the next request */
        uint64_t releases_waiting[MFB_WIRE_RELEASES_CARRIED_MAX];
        struct release_queue queue;     /* releasequeue.h */
        uint64_t last_send_usec;        /* when the last request was written (CLOCK_MONOTONIC) */
        struct mfb_wire_hello_reply hello;      /* the broker's version, limits and capabilities */
        char error_message[MFB_WIRE_ERROR_MESSAGE_MAX + 1];
        uint8_t *record;                /* MFB_WIRE_RECORD_MAX bytes: the last reply received */
};

/* A successful reply, as a handler is given it. */
struct client_reply {
        const uint8_t *body;            /* valid during the handler only; exactly as long as the opcode's
                                         * reply (mfb_wire_reply_check()) */
        size_t body_size;
        int *fds;                       /* every attached fd (one for a region, CREATE_BATCH has many), owned
                                         * by the handler, which may set the ones it took to -1 */
        size_t nfds;
};

/*
 * Runs when a request is over. status is 0 with reply set for a successful
 * reply; else reply is NULL and status is the broker's refusal (its text
 * in the client's error message), or the connection's error, or
 * -ECANCELED when the client was freed first. data is the request's data
 * area (client_request()), freed after the handler returns. Returns how
 * many of the caller's callbacks it ran, for mfb_client_dispatch().
 * The handler may make new requests, and free the client.
 */
typedef int (*client_handler)(mfb_client *c, void *data, int status, const struct client_reply *reply);

/*
 * Queues a request: opcode and body_size bytes of body (copied), with
 * handler (NULL: the reply is read and dropped, errors included) and a
 * zeroed data area of data_size bytes for it, whose address is stored in
 * *ret_data unless that is NULL. Tries to write it at once, without
 * blocking. Returns 0, -ENOTCONN, -ENOMEM, or the socket's error (the
 * connection is then failed, and the handler was not queued).
 */
int client_request(mfb_client *c, uint16_t opcode, const void *body, size_t body_size,
                   client_handler handler, size_t data_size, void **ret_data);

/*
 * Reads a successful reply's body into the caller's output. Returns 0 or
 * -errno (client_protocol_error() for a body that breaks the protocol).
 */
typedef int (*client_parse)(mfb_client *c, const struct client_reply *reply, void *userdata);

/*
 * One request, and waits for its reply, running the callbacks of earlier
 * requests as their replies come. parse (may be NULL) reads a successful
 * reply. Returns 0, what parse returned, the broker's refusal (its text in
 * the error message), or the connection's error.
 */
int client_call(mfb_client *c, uint16_t opcode, const void *body, size_t body_size,
                client_parse parse, void *userdata);

/*
 * Sends and reads until *done is true, blocking. Callbacks run meanwhile
 * and may set it. Returns 0 when *done, or the connection's error when
 * it failed first (every handler has run by then, so *done is true too
 * where a handler sets it).
 */
int client_wait(mfb_client *c, const bool *done);

/*
 * Gives one reference back without waiting for the answer, which is read
 * and dropped before any later reply: a handle stored in the release
 * queue, a RELEASE queued at once, or with deferred releases and no queue,
 * a handle the client's next request carries (see enum release_mode). Nothing
 * to give back once the connection is gone: the broker let go of
 * everything with it.
 */
void client_release(mfb_client *c, uint64_t handle);

/* Whether requests can still be made: connected, not failed, not freed. */
bool client_usable(const mfb_client *c);

/*
 * Fails the connection with error: shuts the socket down (the broker then
 * releases everything this client held) and ends every queued request's
 * handler with error. The fd stays open until mfb_client_free(), so that
 * an event loop that watches it can let go of it first. Later requests
 * get -ENOTCONN. Returns error.
 */
int client_fail(mfb_client *c, int error);

/* Fails the connection after the broker broke the protocol. Returns -EBADMSG. */
int client_protocol_error(mfb_client *c);

/* Forgets the broker's text of an earlier refusal, at the start of each public call. */
void client_error_clear(mfb_client *c);

/* Keeps the client's memory while a region points at it or a call runs; the last unref frees a freed client. */
void client_ref(mfb_client *c);
void client_unref(mfb_client *c);
