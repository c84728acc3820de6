/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <poll.h>
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
#include "socket-path.h"

/* The largest errno the kernel defines; a status below its negation is no errno. */
#define ERRNO_MAX 4095

/* The largest request body of this protocol version: every request record fits in a queue entry. */
#define REQUEST_BODY_MAX sizeof(struct mfb_wire_set_request)
_Static_assert(sizeof(struct mfb_wire_create_request) <= REQUEST_BODY_MAX, "request buffer");
_Static_assert(sizeof(struct mfb_wire_open_request) <= REQUEST_BODY_MAX, "request buffer");
_Static_assert(sizeof(struct mfb_wire_lookup_request) <= REQUEST_BODY_MAX, "request buffer");
_Static_assert(sizeof(struct mfb_wire_wait_request) <= REQUEST_BODY_MAX, "request buffer");
_Static_assert(sizeof(struct mfb_wire_create_batch_request) <= REQUEST_BODY_MAX, "request buffer");

#define SUN_PATH_SIZE sizeof(((struct sockaddr_un *) NULL)->sun_path)

struct request_record {
        struct mfb_wire_header header;
        uint8_t body[REQUEST_BODY_MAX + MFB_WIRE_RELEASES_CARRIED_MAX * sizeof(uint64_t)];   /* then releases */
};

/* One request from the moment it is made until its handler ran. */
struct client_request {
        TAILQ_ENTRY(client_request) link;       /* in the client's unsent or sent queue */
        client_handler handler;         /* NULL: nobody waits for the reply */
        uint64_t queue_mark;            /* with MFB_WIRE_FLAG_QUEUED: the queue's entries written by then */
        uint32_t size;                  /* of the record */
        struct request_record record;   /* as it goes on the wire; the header has the cookie and opcode */
        max_align_t data[];             /* the handler's data area */
};

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
        const char *prefix, *suffix;

        if (!buf)
                return -EINVAL;

        /* secure_getenv(): a setuid program must not be pointed at a broker of the caller's choosing. */
        mfb_socket_path_default(secure_getenv, &prefix, &suffix);
        return path_join(buf, size, prefix, suffix);
}

bool client_usable(const mfb_client *c) {
        assert(c);
        return c->error == 0 && !c->freed;
}

int client_fail(mfb_client *c, int error) {
        assert(c);
        assert(error < 0);

        if (c->error == 0) {
                c->error = error;
                /*
                 * Shut down, not closed: the broker sees the end of the connection and releases
                 * what it held for us, while the fd number stays ours, so that an event loop
                 * watching it cannot end up watching some later file that got the same number.
                 */
                if (c->fd >= 0)
                        (void) shutdown(c->fd, SHUT_RDWR);
        }
        return error;
}

int client_protocol_error(mfb_client *c) {
        return client_fail(c, -EBADMSG);
}

void client_error_clear(mfb_client *c) {
        assert(c);
        c->error_message[0] = '\0';
}

/* Keeps the broker's reason as one line of text: it ends up in a terminal or a log. */
static void error_message_store(mfb_client *c, const uint8_t *text, size_t len) {
        assert(len <= MFB_WIRE_ERROR_MESSAGE_MAX);

        for (size_t i = 0; i < len; i++)
                c->error_message[i] = text[i] < 0x20 || text[i] == 0x7f ? '?' : (char) text[i];
        c->error_message[len] = '\0';
}

void client_ref(mfb_client *c) {
        assert(c);
        c->n_refs++;
}

static void client_destroy(mfb_client *c) {
        assert(TAILQ_EMPTY(&c->sent) && TAILQ_EMPTY(&c->unsent));
        release_queue_unmap(&c->queue);
        safe_close(c->fd);
        free(c->record);
        free(c);
}

void client_unref(mfb_client *c) {
        assert(c);
        assert(c->n_refs > 0);

        if (--c->n_refs == 0)
                client_destroy(c);
}

/* Whether a caller waits for q's answer, which is then the client's error message: not for the release queue's. */
static bool request_speaks(const struct client_request *q) {
        return q->handler && q->record.header.opcode != MFB_WIRE_OP_RELEASE_QUEUE;
}

