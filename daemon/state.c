/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/param.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "macro.h"
#include "state.h"

#define STATE_MAGIC "MFBSTATE"
/* Bump for any change of the layout below: an older broker then starts afresh rather than misread the file. */
#define STATE_VERSION 1U

/* Slots a new file has room for; the room doubles whenever it runs out. */
#define SLOTS_INITIAL 64U
/* Slots read at once while loading. */
#define SLOTS_PER_READ 64U

enum {
        RECORD_FREE = 1,
        RECORD_REGION = 2,
        RECORD_MARK = 3,
};

/*
 * One copy in a slot, in the host's byte order: the file never leaves the
 * host. A region's meta is stored as it is in memory (regionmeta.h), with
 * one difference that keeps format 1, which had its fields one by one:
 * the meta's flags are stored in flags, ahead of it, and its own flags
 * word, which format 1 reserved, is 0.
 */
struct record {
        uint64_t checksum;      /* of the bytes after it */
        uint64_t seq;           /* of the write: above every other in the file when written; 1 to INT64_MAX */
        uint32_t type;          /* RECORD_* */
        uint32_t flags;         /* REGION: the meta's, REGION_* */
        struct region_meta meta;        /* REGION: the region's; MARK: the mark in meta.handle */
        struct mfb_wire_name name;
};

/* At the start of the file, which gives it one record's room. */
struct header {
        char magic[8];
        uint32_t version;       /* checked before the checksum: a newer format may checksum otherwise */
        uint32_t record_size;
        uint64_t checksum;      /* of the bytes before it */
};

_Static_assert(sizeof(struct record) == 360 && offsetof(struct record, meta) == 24 &&
               offsetof(struct record, name) == 104, "record layout: format 1");
_Static_assert(offsetof(struct region_meta, flags) == 44 && offsetof(struct region_meta, create_time) == 48,
               "the meta's flags word is where format 1 had a reserved one, and the times follow it");
_Static_assert(sizeof(struct header) <= sizeof(struct record), "the header fits in its room");

/* Per slot, in struct state's slots: */
#define SLOT_CURRENT 0x1U       /* which copy is the current one */
#define SLOT_REGION 0x2U        /* a copy holds a region, current or not: its page must stay */

struct state {
        int fd;
        uint32_t n_slots;       /* slot 0, the mark's, included */
        uint8_t *current;       /* per slot: SLOT_* */
        uint32_t *free_slots;   /* a stack with the lowest slot on top, so that the file stays dense */
        uint32_t n_free;
        uint64_t seq;           /* the highest in the file */
        uint64_t mark;
};

/* FNV-1a, 64 bits: tells a torn or garbled record from a whole one, and is cheap. */
static uint64_t checksum(const void *data, size_t len) {
        const uint8_t *p = data;
        uint64_t h = UINT64_C(0xcbf29ce484222325);

        for (size_t i = 0; i < len; i++) {
                h ^= p[i];
                h *= UINT64_C(0x100000001b3);
        }
        return h;
}

static uint64_t record_checksum(const struct record *r) {
        return checksum((const uint8_t *) r + sizeof(r->checksum), sizeof(*r) - sizeof(r->checksum));
}

static uint64_t header_checksum(const struct header *h) {
        return checksum(h, offsetof(struct header, checksum));
}

/* Where copy (0 or 1) of slot starts: the header's room comes first. */
static off_t copy_offset(uint32_t slot, unsigned copy) {
        return (off_t) ((1 + 2 * (uint64_t) slot + copy) * sizeof(struct record));
}

static off_t file_size(uint32_t n_slots) {
        return copy_offset(n_slots, 0);
}

static void state_freep(struct state **s) {
        state_free(*s);
}

struct state *state_free(struct state *s) {
        if (!s)
                return NULL;
        safe_close(s->fd);
        free(s->current);
        free(s->free_slots);
        free(s);
        return NULL;
}

int state_fd(const struct state *s) {
        return s->fd;
}

uint64_t state_handle_mark(const struct state *s) {
        return s->mark;
}

