/* SPDX-License-Identifier: MIT */
/*
 * memfd-brokerctl: creates, fills, seals, waits for, notifies, watches,
 * shows, changes and removes the regions of memfd-brokerd from the command
 * line. An ordinary client of the library.
 *
 * Exit status: 0 on success, 1 when an operation fails (one line on stderr
 * naming the command, the region and the reason; a wait or watch that ran
 * out of time included), 2 for a usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "format.h"
#include "macro.h"
#include "memfd-broker.h"
#include "name.h"
#include "parse.h"

#define PROGRAM "memfd-brokerctl"
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define EXIT_USAGE 2

/* The most one read() moves into the region: larger reads are no faster, and an error or a signal wastes less. */
#define COPY_CHUNK ((size_t) 1 << 20)

/* The options a command may take, as bits of struct command.options. */
enum {
        OPTION_JSON         = 1U << 0,
        OPTION_HANDLE       = 1U << 1,
        OPTION_MODE         = 1U << 2,
        OPTION_HUGETLB      = 1U << 3,
        OPTION_RESERVE      = 1U << 4,
        OPTION_FUTURE_WRITE = 1U << 5,
        OPTION_TIMEOUT      = 1U << 6,
        OPTION_COUNT        = 1U << 7,
        OPTION_HOLD         = 1U << 8,
        OPTION_NOTIFICATIONS = 1U << 9,
        OPTION_AFTER        = 1U << 10,
        OPTION_TRANSIENT    = 1U << 11,
        OPTION_HUMAN        = 1U << 12,
        OPTION_OWNER        = 1U << 13,
        OPTION_NAME         = 1U << 14,
};

static const struct {
        unsigned bit;
        const char *name;
        int has_arg;
} command_options[] = {
        { OPTION_JSON,         "json",         no_argument },
        { OPTION_HANDLE,       "handle",       required_argument },
        { OPTION_MODE,         "mode",         required_argument },
        { OPTION_HUGETLB,      "hugetlb",      no_argument },
        { OPTION_RESERVE,      "reserve",      no_argument },
        { OPTION_FUTURE_WRITE, "future-write", no_argument },
        { OPTION_TIMEOUT,      "timeout",      required_argument },
        { OPTION_COUNT,        "count",        required_argument },
        { OPTION_HOLD,         "hold",         no_argument },
        /* watch's --count: how many notifications, not how many regions, so a field of its own. */
        { OPTION_NOTIFICATIONS, "count",       required_argument },
        { OPTION_AFTER,        "after",        required_argument },
        { OPTION_TRANSIENT,    "transient",    no_argument },
        { OPTION_HUMAN,        "human",        no_argument },
        { OPTION_OWNER,        "owner",        required_argument },
        { OPTION_NAME,         "name",         required_argument },
};

struct options {
        const char *socket_path;        /* NULL: the library's default */
        bool json;
        uint64_t handle;                /* --handle, standing for the NAME word; 0 when not given */
        mode_t mode;                    /* --mode; 0 for the broker's default */
        unsigned create_flags;          /* MFB_CREATE_* from --hugetlb, --reserve and --transient */
        bool future_write;
        int64_t timeout_ms;             /* --timeout; -1 without it, for no limit */
        const char *timeout;            /* --timeout as given, to say it back in the error */
        uint64_t count;                 /* --count, standing for the NAME word; 0 when not given */
        bool hold;
        uint64_t notifications;         /* watch --count; 0 for no end */
        bool after_given;
        uint64_t after;                 /* watch --after: the sequence to start from */
        bool human;                     /* list --human: sizes in binary units */
        bool owner_given;
        uid_t owner;                    /* list --owner */
        const char *name_glob;          /* list --name: a pattern of fnmatch(3); NULL for any */
};

#define NO_NAME (-1)

struct command {
        const char *name;
        size_t args_min, args_max;      /* words, NAME included */
        int name_arg;                   /* which word is the region's NAME, or NO_NAME */
        unsigned options;               /* OPTION_* bits it takes */
        int (*run)(const struct options *o, char **args, size_t n_args);
};

static int usage_error(const char *format, ...) _printf_(1, 2);
static int usage_error(const char *format, ...) {
        va_list ap;

        fputs(PROGRAM ": ", stderr);
        va_start(ap, format);
        vfprintf(stderr, format, ap);
        va_end(ap);
        fputs("\nTry '" PROGRAM " --help' for more information.\n", stderr);
        return EXIT_USAGE;
}

/* The one line of a failed operation: "memfd-brokerctl: seal demo: region is sealed". */
static int fail(const char *command, const char *region, const char *format, ...) _printf_(3, 4);
static int fail(const char *command, const char *region, const char *format, ...) {
        va_list ap;

        fprintf(stderr, PROGRAM ": %s%s%s: ", command, region ? " " : "", region ?: "");
        va_start(ap, format);
        vfprintf(stderr, format, ap);
        va_end(ap);
        fputc('\n', stderr);
        return EXIT_FAILURE;
}

/* A library call failed: the broker's reason if it gave one, else the errno's text. */
static int fail_errno(const mfb_client *c, int r, const char *command, const char *region) {
        const char *message = c ? mfb_client_error_message(c) : "";

        return fail(command, region, "%s", *message ? message : strerror(-r));
}

/* Why mfb_client_connect() failed: the two ways a broker turns a connection away mean more than their errno. */
static const char *connect_error(int r) {
        switch (r) {
        case -ENOSPC:
                return "the broker is out of file descriptors";
        case -EDQUOT:
                return "your user has as many connections as the broker allows it";
        default:
                return strerror(-r);
        }
}

