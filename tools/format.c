/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "format.h"
#include "macro.h"
#include "size.h"

/* "2024-11-22T20:05:01.123456789+01:00", with room to spare. */
#define TIME_STRING_MAX 64
/* A user name, or a uid in decimal. */
#define OWNER_STRING_MAX 64

/* A few words describing a bit set; other bits go into one hexadecimal word. */
struct words {
        const char *word[8];
        size_t n;
        char other[16];
};

static void words_add(struct words *w, const char *word) {
        if (w->n < ELEMENTSOF(w->word))
                w->word[w->n++] = word;
}

static void seal_words(uint32_t seals, struct words *ret) {
        static const struct {
                uint32_t bit;
                const char *name;
        } table[] = {
                { F_SEAL_SEAL, "seal" },
                { F_SEAL_SHRINK, "shrink" },
                { F_SEAL_GROW, "grow" },
                { F_SEAL_WRITE, "write" },
                { F_SEAL_FUTURE_WRITE, "future-write" },
                { F_SEAL_EXEC, "exec" },
        };
        uint32_t unknown = seals;

        *ret = (struct words) {};
        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (seals & table[i].bit) {
                        words_add(ret, table[i].name);
                        unknown &= ~table[i].bit;
                }
        if (unknown) {
                snprintf(ret->other, sizeof(ret->other), "0x%" PRIx32, unknown);
                words_add(ret, ret->other);
        }
}

/* What a user wants to know first: can it still change, can it still be opened, what backs it. */
static void state_words(const mfb_region_stat *st, struct words *ret) {
        *ret = (struct words) {};
        if (st->seals & F_SEAL_WRITE)
                words_add(ret, "sealed");
        else if (st->seals & F_SEAL_FUTURE_WRITE)
                words_add(ret, "future-write-sealed");
        else
                words_add(ret, "writable");
        if (st->state & MFB_REGION_REMOVED)
                words_add(ret, "removed");
        if (st->state & MFB_REGION_HUGETLB)
                words_add(ret, "hugetlb");
        if (st->state & MFB_REGION_TRANSIENT)
                words_add(ret, "transient");
}

static void words_print(FILE *f, const struct words *w, const char *empty) {
        if (w->n == 0)
                fputs(empty, f);
        for (size_t i = 0; i < w->n; i++)
                fprintf(f, "%s%s", i > 0 ? "," : "", w->word[i]);
}

/* The width words_print() takes. */
static size_t words_width(const struct words *w, const char *empty) {
        size_t len = 0;

        if (w->n == 0)
                return strlen(empty);
        for (size_t i = 0; i < w->n; i++)
                len += (i > 0) + strlen(w->word[i]);
        return len;
}

static bool time_never(struct timespec t) {
        return t.tv_sec == 0 && t.tv_nsec == 0;
}

/* ISO 8601 in local time, nanoseconds and UTC offset included, so that it is unambiguous. */
static const char *time_string(struct timespec t, char buf[static TIME_STRING_MAX]) {
        struct tm tm;
        size_t n;
        long off;

        if (!localtime_r(&t.tv_sec, &tm)) {
                snprintf(buf, TIME_STRING_MAX, "@%lld.%09ld", (long long) t.tv_sec, t.tv_nsec);
                return buf;
        }
        n = strftime(buf, TIME_STRING_MAX, "%Y-%m-%dT%H:%M:%S", &tm);
        off = tm.tm_gmtoff / 60;
        snprintf(buf + n, TIME_STRING_MAX - n, ".%09ld%c%02ld:%02ld",
                 t.tv_nsec, off < 0 ? '-' : '+', labs(off) / 60, labs(off) % 60);
        return buf;
}

/* The user's name, or the uid in decimal when it has none. */
static const char *owner_string(uid_t uid, char buf[static OWNER_STRING_MAX]) {
        const struct passwd *pw = getpwuid(uid);

        if (pw && strlen(pw->pw_name) < OWNER_STRING_MAX)
                return strcpy(buf, pw->pw_name);
        snprintf(buf, OWNER_STRING_MAX, "%u", (unsigned) uid);
        return buf;
}

