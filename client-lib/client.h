/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The client's connection to the broker: HELLO, and the request/reply
 * transport every other part of the library goes through. Internal.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memfd-broker.h"
#include "wire.h"

struct mfb_client {
        int fd;                         /* the connection; -1 once it is gone */
        bool freed;                     /* mfb_client_free() was called: the last region frees the struct */
        size_t n_regions;               /* live mfb_region objects pointing here */
        uint64_t next_cookie;
        struct mfb_wire_hello_reply hello;      /* the broker's version, limits and capabilities */
        char error_message[MFB_WIRE_ERROR_MESSAGE_MAX + 1];
        uint8_t *record;                /* MFB_WIRE_RECORD_MAX bytes: the last reply received */
};

/* A successful reply, as client_receive() hands it out. */
struct client_reply {
        const uint8_t *body;            /* in the client's record buffer, valid until its next request;
                                         * exactly as long as the opcode's reply (mfb_wire_reply_check()) */
        int fd;                         /* the attached fd, owned by the caller from now on, or -1 */
};

/*
 * Sends one request: opcode and body_size bytes of body (borrowed), under a
 * fresh cookie stored in *ret_cookie. Returns 0, -ENOTCONN, or the socket's
 * error (after which the client is disconnected).
 */
int client_send(mfb_client *c, uint16_t opcode, const void *body, size_t body_size, uint64_t *ret_cookie);

/*
 * Waits for the reply to the request sent with cookie. Replies carrying
 * other cookies are dropped, with their fds. On success fills *ret; on a
 * refusal stores the broker's text for mfb_client_error_message() and
 * returns its negative errno. -ENOTCONN at end of file, -EBADMSG for a
 * reply that breaks the protocol, or the socket's error: in those cases
 * the client is disconnected.
 */
int client_receive(mfb_client *c, uint16_t opcode, uint64_t cookie, struct client_reply *ret);

/* client_send() then client_receive(): one request, one reply. */
int client_call(mfb_client *c, uint16_t opcode, const void *body, size_t body_size, struct client_reply *ret);

/* Closes the connection: the broker then releases everything this client held. */
void client_disconnect(mfb_client *c);

/* Disconnects after the broker broke the protocol. Returns -EBADMSG. */
int client_protocol_error(mfb_client *c);

/* Forgets the broker's text of an earlier refusal, at the start of each public call. */
void client_error_clear(mfb_client *c);

/* A region starts or stops pointing at c; the last one to stop frees a freed client. */
void client_region_attach(mfb_client *c);
void client_region_detach(mfb_client *c);
