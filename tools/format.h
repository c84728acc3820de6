/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * How memfd-brokerctl shows regions: a block of fields and an ipcs-like
 * table for people, JSON for programs. Write errors are left in f's error
 * flag for the caller to check once.
 */

#include <stddef.h>
#include <stdio.h>

#include "memfd-broker.h"

/* Every field of st, one "label: value" line each. */
void format_stat(FILE *f, const mfb_region_stat *st);

/* One JSON object with every field of st, and a newline. */
void format_stat_json(FILE *f, const mfb_region_stat *st);

/* A table of n regions with a header line, like ipcs -m. */
void format_list(FILE *f, const mfb_region_stat *entries, size_t n);

/* A JSON array of n objects as format_stat_json() writes them. */
void format_list_json(FILE *f, const mfb_region_stat *entries, size_t n);