/* Connects, or reports why not for the command on region (NULL for none). */
static int client_open(const struct options *o, const char *command, const char *region, mfb_client **ret) {
        char path[sizeof(((struct sockaddr_un *) NULL)->sun_path)];
        int r;

        r = mfb_client_connect(o->socket_path, ret);
        if (r >= 0)
                return 0;
        if (o->socket_path)
                return fail(command, region, "cannot connect to %s: %s", o->socket_path, connect_error(r));
        if (mfb_default_socket_path(path, sizeof(path)) < 0)
                return fail(command, region, "cannot connect to the broker: %s", connect_error(r));
        return fail(command, region, "cannot connect to %s: %s", path, connect_error(r));
}

/*
 * Waits for the broker to answer everything first, the releases of freed
 * regions included, which the library does not wait for: a script's next
 * command sees all this one did.
 */
static void client_freep(mfb_client **c) {
        if (*c)
                (void) mfb_client_roundtrip(*c);
        mfb_client_free(*c);
}

static void region_freep(mfb_region **r) {
        mfb_region_free(*r);
}

/* Octal permission bits, at most 0777, as chmod(1) takes them in numbers. */
static int parse_mode(const char *s, mode_t *ret) {
        unsigned long v;
        char *end;

        if (*s < '0' || *s > '7')
                return -EINVAL;
        errno = 0;
        v = strtoul(s, &end, 8);
        if (errno != 0 || *end != '\0' || v > 0777)
                return -EINVAL;
        *ret = (mode_t) v;
        return 0;
}

/* A decimal number, digits only, below limit. */
static int parse_number(const char *s, uint64_t limit, uint64_t *ret) {
        uint64_t v;
        char *end;

        if (parse_decimal(s, &end, &v) < 0 || *end != '\0' || v >= limit)
                return -EINVAL;
        *ret = v;
        return 0;
}

/*
 * Seconds, with a fraction if wanted ("2", "0.25", ".5"), as whole
 * milliseconds for the library, rounded up so that a wait never ends
 * before the time asked for. Exact decimal arithmetic: no locale, no
 * binary fractions.
 */
static int parse_timeout(const char *s, int64_t *ret_ms) {
        const char *p = s;
        uint64_t seconds = 0, ms;
        bool digits = false;

        for (; *p >= '0' && *p <= '9'; p++, digits = true) {
                seconds = seconds * 10 + (uint64_t) (*p - '0');
                /* Room left for the milliseconds and the rounding, in the library's int64_t. */
                if (seconds > INT64_MAX / 1000 - 1)
                        return -ERANGE;
        }
        ms = seconds * 1000;
        if (*p == '.') {
                bool rest = false;

                /* The first three digits are milliseconds; any other non-zero one rounds up. */
                for (uint64_t scale = 100; *++p >= '0' && *p <= '9'; scale /= 10, digits = true)
                        if (scale > 0)
                                ms += scale * (uint64_t) (*p - '0');
                        else if (*p != '0')
                                rest = true;
                ms += rest;
        }
        if (!digits || *p != '\0')
                return -EINVAL;
        *ret_ms = (int64_t) ms;
        return 0;
}

/*
 * A user or group as chown(1) reads it: a name the system knows, else a
 * number. (uid_t) -1 is not an id but "unchanged", so it is refused.
 */
static int parse_id(const char *s, bool group, uint32_t *ret) {
        uint64_t v;

        if (!group) {
                const struct passwd *pw = getpwnam(s);

                if (pw) {
                        *ret = (uint32_t) pw->pw_uid;
                        return 0;
                }
        } else {
                const struct group *gr = getgrnam(s);

                if (gr) {
                        *ret = (uint32_t) gr->gr_gid;
                        return 0;
                }
        }
        if (parse_number(s, UINT32_MAX, &v) < 0)
                return -EINVAL;
        *ret = (uint32_t) v;
        return 0;
}

/* SIZE of create, or a usage error. Returns -1 to go on. */
static int parse_create_size(const char *arg, uint64_t *ret) {
        int k;

        k = parse_size(arg, ret);
        if (k == -ERANGE)
                return usage_error("create: size '%s' is too large", arg);
        if (k < 0)
                return usage_error("create: invalid size '%s': bytes, or a number with K, M, G or T", arg);
        return -1;
}

static int flush_stdout(void);

/* Reads standard input to its end, for --hold. Returns 0 or read()'s -errno. */
static int read_to_end(void) {
        uint8_t buf[4096];

        for (;;) {
                ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                if (n == 0)
                        return 0;
        }
}

/*
 * --hold: the handles are out, standard input is read to its end, and only
 * then does the caller let go of what it created. Returns an exit status.
 */
static int hold(const char *name) {
        int k = flush_stdout();

        if (k == EXIT_SUCCESS) {
                int e = read_to_end();

                if (e < 0)
                        k = fail("create", name, "standard input: %s", strerror(-e));
        }
        return k;
}

/* create --count N SIZE: N anonymous regions in one batch. */
static int cmd_create_batch(const struct options *o, const char *size_arg) {
        _cleanup_(client_freep) mfb_client *c = NULL;
        _cleanup_(freep) mfb_region **regions = NULL;
        uint64_t size;
        int k;

        k = parse_create_size(size_arg, &size);
        if (k >= 0)
                return k;

        k = client_open(o, "create", NULL, &c);
        if (k != 0)
                return k;
        regions = calloc(o->count, sizeof(*regions));
        if (!regions)
                return fail("create", NULL, "%s", strerror(ENOMEM));
        k = mfb_region_create_batch(c, size, o->count, regions);
        if (k < 0)
                return fail_errno(c, k, "create", NULL);

        for (size_t i = 0; i < o->count; i++)
                printf("%" PRIu64 "\n", mfb_region_handle(regions[i]));
        /* Anonymous regions live only while held: long enough for whoever reads the handles, if asked. */
        k = o->hold ? hold(NULL) : EXIT_SUCCESS;
        for (size_t i = 0; i < o->count; i++)
                mfb_region_free(regions[i]);
        return k;
}

