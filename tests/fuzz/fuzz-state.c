/* SPDX-License-Identifier: MIT */
/*
 * The saved-state loader (daemon/state.c) on arbitrary files, as restore.c
 * uses it after a restart: the file is put in a memfd and loaded. It must
 * not crash, leak memory or fds, and what it accepts must be usable: the
 * regions it reports are valid, and a state loaded from it can be updated
 * and loaded again with exactly the updates seen.
 *
 * Input: a byte of options, a byte naming the region whose callback fails
 * (0xff: none), then the file. The options let the fuzzer past the
 * checksums, which it could hardly guess, to the slot logic behind them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "fuzz-check.h"
#include "state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Recompute the checksum of the header and of every copy that is not all zero (a never-written one). */
#define OPT_FIX_CHECKSUMS 0x1U
/* Put a valid header in front: the input is the slots only. */
#define OPT_ADD_HEADER 0x2U
/* Pad the file with zero bytes to whole slots. */
#define OPT_PAD 0x4U

/*
 * The file layout of daemon/state.c, which this fuzzer must know to fix
 * checksums up: a header in the room of one record, then two copies per
 * slot. Each copy starts with the FNV-1a checksum of the rest and its
 * sequence number; the header ends with the checksum of what precedes it.
 */
#define RECORD_SIZE 360U
#define RECORD_CHECKSUMMED_OFFSET 8U
#define HEADER_MAGIC "MFBSTATE"
#define HEADER_VERSION 1U
#define HEADER_CHECKSUM_OFFSET 16U

/* A state file bigger than this tells the fuzzer nothing more. */
#define FILE_MAX (RECORD_SIZE * 1024U)

/* Loaded regions seen at most; more make the callback fail, as an allocation failure would. */
#define REGIONS_MAX 512U

/* A region as the state saves it: its meta, and its name. */
struct saved {
        struct region_meta meta;
        char name[MFB_WIRE_NAME_MAX + 1];
};

struct loaded {
        struct saved regions[REGIONS_MAX];
        uint32_t slots[REGIONS_MAX];
        size_t n;
        size_t fail_at;         /* the callback fails for this region; SIZE_MAX for none */
};

/* What a failing callback returns: an error state_load() itself never gives. */
#define CALLBACK_ERROR (-ENOTRECOVERABLE)

static uint64_t fnv1a(const uint8_t *p, size_t len) {
        uint64_t h = UINT64_C(0xcbf29ce484222325);

        for (size_t i = 0; i < len; i++) {
                h ^= p[i];
                h *= UINT64_C(0x100000001b3);
        }
        return h;
}

static bool all_zero(const uint8_t *p, size_t len) {
        for (size_t i = 0; i < len; i++)
                if (p[i] != 0)
                        return false;
        return true;
}

static void fix_checksums(uint8_t *file, size_t size) {
        uint64_t sum;

        if (size >= HEADER_CHECKSUM_OFFSET + sizeof(sum)) {
                sum = fnv1a(file, HEADER_CHECKSUM_OFFSET);
                memcpy(file + HEADER_CHECKSUM_OFFSET, &sum, sizeof(sum));
        }
        for (size_t off = RECORD_SIZE; off + RECORD_SIZE <= size; off += RECORD_SIZE) {
                if (all_zero(file + off, RECORD_SIZE))
                        continue;
                sum = fnv1a(file + off + RECORD_CHECKSUMMED_OFFSET, RECORD_SIZE - RECORD_CHECKSUMMED_OFFSET);
                memcpy(file + off, &sum, sizeof(sum));
        }
}

static void write_header(uint8_t *file) {
        uint32_t version = HEADER_VERSION, record_size = RECORD_SIZE;

        memcpy(file, HEADER_MAGIC, 8);
        memcpy(file + 8, &version, sizeof(version));
        memcpy(file + 12, &record_size, sizeof(record_size));
}

static int collect(const struct region_meta *meta, const char *name, uint32_t slot, void *userdata) {
        struct loaded *l = userdata;

        if (l->n == l->fail_at || l->n == REGIONS_MAX)
                return CALLBACK_ERROR;
        check(strlen(name) <= MFB_WIRE_NAME_MAX, "a region was loaded with a name longer than any");
        l->regions[l->n].meta = *meta;
        snprintf(l->regions[l->n].name, sizeof(l->regions[l->n].name), "%s", name);
        l->slots[l->n] = slot;
        l->n++;
        return 0;
}

/* A memfd holding len bytes of file; the caller owns it. */
static int memfd_with(const uint8_t *file, size_t len) {
        int fd = memfd_create("fuzz-state", MFD_CLOEXEC);

        check(fd >= 0, "memfd_create() failed");
        check(len == 0 || pwrite(fd, file, len, 0) == (ssize_t) len, "writing the state file failed");
        return fd;
}

/* What state_load() reports must be what state.h promises of a saved region. */
static void check_loaded(const struct loaded *l, uint32_t n_slots) {
        for (size_t i = 0; i < l->n; i++) {
                const struct saved *r = &l->regions[i];

                check(r->meta.handle != 0, "a region was loaded with handle 0");
                check(r->meta.size != 0 && r->meta.size <= INT64_MAX, "a region was loaded with a size no memfd has");
                check(r->meta.mode <= 0777, "a region was loaded with a mode above 0777");
                check((r->meta.flags & ~REGION_FLAGS_ALL) == 0,
                      "a region was loaded with flags the broker does not set");
                check(memchr(r->name, 0, sizeof(r->name)) && mfb_name_check(r->name) == 0,
                      "a region was loaded with a bad name");
                check(l->slots[i] > 0 && l->slots[i] < n_slots, "a region was loaded from a slot outside the file");
                check(i == 0 || l->slots[i] > l->slots[i - 1], "slots were not reported once each, in order");
        }
}