static void time_line(FILE *f, const char *label, struct timespec t) {
        char buf[TIME_STRING_MAX];

        fprintf(f, "%-10s %s\n", label, time_never(t) ? "never" : time_string(t, buf));
}

void format_stat(FILE *f, const mfb_region_stat *st, uint64_t allocated) {
        char owner[OWNER_STRING_MAX], creator[OWNER_STRING_MAX], size[MFB_SIZE_STRING_MAX];
        struct words w;

        fprintf(f, "%-10s %" PRIu64 "\n", "handle:", st->handle);
        fprintf(f, "%-10s %s\n", "name:", *st->name ? st->name : "-");
        fprintf(f, "%-10s %" PRIu64 " (%s)\n", "size:", st->size, mfb_size_format(st->size, " ", size));
        if (allocated == MFB_UNKNOWN)
                fprintf(f, "%-10s unknown\n", "allocated:");
        else
                fprintf(f, "%-10s %" PRIu64 " (%s)\n", "allocated:", allocated, mfb_size_format(allocated, " ", size));
        fprintf(f, "%-10s %s (uid %u, gid %u)\n", "owner:", owner_string(st->uid, owner),
                (unsigned) st->uid, (unsigned) st->gid);
        fprintf(f, "%-10s %s (uid %u, gid %u), pid %d\n", "creator:", owner_string(st->creator_uid, creator),
                (unsigned) st->creator_uid, (unsigned) st->creator_gid, (int) st->creator_pid);
        fprintf(f, "%-10s %04o\n", "mode:", (unsigned) st->mode);
        fprintf(f, "%-10s %" PRIu32 "\n", "nattch:", st->nattch);
        fprintf(f, "%-10s %d\n", "last pid:", (int) st->last_pid);
        seal_words(st->seals, &w);
        fprintf(f, "%-10s ", "seals:");
        words_print(f, &w, "none");
        state_words(st, &w);
        fprintf(f, "\n%-10s ", "state:");
        words_print(f, &w, "");
        fputc('\n', f);
        time_line(f, "created:", st->create_time);
        time_line(f, "attached:", st->attach_time);
        time_line(f, "detached:", st->detach_time);
        time_line(f, "changed:", st->change_time);
}

static void json_string(FILE *f, const char *s) {
        fputc('"', f);
        for (; *s; s++) {
                unsigned char ch = (unsigned char) *s;

                if (ch == '"' || ch == '\\')
                        fprintf(f, "\\%c", ch);
                else if (ch < 0x20 || ch == 0x7f)
                        fprintf(f, "\\u%04x", ch);
                else
                        fputc(ch, f);
        }
        fputc('"', f);
}

static void json_words(FILE *f, const struct words *w) {
        fputc('[', f);
        for (size_t i = 0; i < w->n; i++) {
                if (i > 0)
                        fputs(", ", f);
                json_string(f, w->word[i]);
        }
        fputc(']', f);
}

static void json_time(FILE *f, const char *key, struct timespec t) {
        char buf[TIME_STRING_MAX];

        fprintf(f, ", \"%s\": ", key);
        if (time_never(t))
                fputs("null", f);
        else
                json_string(f, time_string(t, buf));
}

static void stat_json(FILE *f, const mfb_region_stat *st, uint64_t allocated) {
        struct words w;

        fprintf(f, "{\"handle\": %" PRIu64 ", \"name\": ", st->handle);
        if (*st->name)
                json_string(f, st->name);
        else
                fputs("null", f);
        fprintf(f, ", \"size\": %" PRIu64 ", \"allocated\": ", st->size);
        if (allocated == MFB_UNKNOWN)
                fputs("null", f);
        else
                fprintf(f, "%" PRIu64, allocated);
        fprintf(f, ", \"uid\": %u, \"gid\": %u, \"creator_uid\": %u, \"creator_gid\": %u"
                ", \"mode\": %u, \"creator_pid\": %d, \"last_pid\": %d, \"nattch\": %" PRIu32,
                (unsigned) st->uid, (unsigned) st->gid, (unsigned) st->creator_uid,
                (unsigned) st->creator_gid, (unsigned) st->mode, (int) st->creator_pid, (int) st->last_pid,
                st->nattch);
        seal_words(st->seals, &w);
        fputs(", \"seals\": ", f);
        json_words(f, &w);
        state_words(st, &w);
        fputs(", \"state\": ", f);
        json_words(f, &w);
        json_time(f, "create_time", st->create_time);
        json_time(f, "attach_time", st->attach_time);
        json_time(f, "detach_time", st->detach_time);
        json_time(f, "change_time", st->change_time);
        fputc('}', f);
}

