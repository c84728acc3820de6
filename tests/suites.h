/* SPDX-License-Identifier: MIT */
#pragma once

/* Every Check suite; tests/runner.c runs them all. */

#include <check.h>

Suite *codec_suite(void);
Suite *fdpass_suite(void);
Suite *sharing_suite(void);
Suite *lifetime_suite(void);
Suite *bad_input_suite(void);
Suite *state_suite(void);
Suite *park_suite(void);
Suite *access_suite(void);
Suite *wait_suite(void);
Suite *attack_suite(void);
Suite *quota_suite(void);
Suite *quota_unit_suite(void);
Suite *schedule_suite(void);
Suite *connection_suite(void);
Suite *async_suite(void);
Suite *hashmap_suite(void);
Suite *access_unit_suite(void);
Suite *region_index_suite(void);
Suite *parse_suite(void);
Suite *settings_suite(void);
Suite *notify_wire_suite(void);
Suite *locks_suite(void);
Suite *notify_suite(void);
Suite *transient_suite(void);
Suite *release_queue_suite(void);
