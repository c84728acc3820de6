/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <sys/socket.h>

#include <systemd/sd-daemon.h>

#include "activation.h"
#include "log.h"
#include "macro.h"

int activation_listen_fd(int *ret_fd) {
        int n, listen_fd = -1;

        n = sd_listen_fds(1);
        if (n < 0)
                return log_error_errno(n, "Failed to read the sockets passed by the service manager: %m");
        if (n == 0) {
                *ret_fd = -1;
                return 0;
        }

        for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++) {
                if (sd_is_socket_unix(fd, SOCK_SEQPACKET, 1, NULL, 0) <= 0) {
                        log_warning("Passed fd %d is not a listening AF_UNIX SOCK_SEQPACKET socket; closing it", fd);
                        safe_close(fd);
                } else if (listen_fd >= 0) {
                        log_error("More than one listening socket was passed (fds %d and %d); "
                                  "use one ListenSequentialPacket=", listen_fd, fd);
                        safe_close(fd);
                        listen_fd = safe_close(listen_fd);
                        for (fd++; fd < SD_LISTEN_FDS_START + n; fd++)
                                safe_close(fd);
                        return -EINVAL;
                } else
                        listen_fd = fd;
        }
        if (listen_fd < 0) {
                log_error("None of the %d passed fds is a listening AF_UNIX SOCK_SEQPACKET socket; "
                          "the socket unit needs ListenSequentialPacket=", n);
                return -EINVAL;
        }
        *ret_fd = listen_fd;
        return 1;
}