void format_stat_json(FILE *f, const mfb_region_stat *st, uint64_t allocated) {
        stat_json(f, st, allocated);
        fputc('\n', f);
}

void format_list_json(FILE *f, const mfb_region_stat *entries, const uint64_t *allocated, size_t n) {
        fputc('[', f);
        for (size_t i = 0; i < n; i++) {
                fputs(i > 0 ? ",\n " : "\n ", f);
                stat_json(f, &entries[i], allocated[i]);
        }
        fputs(n > 0 ? "\n]\n" : "]\n", f);
}

/* Column widths of the table: at least the header's, at most what the widest entry needs. */
struct widths {
        int handle, name, owner, size, allocated, nattch, seals;
};

/* A size cell of the table: bytes, or with human one word in binary units ("16MiB"); "-" for unknown. */
static const char *size_cell(uint64_t v, bool human, char buf[static MFB_SIZE_STRING_MAX]) {
        if (v == MFB_UNKNOWN)
                return "-";
        if (human)
                return mfb_size_format(v, "", buf);
        snprintf(buf, MFB_SIZE_STRING_MAX, "%" PRIu64, v);
        return buf;
}

static int width_max(int w, int len) {
        return len > w ? len : w;
}

static void widths_measure(const mfb_region_stat *entries, const uint64_t *allocated, size_t n, bool human,
                           struct widths *ret) {
        char buf[MFB_SIZE_STRING_MAX];

        *ret = (struct widths) {
                .handle = (int) strlen("HANDLE"),
                .name = (int) strlen("NAME"),
                .owner = (int) strlen("OWNER"),
                .size = (int) strlen("SIZE"),
                .allocated = (int) strlen("ALLOC"),
                .nattch = (int) strlen("NATTCH"),
                .seals = (int) strlen("SEALS"),
        };
        for (size_t i = 0; i < n; i++) {
                const mfb_region_stat *st = &entries[i];
                char owner[OWNER_STRING_MAX];
                struct words w;

                seal_words(st->seals, &w);
                ret->handle = width_max(ret->handle, snprintf(NULL, 0, "%" PRIu64, st->handle));
                ret->name = width_max(ret->name, *st->name ? (int) strlen(st->name) : 1);
                ret->owner = width_max(ret->owner, (int) strlen(owner_string(st->uid, owner)));
                ret->size = width_max(ret->size, (int) strlen(size_cell(st->size, human, buf)));
                ret->allocated = width_max(ret->allocated, (int) strlen(size_cell(allocated[i], human, buf)));
                ret->nattch = width_max(ret->nattch, snprintf(NULL, 0, "%" PRIu32, st->nattch));
                ret->seals = width_max(ret->seals, (int) words_width(&w, "none"));
        }
}

