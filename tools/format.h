/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * How memfd-brokerctl shows regions and limits: a block of fields and
 * ipcs-like tables for people, JSON for programs. Write errors are left in
 * f's error flag for the caller to check once.
 */

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "memfd-broker.h"

/* Every field of st, one "label: value" line each. */
void format_stat(FILE *f, const mfb_region_stat *st);

/* One JSON object with every field of st, and a newline. */
void format_stat_json(FILE *f, const mfb_region_stat *st);

/* A table of n regions with a header line, like ipcs -m. */
void format_list(FILE *f, const mfb_region_stat *entries, size_t n);

/* A JSON array of n objects as format_stat_json() writes them. */
void format_list_json(FILE *f, const mfb_region_stat *entries, size_t n);

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