static bool request_quiet(const struct client_request *q) {
        return q->record.header.flags & MFB_WIRE_FLAG_QUIET;
}

/* Writes queued requests until the socket takes no more. Returns 0 or the connection's error. */
static int requests_send(mfb_client *c) {
        while (!TAILQ_EMPTY(&c->unsent)) {
                struct client_request *q = TAILQ_FIRST(&c->unsent);
                int r;

                r = mfb_record_send(c->fd, &q->record, q->size, NULL, 0, MSG_DONTWAIT);
                if (r == -EAGAIN)
                        return 0;
                if (r < 0)
                        return client_fail(c, r);
                /* What the release queue's window counts from (releasequeue.h). */
                c->last_send_usec = release_queue_now_usec();
                TAILQ_REMOVE(&c->unsent, q, link);
                /* Nothing comes back for a quiet request that works, and its failure is dropped. */
                if (request_quiet(q))
                        free(q);
                else
                        TAILQ_INSERT_TAIL(&c->sent, q, link);
        }
        return 0;
}

/* Runs a request's handler, or drops what came for nobody, and frees the request. */
static int request_finish(mfb_client *c, struct client_request *q, int status, const struct client_reply *reply) {
        int n = 0;

        if (q->handler)
                n = q->handler(c, q->data, status, reply);
        else if (reply)
                mfb_close_fds(reply->fds, reply->nfds);
        free(q);
        return n;
}

/* Ends every queued request with status, oldest first. Returns the callbacks run. */
static int requests_abort(mfb_client *c, int status) {
        int n = 0;

        /* One at a time: a handler may free the client, which ends the rest itself. */
        for (;;) {
                struct request_queue *queue = TAILQ_EMPTY(&c->sent) ? &c->unsent : &c->sent;
                struct client_request *q = TAILQ_FIRST(queue);

                if (!q)
                        return n;
                TAILQ_REMOVE(queue, q, link);
                n += request_finish(c, q, status, NULL);
        }
}

/*
 * Once the connection failed, ends every queued request with its error and
 * returns that; 0 while it works, or once the client was freed (which ended
 * every request already).
 */
static int requests_abort_failed(mfb_client *c) {
        if (c->freed || c->error == 0)
                return 0;
        (void) requests_abort(c, c->error);
        return c->error;
}

int client_request(mfb_client *c, uint16_t opcode, const void *body, size_t body_size,
                   client_handler handler, size_t data_size, void **ret_data) {
        struct client_request *q;
        bool try_send;

        assert(c);
        assert(body_size <= REQUEST_BODY_MAX);
        assert(mfb_wire_request_body_size(opcode) == (int) body_size);

        if (!client_usable(c))
                return -ENOTCONN;

        q = calloc(1, offsetof(struct client_request, data) + data_size);
        if (!q)
                return -ENOMEM;
        q->handler = handler;
        q->size = (uint32_t) (sizeof(q->record.header) + body_size);
        mfb_wire_header_init(&q->record.header, opcode, c->next_cookie++, 0, 0, q->size);
        /* An empty body (LIMITS) may come as NULL, which memcpy() must not be given even for 0 bytes. */
        if (body_size > 0)
                memcpy(q->record.body, body, body_size);
        /* Deferred releases ride in this record, released by the broker before it carries out the request. */
        if (c->n_releases_waiting > 0) {
                size_t carried = c->n_releases_waiting * sizeof(uint64_t);

                memcpy(q->record.body + body_size, c->releases_waiting, carried);
                q->size += (uint32_t) carried;
                q->record.header.size = q->size;
                q->record.header.flags |= MFB_WIRE_FLAG_RELEASES;
                c->n_releases_waiting = 0;
        }
        /* What was stored in the release queue since the last request: the broker takes it before this one. */
        release_queue_flag(&c->queue, &q->record.header, &q->queue_mark);
        /* Nobody waits for the answer: have the broker send one only for a failure, where the protocol allows. */
        if (!handler && mfb_wire_request_info(opcode)->quiet && (c->hello.capabilities & MFB_WIRE_CAP_QUIET)) {
                q->record.header.flags |= MFB_WIRE_FLAG_QUIET;
                c->last_quiet = q->record.header.cookie;
        }

        /* Requests waiting already found the socket full: this one goes when they do, without a try now. */
        try_send = TAILQ_EMPTY(&c->unsent);
        TAILQ_INSERT_TAIL(&c->unsent, q, link);
        if (ret_data)
                *ret_data = q->data;

        /*
         * A socket error fails the connection, and with it this request, but
         * only when the caller next dispatches or waits: a handler never runs
         * from inside the call that made its request.
         */
        if (try_send)
                (void) requests_send(c);
        return 0;
}

