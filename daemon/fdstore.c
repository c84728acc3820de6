/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "fdstore.h"

/* The kernel's limit on one environment string, NUL included: MAX_ARG_STRLEN, 32 pages of 4 KiB or more. */
#define ENV_STRING_MAX (32U * 4096U)

/* Left in $LISTEN_FDNAMES for the names of the listening sockets, which the socket unit chooses. */
#define SOCKET_NAMES_RESERVE 256U

/* What the names of the stored fds may take in $LISTEN_FDNAMES, the ':' after each included. */
#define NAMES_MAX (ENV_STRING_MAX - sizeof("LISTEN_FDNAMES=") - SOCKET_NAMES_RESERVE)

/* The longest name systemd takes (FDNAME_MAX). */
#define NAME_MAX_LEN 255U

struct fdstore {
        size_t names_bytes;     /* of the stored fds' names, a separator each */
};

int fdstore_new(struct fdstore **ret) {
        struct fdstore *s = calloc(1, sizeof(*s));

        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

struct fdstore *fdstore_free(struct fdstore *s) {
        free(s);
        return NULL;
}

static size_t name_cost(const char *name) {
        return strlen(name) + 1;
}

static int send_message(const char *what, const char *name, const int *fds, unsigned n_fds) {
        char message[sizeof("FDSTOREREMOVE=1\nFDNAME=") + NAME_MAX_LEN];
        int r;

        assert(strlen(name) <= NAME_MAX_LEN);
        snprintf(message, sizeof(message), "%s\nFDNAME=%s", what, name);
        r = sd_pid_notify_with_fds(0, false, message, fds, n_fds);
        /* 0: $NOTIFY_SOCKET is not set, so nothing can be stored. */
        return r == 0 ? -ENOTCONN : r < 0 ? r : 0;
}

void fdstore_count(struct fdstore *s, const char *name) {
        s->names_bytes += name_cost(name);
}

int fdstore_drop(const char *name) {
        return send_message("FDSTOREREMOVE=1", name, NULL, 0);
}

int fdstore_add(struct fdstore *s, int fd, const char *name) {
        size_t cost = name_cost(name);
        int r;

        if (s->names_bytes + cost > NAMES_MAX)
                return -E2BIG;
        r = send_message("FDSTORE=1", name, &fd, 1);
        if (r < 0)
                return r;
        s->names_bytes += cost;
        return 0;
}

int fdstore_remove(struct fdstore *s, const char *name) {
        size_t cost = name_cost(name);
        int r;

        assert(s->names_bytes >= cost);
        r = fdstore_drop(name);
        /* Not sent: systemd still holds the fd, and it still takes its room. */
        if (r < 0)
                return r;
        s->names_bytes -= cost;
        return 0;
}