static int cmd_create(const struct options *o, char **args, size_t n_args) {
        _cleanup_(client_freep) mfb_client *c = NULL;
        _cleanup_(region_freep) mfb_region *r = NULL;
        const char *name;
        uint64_t size;
        int k;

        if (o->count != 0)
                return cmd_create_batch(o, args[0]);

        name = args[0];
        k = parse_create_size(args[1], &size);
        if (k >= 0)
                return k;

        k = client_open(o, "create", name, &c);
        if (k != 0)
                return k;
        k = mfb_region_create_with(c, name, size, o->mode, o->create_flags, &r);
        /* Without the broker's word, these come from allocating the pages here. */
        if ((k == -ENOSPC || k == -ENOMEM) && (o->create_flags & MFB_CREATE_RESERVE) &&
            !*mfb_client_error_message(c))
                return fail("create", name, "cannot reserve its %" PRIu64 " bytes: %s", size, strerror(-k));
        if (k == -EOPNOTSUPP && (o->create_flags & MFB_CREATE_TRANSIENT) && !*mfb_client_error_message(c))
                return fail("create", name, "the broker does not support transient regions");
        if (k < 0)
                return fail_errno(c, k, "create", name);

        printf("%" PRIu64 "\n", mfb_region_handle(r));
        /* A plain name keeps the region alive after this connection closes; a transient one, only --hold. */
        return o->hold ? hold(name) : EXIT_SUCCESS;
}

/*
 * How many bytes a regular file still holds from its current offset, so
 * that too much data is refused before anything is written; -1 when that
 * cannot be known in advance (a pipe, a terminal).
 */
static int64_t input_remaining(int fd) {
        struct stat st;
        off_t offset;

        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return -1;
        offset = lseek(fd, 0, SEEK_CUR);
        if (offset < 0 || offset > st.st_size)
                return -1;
        return st.st_size - offset;
}

/*
 * Reads fd to its end into dst (size bytes). Returns 0, -EFBIG when more
 * data follows the first size bytes, or read()'s -errno.
 */
static int read_into(int fd, uint8_t *dst, size_t size) {
        size_t done = 0;
        uint8_t extra;
        ssize_t n;

        for (;;) {
                /* A full region still needs one read to tell whether the data ends exactly there. */
                if (done < size)
                        n = read(fd, dst + done, size - done < COPY_CHUNK ? size - done : COPY_CHUNK);
                else
                        n = read(fd, &extra, 1);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                if (n == 0)
                        return 0;
                if (done == size)
                        return -EFBIG;
                done += (size_t) n;
        }
}

static int cmd_write(const struct options *o, char **args, size_t n_args) {
        _cleanup_(client_freep) mfb_client *c = NULL;
        _cleanup_(region_freep) mfb_region *r = NULL;
        _cleanup_(closep) int file_fd = -1;
        const char *name = args[0];
        const char *file = n_args > 1 && strcmp(args[1], "-") != 0 ? args[1] : NULL;
        int fd = STDIN_FILENO, k;
        int64_t remaining;
        uint64_t size;
        void *addr;

        if (file) {
                file_fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (file_fd < 0)
                        return fail("write", name, "%s: %s", file, strerror(errno));
                fd = file_fd;
        }

        k = client_open(o, "write", name, &c);
        if (k != 0)
                return k;
        k = mfb_region_open(c, name, O_RDWR, &r);
        if (k < 0)
                return fail_errno(c, k, "write", name);
        size = mfb_region_size(r);

        remaining = input_remaining(fd);
        if (remaining >= 0 && (uint64_t) remaining > size)
                return fail("write", name, "data is larger than the region (%" PRIu64 " bytes)", size);

        k = mfb_region_map_writable(r, &addr);
        if (k == -EPERM)
                /* Opened read-write, so only a seal added since then stands in the way. */
                return fail("write", name, "region is sealed");
        if (k < 0)
                return fail_errno(c, k, "write", name);

        k = read_into(fd, addr, (size_t) size);
        if (k == -EFBIG)
                return fail("write", name, "data is larger than the region (%" PRIu64 " bytes)", size);
        if (k < 0)
                return fail("write", name, "%s: %s", file ?: "standard input", strerror(-k));
        return EXIT_SUCCESS;
}

/* Whether the region already has the seal asked for (F_SEAL_WRITE covers the future-write one too). */
static bool already_sealed(mfb_client *c, const char *name, bool future_write) {
        uint32_t wanted = future_write ? F_SEAL_WRITE | F_SEAL_FUTURE_WRITE : F_SEAL_WRITE;
        mfb_region_stat st;

        return mfb_stat(c, name, &st) == 0 && (st.seals & wanted) != 0;
}

static int cmd_seal(const struct options *o, char **args, size_t n_args) {
        _cleanup_(client_freep) mfb_client *c = NULL;
        _cleanup_(region_freep) mfb_region *r = NULL;
        const char *name = args[0];
        int k;

        k = client_open(o, "seal", name, &c);
        if (k != 0)
                return k;
        k = mfb_region_open(c, name, O_RDWR, &r);
        if (k >= 0)
                k = o->future_write ? mfb_region_seal_future_write(r) : mfb_region_seal(r);
        else if (already_sealed(c, name, o->future_write))
                /* Opening read-write is refused once sealed; sealing again is not an error. */
                return EXIT_SUCCESS;
        if (k < 0)
                return fail_errno(c, k, "seal", name);
        return EXIT_SUCCESS;
}

/* Writes all of buf to fd. Returns 0 or -errno. */
static int write_all(int fd, const uint8_t *buf, size_t size) {
        while (size > 0) {
                ssize_t n = write(fd, buf, size);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                buf += n;
                size -= (size_t) n;
        }
        return 0;
}