void format_list(FILE *f, const mfb_region_stat *entries, const uint64_t *allocated, size_t n, bool human) {
        struct widths wd;

        widths_measure(entries, allocated, n, human, &wd);
        fprintf(f, "%*s %-*s %-*s MODE %*s %*s %*s %-*s STATE\n", wd.handle, "HANDLE", wd.name, "NAME",
                wd.owner, "OWNER", wd.size, "SIZE", wd.allocated, "ALLOC", wd.nattch, "NATTCH", wd.seals, "SEALS");

        for (size_t i = 0; i < n; i++) {
                const mfb_region_stat *st = &entries[i];
                char owner[OWNER_STRING_MAX], size[MFB_SIZE_STRING_MAX], alloc[MFB_SIZE_STRING_MAX];
                struct words w;

                fprintf(f, "%*" PRIu64 " %-*s %-*s %04o %*s %*s %*" PRIu32 " ", wd.handle, st->handle,
                        wd.name, *st->name ? st->name : "-", wd.owner, owner_string(st->uid, owner),
                        (unsigned) st->mode, wd.size, size_cell(st->size, human, size), wd.allocated,
                        size_cell(allocated[i], human, alloc), wd.nattch, st->nattch);
                seal_words(st->seals, &w);
                words_print(f, &w, "none");
                fprintf(f, "%*s", wd.seals - (int) words_width(&w, "none") + 1, "");
                state_words(st, &w);
                words_print(f, &w, "");
                fputc('\n', f);
        }
}

/* The names of the resources, as the table and the JSON keys show them, and which count bytes. */
static const struct {
        const char *name;
        bool bytes;
} resources[MFB_LIMIT_COUNT] = {
        [MFB_LIMIT_REGIONS] = { "regions", false },
        [MFB_LIMIT_BYTES] = { "bytes", true },
        [MFB_LIMIT_FDS] = { "fds", false },
        [MFB_LIMIT_CONNECTIONS] = { "connections", false },
        [MFB_LIMIT_QUEUED_BYTES] = { "queued_bytes", true },
        [MFB_LIMIT_WAITERS] = { "waiters", false },
        [MFB_LIMIT_KEPT] = { "kept_regions", false },
        [MFB_LIMIT_HOLDS] = { "holds", false },
};

/* The columns of the limits table, in order, with their headers. */
enum {
        LIMIT_BROKER_MAX,
        LIMIT_BROKER_USED,
        LIMIT_UID_MAX,
        LIMIT_UID_USED,
        LIMIT_UID_AVAILABLE,
        LIMIT_COLUMNS,
};

static const char *const limit_headers[LIMIT_COLUMNS] = {
        [LIMIT_BROKER_MAX] = "BROKER-MAX",
        [LIMIT_BROKER_USED] = "BROKER-USED",
        [LIMIT_UID_MAX] = "UID-MAX",
        [LIMIT_UID_USED] = "UID-USED",
        [LIMIT_UID_AVAILABLE] = "AVAILABLE",
};

static uint64_t limit_column(const mfb_limit *l, int column) {
        switch (column) {
        case LIMIT_BROKER_MAX:
                return l->broker_max;
        case LIMIT_BROKER_USED:
                return l->broker_used;
        case LIMIT_UID_MAX:
                return l->uid_max;
        case LIMIT_UID_USED:
                return l->uid_used;
        default:
                return l->uid_available;
        }
}

/*
 * One cell: "-" for no limit and for a use the broker does not tell (both
 * UINT64_MAX), except that nothing limiting what may be taken reads
 * "unlimited"; sizes in binary units, without a space, so that every cell
 * is one word for awk and cut.
 */
static const char *limit_string(uint64_t v, int column, bool bytes, char buf[static MFB_SIZE_STRING_MAX]) {
        if (v == MFB_UNLIMITED)
                return column == LIMIT_UID_AVAILABLE ? "unlimited" : "-";
        if (bytes)
                return mfb_size_format(v, "", buf);
        snprintf(buf, MFB_SIZE_STRING_MAX, "%" PRIu64, v);
        return buf;
}

