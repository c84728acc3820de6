/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The rule for region names, shared by the codec (what may go on the wire),
 * the client library and memfd-brokerctl (which refuses a bad name as a
 * usage error before any broker is asked), so that all agree on it.
 */

/*
 * Checks that a region name is acceptable: 1..MFB_WIRE_NAME_MAX bytes of
 * printable ASCII without spaces (0x21..0x7e). Returns 0, -EINVAL for a
 * NULL or empty name or a bad byte, -ENAMETOOLONG for a long one. name is
 * borrowed and read up to its NUL or one byte past the limit.
 */
int mfb_name_check(const char *name);