/*
 * Has the broker take what was stored in the release queue since the last
 * request, now rather than within MFB_WIRE_RELEASE_QUEUE_SWEEP_MS: a quiet
 * SYNC, flagged. Returns 0, or the error of client_request().
 */
static int queue_kick(mfb_client *c) {
        if (!c->queue.unflagged || !client_usable(c))
                return 0;
        return client_request(c, MFB_WIRE_OP_SYNC, NULL, 0, NULL, 0, NULL);
}

static int queue_answered(mfb_client *c, void *data, int status, const struct client_reply *reply) {
        if (status < 0) {
                c->queue.state = QUEUE_REFUSED;
                return 0;
        }
        release_queue_answered(&c->queue, reply->body, reply->fds[0]);
        mfb_close_fds(reply->fds, reply->nfds);
        return 0;
}

/* Asks for the release queue, once, at a release that could not go in it, where the broker offers one. */
static void queue_ask(mfb_client *c) {
        if (!release_queue_wanted(&c->queue))
                return;
        if (!(c->hello.capabilities & MFB_WIRE_CAP_RELEASE_QUEUE))
                c->queue.state = QUEUE_REFUSED;
        else if (client_request(c, MFB_WIRE_OP_RELEASE_QUEUE, NULL, 0, queue_answered, 0, NULL) == 0)
                c->queue.state = QUEUE_ASKED;
}

void client_release(mfb_client *c, uint64_t handle) {
        struct mfb_wire_release_request request = { .handle = handle };

        if (!client_usable(c))
                return;
        if (c->release_mode != RELEASE_EAGER) {
                bool late;

                if (release_queue_put(&c->queue, handle, c->last_send_usec, &late)) {
                        if (late)
                                (void) queue_kick(c);
                        return;
                }
                queue_ask(c);
        }
        if (c->release_mode == RELEASE_DEFERRED && c->n_releases_waiting < ELEMENTSOF(c->releases_waiting)) {
                c->releases_waiting[c->n_releases_waiting++] = handle;
                return;
        }
        /* Not deferred, or as many wait as one record carries: this one goes now, with them. */
        (void) client_request(c, MFB_WIRE_OP_RELEASE, &request, sizeof(request), NULL, 0, NULL);
}

/*
 * Queues the deferred releases, if any, in a record of their own: one
 * RELEASE that carries the others. Returns 0, or -ENOMEM with them all
 * still waiting.
 */
static int releases_queue(mfb_client *c) {
        struct mfb_wire_release_request request;
        int r;

        if (c->n_releases_waiting == 0 || !client_usable(c))
                return 0;
        request.handle = c->releases_waiting[--c->n_releases_waiting];
        r = client_request(c, MFB_WIRE_OP_RELEASE, &request, sizeof(request), NULL, 0, NULL);
        /* Refused before it took the others along. */
        if (r < 0)
                c->releases_waiting[c->n_releases_waiting++] = request.handle;
        return r;
}

/*
 * Reads one reply and runs its request's handler. Returns the callbacks
 * run, -EAGAIN when no reply is waiting (only without block), or the
 * connection's error once it failed.
 */
