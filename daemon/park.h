/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Parking the memfds of named regions where the service manager keeps them
 * across restarts, at a cost to systemd that does not grow with their
 * number.
 *
 * Handing systemd one fd per region (FDSTORE=1) costs PID 1 a comparison
 * with every fd already stored, and a poll source each, so n regions cost
 * it O(n^2). Instead the memfds travel as SCM_RIGHTS fds, sent and never
 * received, in the receive queues of a few AF_UNIX datagram socketpairs
 * (CRIU keeps fds the same way). Only the receiving end of each pair, a
 * "bucket", goes to the fd store, once, when the bucket is made; the fds
 * queued in it live as long as that socket does, so systemd holds them
 * without knowing about them, and the next broker reads them back with
 * MSG_PEEK, which leaves them queued until it has parked them again.
 *
 * Each message carries up to PARK_FDS_PER_MESSAGE fds and, as its bytes,
 * the handles of their regions in the same order, so a bucket describes
 * itself and needs nothing saved elsewhere. A region is parked by sending
 * it alone, which costs one sendmsg(); every PARK_APPENDS_MAX such
 * messages, or when a region in it is removed, a bucket is packed: its
 * regions are sent again in full messages, then the old messages are
 * received with no room for fds, which makes the kernel close those. At
 * no instant is a region parked in no message, so a broker killed halfway
 * leaves duplicates, never a loss. Packing is what gives a removed region's
 * pages back: the copy in the queue is the last reference once the broker
 * and every client have closed theirs.
 *
 * Datagram sockets, because a SOCK_SEQPACKET or SOCK_STREAM end whose peer
 * is closed reports POLLHUP, and systemd drops a stored fd that does; a
 * datagram end keeps its queue, and its silence, when the broker that held
 * the sending end is gone. A bucket never carries a Unix socket, so the
 * kernel's garbage collector of in-flight sockets never has a cycle to
 * look at.
 *
 * The limits (memfd-brokerd(8)):
 *   - SCM_MAX_FD, 253 fds in one message: PARK_FDS_PER_MESSAGE;
 *   - the sending end's buffer (SO_SNDBUF, capped by net.core.wmem_max),
 *     which queued messages fill: a bucket holds as many regions as the
 *     buffer it got has room for twice, packed, up to PARK_BUCKET_REGIONS;
 *   - the kernel's cap on fds in flight from one user, checked against the
 *     sender's RLIMIT_NOFILE unless it has CAP_SYS_RESOURCE or
 *     CAP_SYS_ADMIN (ETOOMANYREFS): parked fds count, and so do replies with
 *     fds that clients have not read yet;
 *   - PARK_BUCKETS_MAX buckets, each a name in $LISTEN_FDNAMES (fdstore.h).
 * park_add() reports each as its own error.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The kernel's SCM_MAX_FD: fds in one SCM_RIGHTS message. */
#define PARK_FDS_PER_MESSAGE 253U
/* Full messages in a bucket, at most: packing one costs a few tens of microseconds. */
#define PARK_BUCKET_MESSAGES 16U
#define PARK_BUCKET_REGIONS (PARK_FDS_PER_MESSAGE * PARK_BUCKET_MESSAGES)
/* Regions sent alone into a bucket before it is packed. */
#define PARK_APPENDS_MAX 128U
/* Buckets at most: room for twice SETTINGS_MAX_REGIONS_CAP regions, so that half-empty buckets never refuse. */
#define PARK_BUCKETS_MAX 128U
/* The fd store name of a bucket is this and a number, never reused by a broker and its successors. */
#define PARK_FDNAME_PREFIX "park."

/* A bucket's messages, as read back at start: a header, then count handles. */
#define PARK_MESSAGE_MAGIC 0x5042464dU  /* "MFBP" in little-endian bytes */
struct park_message_header {
        uint32_t magic;
        uint32_t count;         /* handles that follow, and fds attached: 1 to PARK_FDS_PER_MESSAGE */
};

struct fdstore;
struct park;

/* The broker's memfd of the live region with handle (borrowed), or -1 when there is none any more. */
typedef int (*park_fd_cb)(uint64_t handle, void *userdata);

/* Called by park_read() with each parked fd found, which it takes, and its region's handle. */
typedef void (*park_found_cb)(uint64_t handle, int fd, void *userdata);

/*
 * Returns 0 and a park with no bucket, which stores the buckets it makes
 * in store (borrowed), names them above first_name_number, and asks fd_of
 * for a region's memfd when it packs a bucket; or -ENOMEM.
 */
int park_new(struct fdstore *store, uint64_t first_name_number, park_fd_cb fd_of, void *userdata,
             struct park **ret);

/*
 * For tests: buckets made from then on ask for a send buffer of
 * send_buffer bytes (SO_SNDBUF) instead of the most the kernel gives, and
 * at most buckets_max (up to PARK_BUCKETS_MAX) are made.
 */
void park_set_limits(struct park *p, int send_buffer, uint32_t buckets_max);

/* Closes the broker's ends of the buckets; what systemd holds stays. Accepts NULL; returns NULL. */
struct park *park_free(struct park *p);

/*
 * Parks fd (borrowed: a copy travels), the memfd of the region with
 * handle, in a bucket with room, made and stored first when none has.
 * Returns 0 and the bucket's number, for park_remove(); -ENOSPC when
 * every bucket is full; -ETOOMANYREFS when the kernel refuses more fds in
 * flight from the broker's user; -E2BIG when the fd store has no room for
 * the name of another bucket; or another -errno.
 */
int park_add(struct park *p, uint64_t handle, int fd, uint32_t *ret_bucket);

/*
 * Takes handle out of bucket; its fd stays queued until park_pack() runs,
 * which park_packing_due() then says.
 */
void park_remove(struct park *p, uint32_t bucket, uint64_t handle);

/* Whether a bucket holds fds of removed regions, or could not be packed: run park_pack(). */
bool park_packing_due(const struct park *p);

/*
 * Packs every bucket that holds fds of removed regions, which closes
 * those, and lets systemd close the buckets left empty. Returns 0, or the
 * first -errno after logging it; what failed stays due.
 */
int park_pack(struct park *p);

/* How many buckets there are, and regions parked in them. */
size_t park_buckets(const struct park *p);
size_t park_regions(const struct park *p);

/*
 * Reads the bucket fd, the receiving end of a socketpair passed at start
 * under name, without taking anything out of it, and calls found for each
 * parked fd. Stops at the first message that is not one this broker sends
 * (logged, with what it cost), which leaves the messages after it unread.
 * Returns how many fds were found; fd stays the caller's.
 */
size_t park_read(int fd, const char *name, park_found_cb found, void *userdata);

/*
 * The number in name, a bucket's fd store name; 0 when name is not one.
 */
uint64_t park_name_number(const char *name);
