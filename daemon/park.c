/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/param.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fdpass.h"
#include "fdstore.h"
#include "log.h"
#include "macro.h"
#include "park.h"
#include "parse.h"

/*
 * What a message takes of the sending end's buffer, rounded up from what
 * Linux 6 charges (about 770 bytes alone, 4.4 KiB with 253 fds): they
 * size a bucket to its buffer, and are not relied on otherwise, since a
 * full buffer is also handled when it comes (EAGAIN).
 */
#define SINGLE_MESSAGE_COST 1024U
#define FULL_MESSAGE_COST 6144U
/* What is asked for; the kernel gives at most net.core.wmem_max, doubled. */
#define SEND_BUFFER_WANTED (1 << 20)

#define MESSAGE_MAX (sizeof(struct park_message_header) + PARK_FDS_PER_MESSAGE * sizeof(uint64_t))

/*
 * Messages read from one bucket at most, whatever its queue holds: more
 * than a broker ever leaves in one, which park_add() sees to.
 */
#define READ_MESSAGES_MAX (3 * PARK_BUCKET_MESSAGES + PARK_APPENDS_MAX + 16)

/*
 * A bucket, and what its queue holds, head first: n_messages messages of
 * sizes[i] handles each, one after the other in slots, where 0 stands for
 * a removed region whose fd is still queued.
 */
struct bucket {
        uint64_t name_number;
        char name[sizeof(PARK_FDNAME_PREFIX "18446744073709551615")];
        int send_fd;
        int queue_fd;           /* the end systemd stores, where the fds are queued */
        uint64_t *slots;
        uint32_t *sizes;
        size_t n_slots, n_messages;
        size_t n_slots_allocated, n_sizes_allocated;
        uint32_t n_live;        /* regions parked: the slots that are not 0 */
        uint32_t capacity;      /* of n_live */
        uint32_t n_appended;    /* messages of one region since the last packing */
        bool due;               /* holds removed regions' fds, or packing failed */
        bool full;              /* the kernel took no more */
};

struct park {
        struct fdstore *store;  /* borrowed */
        park_fd_cb fd_of;
        void *userdata;
        uint64_t last_name_number;
        int send_buffer;
        uint32_t buckets_max;
        struct bucket *buckets[PARK_BUCKETS_MAX];
        size_t n_regions;
        bool due;
};

int park_new(struct fdstore *store, uint64_t first_name_number, park_fd_cb fd_of, void *userdata,
             struct park **ret) {
        struct park *p = calloc(1, sizeof(*p));

        if (!p)
                return -ENOMEM;
        p->store = store;
        p->fd_of = fd_of;
        p->userdata = userdata;
        p->last_name_number = first_name_number;
        p->send_buffer = SEND_BUFFER_WANTED;
        p->buckets_max = PARK_BUCKETS_MAX;
        *ret = p;
        return 0;
}

void park_set_limits(struct park *p, int send_buffer, uint32_t buckets_max) {
        assert(buckets_max <= PARK_BUCKETS_MAX);
        p->send_buffer = send_buffer;
        p->buckets_max = buckets_max;
}

static void bucket_free(struct bucket *b) {
        safe_close(b->send_fd);
        safe_close(b->queue_fd);
        free(b->slots);
        free(b->sizes);
        free(b);
}

struct park *park_free(struct park *p) {
        if (!p)
                return NULL;
        for (size_t i = 0; i < PARK_BUCKETS_MAX; i++)
                if (p->buckets[i])
                        bucket_free(p->buckets[i]);
        free(p);
        return NULL;
}

size_t park_buckets(const struct park *p) {
        size_t n = 0;

        for (size_t i = 0; i < PARK_BUCKETS_MAX; i++)
                n += p->buckets[i] != NULL;
        return n;
}

size_t park_regions(const struct park *p) {
        return p->n_regions;
}

bool park_packing_due(const struct park *p) {
        return p->due;
}

