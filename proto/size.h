/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Sizes in bytes written for people, shared by memfd-brokerd (its status
 * line) and memfd-brokerctl (stat and limits) so that both show a size the
 * same way. Reading sizes people type is parse_size() (parse.h).
 */

#include <stdint.h>

/* Room for the longest size string, "16.0 EiB" with its separator and NUL, with some to spare. */
#define MFB_SIZE_STRING_MAX 32

/*
 * Writes size to buf in the largest binary unit it reaches: "512 B",
 * "64 MiB" when it is a whole number of that unit, else with one decimal
 * ("1.5 GiB"), the unit after separator (" " in prose, "" where a table's
 * columns are split at spaces; at most a few bytes). Returns buf. Cannot
 * fail; nothing is allocated, separator is borrowed.
 */
const char *mfb_size_format(uint64_t size, const char *separator, char buf[static MFB_SIZE_STRING_MAX]);
