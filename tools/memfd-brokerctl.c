/* SPDX-License-Identifier: MIT */
/*
 * memfd-brokerctl: creates, fills, seals, shows and removes the regions of
 * memfd-brokerd from the command line. An ordinary client of the library.
 *
 * Exit status: 0 on success, 1 when an operation fails (one line on stderr
 * naming the command, the region and the reason), 2 for a usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
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

#define PROGRAM "memfd-brokerctl"
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define EXIT_USAGE 2

/* The most one read() moves into the region: larger reads are no faster, and an error or a signal wastes less. */
#define COPY_CHUNK ((size_t) 1 << 20)

struct options {
        const char *socket_path;        /* NULL: the library's default */
        bool json;
};

struct command {
        const char *name;
        size_t args_min, args_max;
        bool takes_json;
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

/* Connects, or reports why not for the command on region (NULL for none). */
static int client_open(const struct options *o, const char *command, const char *region, mfb_client **ret) {
        char path[sizeof(((struct sockaddr_un *) NULL)->sun_path)];
        int r;

        r = mfb_client_connect(o->socket_path, ret);
        if (r >= 0)
                return 0;
        if (o->socket_path)
                return fail(command, region, "cannot connect to %s: %s", o->socket_path, strerror(-r));
        if (mfb_default_socket_path(path, sizeof(path)) < 0)
                return fail(command, region, "cannot connect to the broker: %s", strerror(-r));
        return fail(command, region, "cannot connect to %s: %s", path, strerror(-r));
}

static void client_freep(mfb_client **c) {
        mfb_client_free(*c);
}

static void region_freep(mfb_region **r) {
        mfb_region_free(*r);
}

/* The rule of memfd-broker.h, checked before any broker is asked, as a usage error. */
static bool name_valid(const char *name) {
        size_t len = strlen(name);

        if (len == 0 || len > MFB_NAME_MAX)
                return false;
        for (size_t i = 0; i < len; i++)
                if (name[i] < 0x21 || name[i] > 0x7e)
                        return false;
        return true;
}

/* Decimal bytes, or with a K, M, G or T suffix (powers of 1024). Zero is refused. */
static int parse_size(const char *s, uint64_t *ret) {
        static const char suffixes[] = "KMGT";
        unsigned long long v;
        unsigned shift = 0;
        char *end;

        if (*s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (*end != '\0') {
                const char *p = strchr(suffixes, *end);

                if (!p || end[1] != '\0')
                        return -EINVAL;
                shift = 10 * (unsigned) (p - suffixes + 1);
        }
        if (v == 0)
                return -EINVAL;
        if (v > UINT64_MAX >> shift)
                return -ERANGE;
        *ret = (uint64_t) v << shift;
        return 0;
}

static int cmd_create(const struct options *o, char **args, size_t n_args) {
        _cleanup_(client_freep) mfb_client *c = NULL;
        _cleanup_(region_freep) mfb_region *r = NULL;
        const char *name = args[0];
        uint64_t size;
        int k;

        k = parse_size(args[1], &size);
        if (k == -ERANGE)
                return usage_error("size '%s' is too large", args[1]);
        if (k < 0)
                return usage_error("invalid size '%s': bytes, or a number with K, M, G or T", args[1]);

        k = client_open(o, "create", name, &c);
        if (k != 0)
                return k;
        k = mfb_region_create(c, name, size, &r);
        if (k < 0)
                return fail_errno(c, k, "create", name);

        /* The name keeps the region alive after this connection closes. */
        printf("%" PRIu64 "\n", mfb_region_handle(r));
        return EXIT_SUCCESS;
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
                k = mfb_region_seal(r);
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

static int cmd_stat(const struct options *o, char **args, size_t n_args) {
        _cleanup_(client_freep) mfb_client *c = NULL;
        const char *name = args[0];
        mfb_region_stat st;
        int k;

        k = client_open(o, "stat", name, &c);
        if (k != 0)
                return k;
        k = mfb_stat(c, name, &st);
        if (k < 0)
                return fail_errno(c, k, "stat", name);

        if (o->json)
                format_stat_json(stdout, &st);
        else
                format_stat(stdout, &st);
        return EXIT_SUCCESS;
}

static int cmd_list(const struct options *o, char **args, size_t n_args) {
        _cleanup_(client_freep) mfb_client *c = NULL;
        _cleanup_(freep) mfb_region_stat *entries = NULL;
        size_t n;
        int k;

        k = client_open(o, "list", NULL, &c);
        if (k != 0)
                return k;
        k = mfb_list(c, &entries, &n);
        if (k < 0)
                return fail_errno(c, k, "list", NULL);

        if (o->json)
                format_list_json(stdout, entries, n);
        else
                format_list(stdout, entries, n);
        return EXIT_SUCCESS;
}

static int cmd_rm(const struct options *o, char **args, size_t n_args) {
        _cleanup_(client_freep) mfb_client *c = NULL;
        const char *name = args[0];
        int k;

        k = client_open(o, "rm", name, &c);
        if (k != 0)
                return k;
        k = mfb_remove(c, name);
        if (k < 0)
                return fail_errno(c, k, "rm", name);
        return EXIT_SUCCESS;
}

static const struct command commands[] = {
        { "create", 2, 2, false, cmd_create },
        { "write",  1, 2, false, cmd_write },
        { "seal",   1, 1, false, cmd_seal },
        { "cat",    1, 1, false, cmd_cat },
        { "stat",   1, 1, true,  cmd_stat },
        { "list",   0, 0, true,  cmd_list },
        { "rm",     1, 1, false, cmd_rm },
};

static void help(void) {
        printf("Usage: " PROGRAM " [--socket PATH] COMMAND [ARGUMENTS]\n"
               "\n"
               "Creates, fills, seals, shows and removes the shared-memory regions of memfd-brokerd.\n"
               "\n"
               "Commands:\n"
               "  create NAME SIZE     create a named region of SIZE bytes (suffixes K, M, G, T:\n"
               "                       powers of 1024) and print its handle; it stays until rm\n"
               "  write NAME [FILE]    copy FILE (or standard input, also for \"-\") into the region\n"
               "                       from its start; fails if the data does not fit\n"
               "  seal NAME            make the region's contents immutable, for everyone\n"
               "  cat NAME             write the region's contents to standard output\n"
               "  stat NAME [--json]   show everything the broker knows about the region\n"
               "  list [--json]        list every region, like ipcs -m\n"
               "  rm NAME              remove the name; the region goes with its last holder\n"
               "\n"
               "Options:\n"
               "  --socket PATH        the broker's socket (default: $" MFB_SOCKET_ENV ", else\n"
               "                       $XDG_RUNTIME_DIR/memfd-broker.sock, else /run/memfd-broker.sock)\n"
               "  -h, --help           show this help and exit\n"
               "  -V, --version        show the version and exit\n"
               "\n"
               "Names are 1 to %d bytes of printable ASCII without spaces. Exit status is 0 on\n"
               "success, 1 when an operation fails, 2 for a usage error.\n",
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

/*
 * A command's arguments: its words, and --json where it takes it; "--"
 * ends the options, so that a name may start with a dash. Moves the words
 * to the front of args and stores their count. Returns -1 or an exit status.
 */
static int parse_command_args(const struct command *cmd, char **args, size_t n, struct options *o, size_t *ret_n) {
        bool options_done = false;
        size_t words = 0;

        for (size_t i = 0; i < n; i++) {
                if (!options_done && strcmp(args[i], "--") == 0)
                        options_done = true;
                else if (!options_done && cmd->takes_json && strcmp(args[i], "--json") == 0)
                        o->json = true;
                else if (!options_done && args[i][0] == '-' && args[i][1] != '\0')
                        return usage_error("%s: unknown option '%s'", cmd->name, args[i]);
                else
                        args[words++] = args[i];
        }

        if (words < cmd->args_min)
                return usage_error("%s: missing arguments", cmd->name);
        if (words > cmd->args_max)
                return usage_error("%s: too many arguments", cmd->name);
        /* Every command's first word is a region name. */
        if (words > 0 && !name_valid(args[0]))
                return usage_error("%s: invalid region name '%s': 1 to %d bytes of printable ASCII without spaces",
                                   cmd->name, args[0], MFB_NAME_MAX);
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
        struct options o = {};
        const struct command *cmd = NULL;
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

        k = parse_command_args(cmd, argv + optind + 1, (size_t) (argc - optind - 1), &o, &n_args);
        if (k >= 0)
                return k;

        /* A closed pipe shows as EPIPE, which cat and flush_stdout() expect, not as a signal. */
        signal(SIGPIPE, SIG_IGN);

        k = cmd->run(&o, argv + optind + 1, n_args);
        if (k != EXIT_SUCCESS)
                return k;
        return flush_stdout();
}
