/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "access.h"
#include "macro.h"
#include "region.h"
#include "wire.h"

/* Supplementary groups read without allocating first; few users have more. */
#define PEERGROUPS_INLINE 32

static int compare_gids(const void *a, const void *b) {
        gid_t x = *(const gid_t *) a, y = *(const gid_t *) b;

        return x < y ? -1 : x > y;
}

/* Sets *ret_groups (sorted, owned by the caller, NULL for none) and *ret_n. */
static int read_groups(int fd, gid_t **ret_groups, size_t *ret_n) {
        gid_t some[PEERGROUPS_INLINE];
        _cleanup_(freep) gid_t *groups = NULL;
        socklen_t len = sizeof(some);
        size_t n;

        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, some, &len) < 0) {
                if (errno == ENOPROTOOPT) {
                        *ret_groups = NULL;
                        *ret_n = 0;
                        return 0;
                }
                if (errno != ERANGE)
                        return negative_errno();
                /* len now says how much room they need; they were fixed at connect(), so once is enough. */
                groups = malloc(len);
                if (!groups)
                        return -ENOMEM;
                if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
                        return negative_errno();
        } else if (len >= sizeof(gid_t)) {
                groups = malloc(len);
                if (!groups)
                        return -ENOMEM;
                memcpy(groups, some, len);
        }

        n = groups ? len / sizeof(gid_t) : 0;
        if (n > 0)
                qsort(groups, n, sizeof(gid_t), compare_gids);
        *ret_groups = n > 0 ? TAKE_PTR(groups) : NULL;
        *ret_n = n;
        return 0;
}

int peer_get(int fd, struct peer *ret) {
        struct peer p = {};
        socklen_t len = sizeof(p.creds);
        int r;

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &p.creds, &len) < 0)
                return negative_errno();
        r = read_groups(fd, &p.groups, &p.n_groups);
        if (r < 0)
                return r;
        *ret = p;
        return 0;
}

void peer_done(struct peer *p) {
        free(p->groups);
        p->groups = NULL;
        p->n_groups = 0;
}

bool access_in_group(const struct peer *p, gid_t gid) {
        return p->creds.gid == gid ||
               (p->n_groups > 0 && bsearch(&gid, p->groups, p->n_groups, sizeof(gid_t), compare_gids));
}

bool access_may(const struct peer *p, const struct region *r, uint32_t access) {
        unsigned need = (access & MFB_WIRE_ACCESS_READ ? 4 : 0) | (access & MFB_WIRE_ACCESS_WRITE ? 2 : 0);
        unsigned bits;

        if (p->creds.uid == 0)
                return true;
        if (p->creds.uid == r->uid)
                bits = (r->mode >> 6) & 7;
        else if (access_in_group(p, r->gid))
                bits = (r->mode >> 3) & 7;
        else
                bits = r->mode & 7;
        return (bits & need) == need;
}

bool access_owns(const struct peer *p, const struct region *r) {
        return p->creds.uid == 0 || p->creds.uid == r->uid || p->creds.uid == r->creator_uid;
}

bool access_may_see(const struct peer *p, const struct region *r) {
        return access_owns(p, r) || access_may(p, r, MFB_WIRE_ACCESS_READ);
}