static int cmd_cat(const struct options *o, char **args, size_t n_args) {
        _cleanup_(client_freep) mfb_client *c = NULL;
        _cleanup_(region_freep) mfb_region *r = NULL;
        const char *name = args[0];
        void *addr;
        int k;

        k = client_open(o, "cat", name, &c);
        if (k != 0)
                return k;
        k = mfb_region_open(c, name, O_RDONLY, &r);
        if (k >= 0)
                k = mfb_region_map(r, &addr);
        if (k < 0)
                return fail_errno(c, k, "cat", name);

        k = write_all(STDOUT_FILENO, addr, (size_t) mfb_region_size(r));
        /* A reader that stopped early (| head) got what it wanted. */
        if (k < 0 && k != -EPIPE)
                return fail("cat", name, "standard output: %s", strerror(-k));
        return EXIT_SUCCESS;
}

/* What error lines call the region: its NAME, or "handle N" for --handle. */
#define REGION_LABEL_MAX (MFB_NAME_MAX + 1)

static const char *region_label(const struct options *o, char **args, char buf[static REGION_LABEL_MAX]) {
        if (o->handle == 0)
                return args[0];
        snprintf(buf, REGION_LABEL_MAX, "handle %" PRIu64, o->handle);
        return buf;
}

/*
 * The allocated bytes of the region with handle, MFB_UNKNOWN when a broker
 * older than the request cannot tell, or the region went away since its
 * stat. Returns 0 or the library's -errno.
 */
static int allocated_get(mfb_client *c, uint64_t handle, uint64_t *ret) {
        int k;

        k = mfb_allocated_handle(c, handle, ret);
        if (k == -EOPNOTSUPP || k == -ENOENT) {
                *ret = MFB_UNKNOWN;
                return 0;
        }
        return k;
}

static int cmd_stat(const struct options *o, char **args, size_t n_args) {
        _cleanup_(client_freep) mfb_client *c = NULL;
        char buf[REGION_LABEL_MAX];
        const char *label = region_label(o, args, buf);
        mfb_region_stat st;
        uint64_t allocated;
        int k;

        k = client_open(o, "stat", label, &c);
        if (k != 0)
                return k;
        k = o->handle != 0 ? mfb_stat_handle(c, o->handle, &st) : mfb_stat(c, args[0], &st);
        if (k < 0)
                return fail_errno(c, k, "stat", label);
        k = allocated_get(c, st.handle, &allocated);
        if (k < 0)
                return fail_errno(c, k, "stat", label);

        if (o->json)
                format_stat_json(stdout, &st, allocated);
        else
                format_stat(stdout, &st, allocated);
        return EXIT_SUCCESS;
}

/* Whether st passes list's filters: --owner, and --name, which only named regions can match. */
static bool list_wanted(const struct options *o, const mfb_region_stat *st) {
        if (o->owner_given && st->uid != o->owner)
                return false;
        if (o->name_glob && (!*st->name || fnmatch(o->name_glob, st->name, 0) != 0))
                return false;
        return true;
}

/*
 * Keeps the entries that pass the filters, at the front, with the
 * allocated bytes of each from allocations (both in handle order; one a
 * region created between the two listings lacks is MFB_UNKNOWN). Stores
 * how many are kept. Returns 0 or -ENOMEM.
 */
static int list_join(const struct options *o, mfb_region_stat *entries, size_t *n,
                     const mfb_allocation *allocations, size_t n_allocations, uint64_t **ret_allocated) {
        uint64_t *allocated = calloc(*n ?: 1, sizeof(*allocated));
        size_t kept = 0, a = 0;

        if (!allocated)
                return -ENOMEM;
        for (size_t i = 0; i < *n; i++) {
                while (a < n_allocations && allocations[a].handle < entries[i].handle)
                        a++;
                if (!list_wanted(o, &entries[i]))
                        continue;
                allocated[kept] = a < n_allocations && allocations[a].handle == entries[i].handle ?
                                  allocations[a].allocated : MFB_UNKNOWN;
                entries[kept++] = entries[i];
        }
        *n = kept;
        *ret_allocated = allocated;
        return 0;
}

static int cmd_list(const struct options *o, char **args, size_t n_args) {
        _cleanup_(client_freep) mfb_client *c = NULL;
        _cleanup_(freep) mfb_region_stat *entries = NULL;
        _cleanup_(freep) mfb_allocation *allocations = NULL;
        _cleanup_(freep) uint64_t *allocated = NULL;
        size_t n, n_allocations = 0;
        int k;

        if (o->json && o->human)
                return usage_error("list: --human is for the table; --json gives bytes");

        k = client_open(o, "list", NULL, &c);
        if (k != 0)
                return k;
        k = mfb_list(c, &entries, &n);
        if (k < 0)
                return fail_errno(c, k, "list", NULL);
        /* A broker older than ALLOCATED still lists: the column is unknown then. */
        k = mfb_list_allocated(c, &allocations, &n_allocations);
        if (k < 0 && k != -EOPNOTSUPP)
                return fail_errno(c, k, "list", NULL);
        k = list_join(o, entries, &n, allocations, n_allocations, &allocated);
        if (k < 0)
                return fail("list", NULL, "%s", strerror(-k));

        if (o->json)
                format_list_json(stdout, entries, allocated, n);
        else
                format_list(stdout, entries, allocated, n, o->human);
        return EXIT_SUCCESS;
}

