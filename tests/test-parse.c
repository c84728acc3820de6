/* SPDX-License-Identifier: MIT */
/*
 * proto/parse.c on its own: the numbers memfd-brokerd's options and
 * memfd-brokerctl's arguments take, as parse.h promises them. The limits
 * are computed here from the header's words (UINT64_MAX for a decimal,
 * INT64_MAX bytes for a size), and their text printed from them, so that
 * the largest allowed value and the one past it are exact.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "macro.h"
#include "parse.h"
#include "suites.h"

/* Stored before each call, so that a parser that reports success without storing is caught. */
#define UNTOUCHED UINT64_C(0xdeadbeefcafe)

/* parse_decimal() of s: expects 0, the value want, and the end at offset end_offset of s. */
static void assert_decimal(const char *s, uint64_t want, size_t end_offset) {
        uint64_t v = UNTOUCHED;
        char *end = NULL;

        ck_assert_msg(parse_decimal(s, &end, &v) == 0, "parse_decimal(\"%s\") failed", s);
        ck_assert_msg(v == want, "parse_decimal(\"%s\") = %" PRIu64 ", not %" PRIu64, s, v, want);
        ck_assert_msg(end == s + end_offset, "parse_decimal(\"%s\") stopped at offset %td, not %zu", s, end - s,
                      end_offset);
}

/* parse_decimal() of s fails with error. */
static void assert_decimal_fails(const char *s, int error) {
        uint64_t v;
        char *end;
        int r = parse_decimal(s, &end, &v);

        ck_assert_msg(r == error, "parse_decimal(\"%s\") returned %d, not %d", s, r, error);
}

static void assert_size(const char *s, uint64_t want) {
        uint64_t v = UNTOUCHED;
        int r = parse_size(s, &v);

        ck_assert_msg(r == 0, "parse_size(\"%s\") returned %d", s, r);
        ck_assert_msg(v == want, "parse_size(\"%s\") = %" PRIu64 ", not %" PRIu64, s, v, want);
}

static void assert_size_fails(const char *s, int error) {
        uint64_t v;
        int r = parse_size(s, &v);

        ck_assert_msg(r == error, "parse_size(\"%s\") returned %d, not %d", s, r, error);
}

START_TEST(decimal_reads_leading_digits) {
        assert_decimal("0", 0, 1);
        assert_decimal("7", 7, 1);
        assert_decimal("42", 42, 2);
        assert_decimal("007", 7, 3);
        assert_decimal("00000000000000000000000000000001", 1, 32);
        assert_decimal("4096", 4096, 4);
        /* It stops at the first non-digit, which is the caller's to judge. */
        assert_decimal("12K", 12, 2);
        assert_decimal("12 ", 12, 2);
        assert_decimal("3.5", 3, 1);
        assert_decimal("1-2", 1, 1);
        assert_decimal("9a", 9, 1);
        /* Not hexadecimal: "0x10" is the number 0 before an x. */
        assert_decimal("0x10", 0, 1);
        /* Not octal either. */
        assert_decimal("010", 10, 3);
}
END_TEST

