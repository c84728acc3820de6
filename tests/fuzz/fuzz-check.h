/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The oracle of the simpler fuzz targets: a broken expectation names itself
 * on stderr and aborts, which libFuzzer reports as a crash with the input.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static inline void fuzz_fail(const char *what) {
        fprintf(stderr, "%s: %s\n", program_invocation_short_name, what);
        abort();
}

#define check(cond, what)                       \
        do {                                    \
                if (!(cond))                    \
                        fuzz_fail(what);        \
        } while (0)
