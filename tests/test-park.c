/* SPDX-License-Identifier: MIT */
/*
 * The park (daemon/park.h) on its own: memfds parked in buckets, packed,
 * read back, and each of the limits it meets. A notify socket in the
 * abstract namespace plays the service manager's fd store.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/param.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdpass.h"
#include "fdstore.h"
#include "harness.h"
#include "macro.h"
#include "park.h"
#include "suites.h"

#define STORE_MAX 64
/* A send buffer (SO_SNDBUF, which the kernel doubles) that gives a bucket room for one full message: 253 regions. */
#define ONE_MESSAGE_SEND_BUFFER 72000
/* What the names of stored fds may take in $LISTEN_FDNAMES (fdstore.c). */
#define NAMES_ROOM (128 * 1024 - sizeof("LISTEN_FDNAMES=") - 256)

/* What the service manager holds: fds by name, as FDSTORE=1 and FDSTOREREMOVE=1 leave them. */
struct store {
        int notify_fd;
        char names[STORE_MAX][64];
        int fds[STORE_MAX];
        size_t n;
        size_t removals;
};

static void store_open(struct store *s) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        static unsigned counter;
        char env[sizeof(sa.sun_path) + 1];
        int n;

        memset(s, 0, sizeof(*s));
        n = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "mfb-test-park-%d-%u", (int) getpid(), counter++);
        s->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        ck_assert_int_ge(s->notify_fd, 0);
        ck_assert_int_eq(bind(s->notify_fd, (struct sockaddr *) &sa, offsetof(struct sockaddr_un, sun_path) + 1 + n), 0);
        snprintf(env, sizeof(env), "@%s", sa.sun_path + 1);
        ck_assert_int_eq(setenv("NOTIFY_SOCKET", env, 1), 0);
}

/* Takes in what the park sent so far. */
static void store_sync(struct store *s) {
        for (;;) {
                union {
                        struct cmsghdr align;
                        uint8_t buf[CMSG_SPACE(16 * sizeof(int)) + CMSG_SPACE(sizeof(struct ucred))];
                } control;
                char data[512] = {};
                struct iovec iov = { .iov_base = data, .iov_len = sizeof(data) - 1 };
                struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                                      .msg_controllen = sizeof(control.buf) };
                const char *name;
                int fd = -1;

                if (recvmsg(s->notify_fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) < 0) {
                        ck_assert_int_eq(errno, EAGAIN);
                        return;
                }
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
                        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                                ck_assert_uint_eq(c->cmsg_len, CMSG_LEN(sizeof(int)));
                                memcpy(&fd, CMSG_DATA(c), sizeof(int));
                        }
                name = strstr(data, "FDNAME=");
                ck_assert_ptr_nonnull(name);
                name += strlen("FDNAME=");
                if (strstr(data, "FDSTOREREMOVE=1")) {
                        for (size_t i = 0; i < s->n; i++)
                                if (strcmp(s->names[i], name) == 0) {
                                        safe_close(s->fds[i]);
                                        s->fds[i] = s->fds[--s->n];
                                        memcpy(s->names[i], s->names[s->n], sizeof(s->names[i]));
                                        s->removals++;
                                        i--;
                                }
                        continue;
                }
                ck_assert_ptr_nonnull(strstr(data, "FDSTORE=1"));
                ck_assert_int_ge(fd, 0);
                ck_assert_uint_lt(s->n, STORE_MAX);
                snprintf(s->names[s->n], sizeof(s->names[s->n]), "%s", name);
                s->fds[s->n++] = fd;
        }
}

static void store_close(struct store *s) {
        store_sync(s);
        for (size_t i = 0; i < s->n; i++)
                safe_close(s->fds[i]);
        safe_close(s->notify_fd);
        unsetenv("NOTIFY_SOCKET");
}

/* The regions of a test: memfds by handle, 1 to REGIONS_MAX. */
#define REGIONS_MAX 2048
struct regions {
        int fds[REGIONS_MAX + 1];       /* -1: none */
};

static int fd_of(uint64_t handle, void *userdata) {
        struct regions *r = userdata;

        return handle <= REGIONS_MAX ? r->fds[handle] : -1;
}