/* Gives the file and the tables room for n slots, the new ones free. Only when no slot is free. */
static int grow(struct state *s, uint32_t n) {
        uint32_t *free_slots;
        uint8_t *current;

        assert(n > s->n_slots && s->n_free == 0);
        current = realloc(s->current, n);
        if (!current)
                return -ENOMEM;
        s->current = current;
        free_slots = reallocarray(s->free_slots, n, sizeof(*free_slots));
        if (!free_slots)
                return -ENOMEM;
        s->free_slots = free_slots;
        /* Only sets the size: the new slots read as zeroes, which is empty. */
        if (ftruncate(s->fd, file_size(n)) < 0)
                return negative_errno();

        memset(current + s->n_slots, 0, n - s->n_slots);
        for (uint32_t slot = n; slot-- > MAX(s->n_slots, 1U);)
                s->free_slots[s->n_free++] = slot;
        s->n_slots = n;
        return 0;
}

/* Writes rec to the copy of slot that is not current, which then is. */
static int write_record(struct state *s, uint32_t slot, struct record *rec) {
        unsigned copy = !(s->current[slot] & SLOT_CURRENT);
        ssize_t n;

        rec->seq = s->seq + 1;
        rec->checksum = record_checksum(rec);
        n = pwrite(s->fd, rec, sizeof(*rec), copy_offset(slot, copy));
        if (n < 0)
                return negative_errno();
        /* Short only when the memfd could get no page: that copy is torn, as by a crash, and the current one stands. */
        if ((size_t) n != sizeof(*rec))
                return -ENOSPC;
        s->seq = rec->seq;
        s->current[slot] = (uint8_t) ((s->current[slot] & ~SLOT_CURRENT) | copy);
        return 0;
}

int state_new(struct state **ret) {
        _cleanup_(state_freep) struct state *s = NULL;
        struct header h = { .version = STATE_VERSION, .record_size = sizeof(struct record) };
        ssize_t n;
        int r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->fd = memfd_create("mfb:state", MFD_CLOEXEC);
        if (s->fd < 0)
                return negative_errno();
        /* Nobody but the broker's user may reopen it through /proc/PID/fd. */
        if (fchmod(s->fd, 0600) < 0)
                return negative_errno();
        r = grow(s, SLOTS_INITIAL);
        if (r < 0)
                return r;

        memcpy(h.magic, STATE_MAGIC, sizeof(h.magic));
        h.checksum = header_checksum(&h);
        n = pwrite(s->fd, &h, sizeof(h), 0);
        if (n < 0)
                return negative_errno();
        if ((size_t) n != sizeof(h))
                return -ENOSPC;
        *ret = TAKE_PTR(s);
        return 0;
}

static bool all_zero(const void *data, size_t len) {
        const uint8_t *p = data;

        for (size_t i = 0; i < len; i++)
                if (p[i] != 0)
                        return false;
        return true;
}

/* Whether r is a whole record that this broker wrote to slot. */
static bool record_valid(const struct record *r, uint32_t slot) {
        /* Above INT64_MAX only garbage gets (2^63 writes): taken in, the next write's seq would wrap to 0. */
        if (r->seq == 0 || r->seq > INT64_MAX || r->checksum != record_checksum(r))
                return false;
        if (slot == 0)
                return r->type == RECORD_MARK;
        if (r->type == RECORD_FREE)
                return true;
        return r->type == RECORD_REGION && r->meta.handle != 0 && r->meta.size != 0 &&
               r->meta.size <= INT64_MAX && r->meta.mode <= 0777 && (r->flags & ~REGION_FLAGS_ALL) == 0 &&
               r->meta.flags == 0 && mfb_wire_name_check(&r->name) > 0;
}

/*
 * Takes in slot, read as its two copies. The current copy is the valid one
 * with the higher sequence number. A crash tears at most the copy being
 * written, while the other is valid or was never written (all zero); so a
 * slot without a valid copy is free, unless neither copy is all zero
 * either, which only garbage explains.
 */