static bool same_region(const struct saved *a, const struct saved *b) {
        return memcmp(&a->meta, &b->meta, sizeof(a->meta)) == 0 && strcmp(a->name, b->name) == 0;
}

/* The region loaded from slot, or NULL. */
static const struct saved *find_slot(const struct loaded *l, uint32_t slot) {
        for (size_t i = 0; i < l->n; i++)
                if (l->slots[i] == slot)
                        return &l->regions[i];
        return NULL;
}

/*
 * Updates a loaded state as the broker would (a region forgotten, one
 * changed, one added, the handle mark moved), then loads what it wrote
 * and compares. before is what the first load reported.
 */
static void round_trip(struct state *s, struct loaded *before) {
        struct saved added = { .meta = {
                .handle = 1, .size = 4096, .uid = 1000, .gid = 1000, .creator_uid = 1000, .creator_gid = 1000,
                .mode = 0640, .creator_pid = 1, .last_pid = 1, .create_time = 1,
        } };
        uint64_t mark = state_handle_mark(s);
        uint32_t added_slot = 0, forgotten = 0;
        struct state *again = NULL;
        static struct loaded after;
        int fd;

        snprintf(added.name, sizeof(added.name), "fuzz-added");
        if (before->n > 0) {
                forgotten = before->slots[0];
                check(state_forget_region(s, forgotten) == 0, "forgetting a loaded region failed");
        }
        if (before->n > 1) {
                before->regions[1].meta.mode ^= 0007;
                before->regions[1].meta.attach_time++;
                check(state_save_region(s, &before->slots[1], &before->regions[1].meta, before->regions[1].name) == 0,
                      "updating a loaded region failed");
        }
        check(state_save_region(s, &added_slot, &added.meta, added.name) == 0,
              "saving a region into a loaded state failed");
        check(added_slot != 0, "a region was saved in the mark's slot");
        if (mark < UINT64_MAX)
                check(state_reserve_handle(s, mark + 1) == 0, "reserving a handle in a loaded state failed");

        fd = fcntl(state_fd(s), F_DUPFD_CLOEXEC, 3);
        check(fd >= 0, "dup() failed");
        after = (struct loaded) { .fail_at = SIZE_MAX };
        check(state_load(fd, collect, &after, &again) == 0, "a state written after a valid load does not load");
        check(state_handle_mark(again) >= mark + (mark < UINT64_MAX), "the handle mark went back");

        /* Exactly the regions before, less the forgotten one, with the update, and the added one. */
        check(after.n == before->n - (before->n > 0) + 1, "regions were lost or made up across an update");
        for (size_t i = 0; i < before->n; i++) {
                const struct saved *r = find_slot(&after, before->slots[i]);

                if (before->slots[i] == forgotten)
                        check(!r || r == find_slot(&after, added_slot), "a forgotten region came back");
                else
                        check(r && same_region(r, &before->regions[i]), "a region changed across an update");
        }
        check(find_slot(&after, added_slot) && same_region(find_slot(&after, added_slot), &added),
              "the added region did not come back");
        state_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static struct loaded loaded;
        static uint8_t file[FILE_MAX];
        struct state *s = NULL;
        size_t len = 0, units;
        unsigned options;
        uint32_t n_slots;
        int r;

        if (size < 2)
                return 0;
        options = data[0];
        loaded = (struct loaded) { .fail_at = data[1] == 0xff ? SIZE_MAX : data[1] };
        data += 2;
        size -= 2;

        memset(file, 0, sizeof(file));
        if (options & OPT_ADD_HEADER) {
                write_header(file);
                len = RECORD_SIZE;
        }
        if (size > FILE_MAX - len)
                size = FILE_MAX - len;
        memcpy(file + len, data, size);
        len += size;
        /* An odd number of units, 3 at least: the header's room and whole slots, the mark's at least. */
        if (options & OPT_PAD) {
                units = (len + RECORD_SIZE - 1) / RECORD_SIZE;
                units = units < 3 ? 3 : units | 1;
                if (units * RECORD_SIZE <= FILE_MAX)
                        len = units * RECORD_SIZE;
        }
        if (options & OPT_FIX_CHECKSUMS)
                fix_checksums(file, len);

        r = state_load(memfd_with(file, len), collect, &loaded, &s);
        if (r < 0) {
                check(!s, "a failed load returned a state");
                check(r == -EBADMSG || r == -EPROTONOSUPPORT || r == CALLBACK_ERROR,
                      "a load failed with an error that only a broken system explains");
                check(r != CALLBACK_ERROR || loaded.n == loaded.fail_at || loaded.n == REGIONS_MAX,
                      "a load failed with the callback's error, which did not fail");
                return 0;
        }
        check(s && len % RECORD_SIZE == 0, "a file of no whole number of slots was loaded");
        n_slots = (uint32_t) ((len / RECORD_SIZE - 1) / 2);
        check(loaded.n <= loaded.fail_at, "a load succeeded though the callback failed");
        check_loaded(&loaded, n_slots);
        round_trip(s, &loaded);
        state_free(s);
        return 0;
}
