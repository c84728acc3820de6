/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * How memfd-brokerctl shows regions and limits: a block of fields and
 * ipcs-like tables for people, JSON for programs. Write errors are left in
 * f's error flag for the caller to check once.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "memfd-broker.h"

/*
 * Every field of st, one "label: value" line each, and allocated, the bytes
 * of memory the region uses (mfb_allocated_handle()), MFB_UNKNOWN for
 * unknown.
 */
void format_stat(FILE *f, const mfb_region_stat *st, uint64_t allocated);

/* One JSON object with every field of st and allocated (null when MFB_UNKNOWN), and a newline. */
void format_stat_json(FILE *f, const mfb_region_stat *st, uint64_t allocated);

/*
 * A table of n regions with a header line, like ipcs -m; allocated[i] is
 * entries[i]'s allocated bytes, MFB_UNKNOWN for unknown ("-"). With human,
 * sizes are one word in binary units ("16MiB"), else bytes.
 */
void format_list(FILE *f, const mfb_region_stat *entries, const uint64_t *allocated, size_t n, bool human);

/* A JSON array of n objects as format_stat_json() writes them. */
void format_list_json(FILE *f, const mfb_region_stat *entries, const uint64_t *allocated, size_t n);

/*
 * A table of the first n resources (at most MFB_LIMIT_COUNT) of limits, as
 * mfb_limits() fills them: one line each, every cell one word (sizes in
 * binary units, "64MiB"), "-" for no limit and for what the broker does not
 * tell.
 */
void format_limits(FILE *f, const mfb_limit *limits, size_t n);

/*
 * The same as one JSON object: {"uid": uid, "resources": {name: {"unit":
 * "count" or "bytes", "broker_max", "broker_used", "uid_max", "uid_used",
 * "uid_available"}}}, null standing for no limit and for not told.
 */
void format_limits_json(FILE *f, uid_t uid, const mfb_limit *limits, size_t n);

/*
 * What each uid holds, as mfb_usage() fills uids and limits (n_rows rows of
 * stride entries, of which the first n, at most MFB_LIMIT_COUNT, are
 * shown): a line per uid, a column per resource, each cell "used/limit"
 * as one word ("-" for no limit), then a line "(all)" of every uid
 * together against the broker's limits when the broker tells it (to root
 * and its own uid).
 */
void format_usage(FILE *f, const uid_t *uids, const mfb_limit *limits, size_t n_rows, size_t stride, size_t n);

/*
 * The same as one JSON object: {"totals": {name: {"unit", "broker_max",
 * "broker_used"}} or null when not told, "users": [{"uid", "user" (null
 * when the system has no name for it), "resources": {name: {"unit",
 * "uid_max", "uid_used", "uid_available"}}}]}, null standing for no limit.
 */
void format_usage_json(FILE *f, const uid_t *uids, const mfb_limit *limits, size_t n_rows, size_t stride,
                       size_t n);