static int load_slot(struct state *s, uint32_t slot, const struct record copies[static 2], state_region_cb cb,
                     void *userdata) {
        bool valid[2] = { record_valid(&copies[0], slot), record_valid(&copies[1], slot) };
        struct region_meta meta;
        const struct record *rec;
        unsigned current;

        for (unsigned c = 0; c < 2; c++)
                if (valid[c])
                        s->seq = MAX(s->seq, copies[c].seq);
        if (valid[0] && valid[1]) {
                if (copies[0].seq == copies[1].seq)
                        return -EBADMSG;
                current = copies[1].seq > copies[0].seq;
        } else if (valid[0] || valid[1])
                current = valid[1];
        else if (all_zero(&copies[0], sizeof(copies[0])) || all_zero(&copies[1], sizeof(copies[1]))) {
                if (slot > 0)
                        s->free_slots[s->n_free++] = slot;
                return 0;
        } else
                return -EBADMSG;

        s->current[slot] = (uint8_t) current;
        for (unsigned c = 0; c < 2; c++)
                if (valid[c] && copies[c].type == RECORD_REGION)
                        s->current[slot] |= SLOT_REGION;
        rec = &copies[current];
        switch (rec->type) {
        case RECORD_MARK:
                s->mark = rec->meta.handle;
                return 0;
        case RECORD_FREE:
                s->free_slots[s->n_free++] = slot;
                return 0;
        default:
                meta = rec->meta;
                meta.flags = rec->flags;
                /* Valid: NUL-terminated within the field. */
                return cb(&meta, rec->name.bytes, slot, userdata);
        }
}

/* The header and size of a state file, giving its number of slots. */
static int check_header(int fd, uint32_t *ret_n_slots) {
        struct header h;
        struct stat st;
        uint64_t n_units;
        ssize_t n;

        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode))
                return -EBADMSG;
        n = pread(fd, &h, sizeof(h), 0);
        if (n < 0)
                return negative_errno();
        if ((size_t) n != sizeof(h) || memcmp(h.magic, STATE_MAGIC, sizeof(h.magic)) != 0)
                return -EBADMSG;
        if (h.version > STATE_VERSION)
                return -EPROTONOSUPPORT;
        if (h.version != STATE_VERSION || h.record_size != sizeof(struct record) || h.checksum != header_checksum(&h))
                return -EBADMSG;

        /* The header's room and whole slots, the mark's at least: this broker only ever sizes it so. */
        n_units = (uint64_t) st.st_size / sizeof(struct record);
        if ((uint64_t) st.st_size % sizeof(struct record) != 0 || n_units < 3 || n_units % 2 != 1 ||
            (n_units - 1) / 2 > UINT32_MAX / 2)
                return -EBADMSG;
        *ret_n_slots = (uint32_t) ((n_units - 1) / 2);
        return 0;
}

int state_load(int fd, state_region_cb cb, void *userdata, struct state **ret) {
        _cleanup_(closep) int owned = fd;
        _cleanup_(state_freep) struct state *s = NULL;
        _cleanup_(freep) struct record *buf = NULL;
        uint32_t n_slots;
        int r;

        r = check_header(fd, &n_slots);
        if (r < 0)
                return r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->fd = -1;
        s->n_slots = n_slots;
        s->current = calloc(n_slots, sizeof(*s->current));
        s->free_slots = calloc(n_slots, sizeof(*s->free_slots));
        buf = calloc(2 * SLOTS_PER_READ, sizeof(*buf));
        if (!s->current || !s->free_slots || !buf)
                return -ENOMEM;

        for (uint32_t first = 0; first < n_slots; first += SLOTS_PER_READ) {
                uint32_t k = MIN(SLOTS_PER_READ, n_slots - first);
                size_t len = 2 * k * sizeof(*buf);
                ssize_t n = pread(fd, buf, len, copy_offset(first, 0));

                if (n < 0)
                        return negative_errno();
                /* The size was checked, and the broker that wrote it is gone. */
                if ((size_t) n != len)
                        return -EIO;
                for (uint32_t i = 0; i < k; i++) {
                        r = load_slot(s, first + i, &buf[2 * i], cb, userdata);
                        if (r < 0)
                                return r;
                }
        }

        /* Found in ascending order: turn them over, so that the lowest is on top. */
        for (uint32_t i = 0, j = s->n_free; i + 1 < j; i++, j--) {
                uint32_t t = s->free_slots[i];

                s->free_slots[i] = s->free_slots[j - 1];
                s->free_slots[j - 1] = t;
        }
        s->fd = TAKE_FD(owned);
        *ret = TAKE_PTR(s);
        return 0;
}

