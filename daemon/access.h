/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Who a client is, and what that lets it do to a region: the SysV IPC
 * rules (ipcperms), against the credentials the kernel gave us at accept,
 * never anything a message says.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

struct region;

struct peer {
        struct ucred creds;     /* SO_PEERCRED: pid, uid and gid as of connect() */
        gid_t *groups;          /* SO_PEERGROUPS, sorted ascending; NULL when none */
        size_t n_groups;
};

/*
 * Reads the credentials and supplementary groups of the peer of fd, a
 * connected AF_UNIX socket (borrowed), into *ret, which then owns its
 * groups (free them with peer_done()). A kernel without SO_PEERGROUPS
 * gives no supplementary groups. Returns 0 or -errno; *ret is untouched
 * on failure.
 */
int peer_get(int fd, struct peer *ret);

/* Frees what p owns. */
void peer_done(struct peer *p);

/*
 * Whether the region's mode grants p access (MFB_WIRE_ACCESS_READ,
 * MFB_WIRE_ACCESS_WRITE or both): root always; the owner by the owner bits; a
 * member of the region's group by the group bits; anyone else by the
 * other bits. Being the creator grants no access bits.
 */
bool access_may(const struct peer *p, const struct region *r, uint32_t access);

/* Whether p may change or remove the region: root, its owner or its creator. */
bool access_owns(const struct peer *p, const struct region *r);

/*
 * Whether the region exists for p: p may read it or owns it. To anyone
 * else, every answer about it is the answer about a region that does not
 * exist, so that its name, owner, mode and seals do not leak.
 */
bool access_may_see(const struct peer *p, const struct region *r);

/* Whether p is in group gid, as its primary or a supplementary group. */
bool access_in_group(const struct peer *p, gid_t gid);