static int sealed_memfd(size_t size) {
        int fd = memfd_create("test-park", MFD_CLOEXEC | MFD_ALLOW_SEALING);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(ftruncate(fd, (off_t) size), 0);
        ck_assert_int_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
        return fd;
}

/* What park_read() found: which handle, and the inode of its fd. */
struct found {
        uint64_t handles[REGIONS_MAX * 2];
        ino_t inodes[REGIONS_MAX * 2];
        size_t n;
};

static void on_found(uint64_t handle, int fd, void *userdata) {
        struct found *f = userdata;
        struct stat st;

        ck_assert_uint_lt(f->n, ELEMENTSOF(f->handles));
        ck_assert_int_eq(fstat(fd, &st), 0);
        f->handles[f->n] = handle;
        f->inodes[f->n++] = st.st_ino;
        safe_close(fd);
}

static ino_t inode_of(int fd) {
        struct stat st;

        ck_assert_int_eq(fstat(fd, &st), 0);
        return st.st_ino;
}

/* Reads every stored bucket, as the next broker would. */
static void read_store(struct store *s, struct found *f) {
        store_sync(s);
        f->n = 0;
        for (size_t i = 0; i < s->n; i++)
                if (park_name_number(s->names[i]) > 0)
                        (void) park_read(s->fds[i], s->names[i], on_found, f);
}

static size_t buckets_stored(struct store *s) {
        size_t n = 0;

        store_sync(s);
        for (size_t i = 0; i < s->n; i++)
                n += park_name_number(s->names[i]) > 0;
        return n;
}

static void regions_close(struct regions *r) {
        for (size_t i = 0; i <= REGIONS_MAX; i++)
                safe_close(r->fds[i]);
}

START_TEST(test_parked_regions_read_back) {
        struct regions regions;
        struct store store;
        struct fdstore *fdstore;
        struct found *found = calloc(1, sizeof(*found));
        struct park *park;
        uint32_t bucket[REGIONS_MAX + 1];
        enum { N = 700, REMOVED_EVERY = 7 };

        ck_assert_ptr_nonnull(found);
        store_open(&store);
        ck_assert_int_eq(fdstore_new(&fdstore), 0);
        ck_assert_int_eq(park_new(fdstore, 41, fd_of, &regions, &park), 0);
        for (size_t i = 0; i <= REGIONS_MAX; i++)
                regions.fds[i] = -1;

        /* More than SCM_MAX_FD, and than PARK_APPENDS_MAX: several packings and full messages. */
        for (uint64_t h = 1; h <= N; h++) {
                regions.fds[h] = sealed_memfd(4096);
                ck_assert_int_eq(park_add(park, h, regions.fds[h], &bucket[h]), 0);
        }
        ck_assert_uint_eq(park_regions(park), N);
        ck_assert_uint_eq(park_buckets(park), 1);
        ck_assert_uint_eq(buckets_stored(&store), 1);
        ck_assert_str_eq(store.names[0], "park.42");
        ck_assert(!park_packing_due(park));

        /* Removed: out of the bucket once packed, and only then. */
        for (uint64_t h = REMOVED_EVERY; h <= N; h += REMOVED_EVERY) {
                park_remove(park, bucket[h], h);
                regions.fds[h] = safe_close(regions.fds[h]);
        }
        ck_assert(park_packing_due(park));
        ck_assert_int_eq(park_pack(park), 0);
        ck_assert(!park_packing_due(park));
        ck_assert_uint_eq(park_regions(park), N - N / REMOVED_EVERY);

        read_store(&store, found);
        ck_assert_uint_eq(found->n, N - N / REMOVED_EVERY);
        for (size_t i = 0; i < found->n; i++) {
                uint64_t h = found->handles[i];

                ck_assert(h >= 1 && h <= N && h % REMOVED_EVERY != 0);
                ck_assert_int_eq(found->inodes[i], inode_of(regions.fds[h]));
                /* Each once. */
                for (size_t j = 0; j < i; j++)
                        ck_assert_uint_ne(found->handles[j], h);
        }
        /* Reading took nothing out: a second reader finds the same. */
        read_store(&store, found);
        ck_assert_uint_eq(found->n, N - N / REMOVED_EVERY);

        /* Every region gone: the bucket is too, and systemd is told to close it. */
        for (uint64_t h = 1; h <= N; h++)
                if (regions.fds[h] >= 0)
                        park_remove(park, bucket[h], h);
        ck_assert_int_eq(park_pack(park), 0);
        ck_assert_uint_eq(park_buckets(park), 0);
        ck_assert_uint_eq(buckets_stored(&store), 0);
        ck_assert_uint_eq(store.removals, 1);

        park_free(park);
        fdstore_free(fdstore);
        regions_close(&regions);
        store_close(&store);
        free(found);
}
END_TEST