void format_limits(FILE *f, const mfb_limit *limits, size_t n) {
        int name_width = (int) strlen("RESOURCE"), widths[LIMIT_COLUMNS];
        char buf[MFB_SIZE_STRING_MAX];

        for (int col = 0; col < LIMIT_COLUMNS; col++)
                widths[col] = (int) strlen(limit_headers[col]);
        for (size_t i = 0; i < n; i++) {
                name_width = width_max(name_width, (int) strlen(resources[i].name));
                for (int col = 0; col < LIMIT_COLUMNS; col++)
                        widths[col] = width_max(widths[col], (int) strlen(limit_string(
                                limit_column(&limits[i], col), col, resources[i].bytes, buf)));
        }

        fprintf(f, "%-*s", name_width, "RESOURCE");
        for (int col = 0; col < LIMIT_COLUMNS; col++)
                fprintf(f, " %*s", widths[col], limit_headers[col]);
        fputc('\n', f);
        for (size_t i = 0; i < n; i++) {
                fprintf(f, "%-*s", name_width, resources[i].name);
                for (int col = 0; col < LIMIT_COLUMNS; col++)
                        fprintf(f, " %*s", widths[col],
                                limit_string(limit_column(&limits[i], col), col, resources[i].bytes, buf));
                fputc('\n', f);
        }
}

/* A number, or null for UINT64_MAX (no limit, not told), which JSON readers could not hold exactly. */
static void json_limit(FILE *f, const char *key, uint64_t v) {
        fprintf(f, ", \"%s\": ", key);
        if (v == MFB_UNLIMITED)
                fputs("null", f);
        else
                fprintf(f, "%" PRIu64, v);
}

void format_limits_json(FILE *f, uid_t uid, const mfb_limit *limits, size_t n) {
        fprintf(f, "{\"uid\": %u, \"resources\": {", (unsigned) uid);
        for (size_t i = 0; i < n; i++) {
                fprintf(f, "%s\n  \"%s\": {\"unit\": \"%s\"", i > 0 ? "," : "", resources[i].name,
                        resources[i].bytes ? "bytes" : "count");
                json_limit(f, "broker_max", limits[i].broker_max);
                json_limit(f, "broker_used", limits[i].broker_used);
                json_limit(f, "uid_max", limits[i].uid_max);
                json_limit(f, "uid_used", limits[i].uid_used);
                json_limit(f, "uid_available", limits[i].uid_available);
                fputc('}', f);
        }
        fputs(n > 0 ? "\n}}\n" : "}}\n", f);
}

/* A usage cell: "used/max", one word, bytes in binary units, "-" for no limit (or not told). */
static const char *usage_cell(uint64_t used, uint64_t max, bool bytes, char buf[static 2 * MFB_SIZE_STRING_MAX]) {
        char u[MFB_SIZE_STRING_MAX], m[MFB_SIZE_STRING_MAX];

        snprintf(buf, 2 * MFB_SIZE_STRING_MAX, "%s/%s", limit_string(used, LIMIT_UID_USED, bytes, u),
                 limit_string(max, LIMIT_UID_MAX, bytes, m));
        return buf;
}

/* Whether rows tell what every uid together holds: only to root and the broker's uid. */
static bool usage_totals_told(const mfb_limit *limits, size_t n_rows, size_t n) {
        return n_rows > 0 && n > 0 && limits[0].broker_used != MFB_UNKNOWN;
}

/* The widths of the usage table's columns: user, uid, then one per resource. */
static void usage_widths(const uid_t *uids, const mfb_limit *limits, size_t n_rows, size_t stride, size_t n,
                         int *ret_user, int *ret_uid, int ret_widths[static MFB_LIMIT_COUNT]) {
        char buf[2 * MFB_SIZE_STRING_MAX], owner[OWNER_STRING_MAX];
        bool totals = usage_totals_told(limits, n_rows, n);

        *ret_user = width_max((int) strlen("USER"), totals ? (int) strlen("(all)") : 0);
        *ret_uid = (int) strlen("UID");
        for (size_t j = 0; j < n; j++)
                ret_widths[j] = (int) strlen(resources[j].name);
        for (size_t i = 0; i < n_rows; i++) {
                *ret_user = width_max(*ret_user, (int) strlen(owner_string(uids[i], owner)));
                *ret_uid = width_max(*ret_uid, snprintf(NULL, 0, "%u", (unsigned) uids[i]));
                for (size_t j = 0; j < n; j++) {
                        const mfb_limit *l = &limits[i * stride + j];

                        ret_widths[j] = width_max(ret_widths[j], (int) strlen(usage_cell(l->uid_used, l->uid_max,
                                                                                          resources[j].bytes, buf)));
                        if (totals && i == 0)
                                ret_widths[j] = width_max(ret_widths[j], (int) strlen(usage_cell(
                                        l->broker_used, l->broker_max, resources[j].bytes, buf)));
                }
        }
}

