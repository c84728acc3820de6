/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "client.h"
#include "codec.h"
#include "fdpass.h"
#include "macro.h"

#define SOCKET_NAME "memfd-broker.sock"
#define SOCKET_PATH_SYSTEM "/run/" SOCKET_NAME

/* The largest errno the kernel defines; a status below its negation is no errno. */
#define ERRNO_MAX 4095

/* The largest request body of this protocol version: a request record fits on the stack. */
#define REQUEST_BODY_MAX sizeof(struct mfb_wire_set_request)
_Static_assert(sizeof(struct mfb_wire_create_request) <= REQUEST_BODY_MAX, "request buffer");
_Static_assert(sizeof(struct mfb_wire_open_request) <= REQUEST_BODY_MAX, "request buffer");
_Static_assert(sizeof(struct mfb_wire_lookup_request) <= REQUEST_BODY_MAX, "request buffer");
_Static_assert(sizeof(struct mfb_wire_wait_request) <= REQUEST_BODY_MAX, "request buffer");

#define SUN_PATH_SIZE sizeof(((struct sockaddr_un *) NULL)->sun_path)

/* Joins prefix and suffix into buf, or fails without touching buf. */
static int path_join(char *buf, size_t size, const char *prefix, const char *suffix) {
        size_t a = strlen(prefix), b = strlen(suffix);

        /* The path must also fit in a socket address, NUL included. */
        if (a + b >= size || a + b >= SUN_PATH_SIZE)
                return -ENAMETOOLONG;
        memcpy(buf, prefix, a);
        memcpy(buf + a, suffix, b + 1);
        return 0;
}

_public_ int mfb_default_socket_path(char *buf, size_t size) {
        const char *e;

        if (!buf)
                return -EINVAL;

        /* secure_getenv(): a setuid program must not be pointed at a broker of the caller's choosing. */
        e = secure_getenv(MFB_SOCKET_ENV);
        if (e && *e)
                return path_join(buf, size, e, "");
        e = secure_getenv("XDG_RUNTIME_DIR");
        if (e && *e && geteuid() != 0)
                return path_join(buf, size, e, "/" SOCKET_NAME);
        return path_join(buf, size, SOCKET_PATH_SYSTEM, "");
}

void client_disconnect(mfb_client *c) {
        assert(c);
        c->fd = safe_close(c->fd);
}

int client_protocol_error(mfb_client *c) {
        client_disconnect(c);
        return -EBADMSG;
}

void client_error_clear(mfb_client *c) {
        assert(c);
        c->error_message[0] = '\0';
}

/* client_send() without the disconnect on failure. Stores the request's cookie even then. */
static int request_send(mfb_client *c, uint16_t opcode, const void *body, size_t body_size, uint64_t *ret_cookie) {
        struct {
                struct mfb_wire_header header;
                uint8_t body[REQUEST_BODY_MAX];
        } record;
        size_t size = sizeof(record.header) + body_size;

        assert(c);
        assert(body_size <= REQUEST_BODY_MAX);
        assert(mfb_wire_request_body_size(opcode) == (int) body_size);
        assert(ret_cookie);

        if (c->fd < 0)
                return -ENOTCONN;

        *ret_cookie = c->next_cookie++;
        mfb_wire_header_init(&record.header, opcode, *ret_cookie, 0, 0, (uint32_t) size);
        /* An empty body (LIMITS) may come as NULL, which memcpy() must not be given even for 0 bytes. */
        if (body_size > 0)
                memcpy(record.body, body, body_size);
        return mfb_record_send(c->fd, &record, size, NULL, 0, 0);
}

int client_send(mfb_client *c, uint16_t opcode, const void *body, size_t body_size, uint64_t *ret_cookie) {
        uint64_t cookie;
        int r;

        r = request_send(c, opcode, body, body_size, &cookie);
        if (r < 0) {
                client_disconnect(c);
                return r;
        }
        *ret_cookie = cookie;
        return 0;
}

/* Keeps the broker's reason as one line of text: it ends up in a terminal or a log. */
static void error_message_store(mfb_client *c, const uint8_t *text, size_t len) {
        assert(len <= MFB_WIRE_ERROR_MESSAGE_MAX);

        for (size_t i = 0; i < len; i++)
                c->error_message[i] = text[i] < 0x20 || text[i] == 0x7f ? '?' : (char) text[i];
        c->error_message[len] = '\0';
}