/* Shmem in /proc/meminfo, in bytes: what memfds hold, machine-wide. */
static uint64_t shmem_bytes(void) {
        char line[256];
        uint64_t kib = 0;
        FILE *f = fopen("/proc/meminfo", "re");

        ck_assert_ptr_nonnull(f);
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "Shmem: %" SCNu64 " kB", &kib) == 1)
                        break;
        fclose(f);
        return kib * 1024;
}

/*
 * A removed region's pages come back when its bucket is packed, not at the
 * next restart. Shmem is machine-wide: the test asks for most of the
 * region's size back, which no other test takes at the same time.
 */
START_TEST(test_packing_returns_memory) {
        enum { SIZE = 256 << 20 };
        struct regions regions;
        struct store store;
        struct fdstore *fdstore;
        struct park *park;
        uint32_t bucket;
        uint64_t before;
        void *m;

        store_open(&store);
        ck_assert_int_eq(fdstore_new(&fdstore), 0);
        ck_assert_int_eq(park_new(fdstore, 0, fd_of, &regions, &park), 0);
        for (size_t i = 0; i <= REGIONS_MAX; i++)
                regions.fds[i] = -1;
        regions.fds[1] = sealed_memfd(SIZE);
        m = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, regions.fds[1], 0);
        ck_assert_ptr_ne(m, MAP_FAILED);
        memset(m, 0x5a, SIZE);
        ck_assert_int_eq(munmap(m, SIZE), 0);
        ck_assert_int_eq(park_add(park, 1, regions.fds[1], &bucket), 0);

        /* The parked copy alone holds the pages now. */
        regions.fds[1] = safe_close(regions.fds[1]);
        before = shmem_bytes();
        park_remove(park, bucket, 1);
        ck_assert_int_eq(park_pack(park), 0);
        ck_assert_uint_ge(before - MIN(before, shmem_bytes()), SIZE / 4 * 3);

        park_free(park);
        fdstore_free(fdstore);
        store_close(&store);
}
END_TEST

/* A bucket holds what its send buffer has room for, and there are only so many buckets. */
START_TEST(test_full_buckets_refuse) {
        struct regions regions;
        struct store store;
        struct fdstore *fdstore;
        struct park *park;
        uint32_t bucket[REGIONS_MAX + 1];
        int fd;

        store_open(&store);
        ck_assert_int_eq(fdstore_new(&fdstore), 0);
        ck_assert_int_eq(park_new(fdstore, 0, fd_of, &regions, &park), 0);
        park_set_limits(park, ONE_MESSAGE_SEND_BUFFER, 2);
        fd = sealed_memfd(4096);
        for (size_t i = 0; i <= REGIONS_MAX; i++)
                regions.fds[i] = fd;

        for (uint64_t h = 1; h <= 2 * PARK_FDS_PER_MESSAGE; h++)
                ck_assert_int_eq(park_add(park, h, fd, &bucket[h]), 0);
        ck_assert_uint_eq(park_buckets(park), 2);
        ck_assert_int_eq(park_add(park, 9999, fd, &bucket[0]), -ENOSPC);
        ck_assert_uint_eq(park_regions(park), 2 * PARK_FDS_PER_MESSAGE);

        /* Room again once a region is out. */
        park_remove(park, bucket[3], 3);
        ck_assert_int_eq(park_add(park, 9999, fd, &bucket[0]), 0);
        ck_assert_uint_eq(bucket[0], bucket[3]);
        ck_assert_uint_eq(buckets_stored(&store), 2);

        park_free(park);
        fdstore_free(fdstore);
        safe_close(fd);
        store_close(&store);
}
END_TEST