static int reply_read(mfb_client *c, bool block) {
        const struct mfb_wire_request_info *info;
        int fds[MFB_FDS_RECV_MAX];
        struct mfb_wire_header header;
        struct client_request *q;
        struct client_reply reply;
        size_t nfds;
        ssize_t n;
        int r;

        n = mfb_record_recv(c->fd, c->record, MFB_WIRE_RECORD_MAX, fds, &nfds, block ? 0 : MSG_DONTWAIT);
        if (n == -EAGAIN && !block)
                return -EAGAIN;
        if (n == 0)
                return client_fail(c, -ENOTCONN);
        if (n == -EMSGSIZE)
                return client_protocol_error(c);
        if (n < 0)
                return client_fail(c, (int) n);

        r = mfb_wire_reply_check(c->record, (size_t) n, nfds, &header);
        if (r < 0) {
                mfb_close_fds(fds, nfds);
                return client_protocol_error(c);
        }

        /*
         * Replies come in request order, so this one answers the oldest request
         * written, or is the failure of a quiet one written since the last reply
         * and before that request. Anything else (no request written, another
         * cookie or opcode) means the broker and we no longer agree on what was
         * asked.
         */
        q = TAILQ_FIRST(&c->sent);
        info = mfb_wire_request_info(header.opcode);
        if (header.status < 0 && header.cookie > c->last_answered && header.cookie <= c->last_quiet &&
            (!q || header.cookie < q->record.header.cookie) && info && info->quiet) {
                c->last_answered = header.cookie;
                return 0;
        }
        if (!q || header.cookie != q->record.header.cookie ||
            header.opcode != (q->record.header.opcode | MFB_WIRE_REPLY) || header.status < -ERRNO_MAX) {
                mfb_close_fds(fds, nfds);
                return client_protocol_error(c);
        }
        TAILQ_REMOVE(&c->sent, q, link);
        c->last_answered = header.cookie;
        /* Answered, the request had the broker take the queue first; refused, perhaps not. */
        if (header.status == 0)
                release_queue_taken(&c->queue, q->queue_mark);

        /* Only a reply a caller waits for speaks for the last call: not a dropped one, nor the library's own. */
        if (header.status < 0) {
                if (request_speaks(q))
                        error_message_store(c, c->record + sizeof(header), (size_t) n - sizeof(header));
                return request_finish(c, q, header.status, NULL);
        }
        if (request_speaks(q))
                client_error_clear(c);
        reply = (struct client_reply) {
                .body = c->record + sizeof(header),
                .body_size = (size_t) n - sizeof(header),
                .fds = fds,
                .nfds = nfds,
        };
        return request_finish(c, q, 0, &reply);
}

/*
 * With requests left unsent because the socket is full: blocks until it has
 * room or a reply is there, and reads that reply, since the broker reads on
 * only as we read its replies. A failed poll() fails the connection.
 */
static void socket_wait(mfb_client *c) {
        struct pollfd p = { .fd = c->fd, .events = POLLIN | POLLOUT };

        if (poll(&p, 1, -1) < 0) {
                if (errno != EINTR)
                        (void) client_fail(c, negative_errno());
                return;
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR))
                (void) reply_read(c, false);
}

/* What waiting for nothing in particular waits for: every request answered. */
static bool wait_over(const mfb_client *c, const bool *done) {
        return done ? *done : TAILQ_EMPTY(&c->sent) && TAILQ_EMPTY(&c->unsent);
}

int client_wait(mfb_client *c, const bool *done) {
        int r = 0;

        assert(c);

        /* A callback may free the client: its memory must outlive this loop. */
        client_ref(c);
        while (!wait_over(c, done)) {
                if (c->error != 0 || c->freed) {
                        /* Ends what is waited for too, with the connection's error. */
                        r = c->error;
                        (void) requests_abort(c, r);
                        break;
                }

                if (requests_send(c) < 0)
                        continue;

                if (!TAILQ_EMPTY(&c->unsent))
                        socket_wait(c);
                else if (!TAILQ_EMPTY(&c->sent))
                        (void) reply_read(c, true);
                else {
                        /* Nothing asked that could end the wait: a bug of ours, not a hang of the caller's. */
                        assert(!done);
                        r = -EIO;
                        break;
                }
        }
        client_unref(c);
        return r;
}

struct call {
        client_parse parse;
        void *userdata;
        bool done;
        int result;
};