static int cmd_usage(const struct options *o, char **args, size_t n_args) {
        _cleanup_(client_freep) mfb_client *c = NULL;
        _cleanup_(freep) uid_t *uids = NULL;
        _cleanup_(freep) mfb_limit *limits = NULL;
        size_t n_rows, n;
        int k;

        k = client_open(o, "usage", NULL, &c);
        if (k != 0)
                return k;
        k = mfb_usage(c, MFB_LIMIT_COUNT, &uids, &limits, &n_rows);
        /* Its own words ("unknown opcode 0x10") would not say what the user can do. */
        if (k == -EOPNOTSUPP)
                return fail("usage", NULL, "the broker is older than this tool and does not report usage");
        if (k < 0)
                return fail_errno(c, k, "usage", NULL);

        /* As limits: fewer resources from the broker leave the rest unknown; more, this program cannot name. */
        n = (size_t) k < MFB_LIMIT_COUNT ? (size_t) k : MFB_LIMIT_COUNT;
        if (o->json)
                format_usage_json(stdout, uids, limits, n_rows, MFB_LIMIT_COUNT, n);
        else
                format_usage(stdout, uids, limits, n_rows, MFB_LIMIT_COUNT, n);
        return EXIT_SUCCESS;
}

static int cmd_limits(const struct options *o, char **args, size_t n_args) {
        _cleanup_(client_freep) mfb_client *c = NULL;
        mfb_limit limits[MFB_LIMIT_COUNT];
        size_t n;
        uid_t uid;
        int k;

        k = client_open(o, "limits", NULL, &c);
        if (k != 0)
                return k;
        k = mfb_limits(c, MFB_LIMIT_COUNT, limits, &uid);
        if (k < 0)
                return fail_errno(c, k, "limits", NULL);

        /* Fewer resources from the broker leave the rest unfilled; more, this program cannot name. */
        n = (size_t) k < MFB_LIMIT_COUNT ? (size_t) k : MFB_LIMIT_COUNT;
        if (o->json)
                format_limits_json(stdout, uid, limits, n);
        else
                format_limits(stdout, limits, n);
        return EXIT_SUCCESS;
}

static int cmd_rm(const struct options *o, char **args, size_t n_args) {
        _cleanup_(client_freep) mfb_client *c = NULL;
        char buf[REGION_LABEL_MAX];
        const char *label = region_label(o, args, buf);
        int k;

        k = client_open(o, "rm", label, &c);
        if (k != 0)
                return k;
        k = o->handle != 0 ? mfb_remove_handle(c, o->handle) : mfb_remove(c, args[0]);
        if (k < 0)
                return fail_errno(c, k, "rm", label);
        return EXIT_SUCCESS;
}

static int cmd_chmod(const struct options *o, char **args, size_t n_args) {
        _cleanup_(client_freep) mfb_client *c = NULL;
        const char *name = args[1];
        mode_t mode;
        int k;

        if (parse_mode(args[0], &mode) < 0)
                return usage_error("chmod: invalid mode '%s': octal permission bits, 0 to 0777", args[0]);

        k = client_open(o, "chmod", name, &c);
        if (k != 0)
                return k;
        k = mfb_chmod(c, name, mode);
        if (k < 0)
                return fail_errno(c, k, "chmod", name);
        return EXIT_SUCCESS;
}

/*
 * USER, USER:GROUP, :GROUP (the group only) or USER: (USER and its login
 * group), as chown(1) reads them. Splits arg at its colon.
 */
static int parse_owner(char *arg, uid_t *ret_uid, gid_t *ret_gid) {
        char *group = strchr(arg, ':');
        const struct passwd *pw;
        uint32_t uid = (uint32_t) -1, gid = (uint32_t) -1;

        if (group)
                *group++ = '\0';
        if (*arg && parse_id(arg, false, &uid) < 0)
                return usage_error("chown: unknown user '%s'", arg);
        if (group && *group && parse_id(group, true, &gid) < 0)
                return usage_error("chown: unknown group '%s'", group);
        if (group && !*group) {
                pw = *arg ? getpwuid((uid_t) uid) : NULL;
                if (!pw)
                        return usage_error("chown: '%s:' names no user with a login group", arg);
                gid = (uint32_t) pw->pw_gid;
        }
        if (uid == (uint32_t) -1 && gid == (uint32_t) -1)
                return usage_error("chown: missing user and group");
        *ret_uid = (uid_t) uid;
        *ret_gid = (gid_t) gid;
        return -1;
}

static int cmd_chown(const struct options *o, char **args, size_t n_args) {
        _cleanup_(client_freep) mfb_client *c = NULL;
        const char *name = args[1];
        uid_t uid = (uid_t) -1;
        gid_t gid = (gid_t) -1;
        int k;

        k = parse_owner(args[0], &uid, &gid);
        if (k >= 0)
                return k;

        k = client_open(o, "chown", name, &c);
        if (k != 0)
                return k;
        k = mfb_chown(c, name, uid, gid);
        if (k < 0)
                return fail_errno(c, k, "chown", name);
        return EXIT_SUCCESS;
}

static int cmd_wait(const struct options *o, char **args, size_t n_args) {
        _cleanup_(client_freep) mfb_client *c = NULL;
        _cleanup_(region_freep) mfb_region *r = NULL;
        const char *name = args[0];
        int k;

        k = client_open(o, "wait", name, &c);
        if (k != 0)
                return k;
        k = mfb_region_wait(c, name, o->timeout_ms, &r);
        /* In the unit the user gave, rather than the broker's milliseconds. */
        if (k == -ETIMEDOUT && o->timeout)
                return fail("wait", name, "no sealed region named %s appeared within %s s", name, o->timeout);
        if (k < 0)
                return fail_errno(c, k, "wait", name);

        printf("%" PRIu64 "\n", mfb_region_handle(r));
        return EXIT_SUCCESS;
}

