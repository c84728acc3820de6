/* SPDX-License-Identifier: MIT */
/*
 * daemon/settings.c on its own: the limits settings_derive_limits() takes
 * from the machine, where they guard the kernel's caps, at the values the
 * unit gives and at the edges.
 */
#include <stdint.h>

#include "harness.h"
#include "settings.h"
#include "suites.h"

#define UNIT_FD_LIMIT 524288U   /* LimitNOFILE= of systemd/memfd-broker.service */
#define MEMORY (UINT64_C(8) << 30)

static struct settings derived(uint64_t fd_limit, uint32_t max_kept_regions) {
        struct settings c;

        settings_init(&c);
        c.max_kept_regions = max_kept_regions;
        settings_derive_limits(&c, fd_limit, MEMORY);
        settings_done(&c);
        return c;
}

/*
 * Under the unit: kept regions take half the fd limit, which the kernel
 * counts them in flight against, and the fds of unread replies what is left
 * of it beyond them and a park's packing: together never more than the cap.
 */
START_TEST(the_fds_in_flight_fit_the_kernel_s_cap_under_the_unit) {
        struct settings c = derived(UNIT_FD_LIMIT, 0);

        ck_assert_uint_eq(c.max_kept_regions, UNIT_FD_LIMIT / 2);
        ck_assert_uint_eq(c.max_fds_in_flight, UNIT_FD_LIMIT - UNIT_FD_LIMIT / 2 - SETTINGS_PARK_PACKING_FDS);
        ck_assert_uint_eq(c.max_kept_regions + c.max_fds_in_flight + SETTINGS_PARK_PACKING_FDS, UNIT_FD_LIMIT);
}
END_TEST

/* Kept regions that would leave the replies little: they get a quarter of the limit, and the minimum at least. */
START_TEST(the_fds_in_flight_are_at_least_a_quarter_of_the_limit) {
        ck_assert_uint_eq(derived(UNIT_FD_LIMIT, UNIT_FD_LIMIT - 1000).max_fds_in_flight, UNIT_FD_LIMIT / 4);
        ck_assert_uint_eq(derived(1024, 0).max_fds_in_flight, 256);
        ck_assert_uint_eq(derived(100, 0).max_fds_in_flight, SETTINGS_FDS_IN_FLIGHT_MIN);
}
END_TEST

/* An unlimited fd limit counts as the kernel's own cap on open files, 2^20; kept regions as many as regions. */
START_TEST(an_unlimited_fd_limit_is_the_kernel_s_cap_on_open_files) {
        struct settings c = derived(UINT64_MAX, 0);

        ck_assert_uint_eq(c.max_kept_regions, SETTINGS_MAX_REGIONS_CAP);
        ck_assert_uint_eq(c.max_fds_in_flight,
                          (UINT64_C(1) << 20) - SETTINGS_MAX_REGIONS_CAP - SETTINGS_PARK_PACKING_FDS);
}
END_TEST

/*
 * Release queues, one mapping each in the broker, stay well below the
 * kernel's vm.max_map_count (65530 by default) under the unit, whose
 * connections' limit is higher; with few connections, one each at most.
 */
START_TEST(release_queues_stay_below_the_kernel_s_mappings) {
        struct settings c = derived(UNIT_FD_LIMIT, 0);

        ck_assert_uint_eq(c.max_connections, SETTINGS_MAX_CONNECTIONS_CAP);
        ck_assert_uint_eq(c.max_release_queues, SETTINGS_MAX_RELEASE_QUEUES_CAP);
        ck_assert_uint_lt(c.max_release_queues, 65530 / 2);
        ck_assert_uint_eq(c.max_release_queues_per_uid, SETTINGS_MAX_RELEASE_QUEUES_CAP / 4);
        c = derived(1024, 0);
        ck_assert_uint_eq(c.max_release_queues, c.max_connections);
        ck_assert_uint_eq(c.max_release_queues_per_uid, c.max_connections / 4);
}
END_TEST

Suite *settings_suite(void) {
        Suite *s = suite_create("settings");
        TCase *tc = tcase_create("settings");

        tcase_add_test(tc, the_fds_in_flight_fit_the_kernel_s_cap_under_the_unit);
        tcase_add_test(tc, the_fds_in_flight_are_at_least_a_quarter_of_the_limit);
        tcase_add_test(tc, an_unlimited_fd_limit_is_the_kernel_s_cap_on_open_files);
        tcase_add_test(tc, release_queues_stay_below_the_kernel_s_mappings);
        suite_add_tcase(s, tc);
        return s;
}
