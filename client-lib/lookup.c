/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "codec.h"
#include "lookup.h"
#include "macro.h"

#define NSEC_PER_SEC UINT64_C(1000000000)

_Static_assert(MFB_NAME_MAX == MFB_WIRE_NAME_MAX, "public and wire name limits agree");
_Static_assert(sizeof(((mfb_region_stat *) NULL)->name) == sizeof(struct mfb_wire_name), "name copies whole");

/* The wire's state bits that mean something to callers, as MFB_REGION_* bits; newer ones are dropped. */
static uint32_t state_from_wire(uint32_t state) {
        return (state & MFB_WIRE_STATE_REMOVED ? MFB_REGION_REMOVED : 0) |
               (state & MFB_WIRE_STATE_HUGETLB ? MFB_REGION_HUGETLB : 0) |
               (state & MFB_WIRE_STATE_TRANSIENT ? MFB_REGION_TRANSIENT : 0);
}

static struct timespec timespec_from_ns(uint64_t ns) {
        return (struct timespec) {
                .tv_sec = (time_t) (ns / NSEC_PER_SEC),
                .tv_nsec = (long) (ns % NSEC_PER_SEC),
        };
}

int region_info_check(const struct mfb_wire_region_info *info) {
        assert(info);

        if (info->handle == 0 || info->size == 0 || mfb_wire_name_check(&info->name) < 0)
                return -EBADMSG;
        return 0;
}

int region_info_convert(const struct mfb_wire_region_info *info, mfb_region_stat *ret) {
        int r;

        assert(ret);

        r = region_info_check(info);
        if (r < 0)
                return r;

        *ret = (mfb_region_stat) {
                .handle = info->handle,
                .size = info->size,
                .uid = (uid_t) info->uid,
                .gid = (gid_t) info->gid,
                .creator_uid = (uid_t) info->creator_uid,
                .creator_gid = (gid_t) info->creator_gid,
                .mode = (mode_t) info->mode,
                .creator_pid = (pid_t) info->creator_pid,
                .last_pid = (pid_t) info->last_pid,
                .nattch = info->nattch,
                .seals = info->seals,
                .state = state_from_wire(info->state),
                .create_time = timespec_from_ns(info->create_time),
                .attach_time = timespec_from_ns(info->attach_time),
                .detach_time = timespec_from_ns(info->detach_time),
                .change_time = timespec_from_ns(info->change_time),
        };
        /* Checked above: NUL-terminated and zero-padded. */
        memcpy(ret->name, info->name.bytes, sizeof(ret->name));
        return 0;
}

/* Exactly one of a name and a handle addresses the region. */
static int lookup_request_init(struct mfb_wire_lookup_request *ret, const char *name, uint64_t handle) {
        assert(ret);
        assert(!name != !handle);

        *ret = (struct mfb_wire_lookup_request) { .handle = handle };
        return mfb_wire_name_set(&ret->name, name);
}

static int stat_parse(mfb_client *c, const struct client_reply *reply, void *userdata) {
        struct mfb_wire_region_info info;

        memcpy(&info, reply->body, sizeof(info));
        if (region_info_convert(&info, userdata) < 0)
                return client_protocol_error(c);
        return 0;
}

int lookup_stat(mfb_client *c, const char *name, uint64_t handle, mfb_region_stat *ret) {
        struct mfb_wire_lookup_request request;
        int r;

        assert(c);
        assert(ret);

        r = lookup_request_init(&request, name, handle);
        if (r < 0)
                return r;
        return client_call(c, MFB_WIRE_OP_STAT, &request, sizeof(request), stat_parse, ret);
}

int lookup_remove(mfb_client *c, const char *name, uint64_t handle) {
        struct mfb_wire_lookup_request request;
        int r;

        assert(c);

        r = lookup_request_init(&request, name, handle);
        if (r < 0)
                return r;
        return client_call(c, MFB_WIRE_OP_REMOVE, &request, sizeof(request), NULL, NULL);
}

void lookup_remove_nowait(mfb_client *c, uint64_t handle) {
        struct mfb_wire_lookup_request request = { .handle = handle };

        assert(c);

        if (client_usable(c))
                (void) client_request(c, MFB_WIRE_OP_REMOVE, &request, sizeof(request), NULL, 0, NULL);
}

_public_ int mfb_stat(mfb_client *c, const char *name, mfb_region_stat *ret) {
        if (!c || !name || !*name || !ret)
                return -EINVAL;

        client_error_clear(c);
        return lookup_stat(c, name, 0, ret);
}