int client_receive(mfb_client *c, uint16_t opcode, uint64_t cookie, struct client_reply *ret) {
        bool reset = false;

        assert(c);
        assert(ret);

        for (;;) {
                int fds[MFB_FDS_RECV_MAX];
                struct mfb_wire_header header;
                size_t nfds;
                ssize_t n;
                int r;

                if (c->fd < 0)
                        return -ENOTCONN;

                n = mfb_record_recv(c->fd, c->record, MFB_WIRE_RECORD_MAX, fds, &nfds, 0);
                /*
                 * A broker turning us away closes with our HELLO unread, which the kernel
                 * reports (ECONNRESET) once, ahead of the refusal queued before: read on.
                 */
                if (n == -ECONNRESET && opcode == MFB_OP_HELLO && !reset) {
                        reset = true;
                        continue;
                }
                if (n == 0) {
                        client_disconnect(c);
                        return reset ? -ECONNRESET : -ENOTCONN;
                }
                if (n == -EMSGSIZE)
                        return client_protocol_error(c);
                if (n < 0) {
                        client_disconnect(c);
                        return (int) n;
                }

                r = mfb_wire_reply_check(c->record, (size_t) n, nfds, &header);
                if (r < 0) {
                        mfb_close_fds(fds, nfds);
                        return client_protocol_error(c);
                }

                /*
                 * A broker that accepted us only to say why it cannot serve us (out of file
                 * descriptors) sends one error under cookie 0, which no request of ours carries,
                 * in place of the HELLO reply, and closes the connection.
                 */
                if (opcode == MFB_OP_HELLO && header.cookie == 0 &&
                    header.opcode == (MFB_OP_HELLO | MFB_WIRE_REPLY) &&
                    header.status < 0 && header.status >= -ERRNO_MAX) {
                        error_message_store(c, c->record + sizeof(header), (size_t) n - sizeof(header));
                        client_disconnect(c);
                        return header.status;
                }

                /* An answer to some other request: not ours to use, and its fds must not leak. */
                if (header.cookie != cookie) {
                        mfb_close_fds(fds, nfds);
                        continue;
                }

                /* The body's layout was checked against the reply's own opcode, so it must be ours. */
                if (header.opcode != (opcode | MFB_WIRE_REPLY) || header.status < -ERRNO_MAX) {
                        mfb_close_fds(fds, nfds);
                        return client_protocol_error(c);
                }

                if (header.status < 0) {
                        error_message_store(c, c->record + sizeof(header), (size_t) n - sizeof(header));
                        return header.status;
                }

                *ret = (struct client_reply) {
                        .body = c->record + sizeof(header),
                        .fd = nfds > 0 ? fds[0] : -1,
                };
                return 0;
        }
}

int client_call(mfb_client *c, uint16_t opcode, const void *body, size_t body_size, struct client_reply *ret) {
        uint64_t cookie;
        int r;

        r = client_send(c, opcode, body, body_size, &cookie);
        if (r < 0)
                return r;
        return client_receive(c, opcode, cookie, ret);
}

void client_region_attach(mfb_client *c) {
        assert(c);
        assert(!c->freed);
        c->n_regions++;
}

static void client_destroy(mfb_client *c) {
        safe_close(c->fd);
        free(c->record);
        free(c);
}

void client_region_detach(mfb_client *c) {
        assert(c);
        assert(c->n_regions > 0);

        c->n_regions--;
        if (c->n_regions == 0 && c->freed)
                client_destroy(c);
}

static int client_hello(mfb_client *c) {
        struct mfb_wire_hello_request request = {
                .version_min = MFB_WIRE_VERSION,
                .version_max = MFB_WIRE_VERSION,
        };
        struct client_reply reply;
        uint64_t cookie;
        int r, k;

        r = request_send(c, MFB_OP_HELLO, &request, sizeof(request), &cookie);
        if (r == -EPIPE || r == -ECONNRESET) {
                /*
                 * A broker turning us away may have closed the connection before our
                 * HELLO got there; its refusal still waits to be read. Nothing else can:
                 * it never read a request to answer.
                 */
                k = client_receive(c, MFB_OP_HELLO, cookie, &reply);
                if (k == 0)
                        return client_protocol_error(c);
                return k == -ENOTCONN ? r : k;
        }
        if (r < 0) {
                client_disconnect(c);
                return r;
        }
        r = client_receive(c, MFB_OP_HELLO, cookie, &reply);
        if (r < 0)
                return r;

        memcpy(&c->hello, reply.body, sizeof(c->hello));
        if (c->hello.version != MFB_WIRE_VERSION)
                return client_protocol_error(c);
        return 0;
}

static int socket_connect(const char *path) {
        _cleanup_(closep) int fd = -1;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t len = strlen(path);
        socklen_t sa_len;

        if (len == 0)
                return -EINVAL;
        if (len >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, len);

        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        sa_len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + len + 1);
        if (connect(fd, (const struct sockaddr *) &sa, sa_len) < 0)
                return negative_errno();
        return TAKE_FD(fd);
}

static void client_freep(mfb_client **c) {
        mfb_client_free(*c);
}

_public_ int mfb_client_connect(const char *socket_path, mfb_client **ret) {
        _cleanup_(client_freep) mfb_client *c = NULL;
        char path[SUN_PATH_SIZE];
        int r;

        if (!ret)
                return -EINVAL;
        if (!socket_path) {
                r = mfb_default_socket_path(path, sizeof(path));
                if (r < 0)
                        return r;
                socket_path = path;
        }

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->fd = -1;
        /* Cookie 0 is the broker's, for a refusal that answers no request. */
        c->next_cookie = 1;
        c->record = malloc(MFB_WIRE_RECORD_MAX);
        if (!c->record)
                return -ENOMEM;

        r = socket_connect(socket_path);
        if (r < 0)
                return r;
        c->fd = r;

        r = client_hello(c);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(c);
        return 0;
}

_public_ mfb_client *mfb_client_free(mfb_client *c) {
        if (!c)
                return NULL;

        /* The broker releases everything this connection held as soon as it sees it close. */
        client_disconnect(c);
        c->freed = true;
        if (c->n_regions == 0)
                client_destroy(c);
        return NULL;
}

_public_ const char *mfb_client_error_message(const mfb_client *c) {
        if (!c)
                return "";
        return c->error_message;
}