void format_usage(FILE *f, const uid_t *uids, const mfb_limit *limits, size_t n_rows, size_t stride, size_t n) {
        char buf[2 * MFB_SIZE_STRING_MAX], owner[OWNER_STRING_MAX];
        int user_width, uid_width, widths[MFB_LIMIT_COUNT];

        usage_widths(uids, limits, n_rows, stride, n, &user_width, &uid_width, widths);
        fprintf(f, "%-*s %*s", user_width, "USER", uid_width, "UID");
        for (size_t j = 0; j < n; j++) {
                char header[32];

                /* The resource names of limits, in capitals as headers are. */
                snprintf(header, sizeof(header), "%s", resources[j].name);
                for (char *p = header; *p; p++)
                        if (*p >= 'a' && *p <= 'z')
                                *p = (char) (*p - 'a' + 'A');
                fprintf(f, " %*s", widths[j], header);
        }
        fputc('\n', f);
        for (size_t i = 0; i < n_rows; i++) {
                fprintf(f, "%-*s %*u", user_width, owner_string(uids[i], owner), uid_width, (unsigned) uids[i]);
                for (size_t j = 0; j < n; j++) {
                        const mfb_limit *l = &limits[i * stride + j];

                        fprintf(f, " %*s", widths[j], usage_cell(l->uid_used, l->uid_max, resources[j].bytes, buf));
                }
                fputc('\n', f);
        }
        /* Every uid together against the broker's limits, where the broker tells it. */
        if (usage_totals_told(limits, n_rows, n)) {
                fprintf(f, "%-*s %*s", user_width, "(all)", uid_width, "-");
                for (size_t j = 0; j < n; j++)
                        fprintf(f, " %*s", widths[j], usage_cell(limits[j].broker_used, limits[j].broker_max,
                                                                 resources[j].bytes, buf));
                fputc('\n', f);
        }
}

void format_usage_json(FILE *f, const uid_t *uids, const mfb_limit *limits, size_t n_rows, size_t stride, size_t n) {
        char owner[OWNER_STRING_MAX];

        fputs("{\"totals\": ", f);
        if (usage_totals_told(limits, n_rows, n)) {
                fputc('{', f);
                for (size_t j = 0; j < n; j++) {
                        fprintf(f, "%s\n  \"%s\": {\"unit\": \"%s\"", j > 0 ? "," : "", resources[j].name,
                                resources[j].bytes ? "bytes" : "count");
                        json_limit(f, "broker_max", limits[j].broker_max);
                        json_limit(f, "broker_used", limits[j].broker_used);
                        fputc('}', f);
                }
                fputs(n > 0 ? "\n}" : "}", f);
        } else
                fputs("null", f);
        fputs(",\n\"users\": [", f);
        for (size_t i = 0; i < n_rows; i++) {
                const struct passwd *pw = getpwuid(uids[i]);

                fprintf(f, "%s\n {\"uid\": %u, \"user\": ", i > 0 ? "," : "", (unsigned) uids[i]);
                if (pw)
                        json_string(f, owner_string(uids[i], owner));
                else
                        fputs("null", f);
                fputs(", \"resources\": {", f);
                for (size_t j = 0; j < n; j++) {
                        const mfb_limit *l = &limits[i * stride + j];

                        fprintf(f, "%s\n  \"%s\": {\"unit\": \"%s\"", j > 0 ? "," : "", resources[j].name,
                                resources[j].bytes ? "bytes" : "count");
                        json_limit(f, "uid_max", l->uid_max);
                        json_limit(f, "uid_used", l->uid_used);
                        json_limit(f, "uid_available", l->uid_available);
                        fputc('}', f);
                }
                fputs(n > 0 ? "\n }}" : "}}", f);
        }
        fputs(n_rows > 0 ? "\n]}\n" : "]}\n", f);
}