_public_ int mfb_stat_handle(mfb_client *c, uint64_t handle, mfb_region_stat *ret) {
        if (!c || handle == 0 || !ret)
                return -EINVAL;

        client_error_clear(c);
        return lookup_stat(c, NULL, handle, ret);
}

_public_ int mfb_remove(mfb_client *c, const char *name) {
        if (!c || !name || !*name)
                return -EINVAL;

        client_error_clear(c);
        return lookup_remove(c, name, 0);
}

_public_ int mfb_remove_handle(mfb_client *c, uint64_t handle) {
        if (!c || handle == 0)
                return -EINVAL;

        client_error_clear(c);
        return lookup_remove(c, NULL, handle);
}

/* SET of the region called name: the fields given, the others left out of the request and unchanged. */
static int lookup_set(mfb_client *c, const char *name, uint32_t fields, mode_t mode, uid_t uid, gid_t gid) {
        struct mfb_wire_set_request request = {
                .fields = fields,
                .mode = fields & MFB_WIRE_SET_MODE ? (uint32_t) mode : 0,
                .uid = fields & MFB_WIRE_SET_UID ? (uint32_t) uid : 0,
                .gid = fields & MFB_WIRE_SET_GID ? (uint32_t) gid : 0,
        };
        int r;

        assert(c);
        assert(name);
        assert(fields != 0);

        r = mfb_wire_name_set(&request.name, name);
        if (r < 0)
                return r;
        return client_call(c, MFB_WIRE_OP_SET, &request, sizeof(request), NULL, NULL);
}

_public_ int mfb_chmod(mfb_client *c, const char *name, mode_t mode) {
        if (!c || !name || !*name || (mode & ~(mode_t) 0777))
                return -EINVAL;

        client_error_clear(c);
        return lookup_set(c, name, MFB_WIRE_SET_MODE, mode, 0, 0);
}

_public_ int mfb_chown(mfb_client *c, const char *name, uid_t uid, gid_t gid) {
        uint32_t fields = (uid != (uid_t) -1 ? MFB_WIRE_SET_UID : 0) | (gid != (gid_t) -1 ? MFB_WIRE_SET_GID : 0);

        /* Nothing to change is no request: the broker refuses an empty set of fields. */
        if (!c || !name || !*name || fields == 0)
                return -EINVAL;

        client_error_clear(c);
        return lookup_set(c, name, fields, 0, uid, gid);
}

/* Where a paged listing (LIST, or ALLOCATED, which follows LIST's rules) stands. */
struct page_cursor {
        uint64_t after;                 /* the after_handle of the next request */
        bool more;                      /* whether there is one */
};

/* What a listing has gathered so far. */
struct list_state {
        struct page_cursor cursor;
        mfb_region_stat *entries;
        size_t n, allocated;
};

/*
 * Moves a paging cursor (LIST's rules, which ALLOCATED follows) on to a
 * reply's next_after, last being the reply's last entry (or the cursor,
 * for none). A reply may examine regions without listing any, so only the
 * cursor tells how far it got; one that does not move on would have us ask
 * forever, and one behind the last entry would list entries twice.
 */
static int cursor_next(mfb_client *c, uint32_t more, uint64_t next_after, uint64_t last, struct page_cursor *cursor) {
        cursor->more = more;
        if (!more)
                return 0;
        if (next_after <= cursor->after || next_after < last)
                return client_protocol_error(c);
        cursor->after = next_after;
        return 0;
}

/*
 * Asks with opcode (LIST or ALLOCATED) from after_handle 0 on, each reply
 * handed to parse with state, which moves *cursor on (cursor_next()),
 * until the broker says there is no more. Returns 0 or the first failure.
 */
static int page_all(mfb_client *c, uint16_t opcode, client_parse parse, struct page_cursor *cursor, void *state) {
        _Static_assert(offsetof(struct mfb_wire_allocated_request, after_handle) ==
                               offsetof(struct mfb_wire_list_request, after_handle),
                       "the two requests start alike");

        client_error_clear(c);
        do {
                /* ALLOCATED's max_count 0 asks for a full page; LIST's request is its first field alone. */
                struct mfb_wire_allocated_request request = { .after_handle = cursor->after };
                int r = client_call(c, opcode, &request, (size_t) mfb_wire_request_body_size(opcode), parse, state);

                if (r < 0)
                        return r;
        } while (cursor->more);
        return 0;
}

/*
 * Appends the entries of one LIST reply, to the request with
 * s->cursor.after as after_handle, to s->entries, and moves the cursor on
 * to where the next request starts.
 */
