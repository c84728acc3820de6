/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "client.h"
#include "codec.h"
#include "lookup.h"
#include "macro.h"

#define NSEC_PER_MSEC UINT64_C(1000000)

struct mfb_region {
        mfb_client *client;     /* counted in its n_regions, so it outlives mfb_client_free() */
        uint64_t handle;
        uint64_t size;
        int access;             /* O_RDONLY or O_RDWR */
        int fd;                 /* the verified memfd, owned */
        void *addr;             /* the mapping of all size bytes, or NULL */
        bool writable;          /* the mapping is PROT_WRITE */
};

static bool access_valid(int access) {
        return access == O_RDONLY || access == O_RDWR;
}

static uint32_t access_to_wire(int access) {
        assert(access_valid(access));
        return access == O_RDWR ? MFB_ACCESS_READ | MFB_ACCESS_WRITE : MFB_ACCESS_READ;
}

/*
 * What PROTOCOL.md asks before mapping a received fd: a regular file that
 * cannot shrink or grow (so no peer can make our mapping raise SIGBUS),
 * holding at least size bytes, opened with exactly the access granted.
 */
static bool fd_verify(int fd, uint64_t size, int access) {
        struct stat st;
        int seals, flags;

        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t) st.st_size < size)
                return false;
        seals = fcntl(fd, F_GET_SEALS);
        if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW))
                return false;
        flags = fcntl(fd, F_GETFL);
        return flags >= 0 && (flags & O_ACCMODE) == access;
}

static int region_release(mfb_client *c, uint64_t handle) {
        struct mfb_wire_release_request request = { .handle = handle };
        struct client_reply reply;

        return client_call(c, MFB_OP_RELEASE, &request, sizeof(request), &reply);
}

/*
 * Sends a CREATE or OPEN request and turns its reply into a region of the
 * given access. want_size is the size asked for (0 for an open: any).
 */
static int region_request(mfb_client *c, uint16_t opcode, const void *request, size_t request_size,
                          int access, uint64_t want_size, mfb_region **ret) {
        _cleanup_(freep) mfb_region *region = NULL;
        _cleanup_(closep) int fd = -1;
        struct mfb_wire_region_reply reply;
        struct client_reply cr;
        int r;

        assert(c);
        assert(ret);

        /* Allocated first: once the broker holds a reference for us, ENOMEM would leak it. */
        region = malloc(sizeof(*region));
        if (!region)
                return -ENOMEM;

        r = client_call(c, opcode, request, request_size, &cr);
        if (r < 0)
                return r;
        fd = cr.fd;

        memcpy(&reply, cr.body, sizeof(reply));
        if (reply.access != access_to_wire(access) || reply.reserved != 0 ||
            region_info_check(&reply.info) < 0 || (want_size != 0 && reply.info.size != want_size))
                return client_protocol_error(c);

        if (!fd_verify(fd, reply.info.size, access)) {
                fd = safe_close(fd);
                (void) region_release(c, reply.info.handle);
                client_error_clear(c);
                return -EBADMSG;
        }

        *region = (struct mfb_region) {
                .client = c,
                .handle = reply.info.handle,
                .size = reply.info.size,
                .access = access,
                .fd = TAKE_FD(fd),
        };
        client_region_attach(c);
        *ret = TAKE_PTR(region);
        return 0;
}

/*
 * Allocates every page of the region now (the broker never touches them),
 * so that running out of memory shows here rather than as SIGBUS later.
 */
static int region_reserve(mfb_region *r) {
        /* shmem and hugetlbfs give up on a signal; what they allocated so far stays, so go on. */
        while (fallocate(r->fd, 0, 0, (off_t) r->size) < 0)
                if (errno != EINTR)
                        return negative_errno();
        return 0;
}