/*
 * $LISTEN_FDNAMES, where the next broker finds the stored fds' names, has
 * room for 128 KiB: a bucket whose name would not fit is not made (E2BIG).
 * A send buffer that cannot hold one full message twice makes no bucket
 * either (ENOBUFS).
 */
START_TEST(test_no_room_for_a_bucket) {
        char name[256];
        struct regions regions;
        struct store store;
        struct fdstore *fdstore;
        struct park *park;
        uint32_t bucket;
        int fd = sealed_memfd(4096);

        store_open(&store);
        ck_assert_int_eq(fdstore_new(&fdstore), 0);
        ck_assert_int_eq(park_new(fdstore, 0, fd_of, &regions, &park), 0);
        for (size_t i = 0; i <= REGIONS_MAX; i++)
                regions.fds[i] = fd;

        park_set_limits(park, 4096, PARK_BUCKETS_MAX);
        ck_assert_int_eq(park_add(park, 1, fd, &bucket), -ENOBUFS);
        park_set_limits(park, ONE_MESSAGE_SEND_BUFFER, PARK_BUCKETS_MAX);

        /*
         * Names of fds passed at start that stay stored fill all but 3 bytes of
         * the room (fdstore.c: 128 KiB, less "LISTEN_FDNAMES=" and its NUL, less
         * 256 for the sockets' names; each name costs its length and a ':').
         */
        memset(name, 'n', sizeof(name) - 1);
        name[sizeof(name) - 1] = '\0';
        for (size_t i = 0; i < NAMES_ROOM / 256; i++)
                fdstore_count(fdstore, name);
        name[NAMES_ROOM % 256 - 4] = '\0';
        fdstore_count(fdstore, name);
        ck_assert_int_eq(park_add(park, 1, fd, &bucket), -E2BIG);
        ck_assert_uint_eq(park_buckets(park), 0);
        ck_assert_uint_eq(buckets_stored(&store), 0);

        park_free(park);
        fdstore_free(fdstore);
        safe_close(fd);
        store_close(&store);
}
END_TEST

/*
 * The kernel counts the fds in flight from a user against the sender's
 * RLIMIT_NOFILE (unless it has CAP_SYS_RESOURCE or CAP_SYS_ADMIN, which
 * root has: the child drops to uid 65534 then). park_add() says so, and
 * the park keeps working.
 */
START_TEST(test_in_flight_cap) {
        pid_t pid = fork();
        int status;

        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                struct rlimit rl = { .rlim_cur = 400, .rlim_max = 400 };
                struct regions regions;
                struct store store;
                struct fdstore *fdstore;
                struct park *park;
                uint32_t bucket[REGIONS_MAX + 1];
                int fd, r = 0;
                uint64_t h;

                if (geteuid() == 0 && (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 ||
                                       setresuid(65534, 65534, 65534) < 0))
                        _exit(10);
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                        _exit(11);
                store_open(&store);
                if (fdstore_new(&fdstore) < 0 || park_new(fdstore, 0, fd_of, &regions, &park) < 0)
                        _exit(12);
                fd = sealed_memfd(4096);
                for (size_t i = 0; i <= REGIONS_MAX; i++)
                        regions.fds[i] = fd;
                /* One memfd parked under many handles: in flight, each copy counts. */
                for (h = 1; h <= REGIONS_MAX && r == 0; h++)
                        r = park_add(park, h, fd, &bucket[h]);
                if (r != -ETOOMANYREFS)
                        _exit(13);
                /* Refused at the cap, give or take the message being packed, not before. */
                if (h < 400 - PARK_FDS_PER_MESSAGE)
                        _exit(14);
                /* Packing needs room for one message twice: out with more than that, and there is room again. */
                for (uint64_t k = 1; k < h - 1 && k <= PARK_FDS_PER_MESSAGE + 10; k++)
                        park_remove(park, bucket[k], k);
                if (park_pack(park) < 0 || park_add(park, REGIONS_MAX, fd, &bucket[0]) < 0)
                        _exit(15);
                _exit(0);
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
}
END_TEST

/* Sends one message: data, and fds; an empty one too, which a record may not be. */
static void send_raw(int fd, const void *data, size_t len, const int *fds, size_t n_fds) {
        if (len == 0)
                ck_assert_int_eq(send(fd, "", 0, 0), 0);
        else
                ck_assert_int_eq(mfb_record_send(fd, data, len, fds, n_fds, 0), 0);
}

