/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <systemd/sd-daemon.h>

#include "activation.h"
#include "log.h"
#include "macro.h"

void passed_fds_free(struct passed_fd *fds, size_t n_fds) {
        for (size_t i = 0; i < n_fds; i++) {
                safe_close(fds[i].fd);
                free(fds[i].name);
        }
        free(fds);
}

int activation_take_fds(int *ret_listen_fd, struct passed_fd **ret_fds, size_t *ret_n_fds) {
        _cleanup_(closep) int listen_fd = -1;
        struct passed_fd *fds = NULL;
        char **names = NULL;
        size_t n_fds = 0;
        bool sockets = false;
        int n, r = 0;

        n = sd_listen_fds_with_names(true, &names);
        if (n < 0)
                return log_error_errno(n, "Failed to read the fds passed by the service manager: %m");
        if (n > 0) {
                fds = calloc((size_t) n, sizeof(*fds));
                if (!fds)
                        r = log_error_errno(ENOMEM, "Failed to take the fds passed by the service manager: %m");
        }

        for (int i = 0; i < n; i++) {
                _cleanup_(freep) char *name = names[i];
                int fd = SD_LISTEN_FDS_START + i;

                if (r < 0) {
                        safe_close(fd);
                        continue;
                }
                if (sd_is_socket(fd, AF_UNSPEC, 0, 1) <= 0) {
                        /* Not a listening socket: something the broker kept in the fd store. */
                        fds[n_fds++] = (struct passed_fd) { .fd = fd, .name = TAKE_PTR(name) };
                        continue;
                }
                sockets = true;
                if (sd_is_socket_unix(fd, SOCK_SEQPACKET, 1, NULL, 0) <= 0) {
                        log_warning("Passed socket %s (fd %d) is not a listening AF_UNIX SOCK_SEQPACKET socket; "
                                    "closing it", name, fd);
                        safe_close(fd);
                } else if (listen_fd >= 0) {
                        r = log_error_errno(EINVAL, "More than one listening socket was passed (fds %d and %d); "
                                            "use one ListenSequentialPacket=", listen_fd, fd);
                        safe_close(fd);
                } else
                        listen_fd = fd;
        }
        free(names);

        if (r >= 0 && sockets && listen_fd < 0)
                r = log_error_errno(EINVAL, "None of the sockets passed is a listening AF_UNIX SOCK_SEQPACKET "
                                    "socket; the socket unit needs ListenSequentialPacket=");
        if (r < 0) {
                passed_fds_free(fds, n_fds);
                return r;
        }
        *ret_listen_fd = TAKE_FD(listen_fd);
        *ret_fds = fds;
        *ret_n_fds = n_fds;
        return 0;
}