static int list_parse(mfb_client *c, const struct client_reply *reply, void *userdata) {
        struct list_state *s = userdata;
        struct mfb_wire_list_reply head;
        uint64_t last = s->cursor.after;

        /* mfb_wire_reply_check() matched the body's size to count. */
        memcpy(&head, reply->body, sizeof(head));

        if (GREEDY_REALLOC(s->entries, s->allocated, s->n + head.count) < 0)
                return -ENOMEM;

        for (uint32_t i = 0; i < head.count; i++) {
                struct mfb_wire_region_info info;

                memcpy(&info, reply->body + sizeof(head) + i * sizeof(info), sizeof(info));
                /* Ascending handles above after_handle: an entry is never listed twice. */
                if (info.handle <= last || region_info_convert(&info, s->entries + s->n) < 0)
                        return client_protocol_error(c);
                last = info.handle;
                s->n++;
        }

        return cursor_next(c, head.more, head.next_after, last, &s->cursor);
}

_public_ int mfb_list(mfb_client *c, mfb_region_stat **ret_entries, size_t *ret_count) {
        struct list_state s = {};
        int r;

        if (!c || !ret_entries || !ret_count)
                return -EINVAL;

        r = page_all(c, MFB_WIRE_OP_LIST, list_parse, &s.cursor, &s);
        if (r < 0) {
                free(s.entries);
                return r;
        }
        if (s.n == 0) {
                free(s.entries);
                s.entries = NULL;
        }
        *ret_entries = s.entries;
        *ret_count = s.n;
        return 0;
}

/* What a listing of allocated bytes has gathered so far, as struct list_state. */
struct allocated_state {
        struct page_cursor cursor;
        mfb_allocation *entries;
        size_t n, allocated;
};

/*
 * Appends the entries of one ALLOCATED reply to s->entries and moves
 * the cursor on, with the checks of list_parse(): the cursor rules are LIST's.
 */
static int allocated_parse(mfb_client *c, const struct client_reply *reply, void *userdata) {
        struct allocated_state *s = userdata;
        struct mfb_wire_allocated_reply head;
        uint64_t last = s->cursor.after;

        /* The body's size is fixed; only count says how much of it is meant. */
        memcpy(&head, reply->body, offsetof(struct mfb_wire_allocated_reply, entries));
        if (head.count > MFB_WIRE_ALLOCATED_ENTRIES_MAX || head.more > 1)
                return client_protocol_error(c);
        if (GREEDY_REALLOC(s->entries, s->allocated, s->n + head.count) < 0)
                return -ENOMEM;

        for (uint32_t i = 0; i < head.count; i++) {
                struct mfb_wire_allocated_entry e;

                memcpy(&e, reply->body + offsetof(struct mfb_wire_allocated_reply, entries) + i * sizeof(e),
                       sizeof(e));
                if (e.handle <= last)
                        return client_protocol_error(c);
                last = e.handle;
                s->entries[s->n++] = (mfb_allocation) { .handle = e.handle, .allocated = e.allocated };
        }

        return cursor_next(c, head.more, head.next_after, last, &s->cursor);
}

_public_ int mfb_list_allocated(mfb_client *c, mfb_allocation **ret_entries, size_t *ret_count) {
        struct allocated_state s = {};
        int r;

        if (!c || !ret_entries || !ret_count)
                return -EINVAL;

        r = page_all(c, MFB_WIRE_OP_ALLOCATED, allocated_parse, &s.cursor, &s);
        if (r < 0) {
                free(s.entries);
                return r;
        }
        if (s.n == 0) {
                free(s.entries);
                s.entries = NULL;
        }
        *ret_entries = s.entries;
        *ret_count = s.n;
        return 0;
}

_public_ int mfb_allocated_handle(mfb_client *c, uint64_t handle, uint64_t *ret_bytes) {
        /* One entry at most, from the region's own handle: the first the broker examines, if it is there. */
        struct mfb_wire_allocated_request request = { .after_handle = handle - 1, .max_count = 1 };
        struct allocated_state s = { .cursor.after = handle - 1 };
        int r;

        if (!c || handle == 0 || !ret_bytes)
                return -EINVAL;

        client_error_clear(c);
        r = client_call(c, MFB_WIRE_OP_ALLOCATED, &request, sizeof(request), allocated_parse, &s);
        if (r >= 0 && (s.n == 0 || s.entries[0].handle != handle))
                r = -ENOENT;
        if (r >= 0)
                *ret_bytes = s.entries[0].allocated;
        free(s.entries);
        return r;
}