static int cmd_notify(const struct options *o, char **args, size_t n_args) {
        _cleanup_(client_freep) mfb_client *c = NULL;
        _cleanup_(region_freep) mfb_region *r = NULL;
        const char *name = args[0];
        int k;

        k = client_open(o, "notify", name, &c);
        if (k != 0)
                return k;
        /* Only writers may notify: the broker hands read-only holders a control page they cannot advance. */
        k = mfb_region_open(c, name, O_RDWR, &r);
        if (k >= 0)
                k = mfb_region_notify(r);
        if (k == -EOPNOTSUPP && !*mfb_client_error_message(c))
                return fail("notify", name, "the broker does not support notifications");
        if (k < 0)
                return fail_errno(c, k, "notify", name);
        /* client_freep()'s round trip: the broker has signalled the watchers before the command ends. */
        return EXIT_SUCCESS;
}

/* Prints one sequence number and pushes it out at once, for whoever follows the output. -1 to go on. */
static int print_sequence(uint64_t seq) {
        printf("%" PRIu64 "\n", seq);
        errno = 0;
        if (fflush(stdout) == 0 && !ferror(stdout))
                return -1;
        /* Whoever read our output stopped reading: the watch is over, and not in failure. */
        if (errno == EPIPE)
                return EXIT_SUCCESS;
        fprintf(stderr, PROGRAM ": standard output: %s\n", strerror(errno ?: EIO));
        return EXIT_FAILURE;
}

static int cmd_watch(const struct options *o, char **args, size_t n_args) {
        _cleanup_(client_freep) mfb_client *c = NULL;
        _cleanup_(region_freep) mfb_region *r = NULL;
        const char *name = args[0];
        uint64_t start, seq;
        int k;

        k = client_open(o, "watch", name, &c);
        if (k != 0)
                return k;
        /* Watching needs only read permission: every holder may wait. */
        k = mfb_region_open(c, name, O_RDONLY, &r);
        if (k < 0)
                return fail_errno(c, k, "watch", name);

        /* The sequence now, without asking for the fd of event loops: the watch sleeps in a futex wait instead. */
        if (o->after_given)
                seq = o->after;
        else {
                k = mfb_region_notify_read(r, &seq);
                if (k < 0)
                        goto failed;
        }
        start = seq;
        /* Notifications counted by the sequence: several between two looks print as one line, the last. */
        while (o->notifications == 0 || seq - start < o->notifications) {
                k = mfb_region_wait_notify(r, &seq, o->timeout_ms);
                if (k == -ETIMEDOUT)
                        return fail("watch", name, "no notification within %s s", o->timeout);
                if (k < 0)
                        goto failed;
                k = print_sequence(seq);
                if (k >= 0)
                        return k;
        }
        return EXIT_SUCCESS;

failed:
        if (k == -EOPNOTSUPP && !*mfb_client_error_message(c))
                return fail("watch", name, "the broker does not support notifications");
        return fail_errno(c, k, "watch", name);
}

static const struct command commands[] = {
        { "create", 2, 2, 0,       OPTION_MODE | OPTION_HUGETLB | OPTION_RESERVE | OPTION_TRANSIENT | OPTION_COUNT |
                                   OPTION_HOLD,                                   cmd_create },
        { "write",  1, 2, 0,       0,                                             cmd_write },
        { "seal",   1, 1, 0,       OPTION_FUTURE_WRITE,                           cmd_seal },
        { "wait",   1, 1, 0,       OPTION_TIMEOUT,                                cmd_wait },
        { "notify", 1, 1, 0,       0,                                             cmd_notify },
        { "watch",  1, 1, 0,       OPTION_NOTIFICATIONS | OPTION_AFTER | OPTION_TIMEOUT, cmd_watch },
        { "cat",    1, 1, 0,       0,                                             cmd_cat },
        { "stat",   1, 1, 0,       OPTION_JSON | OPTION_HANDLE,                   cmd_stat },
        { "list",   0, 0, NO_NAME, OPTION_JSON | OPTION_HUMAN | OPTION_OWNER | OPTION_NAME, cmd_list },
        { "limits", 0, 0, NO_NAME, OPTION_JSON,                                   cmd_limits },
        { "usage",  0, 0, NO_NAME, OPTION_JSON,                                   cmd_usage },
        { "chmod",  2, 2, 1,       0,                                             cmd_chmod },
        { "chown",  2, 2, 1,       0,                                             cmd_chown },
        { "rm",     1, 1, 0,       OPTION_HANDLE,                                 cmd_rm },
};

