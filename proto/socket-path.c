/* SPDX-License-Identifier: MIT */
#include <unistd.h>

#include "socket-path.h"

void mfb_socket_path_default(char *(*get_env)(const char *name), const char **ret_prefix, const char **ret_suffix) {
        const char *e;

        e = get_env(MFB_SOCKET_ENV);
        if (e && *e) {
                *ret_prefix = e;
                *ret_suffix = "";
                return;
        }
        /* Root's broker is the system's, in /run, even where root has a runtime folder of its own. */
        e = get_env("XDG_RUNTIME_DIR");
        if (e && *e && geteuid() != 0) {
                *ret_prefix = e;
                *ret_suffix = "/" MFB_SOCKET_NAME;
                return;
        }
        *ret_prefix = MFB_SOCKET_PATH_SYSTEM;
        *ret_suffix = "";
}
