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
#include "notification.h"
#include "region.h"

#define NSEC_PER_MSEC UINT64_C(1000000)

struct mfb_region {
        mfb_client *client;     /* holds a reference (client_ref()), so it outlives mfb_client_free() */
        uint64_t handle;
        uint64_t size;
        int access;             /* O_RDONLY or O_RDWR */
        int fd;                 /* the verified memfd, owned */
        void *addr;             /* the mapping of all size bytes, or NULL */
        bool writable;          /* the mapping is PROT_WRITE */
        struct region_notify notify;    /* its control page and pipe, asked for at first use */
};

static bool access_valid(int access) {
        return access == O_RDONLY || access == O_RDWR;
}

static uint32_t access_to_wire(int access) {
        assert(access_valid(access));
        return access == O_RDWR ? MFB_WIRE_ACCESS_READ | MFB_WIRE_ACCESS_WRITE : MFB_WIRE_ACCESS_READ;
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

/* A CREATE, OPEN or WAIT on its way: what its reply must say, and whom to give the region. */
struct region_call {
        mfb_region_callback callback;
        void *userdata;
        mfb_region *region;     /* allocated up front: once the broker holds a reference, ENOMEM would leak it */
        int access;
        uint64_t want_size;     /* the size asked for, 0 for any */
        bool reserve;           /* MFB_CREATE_RESERVE */
        bool named;
};

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

mfb_region *region_alloc(void) {
        return malloc(sizeof(mfb_region));
}

int region_init(mfb_region *r, mfb_client *c, uint64_t handle, uint64_t size, int access, int fd) {
        assert(r);
        assert(c);

        if (!fd_verify(fd, size, access)) {
                safe_close(fd);
                client_release(c, handle);
                return -EBADMSG;
        }

        *r = (struct mfb_region) {
                .client = c,
                .handle = handle,
                .size = size,
                .access = access,
                .fd = fd,
                .notify = REGION_NOTIFY_INIT,
        };
        client_ref(c);
        return 0;
}

/* Turns a region reply into rc->region. Returns 0, or -errno with the fd closed and no reference left. */
static int region_from_reply(mfb_client *c, struct region_call *rc, const struct client_reply *cr) {
        /* mfb_wire_reply_check() matched the fds to the opcode: a region reply has one. */
        _cleanup_(closep) int fd = cr->fds[0];
        struct mfb_wire_region_reply reply;
        mfb_region *region = rc->region;
        int r;

        memcpy(&reply, cr->body, sizeof(reply));
        if (reply.access != access_to_wire(rc->access) || reply.reserved != 0 ||
            region_info_check(&reply.info) < 0 || (rc->want_size != 0 && reply.info.size != rc->want_size))
                return client_protocol_error(c);

        r = region_init(region, c, reply.info.handle, reply.info.size, rc->access, TAKE_FD(fd));
        if (r < 0)
                return r;
        /* Made: from here on mfb_region_free() ends it, not the handler's free(). */
        rc->region = NULL;

        if (rc->reserve) {
                r = region_reserve(region);
                if (r < 0) {
                        /* A failed create leaves nothing behind: not even a name, which would block a retry. */
                        if (rc->named)
                                lookup_remove_nowait(c, region->handle);
                        mfb_region_free(region);
                        return r;
                }
        }
        return 0;
}

static int region_handler(mfb_client *c, void *data, int status, const struct client_reply *reply) {
        struct region_call *rc = data;
        mfb_region *region = rc->region;
        int r = status;

        if (r == 0)
                r = region_from_reply(c, rc, reply);
        if (r < 0) {
                free(rc->region);
                region = NULL;
        }
        /* The region is the callback's from here on. */
        rc->callback(c, r, region, rc->userdata);
        return 1;
}

/* Queues a CREATE, OPEN or WAIT whose reply becomes a region of the given access for callback. */
static int region_request(mfb_client *c, uint16_t opcode, const void *request, size_t request_size, int access,
                          uint64_t want_size, unsigned flags, bool named,
                          mfb_region_callback callback, void *userdata) {
        _cleanup_(freep) mfb_region *region = NULL;
        struct region_call *rc;
        int r;

        assert(c);
        assert(callback);

        region = region_alloc();
        if (!region)
                return -ENOMEM;

        r = client_request(c, opcode, request, request_size, region_handler, sizeof(*rc), (void **) &rc);
        if (r < 0)
                return r;
        *rc = (struct region_call) {
                .callback = callback,
                .userdata = userdata,
                .region = TAKE_PTR(region),
                .access = access,
                .want_size = want_size,
                .reserve = flags & MFB_CREATE_RESERVE,
                .named = named,
        };
        return 0;
}

/* What a synchronous call waits for: the region, or why not. */
struct region_sync {
        bool done;
        int result;
        mfb_region *region;
};

static void region_sync_callback(mfb_client *c, int error, mfb_region *region, void *userdata) {
        struct region_sync *s = userdata;

        s->result = error;
        s->region = region;
        s->done = true;
}

/* Waits for a request made with region_sync_callback and s, whose making returned r. */
static int region_sync_finish(mfb_client *c, int r, struct region_sync *s, mfb_region **ret) {
        if (r < 0)
                return r;
        r = client_wait(c, &s->done);
        if (!s->done)
                return r;
        if (s->result < 0)
                return s->result;
        *ret = s->region;
        return 0;
}

static int region_create_check(mfb_client *c, const char *name, uint64_t size, mode_t mode, unsigned flags,
                               struct mfb_wire_create_request *ret) {
        if (!c || (name && !*name) || size == 0 || (mode & ~(mode_t) 0777) ||
            (flags & ~(MFB_CREATE_HUGETLB | MFB_CREATE_RESERVE | MFB_CREATE_TRANSIENT)) ||
            (!name && (flags & MFB_CREATE_TRANSIENT)))
                return -EINVAL;
        /* An older broker would refuse the flag with -EINVAL, as if the caller had it wrong. */
        if ((flags & MFB_CREATE_TRANSIENT) && !(c->hello.capabilities & MFB_WIRE_CAP_TRANSIENT))
                return -EOPNOTSUPP;
        /* fallocate() takes an off_t; no broker makes regions that large anyway. */
        if ((flags & MFB_CREATE_RESERVE) && size > INT64_MAX)
                return -EFBIG;

        *ret = (struct mfb_wire_create_request) {
                .size = size,
                /* MFB_CREATE_RESERVE is the library's own work; the broker knows HUGETLB and TRANSIENT. */
                .flags = (flags & MFB_CREATE_HUGETLB ? MFB_WIRE_CREATE_HUGETLB : 0) |
                         (flags & MFB_CREATE_TRANSIENT ? MFB_WIRE_CREATE_TRANSIENT : 0),
                .mode = (uint32_t) mode,
        };
        return mfb_wire_name_set(&ret->name, name);
}

_public_ int mfb_region_create_async(mfb_client *c, const char *name, uint64_t size, mode_t mode, unsigned flags,
                                     mfb_region_callback callback, void *userdata) {
        struct mfb_wire_create_request request;
        int r;

        if (!callback)
                return -EINVAL;
        r = region_create_check(c, name, size, mode, flags, &request);
        if (r < 0)
                return r;

        client_error_clear(c);
        return region_request(c, MFB_WIRE_OP_CREATE, &request, sizeof(request), O_RDWR, size, flags, name,
                              callback, userdata);
}

_public_ int mfb_region_create_with(mfb_client *c, const char *name, uint64_t size, mode_t mode, unsigned flags,
                                    mfb_region **ret) {
        struct region_sync s = {};

        if (!ret)
                return -EINVAL;
        return region_sync_finish(c, mfb_region_create_async(c, name, size, mode, flags, region_sync_callback, &s),
                                  &s, ret);
}

_public_ int mfb_region_create(mfb_client *c, const char *name, uint64_t size, mfb_region **ret) {
        return mfb_region_create_with(c, name, size, 0, 0, ret);
}

static int region_open(mfb_client *c, const char *name, uint64_t handle, int access,
                       mfb_region_callback callback, void *userdata) {
        struct mfb_wire_open_request request = {
                .handle = handle,
                .access = access_to_wire(access),
        };
        int r;

        client_error_clear(c);
        r = mfb_wire_name_set(&request.name, name);
        if (r < 0)
                return r;
        return region_request(c, MFB_WIRE_OP_OPEN, &request, sizeof(request), access, 0, 0, false, callback, userdata);
}

_public_ int mfb_region_open_async(mfb_client *c, const char *name, int access,
                                   mfb_region_callback callback, void *userdata) {
        if (!c || !name || !*name || !access_valid(access) || !callback)
                return -EINVAL;

        return region_open(c, name, 0, access, callback, userdata);
}

_public_ int mfb_region_open_handle_async(mfb_client *c, uint64_t handle, int access,
                                          mfb_region_callback callback, void *userdata) {
        if (!c || handle == 0 || !access_valid(access) || !callback)
                return -EINVAL;

        return region_open(c, NULL, handle, access, callback, userdata);
}

_public_ int mfb_region_open(mfb_client *c, const char *name, int access, mfb_region **ret) {
        struct region_sync s = {};

        if (!ret)
                return -EINVAL;
        return region_sync_finish(c, mfb_region_open_async(c, name, access, region_sync_callback, &s), &s, ret);
}

_public_ int mfb_region_open_handle(mfb_client *c, uint64_t handle, int access, mfb_region **ret) {
        struct region_sync s = {};

        if (!ret)
                return -EINVAL;
        return region_sync_finish(c, mfb_region_open_handle_async(c, handle, access, region_sync_callback, &s),
                                  &s, ret);
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

/* A SEAL on its way, for mfb_callback. */
struct seal_call {
        mfb_callback callback;
        void *userdata;
};

static int seal_handler(mfb_client *c, void *data, int status, const struct client_reply *reply) {
        struct seal_call *sc = data;

        /* The reply's region info says nothing the caller asked for. */
        if (!sc->callback)
                return 0;
        sc->callback(c, status, sc->userdata);
        return 1;
}

static int region_seal_request(mfb_region *r, uint32_t seals, mfb_callback callback, void *userdata) {
        struct mfb_wire_seal_request request = {
                .handle = r->handle,
                .seals = seals,
        };
        struct seal_call *sc;
        int k;

        k = client_request(r->client, MFB_WIRE_OP_SEAL, &request, sizeof(request), seal_handler, sizeof(*sc),
                           (void **) &sc);
        if (k < 0)
                return k;
        *sc = (struct seal_call) { .callback = callback, .userdata = userdata };
        return 0;
}

/* Checks what sealing r takes before anything is asked; unmaps for F_SEAL_WRITE. */
static int region_seal_prepare(mfb_region *r, uint32_t seals) {
        client_error_clear(r->client);
        if (r->access != O_RDWR)
                return -EPERM;
        /* Without the broker nothing gets sealed: leave the caller's mapping alone then. */
        if (!client_usable(r->client))
                return -ENOTCONN;

        /*
         * Our own shared mapping of a read-write fd would make the kernel refuse
         * F_SEAL_WRITE (EBUSY). F_SEAL_FUTURE_WRITE lets existing mappings write on.
         */
        if (seals == F_SEAL_WRITE)
                region_unmap(r);
        return 0;
}

/* Unmaps for F_SEAL_WRITE, and asks the broker for seals, for callback (NULL: the result is dropped). */
static int region_seal_async(mfb_region *r, uint32_t seals, mfb_callback callback, void *userdata) {
        int k;

        if (!r)
                return -EINVAL;
        k = region_seal_prepare(r, seals);
        if (k < 0)
                return k;
        return region_seal_request(r, seals, callback, userdata);
}

_public_ int mfb_region_seal_async(mfb_region *r, mfb_callback callback, void *userdata) {
        return region_seal_async(r, F_SEAL_WRITE, callback, userdata);
}

_public_ int mfb_region_seal_future_write_async(mfb_region *r, mfb_callback callback, void *userdata) {
        return region_seal_async(r, F_SEAL_FUTURE_WRITE, callback, userdata);
}

/* What a synchronous seal waits for. */
struct seal_sync {
        bool done;
        int result;
};

static void seal_sync_callback(mfb_client *c, int error, void *userdata) {
        struct seal_sync *s = userdata;

        s->result = error;
        s->done = true;
}

static int region_seal(mfb_region *r, uint32_t seals) {
        struct seal_sync s = {};
        mfb_client *c;
        int k;

        k = region_seal_async(r, seals, seal_sync_callback, &s);
        if (k < 0)
                return k;
        /* r is not touched again: a callback of an earlier request may free it meanwhile. */
        c = r->client;
        k = client_wait(c, &s.done);
        return s.done ? s.result : k;
}

_public_ int mfb_region_seal(mfb_region *r) {
        return region_seal(r, F_SEAL_WRITE);
}

_public_ int mfb_region_seal_future_write(mfb_region *r) {
        return region_seal(r, F_SEAL_FUTURE_WRITE);
}

/* The broker's timeout for timeout_ms, of at least -1. */
static uint64_t wait_timeout_ns(int64_t timeout_ms) {
        if (timeout_ms < 0)
                return MFB_WIRE_WAIT_FOREVER;
        /* Beyond 584 years: no different from waiting without limit. */
        if ((uint64_t) timeout_ms >= MFB_WIRE_WAIT_FOREVER / NSEC_PER_MSEC)
                return MFB_WIRE_WAIT_FOREVER;
        return (uint64_t) timeout_ms * NSEC_PER_MSEC;
}

_public_ int mfb_region_wait_async(mfb_client *c, const char *name, int64_t timeout_ms,
                                   mfb_region_callback callback, void *userdata) {
        struct mfb_wire_wait_request request = { .access = MFB_WIRE_ACCESS_READ };
        int r;

        if (!c || !name || !*name || timeout_ms < -1 || !callback)
                return -EINVAL;

        request.timeout_ns = wait_timeout_ns(timeout_ms);
        client_error_clear(c);
        r = mfb_wire_name_set(&request.name, name);
        if (r < 0)
                return r;
        return region_request(c, MFB_WIRE_OP_WAIT, &request, sizeof(request), O_RDONLY, 0, 0, false,
                              callback, userdata);
}

_public_ int mfb_region_wait(mfb_client *c, const char *name, int64_t timeout_ms, mfb_region **ret) {
        struct region_sync s = {};

        if (!ret)
                return -EINVAL;
        /* Blocks in recvmsg() until the broker answers: the timeout is the broker's to keep. */
        return region_sync_finish(c, mfb_region_wait_async(c, name, timeout_ms, region_sync_callback, &s), &s,
                                  ret);
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

_public_ int mfb_region_notify(mfb_region *r) {
        if (!r)
                return -EINVAL;
        client_error_clear(r->client);
        /* The page a reader gets is read-only: the kernel would refuse the add anyway. */
        if (r->access != O_RDWR)
                return -EACCES;
        return region_notify_signal(r->client, r->handle, r->access, &r->notify);
}

_public_ int mfb_region_wait_notify(mfb_region *r, uint64_t *seq, int64_t timeout_ms) {
        if (!r || !seq)
                return -EINVAL;
        client_error_clear(r->client);
        return region_notify_wait(r->client, r->handle, r->access, &r->notify, seq, timeout_ms);
}

_public_ int mfb_region_notify_fd(mfb_region *r) {
        if (!r)
                return -EINVAL;
        client_error_clear(r->client);
        return region_notify_fd(r->client, r->handle, r->access, &r->notify);
}

_public_ int mfb_region_notify_read(mfb_region *r, uint64_t *ret_seq) {
        if (!r || !ret_seq)
                return -EINVAL;
        client_error_clear(r->client);
        return region_notify_read(r->client, r->handle, r->access, &r->notify, ret_seq);
}

_public_ mfb_region *mfb_region_free(mfb_region *r) {
        mfb_client *c;

        if (!r)
                return NULL;

        c = r->client;
        region_unmap(r);
        region_notify_done(&r->notify);
        safe_close(r->fd);
        /* Sent, not waited for: the broker has it before the next reply on c is read. */
        client_release(c, r->handle);
        free(r);
        client_unref(c);
        return NULL;
}