static void help(void) {
        printf("Usage: " PROGRAM " [--socket PATH] COMMAND [ARGUMENTS]\n"
               "\n"
               "Creates, fills, seals, waits for, notifies, watches, shows, changes and removes\n"
               "the shared-memory regions of memfd-brokerd.\n"
               "\n"
               "Commands:\n"
               "  create NAME SIZE [--mode MODE] [--hugetlb] [--reserve]\n"
               "                       create a named region of SIZE bytes (suffixes K, M, G, T:\n"
               "                       powers of 1024) and print its handle; it stays until rm.\n"
               "                       --mode: octal permission bits (default 0600); --hugetlb:\n"
               "                       back it with huge pages; --reserve: allocate its memory now\n"
               "  create NAME SIZE --transient --hold [--mode MODE] [--hugetlb] [--reserve]\n"
               "                       as above, but the name lasts only while someone holds the\n"
               "                       region: this command until its standard input ends, and\n"
               "                       whoever opened it meanwhile\n"
               "  create --count N SIZE [--hold]\n"
               "                       create N anonymous regions of SIZE bytes at once and print\n"
               "                       their handles, one a line. They live while held: as long as\n"
               "                       the command runs, which --hold stretches until its standard\n"
               "                       input ends, so that others can open them by handle\n"
               "  write NAME [FILE]    copy FILE (or standard input, also for \"-\") into the region\n"
               "                       from its start; fails if the data does not fit\n"
               "  seal NAME [--future-write]\n"
               "                       make the region's contents immutable, for everyone; with\n"
               "                       --future-write, only for what is opened or mapped from now\n"
               "  wait NAME [--timeout SECONDS]\n"
               "                       wait until a region NAME exists and is sealed, then print\n"
               "                       its handle; without --timeout, wait as long as it takes\n"
               "  notify NAME          notify the region's holders: advance its sequence and wake\n"
               "                       whoever waits (needs write permission)\n"
               "  watch NAME [--count N] [--timeout SECONDS] [--after SEQ]\n"
               "                       print the region's sequence after each notification, one\n"
               "                       a line; several close together may show as one line. Ends\n"
               "                       after N notifications, or fails when SECONDS pass without\n"
               "                       one; --after: count from SEQ, not from the sequence now\n"
               "  cat NAME             write the region's contents to standard output\n"
               "  stat NAME|--handle N [--json]\n"
               "                       show everything the broker knows about the region\n"
               "  list [--json] [--human] [--owner USER] [--name GLOB]\n"
               "                       list the regions you may read or own, like ipcs -m, with the\n"
               "                       memory each really uses (ALLOC); --human: sizes in binary\n"
               "                       units; only those USER (a name or uid) owns, or whose name\n"
               "                       matches GLOB (fnmatch(3): *, ?, [...])\n"
               "  limits [--json]      show, per resource, the broker's limit, the limit per user,\n"
               "                       what your user holds and what it may still take\n"
               "  usage [--json]       show what each user holds against its limits, like ipcs -u,\n"
               "                       and the broker's totals; only your own user's line unless\n"
               "                       you are root or the broker's user\n"
               "  chmod MODE NAME      change the region's permission bits (octal)\n"
               "  chown USER[:GROUP] NAME\n"
               "                       change the region's owner, or only its group with :GROUP;\n"
               "                       names or numbers. Only root may give a region to another\n"
               "                       user; an owner may set only a group it is in\n"
               "  rm NAME|--handle N   remove the name; the region goes with its last holder\n"
               "\n"
               "Options:\n"
               "  --socket PATH        the broker's socket (default: $" MFB_SOCKET_ENV ", else\n"
               "                       $XDG_RUNTIME_DIR/memfd-broker.sock, else /run/memfd-broker.sock)\n"
               "  -h, --help           show this help and exit\n"
               "  -V, --version        show the version and exit\n"
               "\n"
               "Names are 1 to %d bytes of printable ASCII without spaces. Exit status is 0 on\n"
               "success, 1 when an operation fails (a wait or watch that timed out included),\n"
               "2 for a usage error.\n",
               MFB_NAME_MAX);
}

/* Global options, before the command. Returns -1 to go on, or an exit status. */
static int parse_global_options(int argc, char *argv[], struct options *o) {
        enum { ARG_SOCKET = 0x100 };
        static const struct option options[] = {
                { "socket",  required_argument, NULL, ARG_SOCKET },
                { "help",    no_argument,       NULL, 'h' },
                { "version", no_argument,       NULL, 'V' },
                {}
        };
        int opt;

        /* "+": the command's own arguments are not ours to permute. ":": we word the errors. */
        opterr = 0;
        while ((opt = getopt_long(argc, argv, "+:hV", options, NULL)) >= 0)
                switch (opt) {
                case ARG_SOCKET:
                        o->socket_path = optarg;
                        break;
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case 'V':
                        puts(PROGRAM " " PACKAGE_VERSION);
                        return EXIT_SUCCESS;
                case ':':
                        return usage_error("option '%s' needs an argument", argv[optind - 1]);
                default:
                        if (optopt != 0)
                                return usage_error("unknown option '-%c'", optopt);
                        return usage_error("unknown option '%s'", argv[optind - 1]);
                }
        return -1;
}

/* Stores the value of one of cmd's options. Returns -1 or an exit status. */
static int option_set(const struct command *cmd, unsigned bit, const char *value, struct options *o) {
        uint64_t handle;
        int k;

        switch (bit) {
        case OPTION_JSON:
                o->json = true;
                break;
        case OPTION_HANDLE:
                if (parse_number(value, UINT64_MAX, &handle) < 0 || handle == 0)
                        return usage_error("%s: invalid handle '%s': a positive decimal number", cmd->name, value);
                o->handle = handle;
                break;
        case OPTION_MODE:
                /* The library and the broker read 0 as "the default"; a user writing 0 means something else. */
                if (parse_mode(value, &o->mode) < 0 || o->mode == 0)
                        return usage_error("%s: invalid mode '%s': octal permission bits, 1 to 0777", cmd->name,
                                           value);
                break;
        case OPTION_HUGETLB:
                o->create_flags |= MFB_CREATE_HUGETLB;
                break;
        case OPTION_RESERVE:
                o->create_flags |= MFB_CREATE_RESERVE;
                break;
        case OPTION_TRANSIENT:
                o->create_flags |= MFB_CREATE_TRANSIENT;
                break;
        case OPTION_FUTURE_WRITE:
                o->future_write = true;
                break;
        case OPTION_COUNT:
                if (parse_number(value, UINT32_MAX, &o->count) < 0 || o->count == 0)
                        return usage_error("%s: invalid count '%s': a positive decimal number", cmd->name, value);
                break;
        case OPTION_HOLD:
                o->hold = true;
                break;
        case OPTION_NOTIFICATIONS:
                if (parse_number(value, UINT64_MAX, &o->notifications) < 0 || o->notifications == 0)
                        return usage_error("%s: invalid count '%s': a positive decimal number", cmd->name, value);
                break;
        case OPTION_AFTER:
                if (parse_number(value, UINT64_MAX, &o->after) < 0)
                        return usage_error("%s: invalid sequence '%s': a decimal number", cmd->name, value);
                o->after_given = true;
                break;
        case OPTION_HUMAN:
                o->human = true;
                break;
        case OPTION_OWNER: {
                uint32_t uid;

                if (parse_id(value, false, &uid) < 0)
                        return usage_error("%s: unknown user '%s'", cmd->name, value);
                o->owner = (uid_t) uid;
                o->owner_given = true;
                break;
        }
        case OPTION_NAME:
                o->name_glob = value;
                break;
        case OPTION_TIMEOUT:
                k = parse_timeout(value, &o->timeout_ms);
                if (k == -ERANGE)
                        return usage_error("%s: timeout '%s' is too large", cmd->name, value);
                if (k < 0)
                        return usage_error("%s: invalid timeout '%s': seconds, such as 5 or 0.25", cmd->name, value);
                o->timeout = value;
                break;
        default:
                abort();
        }
        return -1;
}