static void send_parked(int fd, const uint64_t *handles, const int *fds, uint32_t n, uint32_t n_fds) {
        uint8_t data[sizeof(struct park_message_header) + 8 * sizeof(uint64_t)];
        struct park_message_header h = { .magic = PARK_MESSAGE_MAGIC, .count = n };

        memcpy(data, &h, sizeof(h));
        memcpy(data + sizeof(h), handles, n * sizeof(uint64_t));
        send_raw(fd, data, sizeof(h) + n * sizeof(uint64_t), fds, n_fds);
}

static size_t open_fds(void) {
        size_t n = 0;

        for (int fd = 0; fd < 1024; fd++)
                n += fcntl(fd, F_GETFD) >= 0;
        return n;
}

/* What was stored is read up to the first message this broker would not send, and nothing read leaks. */
START_TEST(test_corrupt_buckets) {
        struct found *found = calloc(1, sizeof(*found));
        uint64_t one = 1, two = 2, pair[2] = { 3, 4 };
        int sv[2], memfd = sealed_memfd(4096), fds[2] = { memfd, memfd }, stream[2];
        size_t before;

        ck_assert_ptr_nonnull(found);
        before = open_fds();

        /* Good, then garbage with an fd, then good again: the last is not read. */
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
        send_parked(sv[0], &one, &memfd, 1, 1);
        send_raw(sv[0], "garbage!", 8, &memfd, 1);
        send_parked(sv[0], &two, &memfd, 1, 1);
        ck_assert_uint_eq(park_read(sv[1], "park.1", on_found, found), 1);
        ck_assert_uint_eq(found->handles[0], 1);
        safe_close(sv[0]);
        safe_close(sv[1]);

        /* Two handles and one fd; an empty message. */
        found->n = 0;
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
        send_parked(sv[0], pair, fds, 2, 1);
        ck_assert_uint_eq(park_read(sv[1], "park.2", on_found, found), 0);
        safe_close(sv[0]);
        safe_close(sv[1]);
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
        send_raw(sv[0], "", 0, NULL, 0);
        send_parked(sv[0], &one, &memfd, 1, 1);
        ck_assert_uint_eq(park_read(sv[1], "park.3", on_found, found), 0);
        safe_close(sv[0]);
        safe_close(sv[1]);

        /* Not a datagram socket; not a socket. */
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, stream), 0);
        ck_assert_uint_eq(park_read(stream[1], "park.4", on_found, found), 0);
        safe_close(stream[0]);
        safe_close(stream[1]);
        ck_assert_uint_eq(park_read(memfd, "park.5", on_found, found), 0);

        ck_assert_uint_eq(found->n, 0);
        ck_assert_uint_eq(open_fds(), before);
        safe_close(memfd);
        free(found);
}
END_TEST

START_TEST(test_names) {
        ck_assert_uint_eq(park_name_number("park.1"), 1);
        ck_assert_uint_eq(park_name_number("park.18446744073709551615"), UINT64_MAX);
        ck_assert_uint_eq(park_name_number("park.18446744073709551616"), 0);
        ck_assert_uint_eq(park_name_number("park.0"), 0);
        ck_assert_uint_eq(park_name_number("park.01"), 0);
        ck_assert_uint_eq(park_name_number("park."), 0);
        ck_assert_uint_eq(park_name_number("park.1x"), 0);
        ck_assert_uint_eq(park_name_number("state"), 0);
        ck_assert_uint_eq(park_name_number("12"), 0);
}
END_TEST

Suite *park_suite(void) {
        Suite *s = suite_create("park");
        TCase *tc = tcase_create("park");

        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_parked_regions_read_back);
        tcase_add_test(tc, test_packing_returns_memory);
        tcase_add_test(tc, test_full_buckets_refuse);
        tcase_add_test(tc, test_no_room_for_a_bucket);
        tcase_add_test(tc, test_in_flight_cap);
        tcase_add_test(tc, test_corrupt_buckets);
        tcase_add_test(tc, test_names);
        suite_add_tcase(s, tc);
        return s;
}
