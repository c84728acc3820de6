/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "listener.h"
#include "log.h"
#include "macro.h"

/* How long accepting pauses after accept() failed, typically for want of fds. */
#define ACCEPT_PAUSE_SEC 1

struct listener {
        struct evconnlistener *evl;
        int spare_fd;           /* /dev/null, kept in reserve for accepting when out of fds; -1 while used */
        struct event *resume_event;
        listener_accept_t accept_cb;
        void *userdata;
        char *path;             /* the socket file to remove, NULL if not ours */
        dev_t dev;              /* ... and which one it is, lest we remove a successor's */
        ino_t ino;
};

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa, int socklen,
                      void *userdata) {
        struct listener *l = userdata;

        l->accept_cb(fd, false, l->userdata);
}

static int spare_open(void) {
        return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/*
 * Out of fds: accepts one client with the spare fd and hands it over to be
 * refused, then takes the spare back. Returns 0, or -errno when there was
 * no spare or it could not be taken back.
 */
static int accept_with_spare(struct listener *l) {
        int fd;

        if (l->spare_fd < 0)
                return -EMFILE;
        l->spare_fd = safe_close(l->spare_fd);
        fd = accept4(evconnlistener_get_fd(l->evl), NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0)
                l->accept_cb(fd, true, l->userdata);
        l->spare_fd = spare_open();
        return l->spare_fd < 0 ? negative_errno() : 0;
}

static void on_accept_error(struct evconnlistener *evl, void *userdata) {
        struct listener *l = userdata;
        const struct timeval pause = { .tv_sec = ACCEPT_PAUSE_SEC };
        int error = EVUTIL_SOCKET_ERROR();

        /* The client is told, and the listener stays readable while more wait: each wakeup refuses one. */
        if ((error == EMFILE || error == ENFILE) && accept_with_spare(l) >= 0) {
                log_debug("Out of file descriptors: refused a connection");
                return;
        }
        /*
         * Without a spare, or another error: the pending connection keeps the
         * socket readable, so retrying at once would spin. Pause, and let
         * fds be freed.
         */
        log_warning_errno(error, "Failed to accept a connection, pausing for %d s: %m", ACCEPT_PAUSE_SEC);
        evconnlistener_disable(evl);
        evtimer_add(l->resume_event, &pause);
}

static void on_resume(evutil_socket_t fd, short what, void *userdata) {
        struct listener *l = userdata;

        if (l->spare_fd < 0)
                l->spare_fd = spare_open();
        evconnlistener_enable(l->evl);
}

int listener_new_fd(struct event_base *base, int fd, listener_accept_t accept_cb, void *userdata,
                    struct listener **ret) {
        struct listener *l;
        int flags;

        /* libevent requires a non-blocking listening socket; one passed by systemd may not be. */
        flags = fcntl(fd, F_GETFL);
        if (flags < 0 || (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)) {
                int r = log_error_errno(errno, "Failed to make the listening socket non-blocking: %m");

                safe_close(fd);
                return r;
        }

        l = calloc(1, sizeof(*l));
        if (!l) {
                safe_close(fd);
                return log_error_errno(ENOMEM, "Failed to listen: %m");
        }
        l->accept_cb = accept_cb;
        l->userdata = userdata;
        l->spare_fd = spare_open();
        if (l->spare_fd < 0) {
                int r = log_error_errno(errno, "Failed to open the fd kept in reserve for accepting: %m");

                safe_close(fd);
                free(l);
                return r;
        }

        /* Backlog 0: the socket listens already. */
        l->evl = evconnlistener_new(base, on_accept, l, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
        if (!l->evl) {
                safe_close(fd);
                listener_free(l);
                return log_error_errno(ENOMEM, "Failed to listen: %m");
        }
        evconnlistener_set_error_cb(l->evl, on_accept_error);
        l->resume_event = evtimer_new(base, on_resume, l);
        if (!l->resume_event) {
                listener_free(l);
                return log_error_errno(ENOMEM, "Failed to listen: %m");
        }
        *ret = l;
        return 0;
}

/*
 * After bind() found path in use: removes it if it is a socket nobody
 * listens on. Returns 0 to bind again, or -errno.
 */
static int remove_stale_socket(const struct sockaddr_un *sa, socklen_t sa_len) {
        _cleanup_(closep) int probe = -1;
        struct stat st;

        if (lstat(sa->sun_path, &st) < 0)
                return errno == ENOENT ? 0 : -EADDRINUSE;
        if (!S_ISSOCK(st.st_mode))
                return -EADDRINUSE;

        /* Non-blocking: a listener with a full backlog answers EAGAIN, which means alive too. */
        probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (probe < 0)
                return negative_errno();
        if (connect(probe, (const struct sockaddr *) sa, sa_len) == 0 || errno != ECONNREFUSED)
                return -EADDRINUSE;

        if (unlink(sa->sun_path) < 0 && errno != ENOENT)
                return negative_errno();
        log_notice("Removed the stale socket %s", sa->sun_path);
        return 0;
}

static int bind_socket(const char *path, struct stat *ret_st) {
        _cleanup_(closep) int fd = -1;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t len = strlen(path);
        socklen_t sa_len;
        int r;

        if (len == 0 || len >= sizeof(sa.sun_path))
                return log_error_errno(len == 0 ? EINVAL : ENAMETOOLONG, "Failed to bind %s: %m", path);
        memcpy(sa.sun_path, path, len + 1);
        sa_len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + len + 1);

        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return log_error_errno(errno, "Failed to create a socket: %m");

        if (bind(fd, (struct sockaddr *) &sa, sa_len) < 0) {
                r = errno == EADDRINUSE ? remove_stale_socket(&sa, sa_len) : negative_errno();
                if (r < 0)
                        return log_error_errno(r, "Failed to bind %s: %m", path);
                if (bind(fd, (struct sockaddr *) &sa, sa_len) < 0)
                        return log_error_errno(errno, "Failed to bind %s: %m", path);
        }

        /*
         * Anyone may connect: the socket's permissions are not the access
         * boundary. Access is a matter of each region (its owner and mode,
         * against the peer's SO_PEERCRED credentials), not of the socket.
         */
        if (chmod(path, 0666) < 0 || stat(path, ret_st) < 0) {
                r = log_error_errno(errno, "Failed to set up %s: %m", path);
                (void) unlink(path);
                return r;
        }
        if (listen(fd, SOMAXCONN) < 0) {
                r = log_error_errno(errno, "Failed to listen on %s: %m", path);
                (void) unlink(path);
                return r;
        }
        return TAKE_FD(fd);
}

int listener_new_path(struct event_base *base, const char *path, listener_accept_t accept_cb, void *userdata,
                      struct listener **ret) {
        struct listener *l;
        struct stat st;
        char *copy;
        int fd, r;

        copy = strdup(path);
        if (!copy)
                return log_error_errno(ENOMEM, "Failed to listen on %s: %m", path);
        fd = bind_socket(path, &st);
        if (fd < 0) {
                free(copy);
                return fd;
        }
        r = listener_new_fd(base, fd, accept_cb, userdata, &l);
        if (r < 0) {
                (void) unlink(path);
                free(copy);
                return r;
        }
        l->path = copy;
        l->dev = st.st_dev;
        l->ino = st.st_ino;
        *ret = l;
        return 0;
}

struct listener *listener_free(struct listener *l) {
        struct stat st;

        if (!l)
                return NULL;
        if (l->evl)
                evconnlistener_free(l->evl);
        if (l->resume_event)
                event_free(l->resume_event);
        safe_close(l->spare_fd);
        /* Another broker may have replaced the socket meanwhile: remove only our own. */
        if (l->path && stat(l->path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino)
                (void) unlink(l->path);
        free(l->path);
        free(l);
        return NULL;
}