static int call_handler(mfb_client *c, void *data, int status, const struct client_reply *reply) {
        struct call *call = *(struct call **) data;

        if (status == 0 && call->parse)
                status = call->parse(c, reply, call->userdata);
        if (reply)
                mfb_close_fds(reply->fds, reply->nfds);
        call->result = status;
        call->done = true;
        return 0;
}

int client_call(mfb_client *c, uint16_t opcode, const void *body, size_t body_size,
                client_parse parse, void *userdata) {
        struct call call = { .parse = parse, .userdata = userdata };
        struct call **slot;
        int r;

        r = client_request(c, opcode, body, body_size, call_handler, sizeof(*slot), (void **) &slot);
        if (r < 0)
                return r;
        *slot = &call;

        r = client_wait(c, &call.done);
        return call.done ? call.result : r;
}

/* HELLO is the one request made before the queue is in use: the connection is not ours yet. */
static int hello_send(mfb_client *c) {
        struct {
                struct mfb_wire_header header;
                struct mfb_wire_hello_request body;
        } record = {
                .body = {
                        .version_min = MFB_WIRE_VERSION,
                        .version_max = MFB_WIRE_VERSION,
                },
        };

        mfb_wire_header_init(&record.header, MFB_WIRE_OP_HELLO, c->next_cookie++, 0, 0, sizeof(record));
        return mfb_record_send(c->fd, &record, sizeof(record), NULL, 0, 0);
}

/* Receives the answer to HELLO, which may be a broker's refusal under cookie 0. */
static int hello_receive(mfb_client *c, uint64_t cookie) {
        bool reset = false;

        for (;;) {
                int fds[MFB_FDS_RECV_MAX];
                struct mfb_wire_header header;
                size_t nfds;
                ssize_t n;

                n = mfb_record_recv(c->fd, c->record, MFB_WIRE_RECORD_MAX, fds, &nfds, 0);
                /*
                 * A broker turning us away closes with our HELLO unread, which the kernel
                 * reports (ECONNRESET) once, ahead of the refusal queued before: read on.
                 */
                if (n == -ECONNRESET && !reset) {
                        reset = true;
                        continue;
                }
                if (n == 0)
                        return reset ? -ECONNRESET : -ENOTCONN;
                if (n == -EMSGSIZE)
                        return -EBADMSG;
                if (n < 0)
                        return (int) n;

                if (mfb_wire_reply_check(c->record, (size_t) n, nfds, &header) < 0 ||
                    header.opcode != (MFB_WIRE_OP_HELLO | MFB_WIRE_REPLY) || header.status < -ERRNO_MAX) {
                        mfb_close_fds(fds, nfds);
                        return -EBADMSG;
                }

                /*
                 * A broker that accepted us only to say why it cannot serve us (out of file
                 * descriptors, or too many connections of our uid) sends one error under
                 * cookie 0, which no request of ours carries, in place of the HELLO reply.
                 */
                if (header.cookie != cookie && !(header.cookie == 0 && header.status < 0))
                        return -EBADMSG;
                if (header.status < 0) {
                        error_message_store(c, c->record + sizeof(header), (size_t) n - sizeof(header));
                        return header.status;
                }

                memcpy(&c->hello, c->record + sizeof(header), sizeof(c->hello));
                if (c->hello.version != MFB_WIRE_VERSION)
                        return -EBADMSG;
                return 0;
        }
}

static int client_hello(mfb_client *c) {
        uint64_t cookie = c->next_cookie;
        int r, k;

        r = hello_send(c);
        if (r == -EPIPE || r == -ECONNRESET) {
                /*
                 * A broker turning us away may have closed the connection before our
                 * HELLO got there; its refusal still waits to be read. Nothing else can:
                 * it never read a request to answer.
                 */
                k = hello_receive(c, cookie);
                if (k == 0)
                        return -EBADMSG;
                return k == -ENOTCONN ? r : k;
        }
        if (r < 0)
                return r;
        return hello_receive(c, cookie);
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
        TAILQ_INIT(&c->unsent);
        TAILQ_INIT(&c->sent);
        c->fd = -1;
        c->n_refs = 1;
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
        if (!c || c->freed)
                return NULL;

        c->freed = true;
        if (c->error == 0)
                c->error = -ENOTCONN;
        client_ref(c);
        (void) requests_abort(c, -ECANCELED);
        /* The broker releases everything this connection held as soon as it sees it close. */
        c->fd = safe_close(c->fd);
        client_unref(c);
        /* The caller's reference: the regions still alive hold theirs. */
        client_unref(c);
        return NULL;
}