int state_reserve_handle(struct state *s, uint64_t handle) {
        struct record rec = { .type = RECORD_MARK };
        int r;

        if (handle <= s->mark)
                return 0;
        rec.meta.handle = handle > UINT64_MAX - STATE_HANDLE_RESERVE ? UINT64_MAX : handle + STATE_HANDLE_RESERVE - 1;
        r = write_record(s, 0, &rec);
        if (r < 0)
                return r;
        s->mark = rec.meta.handle;
        return 0;
}

int state_save_region(struct state *s, uint32_t *slot, const struct region_meta *meta, const char *name) {
        struct record rec = { .type = RECORD_REGION, .flags = meta->flags, .meta = *meta };
        uint32_t target = *slot;
        int k;

        assert(target < s->n_slots);
        /* Only named regions are saved: a record without a name does not load. */
        if (!name || !*name)
                return -EINVAL;
        rec.meta.flags = 0;
        k = mfb_wire_name_set(&rec.name, name);
        if (k < 0)
                return k;
        if (target == 0) {
                if (s->n_free == 0) {
                        if (s->n_slots > UINT32_MAX / 2)
                                return -ENOSPC;
                        k = grow(s, s->n_slots * 2);
                        if (k < 0)
                                return k;
                }
                target = s->free_slots[s->n_free - 1];
        }
        k = write_record(s, target, &rec);
        if (k < 0)
                return k;
        if (*slot == 0) {
                s->n_free--;
                *slot = target;
        }
        s->current[target] |= SLOT_REGION;
        return 0;
}

/* The slot whose copies hold the byte at offset, which is past the header's room. */
static uint32_t slot_at(off_t offset) {
        return (uint32_t) (((uint64_t) offset / sizeof(struct record) - 1) / 2);
}

/*
 * Gives back the pages around slot that hold nothing but free slots: they
 * read as zeroes from then on, which is free too (load_slot()). So the
 * file takes memory for the pages with regions in them, whatever number
 * of regions it held once. The page of the header and the mark stays.
 */
static void release_pages(struct state *s, uint32_t slot) {
        off_t page = (off_t) sysconf(_SC_PAGESIZE), end = file_size(s->n_slots);
        off_t first = copy_offset(slot, 0) / page * page, last = copy_offset(slot + 1, 0);

        for (off_t p = first; p < last && p < end; p += page) {
                uint32_t a, b;
                bool used = false;

                if (p < copy_offset(1, 0))
                        continue;
                a = slot_at(p);
                b = slot_at(MIN(p + page, end) - 1);
                for (uint32_t k = a; k <= b && !used; k++)
                        used = s->current[k] & SLOT_REGION;
                /* Only memory is at stake: a page kept is still valid. */
                if (!used)
                        (void) fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, p, page);
        }
}

int state_forget_region(struct state *s, uint32_t slot) {
        struct record rec = { .type = RECORD_FREE };
        int r;

        assert(slot > 0 && slot < s->n_slots);
        r = write_record(s, slot, &rec);
        if (r < 0)
                return r;
        s->free_slots[s->n_free++] = slot;
        /*
         * Over the older copy too, which still holds the region: were the page
         * of the new copy given back alone, the older would be current again.
         * A failure leaves it for later; only the memory is at stake.
         */
        rec = (struct record) { .type = RECORD_FREE };
        if (write_record(s, slot, &rec) >= 0) {
                s->current[slot] &= ~SLOT_REGION;
                release_pages(s, slot);
        }
        return 0;
}
