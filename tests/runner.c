/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "suites.h"

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        return remove(path);
}

/*
 * Runs every suite. Brokers get their sockets under one temporary folder for
 * the whole run, removed at the end even when a failed test could not clean
 * up after itself.
 */
int main(void) {
        char dir[] = "/tmp/mfb-test.XXXXXX";
        const char *tmp = getenv("TMPDIR");
        char base[4096];
        SRunner *sr;
        int failed;

        if (tmp && *tmp && snprintf(base, sizeof(base), "%s/mfb-test.XXXXXX", tmp) < (int) sizeof(base)) {
                if (!mkdtemp(base)) {
                        fprintf(stderr, "mkdtemp %s: %s\n", base, strerror(errno));
                        return 1;
                }
        } else {
                if (!mkdtemp(dir)) {
                        fprintf(stderr, "mkdtemp %s: %s\n", dir, strerror(errno));
                        return 1;
                }
                snprintf(base, sizeof(base), "%s", dir);
        }
        /* mkdtemp makes it 0700; the access tests reach brokers from another uid. */
        if (chmod(base, 0755) < 0) {
                fprintf(stderr, "chmod %s: %s\n", base, strerror(errno));
                return 1;
        }
        setenv("MFB_TEST_DIR", base, 1);

        sr = srunner_create(codec_suite());
        srunner_add_suite(sr, fdpass_suite());
        srunner_add_suite(sr, sharing_suite());
        srunner_add_suite(sr, lifetime_suite());
        srunner_add_suite(sr, bad_input_suite());
        srunner_add_suite(sr, access_suite());
        srunner_add_suite(sr, wait_suite());
        srunner_add_suite(sr, state_suite());
        srunner_add_suite(sr, park_suite());
        srunner_add_suite(sr, attack_suite());
        srunner_add_suite(sr, quota_suite());
        srunner_add_suite(sr, quota_unit_suite());
        srunner_add_suite(sr, schedule_suite());
        srunner_add_suite(sr, connection_suite());
        srunner_add_suite(sr, async_suite());
        srunner_add_suite(sr, hashmap_suite());
        srunner_add_suite(sr, access_unit_suite());
        srunner_add_suite(sr, region_index_suite());
        srunner_add_suite(sr, parse_suite());
        srunner_add_suite(sr, settings_suite());
        srunner_add_suite(sr, notify_wire_suite());
        srunner_add_suite(sr, locks_suite());
        srunner_add_suite(sr, notify_suite());
        srunner_add_suite(sr, transient_suite());
        srunner_add_suite(sr, release_queue_suite());
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);

        nftw(base, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        return failed == 0 ? 0 : 1;
}