_public_ const char *mfb_client_error_message(const mfb_client *c) {
        if (!c)
                return "";
        return c->error_message;
}

_public_ int mfb_client_get_fd(const mfb_client *c) {
        if (!c || c->fd < 0)
                return -EINVAL;
        return c->fd;
}

_public_ int mfb_client_get_events(const mfb_client *c) {
        if (!c || c->freed)
                return -EINVAL;
        /* A failed connection is shut down, so it polls readable: dispatch then says why. */
        return POLLIN | (client_usable(c) && !TAILQ_EMPTY(&c->unsent) ? POLLOUT : 0);
}

_public_ int mfb_client_dispatch(mfb_client *c) {
        const struct client_request *newest;
        uint64_t last;
        int n = 0, r;

        if (!c || c->freed)
                return -EINVAL;

        client_ref(c);
        if (client_usable(c))
                (void) requests_send(c);

        /*
         * Replies up to the one to the newest request written by now, so that
         * callbacks making new requests cannot keep one call going forever; at
         * least one read, so that the end of the connection is seen even with
         * nothing asked.
         */
        newest = TAILQ_LAST(&c->sent, request_queue);
        last = newest ? newest->record.header.cookie : 0;
        while (client_usable(c)) {
                r = reply_read(c, false);
                if (r < 0)
                        break;
                n += r;
                if (c->last_answered >= last)
                        break;
        }

        if (client_usable(c))
                (void) requests_send(c);

        r = requests_abort_failed(c);
        client_unref(c);
        return r < 0 ? r : n;
}

_public_ int mfb_client_flush(mfb_client *c) {
        int r;

        if (!c || c->freed)
                return -EINVAL;

        r = releases_queue(c);
        if (r < 0)
                return r;
        r = queue_kick(c);
        if (r < 0)
                return r;
        client_ref(c);
        while (client_usable(c) && !TAILQ_EMPTY(&c->unsent)) {
                if (requests_send(c) < 0 || TAILQ_EMPTY(&c->unsent))
                        break;
                socket_wait(c);
        }
        r = requests_abort_failed(c);
        client_unref(c);
        return r;
}

_public_ int mfb_client_set_deferred_releases(mfb_client *c, int deferred) {
        int r;

        if (!c || c->freed)
                return -EINVAL;
        if (deferred && !(c->hello.capabilities & (MFB_WIRE_CAP_CARRIED_RELEASES | MFB_WIRE_CAP_RELEASE_QUEUE)))
                return -EOPNOTSUPP;
        c->release_mode = deferred ? RELEASE_DEFERRED : RELEASE_EAGER;
        if (deferred)
                return 0;
        r = releases_queue(c);
        return r < 0 ? r : queue_kick(c);
}

_public_ int mfb_client_roundtrip(mfb_client *c) {
        int r;

        if (!c || c->freed)
                return -EINVAL;

        r = releases_queue(c);
        if (r < 0)
                return r;
        /*
         * A quiet request says nothing when it works: when the newest request is
         * one, only the answer to one more, made after it, tells it was done.
         */
        if (client_usable(c) && (c->queue.unflagged ||
                                 (c->last_quiet == c->next_cookie - 1 && c->last_quiet > c->last_answered))) {
                r = client_request(c, MFB_WIRE_OP_LIMITS, NULL, 0, NULL, 0, NULL);
                if (r < 0)
                        return r;
        }

        client_ref(c);
        r = client_wait(c, NULL);
        /* Nothing was left to wait for on a connection that failed before. */
        if (r == 0 && c->error != 0)
                r = c->freed ? -ENOTCONN : c->error;
        client_unref(c);
        return r;
}