/*
 * A command's options and words, from argv[0] (the command) to argv[argc
 * - 1]. Options may come anywhere among the words; "--" ends them, so that
 * a name may start with a dash. Stores the words' start and count. Returns
 * -1 to go on, or an exit status.
 */
static int parse_command_args(const struct command *cmd, int argc, char **argv, struct options *o,
                              char ***ret_words, size_t *ret_n) {
        struct option longopts[ELEMENTSOF(command_options) + 1] = {};
        size_t n_longopts = 0, words, args_min = cmd->args_min, args_max = cmd->args_max;
        int opt, k;

        for (size_t i = 0; i < ELEMENTSOF(command_options); i++)
                if (cmd->options & command_options[i].bit)
                        longopts[n_longopts++] = (struct option) {
                                .name = command_options[i].name,
                                .has_arg = command_options[i].has_arg,
                                .val = 0x100 + (int) i,
                        };

        /* 0: start over after the global options, and permute again: "stat demo --json" works. */
        optind = 0;
        opterr = 0;
        while ((opt = getopt_long(argc, argv, ":", longopts, NULL)) >= 0)
                switch (opt) {
                case ':':
                        return usage_error("%s: option '%s' needs an argument", cmd->name, argv[optind - 1]);
                case '?':
                        if (optopt != 0)
                                return usage_error("%s: unknown option '-%c'", cmd->name, optopt);
                        return usage_error("%s: unknown option '%s'", cmd->name, argv[optind - 1]);
                default:
                        k = option_set(cmd, command_options[opt - 0x100].bit, optarg, o);
                        if (k >= 0)
                                return k;
                }

        /* --handle names a region, --count makes anonymous ones: either stands for the NAME word. */
        if (o->handle != 0 || o->count != 0) {
                args_min--;
                args_max--;
        }
        words = (size_t) (argc - optind);
        if (words > args_max && o->handle != 0)
                return usage_error("%s: give a NAME or --handle, not both", cmd->name);
        if (words > args_max && o->count != 0)
                return usage_error("%s: --count makes anonymous regions: give no NAME", cmd->name);
        if (words < args_min)
                return usage_error("%s: missing arguments", cmd->name);
        if (words > args_max)
                return usage_error("%s: too many arguments", cmd->name);
        /* The batch has no mode or flags: each region is what a plain anonymous create makes. */
        if (o->count != 0 && (o->mode != 0 || o->create_flags != 0))
                return usage_error("%s: --count takes no --mode, --hugetlb, --reserve or --transient", cmd->name);
        /* Without --hold the command's own exit would end the transient region it just made. */
        if ((o->create_flags & MFB_CREATE_TRANSIENT) && !o->hold)
                return usage_error("%s: --transient needs --hold: the region would end as this command exits",
                                   cmd->name);
        if (o->hold && o->count == 0 && !(o->create_flags & MFB_CREATE_TRANSIENT))
                return usage_error("%s: --hold goes with --count or --transient", cmd->name);
        /* The rule of memfd-broker.h, checked before any broker is asked, as a usage error. */
        if (cmd->name_arg != NO_NAME && o->handle == 0 && o->count == 0 &&
            mfb_name_check(argv[optind + cmd->name_arg]) < 0)
                return usage_error("%s: invalid region name '%s': 1 to %d bytes of printable ASCII without spaces",
                                   cmd->name, argv[optind + cmd->name_arg], MFB_NAME_MAX);
        *ret_words = argv + optind;
        *ret_n = words;
        return -1;
}

static int flush_stdout(void) {
        errno = 0;
        if (fflush(stdout) == 0 && !ferror(stdout))
                return EXIT_SUCCESS;
        /* Whoever reads our output stopped reading: not an error of ours. */
        if (errno == EPIPE)
                return EXIT_SUCCESS;
        fprintf(stderr, PROGRAM ": standard output: %s\n", strerror(errno ?: EIO));
        return EXIT_FAILURE;
}

int main(int argc, char *argv[]) {
        struct options o = { .timeout_ms = -1 };
        const struct command *cmd = NULL;
        char **args = NULL;
        size_t n_args = 0;
        int k;

        k = parse_global_options(argc, argv, &o);
        if (k >= 0)
                return k == EXIT_SUCCESS ? flush_stdout() : k;

        if (optind >= argc)
                return usage_error("missing command");
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (strcmp(argv[optind], commands[i].name) == 0)
                        cmd = &commands[i];
        if (!cmd)
                return usage_error("unknown command '%s'", argv[optind]);

        k = parse_command_args(cmd, argc - optind, argv + optind, &o, &args, &n_args);
        if (k >= 0)
                return k;

        /* A closed pipe shows as EPIPE, which cat and flush_stdout() expect, not as a signal. */
        signal(SIGPIPE, SIG_IGN);

        k = cmd->run(&o, args, n_args);
        if (k != EXIT_SUCCESS)
                return k;
        return flush_stdout();
}