START_TEST(decimal_refuses_what_is_not_a_number) {
        static const char *const bad[] = {
                "", " 1", "\t1", "\n1", "+1", "-1", "-0", "x", "K", "a1", ".5", "\xd9\xa1" /* Arabic-Indic one */,
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_decimal_fails(bad[i], -EINVAL);
}
END_TEST

START_TEST(decimal_range_ends_at_uint64_max) {
        char s[64];

        snprintf(s, sizeof(s), "%" PRIu64, UINT64_MAX);
        ck_assert_str_eq(s, "18446744073709551615");
        assert_decimal(s, UINT64_MAX, strlen(s));
        snprintf(s, sizeof(s), "%" PRIu64 "K", UINT64_MAX);
        assert_decimal(s, UINT64_MAX, strlen(s) - 1);
        snprintf(s, sizeof(s), "000%" PRIu64, UINT64_MAX);
        assert_decimal(s, UINT64_MAX, strlen(s));
        snprintf(s, sizeof(s), "%" PRIu64, UINT64_MAX - 1);
        assert_decimal(s, UINT64_MAX - 1, strlen(s));

        /* One past it, far past it, and one digit more. */
        assert_decimal_fails("18446744073709551616", -ERANGE);
        assert_decimal_fails("18446744073709551616K", -ERANGE);
        assert_decimal_fails("99999999999999999999", -ERANGE);
        assert_decimal_fails("184467440737095516150", -ERANGE);
        assert_decimal_fails("100000000000000000000000000000000000000000", -ERANGE);
}
END_TEST

/* A clean errno on the way in is not what makes a parse succeed. */
START_TEST(decimal_ignores_a_stale_errno) {
        errno = ERANGE;
        assert_decimal("5", 5, 1);
        errno = EINVAL;
        assert_decimal("18446744073709551615", UINT64_MAX, 20);
}
END_TEST

START_TEST(size_plain_and_with_suffixes) {
        static const struct {
                const char *s;
                uint64_t want;
        } good[] = {
                { "1", 1 },
                { "4096", 4096 },
                { "0001", 1 },
                { "1K", UINT64_C(1) << 10 },
                { "1M", UINT64_C(1) << 20 },
                { "1G", UINT64_C(1) << 30 },
                { "1T", UINT64_C(1) << 40 },
                { "3K", 3 * (UINT64_C(1) << 10) },
                { "64M", 64 * (UINT64_C(1) << 20) },
                { "5G", 5 * (UINT64_C(1) << 30) },
                { "1023T", 1023 * (UINT64_C(1) << 40) },
                { "010K", 10 * (UINT64_C(1) << 10) },
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                assert_size(good[i].s, good[i].want);
}
END_TEST

START_TEST(size_refuses_garbage_zero_and_signs) {
        static const char *const bad[] = {
                /* Empty, and no digit first. */
                "", "K", "M", " 1", "+1", "-1", "-1K", "0x10",
                /* Zero, with or without a suffix. */
                "0", "00", "0K", "0M", "0G", "0T",
                /* Trailing garbage, suffixes it does not know or in the wrong case, two of them. */
                "1 ", "1\n", "1B", "1KB", "1KiB", "1k", "1m", "1g", "1t", "1P", "1E", "1KK", "1K ", "1.5K", "1.0",
                "12a", "1 K", "1K1",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_size_fails(bad[i], -EINVAL);
}
END_TEST

/* For each suffix, the largest multiple of its unit up to INT64_MAX is taken and the next one refused. */
START_TEST(size_range_ends_at_int64_max) {
        static const char suffixes[] = { '\0', 'K', 'M', 'G', 'T' };
        char s[64];

        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                unsigned shift = 10 * (unsigned) i;
                uint64_t most = (uint64_t) INT64_MAX >> shift;

                snprintf(s, sizeof(s), "%" PRIu64 "%.1s", most, &suffixes[i]);
                assert_size(s, most << shift);
                ck_assert_uint_le(most << shift, (uint64_t) INT64_MAX);
                snprintf(s, sizeof(s), "%" PRIu64 "%.1s", most + 1, &suffixes[i]);
                assert_size_fails(s, -ERANGE);
                /* Beyond what a uint64_t holds before the suffix, too. */
                snprintf(s, sizeof(s), "%" PRIu64 "%.1s", UINT64_MAX, &suffixes[i]);
                assert_size_fails(s, -ERANGE);
                snprintf(s, sizeof(s), "18446744073709551616%.1s", &suffixes[i]);
                assert_size_fails(s, -ERANGE);
        }
        assert_size("9223372036854775807", INT64_MAX);
        assert_size_fails("9223372036854775808", -ERANGE);
        assert_size("8388607T", UINT64_C(8388607) << 40);
        assert_size_fails("8388608T", -ERANGE);
}
END_TEST

Suite *parse_suite(void) {
        Suite *s = suite_create("parse");
        TCase *tc = tcase_create("parse");

        tcase_add_checked_fixture(tc, test_fd_leak_setup, test_fd_leak_teardown);
        tcase_add_test(tc, decimal_reads_leading_digits);
        tcase_add_test(tc, decimal_refuses_what_is_not_a_number);
        tcase_add_test(tc, decimal_range_ends_at_uint64_max);
        tcase_add_test(tc, decimal_ignores_a_stale_errno);
        tcase_add_test(tc, size_plain_and_with_suffixes);
        tcase_add_test(tc, size_refuses_garbage_zero_and_signs);
        tcase_add_test(tc, size_range_ends_at_int64_max);
        suite_add_tcase(s, tc);
        return s;
}