_public_ int mfb_region_create_with(mfb_client *c, const char *name, uint64_t size, mode_t mode, unsigned flags,
                                    mfb_region **ret) {
        struct mfb_wire_create_request request = {
                .size = size,
                /* MFB_CREATE_RESERVE is the library's own work; the broker knows only HUGETLB. */
                .flags = flags & MFB_CREATE_HUGETLB,
                .mode = (uint32_t) mode,
        };
        mfb_region *region;
        int r;

        if (!c || (name && !*name) || size == 0 || (mode & ~(mode_t) 0777) ||
            (flags & ~(MFB_CREATE_HUGETLB | MFB_CREATE_RESERVE)) || !ret)
                return -EINVAL;
        /* fallocate() takes an off_t; no broker makes regions that large anyway. */
        if ((flags & MFB_CREATE_RESERVE) && size > INT64_MAX)
                return -EFBIG;

        client_error_clear(c);
        r = mfb_wire_name_set(&request.name, name);
        if (r < 0)
                return r;
        r = region_request(c, MFB_OP_CREATE, &request, sizeof(request), O_RDWR, size, &region);
        if (r < 0)
                return r;

        if (flags & MFB_CREATE_RESERVE) {
                r = region_reserve(region);
                if (r < 0) {
                        /* A failed create leaves nothing behind: not even a name, which would block a retry. */
                        if (name)
                                (void) lookup_remove(c, NULL, region->handle);
                        mfb_region_free(region);
                        client_error_clear(c);
                        return r;
                }
        }

        *ret = region;
        return 0;
}

_public_ int mfb_region_create(mfb_client *c, const char *name, uint64_t size, mfb_region **ret) {
        return mfb_region_create_with(c, name, size, 0, 0, ret);
}

static int region_open(mfb_client *c, const char *name, uint64_t handle, int access, mfb_region **ret) {
        struct mfb_wire_open_request request = {
                .handle = handle,
                .access = access_to_wire(access),
        };
        int r;

        client_error_clear(c);
        r = mfb_wire_name_set(&request.name, name);
        if (r < 0)
                return r;
        return region_request(c, MFB_OP_OPEN, &request, sizeof(request), access, 0, ret);
}

_public_ int mfb_region_open(mfb_client *c, const char *name, int access, mfb_region **ret) {
        if (!c || !name || !*name || !access_valid(access) || !ret)
                return -EINVAL;

        return region_open(c, name, 0, access, ret);
}

_public_ int mfb_region_open_handle(mfb_client *c, uint64_t handle, int access, mfb_region **ret) {
        if (!c || handle == 0 || !access_valid(access) || !ret)
                return -EINVAL;

        return region_open(c, NULL, handle, access, ret);
}

static void region_unmap(mfb_region *r) {
        if (!r->addr)
                return;
        /* Cannot fail for a mapping we made ourselves, whole. */
        (void) munmap(r->addr, (size_t) r->size);
        r->addr = NULL;
}