uint64_t park_name_number(const char *name) {
        uint64_t n;
        char *end;

        if (strncmp(name, PARK_FDNAME_PREFIX, strlen(PARK_FDNAME_PREFIX)) != 0)
                return 0;
        name += strlen(PARK_FDNAME_PREFIX);
        /* As the park writes them: no leading zero, nothing after the digits. */
        if (*name == '0' || parse_decimal(name, &end, &n) < 0 || *end != '\0')
                return 0;
        return n;
}

/* Regions a bucket with a send buffer of sndbuf bytes holds: its packed messages twice, and the appended ones. */
static uint32_t capacity_for(int sndbuf) {
        uint64_t left, messages;

        if (sndbuf <= (int) (PARK_APPENDS_MAX * SINGLE_MESSAGE_COST))
                return 0;
        left = (uint64_t) sndbuf - PARK_APPENDS_MAX * SINGLE_MESSAGE_COST;
        messages = left / (2 * FULL_MESSAGE_COST);
        if (messages > PARK_BUCKET_MESSAGES)
                messages = PARK_BUCKET_MESSAGES;
        return (uint32_t) messages * PARK_FDS_PER_MESSAGE;
}

/* Makes bucket number i and stores its queue with the service manager. */
static int bucket_new(struct park *p, size_t i) {
        _cleanup_(freep) struct bucket *b = NULL;
        int sv[2], sndbuf = p->send_buffer, r;
        socklen_t len = sizeof(sndbuf);

        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
                return log_error_errno(errno, "Failed to make a socket pair to keep regions in: %m");
        b->send_fd = sv[0];
        b->queue_fd = sv[1];
        /* A smaller buffer than asked for only makes the bucket smaller. */
        (void) setsockopt(b->send_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
        if (getsockopt(b->send_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) < 0)
                sndbuf = 0;
        b->capacity = capacity_for(sndbuf);
        if (b->capacity == 0) {
                bucket_free(TAKE_PTR(b));
                return log_error_errno(ENOBUFS, "A socket's send buffer of %d bytes has no room to keep regions in; "
                                       "raise net.core.wmem_max: %m", sndbuf);
        }
        b->name_number = p->last_name_number + 1;
        snprintf(b->name, sizeof(b->name), PARK_FDNAME_PREFIX "%" PRIu64, b->name_number);

        /* Stored before anything is queued in it: from then on every region parked is kept. */
        r = fdstore_add(p->store, b->queue_fd, b->name);
        if (r < 0) {
                bucket_free(TAKE_PTR(b));
                return r;
        }
        p->last_name_number = b->name_number;
        p->buckets[i] = TAKE_PTR(b);
        return 0;
}

/* Has systemd close its copy of bucket i, and closes the broker's. */
static void bucket_drop(struct park *p, size_t i) {
        struct bucket *b = p->buckets[i];
        int r;

        r = fdstore_remove(p->store, b->name);
        if (r < 0) {
                /* It stays stored, and still takes its name's room: keep it, empty, to try again later. */
                log_warning_errno(r, "Failed to have the service manager close the empty bucket %s: %m", b->name);
                b->due = p->due = true;
                return;
        }
        bucket_free(b);
        p->buckets[i] = NULL;
}

/* Sends n handles and their fds as one message. Returns 0 or -errno (-EAGAIN: the buffer is full). */
static int send_message(int fd, const uint64_t *handles, const int *fds, uint32_t n) {
        uint8_t data[MESSAGE_MAX];
        struct park_message_header h = { .magic = PARK_MESSAGE_MAGIC, .count = n };

        assert(n > 0 && n <= PARK_FDS_PER_MESSAGE);
        memcpy(data, &h, sizeof(h));
        memcpy(data + sizeof(h), handles, n * sizeof(uint64_t));
        /* A datagram, sent whole or not at all, as a record is. */
        return mfb_record_send(fd, data, sizeof(h) + n * sizeof(uint64_t), fds, n, MSG_DONTWAIT);
}

/* Takes the oldest message out of the queue, with no room for its fds, so that the kernel closes them. */
static int discard_message(int fd) {
        uint8_t data[MESSAGE_MAX];

        if (recv(fd, data, sizeof(data), MSG_DONTWAIT) < 0)
                return negative_errno();
        return 0;
}

/* Makes room in b's record of its queue for extra_slots more handles in extra_messages more messages. */
static int grow(struct bucket *b, size_t extra_slots, size_t extra_messages) {
        if (GREEDY_REALLOC(b->slots, b->n_slots_allocated, b->n_slots + extra_slots) < 0 ||
            GREEDY_REALLOC(b->sizes, b->n_sizes_allocated, b->n_messages + extra_messages) < 0)
                return -ENOMEM;
        return 0;
}

/*
 * Packs b: walks its queue from the head and sends the regions of each
 * run of messages again as one full message, then takes that run out, so
 * that removed regions' fds are closed and regions parked alone are
 * gathered. At most one message's fds are queued twice at any time, which
 * is all the headroom packing needs under the kernel's cap on fds in
 * flight. Returns 0, or -errno with b's queue valid, as packed so far, and
 * b due to be packed again.
 */
static int bucket_pack(struct park *p, struct bucket *b) {
        size_t n_old = b->n_messages, discarded = 0, discarded_slots = 0, slot = 0;
        _cleanup_(freep) uint64_t *new_slots = NULL;
        _cleanup_(freep) uint32_t *new_sizes = NULL;
        size_t n_new_slots = 0, n_new = 0;
        uint64_t handles[PARK_FDS_PER_MESSAGE];
        int fds[PARK_FDS_PER_MESSAGE];
        uint32_t n = 0;
        int r = 0;

        /* The packed queue is never longer than the old one. */
        new_slots = malloc(MAX(b->n_slots, 1U) * sizeof(*new_slots));
        new_sizes = malloc(MAX(n_old, 1U) * sizeof(*new_sizes));
        if (!new_slots || !new_sizes) {
                b->due = p->due = true;
                return -ENOMEM;
        }

        for (size_t m = 0; m <= n_old; m++) {
                uint64_t live[PARK_FDS_PER_MESSAGE];
                int live_fds[PARK_FDS_PER_MESSAGE];
                uint32_t n_live = 0;

                for (uint32_t i = 0; m < n_old && i < b->sizes[m]; i++) {
                        uint64_t h = b->slots[slot + i];
                        int fd;

                        if (h == 0)
                                continue;
                        fd = p->fd_of(h, p->userdata);
                        /* Gone, but not taken out: the caller forgot park_remove(). */
                        if (fd < 0) {
                                log_warning("Region %" PRIu64 " is parked in %s but gone; dropping it", h, b->name);
                                b->slots[slot + i] = 0;
                                b->n_live--;
                                p->n_regions--;
                                continue;
                        }
                        live[n_live] = h;
                        live_fds[n_live++] = fd;
                }
                /* Nothing to send before it: out at once, so that its fds leave before any are sent again. */
                if (n == 0 && n_live == 0 && m < n_old) {
                        r = discard_message(b->queue_fd);
                        if (r < 0) {
                                log_warning_errno(r, "Failed to take packed messages out of %s: %m", b->name);
                                break;
                        }
                        discarded_slots += b->sizes[m];
                        discarded++;
                        slot += b->sizes[m];
                        continue;
                }
                /* The run so far is sent, then taken out, before it would grow past one message, and at the end. */
                if (m == n_old || n + n_live > PARK_FDS_PER_MESSAGE) {
                        if (n > 0) {
                                r = send_message(b->send_fd, handles, fds, n);
                                if (r < 0)
                                        break;
                                memcpy(new_slots + n_new_slots, handles, n * sizeof(uint64_t));
                                n_new_slots += n;
                                new_sizes[n_new++] = n;
                        }
                        for (; discarded < m; discarded++) {
                                r = discard_message(b->queue_fd);
                                if (r < 0)
                                        break;
                                discarded_slots += b->sizes[discarded];
                        }
                        if (r < 0) {
                                log_warning_errno(r, "Failed to take packed messages out of %s: %m", b->name);
                                break;
                        }
                        n = 0;
                }
                if (m < n_old) {
                        memcpy(handles + n, live, n_live * sizeof(uint64_t));
                        memcpy(fds + n, live_fds, n_live * sizeof(int));
                        n += n_live;
                        slot += b->sizes[m];
                }
        }

        /* The queue now: the old messages not taken out, then the new ones. */
        memmove(b->slots, b->slots + discarded_slots, (b->n_slots - discarded_slots) * sizeof(uint64_t));
        b->n_slots -= discarded_slots;
        memmove(b->sizes, b->sizes + discarded, (n_old - discarded) * sizeof(uint32_t));
        b->n_messages = n_old - discarded;
        if (r >= 0 || grow(b, n_new_slots, n_new) >= 0) {
                        memcpy(b->slots + b->n_slots, new_slots, n_new_slots * sizeof(uint64_t));
                b->n_slots += n_new_slots;
                memcpy(b->sizes + b->n_messages, new_sizes, n_new * sizeof(uint32_t));
                b->n_messages += n_new;
        } else
                /* Queued but not known: duplicates, which a next broker drops; this one never reads them. */
                log_warning("Lost count of %zu messages in %s", n_new, b->name);

        if (r < 0) {
                b->due = p->due = true;
                return r;
        }
        b->n_appended = 0;
        b->due = false;
        b->full = false;
        return 0;
}

int park_pack(struct park *p) {
        int first_error = 0;

        p->due = false;
        for (size_t i = 0; i < PARK_BUCKETS_MAX; i++) {
                struct bucket *b = p->buckets[i];
                int r;

                if (!b || !b->due)
                        continue;
                r = bucket_pack(p, b);
                if (r < 0) {
                        if (first_error == 0)
                                first_error = log_warning_errno(r, "Failed to pack the parked regions in %s, "
                                                                "trying again later: %m", b->name);
                        continue;
                }
                if (b->n_live == 0)
                        bucket_drop(p, i);
        }
        return first_error;
}

/* The bucket to park one more region in: the first with room, so that regions stay in few buckets. */
static int pick_bucket(struct park *p, size_t *ret) {
        size_t free_slot = PARK_BUCKETS_MAX;

        for (size_t i = 0; i < p->buckets_max; i++) {
                struct bucket *b = p->buckets[i];

                if (!b) {
                        if (free_slot == PARK_BUCKETS_MAX)
                                free_slot = i;
                        continue;
                }
                if (!b->full && b->n_live < b->capacity) {
                        *ret = i;
                        return 0;
                }
        }
        if (free_slot == PARK_BUCKETS_MAX)
                return -ENOSPC;
        *ret = free_slot;
        return bucket_new(p, free_slot);
}

int park_add(struct park *p, uint64_t handle, int fd, uint32_t *ret_bucket) {
        for (;;) {
                struct bucket *b;
                size_t i;
                int r;

                r = pick_bucket(p, &i);
                if (r < 0)
                        return r;
                b = p->buckets[i];
                if (b->n_appended >= PARK_APPENDS_MAX || b->due)
                        (void) bucket_pack(p, b);
                /* Not packed: no more than the next broker reads of it (the timer packs it later). */
                if (b->n_messages + 1 >= READ_MESSAGES_MAX || b->n_appended >= PARK_APPENDS_MAX) {
                        b->full = true;
                        continue;
                }
                r = grow(b, 1, 1);
                if (r < 0)
                        return r;
                r = send_message(b->send_fd, &handle, &fd, 1);
                if (r == -EAGAIN && b->n_appended > 0) {
                        (void) bucket_pack(p, b);
                        r = send_message(b->send_fd, &handle, &fd, 1);
                }
                if (r == -EAGAIN) {
                        /* Smaller than its buffer promised: it keeps what it has, and the next bucket takes more. */
                        b->full = true;
                        continue;
                }
                if (r < 0)
                        return r;
                b->slots[b->n_slots++] = handle;
                b->sizes[b->n_messages++] = 1;
                b->n_live++;
                b->n_appended++;
                p->n_regions++;
                *ret_bucket = (uint32_t) i;
                return 0;
        }
}

void park_remove(struct park *p, uint32_t bucket, uint64_t handle) {
        struct bucket *b;

        assert(bucket < PARK_BUCKETS_MAX);
        b = p->buckets[bucket];
        assert(b);
        for (size_t i = 0; i < b->n_slots; i++) {
                if (b->slots[i] != handle)
                        continue;
                b->slots[i] = 0;
                b->n_live--;
                p->n_regions--;
                b->due = p->due = true;
                return;
        }
        assert(!"a region not parked where it was");
}

size_t park_read(int fd, const char *name, park_found_cb found, void *userdata) {
        int type = 0, domain = 0, offset = 0;
        socklen_t len = sizeof(type);
        size_t n_found = 0;

        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_DGRAM ||
            getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &(socklen_t) { sizeof(domain) }) < 0 ||
            domain != AF_UNIX) {
                log_warning("The fd stored as %s is not an AF_UNIX datagram socket; ignoring it", name);
                return 0;
        }
        /* Each peek then starts where the last ended: the queue is walked, not emptied. */
        if (setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &offset, sizeof(offset)) < 0) {
                log_warning_errno(errno, "Failed to read %s without emptying it; ignoring it: %m", name);
                return 0;
        }

        for (unsigned m = 0;; m++) {
                union {
                        struct cmsghdr align;
                        uint8_t buf[CMSG_SPACE((PARK_FDS_PER_MESSAGE + 1) * sizeof(int))];
                } control;
                uint8_t data[MESSAGE_MAX + 1];
                struct iovec iov = { .iov_base = data, .iov_len = sizeof(data) };
                struct msghdr msg = {
                        .msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = control.buf,
                        .msg_controllen = sizeof(control.buf),
                };
                struct park_message_header h = {};
                const char *why = NULL;
                int fds[PARK_FDS_PER_MESSAGE + 1];
                size_t n_fds = 0;
                ssize_t n;

                if (m == READ_MESSAGES_MAX) {
                        log_warning("%s holds more than the %u messages a bucket can; the rest is not restored",
                                    name, READ_MESSAGES_MAX);
                        break;
                }
                n = recvmsg(fd, &msg, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
                if (n < 0) {
                        if (errno != EAGAIN)
                                log_warning_errno(errno, "Failed to read %s; the rest of it is not restored: %m", name);
                        break;
                }
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
                        size_t k;

                        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                                continue;
                        k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        for (size_t j = 0; j < k && n_fds < ELEMENTSOF(fds); j++)
                                memcpy(&fds[n_fds++], CMSG_DATA(c) + j * sizeof(int), sizeof(int));
                }

                if (msg.msg_flags & MSG_CTRUNC)
                        why = "carries more fds than this broker could take (is its fd limit lower than before?)";
                else if (msg.msg_flags & MSG_TRUNC || (size_t) n < sizeof(h))
                        why = "is not one this broker sends";
                else {
                        memcpy(&h, data, sizeof(h));
                        if (h.magic != PARK_MESSAGE_MAGIC || h.count == 0 || h.count > PARK_FDS_PER_MESSAGE ||
                            (size_t) n != sizeof(h) + h.count * sizeof(uint64_t))
                                why = "is not one this broker sends";
                        else if (n_fds != h.count)
                                why = "does not carry one fd per region";
                }
                if (why) {
                        log_warning("Message %u in %s %s; it and the ones after it are not restored", m + 1, name,
                                    why);
                        for (size_t j = 0; j < n_fds; j++)
                                safe_close(fds[j]);
                        break;
                }
                for (uint32_t j = 0; j < h.count; j++) {
                        uint64_t handle;

                        memcpy(&handle, data + sizeof(h) + j * sizeof(uint64_t), sizeof(handle));
                        found(handle, fds[j], userdata);
                }
                n_found += h.count;
        }
        return n_found;
}
