/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>

/*
 * Parsing of the numbers users type, shared by memfd-brokerd's options and
 * memfd-brokerctl's arguments so that both take sizes the same way.
 */

/*
 * Reads the decimal digits at the start of s (at least one; no spaces, signs
 * or "0x", unlike strtoull()) into *ret and points *ret_end past them.
 * Returns 0, -EINVAL (no digit first) or -ERANGE (above UINT64_MAX).
 */
int parse_decimal(const char *s, char **ret_end, uint64_t *ret);

/*
 * A size in bytes: a positive decimal number, optionally followed by one of
 * K, M, G, T (powers of 1024). At most INT64_MAX, so that it fits an off_t.
 * Returns 0, -EINVAL (not such a number, or 0) or -ERANGE (too large).
 */
int parse_size(const char *s, uint64_t *ret);