static int region_map(mfb_region *r, bool need_write, void **ret_addr) {
        void *addr = MAP_FAILED;

        client_error_clear(r->client);

        if (r->addr) {
                if (need_write && !r->writable)
                        return -EPERM;
                *ret_addr = r->addr;
                return 0;
        }

        /* A 32-bit process cannot map more than its address space. */
        if ((uint64_t) (size_t) r->size != r->size)
                return -EFBIG;

        /*
         * The kernel refuses writable shared mappings of a region sealed
         * with F_SEAL_WRITE or F_SEAL_FUTURE_WRITE (EPERM). Asking it, rather
         * than reading the seals first, cannot race with a peer sealing.
         */
        if (r->access == O_RDWR) {
                addr = mmap(NULL, (size_t) r->size, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
                if (addr == MAP_FAILED && (errno != EPERM || need_write))
                        return negative_errno();
                /*
                 * A child inheriting a writable mapping would make the kernel
                 * refuse F_SEAL_WRITE for as long as it lives, and mfb_region_seal()
                 * can only unmap ours.
                 */
                if (addr != MAP_FAILED && madvise(addr, (size_t) r->size, MADV_DONTFORK) < 0) {
                        int k = negative_errno();

                        (void) munmap(addr, (size_t) r->size);
                        return k;
                }
        } else if (need_write)
                return -EPERM;

        r->writable = addr != MAP_FAILED;
        if (!r->writable) {
                addr = mmap(NULL, (size_t) r->size, PROT_READ, MAP_SHARED, r->fd, 0);
                if (addr == MAP_FAILED)
                        return negative_errno();
        }

        r->addr = addr;
        *ret_addr = addr;
        return 0;
}

_public_ int mfb_region_map(mfb_region *r, void **ret_addr) {
        if (!r || !ret_addr)
                return -EINVAL;

        return region_map(r, false, ret_addr);
}

_public_ int mfb_region_map_writable(mfb_region *r, void **ret_addr) {
        if (!r || !ret_addr)
                return -EINVAL;

        return region_map(r, true, ret_addr);
}

_public_ int mfb_region_seal(mfb_region *r) {
        struct mfb_wire_seal_request request;
        struct client_reply reply;

        if (!r)
                return -EINVAL;

        client_error_clear(r->client);
        if (r->access != O_RDWR)
                return -EPERM;
        /* Without the broker nothing gets sealed: leave the caller's mapping alone then. */
        if (r->client->fd < 0)
                return -ENOTCONN;

        /* Our own shared mapping of a read-write fd would make the kernel refuse (EBUSY). */
        region_unmap(r);

        request = (struct mfb_wire_seal_request) {
                .handle = r->handle,
                .seals = F_SEAL_WRITE,
        };
        return client_call(r->client, MFB_OP_SEAL, &request, sizeof(request), &reply);
}

_public_ int mfb_region_seal_future_write(mfb_region *r) {
        struct mfb_wire_seal_request request;
        struct client_reply reply;

        if (!r)
                return -EINVAL;

        client_error_clear(r->client);
        if (r->access != O_RDWR)
                return -EPERM;

        /* Our writable mapping stays: the kernel lets existing ones write on under this seal. */
        request = (struct mfb_wire_seal_request) {
                .handle = r->handle,
                .seals = F_SEAL_FUTURE_WRITE,
        };
        return client_call(r->client, MFB_OP_SEAL, &request, sizeof(request), &reply);
}

_public_ int mfb_region_wait(mfb_client *c, const char *name, int64_t timeout_ms, mfb_region **ret) {
        struct mfb_wire_wait_request request = { .access = MFB_ACCESS_READ };
        int r;

        if (!c || !name || !*name || timeout_ms < -1 || !ret)
                return -EINVAL;

        if (timeout_ms < 0)
                request.timeout_ns = MFB_WAIT_FOREVER;
        else if ((uint64_t) timeout_ms >= MFB_WAIT_FOREVER / NSEC_PER_MSEC)
                /* Beyond 584 years: no different from waiting without limit. */
                request.timeout_ns = MFB_WAIT_FOREVER;
        else
                request.timeout_ns = (uint64_t) timeout_ms * NSEC_PER_MSEC;

        client_error_clear(c);
        r = mfb_wire_name_set(&request.name, name);
        if (r < 0)
                return r;
        /* Blocks in recvmsg() until the broker answers: the timeout is the broker's to keep. */
        return region_request(c, MFB_OP_WAIT, &request, sizeof(request), O_RDONLY, 0, ret);
}

_public_ int mfb_region_remove(mfb_region *r) {
        if (!r)
                return -EINVAL;

        client_error_clear(r->client);
        return lookup_remove(r->client, NULL, r->handle);
}

_public_ int mfb_region_stat_get(mfb_region *r, mfb_region_stat *ret) {
        if (!r || !ret)
                return -EINVAL;

        client_error_clear(r->client);
        return lookup_stat(r->client, NULL, r->handle, ret);
}

_public_ uint64_t mfb_region_handle(const mfb_region *r) {
        return r ? r->handle : 0;
}

_public_ uint64_t mfb_region_size(const mfb_region *r) {
        return r ? r->size : 0;
}

_public_ int mfb_region_access(const mfb_region *r) {
        return r ? r->access : -EINVAL;
}

_public_ int mfb_region_fd(const mfb_region *r) {
        return r ? r->fd : -EINVAL;
}

_public_ mfb_region *mfb_region_free(mfb_region *r) {
        mfb_client *c;

        if (!r)
                return NULL;

        c = r->client;
        region_unmap(r);
        safe_close(r->fd);
        /* A client that lost its connection lost its references with it. */
        if (c->fd >= 0)
                (void) region_release(c, r->handle);
        free(r);
        client_region_detach(c);
        return NULL;
}
