#!/usr/bin/env python3
"""Writes the seed corpus of the fuzzers: python3 make-corpus.py CORPUS_DIR.

The seeds are committed under tests/fuzz/corpus/; run this again after
changing an input format (the comments of the fuzzers describe them) and
commit what changed. Each seed is a small valid input that takes its
fuzzer deep at once: a request and a reply of every request, a saved
state with regions, buckets of parked memfds (a control page among them),
and scripts in which several users create (one at a time, in batches,
transient), open, share, wait, seal, notify and watch, page through USAGE
and ALLOCATED, and leave.
"""

import os
import struct
import sys

# proto/wire.h
HEADER = struct.Struct("=IHHQiHH")
NAME_MAX = 255
REPLY = 0x8000
FLAG_QUIET = 0x1
FLAG_QUEUED = 0x4
(HELLO, CREATE, OPEN, SEAL, STAT, LIST, RELEASE, REMOVE, SET, WAIT, LIMITS, CREATE_BATCH, NOTIFIER, NOTIFY_WATCH,
 NOTIFY, USAGE, ALLOCATED, RELEASE_QUEUE, SYNC) = range(1, 20)
VERSION = 2
REGION_INFO = struct.Struct("=QQIIIIIIIIIIQQQQ256s")
F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE = 0x2, 0x4, 0x8
ACCESS_READ, ACCESS_WRITE = 0x1, 0x2
CREATE_TRANSIENT = 0x2
STATE_TRANSIENT = 0x4
SET_MODE, SET_UID, SET_GID = 0x1, 0x2, 0x4
NOTIFY_ADVANCE = 0x1
RESOURCE_COUNT = 8
LIMIT_NONE = 0xFFFFFFFFFFFFFFFF
USAGE_ROWS_MAX = 16
ALLOCATED_ENTRIES_MAX = 128


def record(opcode, body=b"", cookie=1, status=0, nfds=0, flags=0):
    return HEADER.pack(HEADER.size + len(body), opcode, flags, cookie, status, nfds, 0) + body


def name(text):
    return text.encode().ljust(NAME_MAX + 1, b"\0")


def info(handle, size=4096, mode=0o644, text="", seals=0, state=0):
    return REGION_INFO.pack(handle, size, 1000, 1000, 1000, 1000, mode, 42, 42, 1,
                            F_SEAL_SHRINK | F_SEAL_GROW | seals, state, 1, 0, 0, 1, name(text))


def limits_row(uid):
    return struct.pack("=II", uid, RESOURCE_COUNT) + struct.pack("=5Q", 100, LIMIT_NONE, 25, 1, 24) * RESOURCE_COUNT


# The fd count byte of fuzz-codec: 0 and 1 as they are; 0xf0 | n for n up to 15.
FDS_NONE, FDS_ONE = b"\0", b"\1"


def fds(n):
    return bytes([n]) if n <= 1 else bytes([0xF0 | n])


def codec_seeds():
    """fuzz-codec: a byte of fd count, then a record. A valid request and reply of every request."""
    region_reply = struct.pack("=II", 3, 0) + info(1, text="a")
    limits = limits_row(1000)
    seeds = {
        "hello-request": b"\0" + record(HELLO, struct.pack("=II", 1, VERSION)),
        "create-request": b"\0" + record(CREATE, struct.pack("=QII", 4096, 0, 0o644) + name("a")),
        "create-reply": b"\1" + record(CREATE | REPLY, region_reply, nfds=1),
        "error-reply": b"\0" + record(OPEN | REPLY, b"no region is named a", status=-2),
        "list-reply": b"\0" + record(LIST | REPLY, struct.pack("=IIQ", 1, 1, 1) + info(1)),
        "limits-reply": b"\0" + record(LIMITS | REPLY, limits),
    }
    batch = 3
    batch_reply = struct.pack("=IIQ", batch, ACCESS_READ | ACCESS_WRITE, 4096) + struct.pack("=3Q", 1, 2, 3)
    # USAGE and ALLOCATED replies have a fixed size: the rows and entries after count are zero.
    rows = [limits_row(0), limits_row(1000)]
    usage = struct.pack("=IIII", len(rows), 0, 0, 0) + b"".join(rows) + bytes(328 * (USAGE_ROWS_MAX - len(rows)))
    entries = [(1, 4096), (2, 0)]
    allocated = (struct.pack("=IIQ", len(entries), 1, 2) + b"".join(struct.pack("=QQ", *e) for e in entries)
                 + bytes(16 * (ALLOCATED_ENTRIES_MAX - len(entries))))
    seeds.update({
        "hello-reply": FDS_NONE + record(HELLO | REPLY, struct.pack("=IIQQIIIIII", VERSION, 0, 0x7F, 1 << 30, 65536,
                                                                     NAME_MAX, 1, 64, 128, 0)),
        "create-transient-request": FDS_NONE + record(CREATE, struct.pack("=QII", 4096, CREATE_TRANSIENT, 0o644)
                                                      + name("a")),
        "create-transient-reply": FDS_ONE + record(CREATE | REPLY, struct.pack("=II", ACCESS_READ | ACCESS_WRITE, 0)
                                                   + info(1, text="a", state=STATE_TRANSIENT), nfds=1),
        "open-request": FDS_NONE + record(OPEN, struct.pack("=QII", 0, ACCESS_READ, 0) + name("a")),
        "open-reply": FDS_ONE + record(OPEN | REPLY, struct.pack("=II", ACCESS_READ, 0) + info(1, text="a"), nfds=1),
        "seal-request": FDS_NONE + record(SEAL, struct.pack("=QII", 1, F_SEAL_WRITE, 0)),
        "seal-reply": FDS_NONE + record(SEAL | REPLY, info(1, text="a", seals=F_SEAL_WRITE)),
        "stat-request": FDS_NONE + record(STAT, struct.pack("=Q", 0) + name("a")),
        "stat-reply": FDS_NONE + record(STAT | REPLY, info(1, text="a")),
        "list-request": FDS_NONE + record(LIST, struct.pack("=Q", 0)),
        "release-request": FDS_NONE + record(RELEASE, struct.pack("=Q", 1), flags=FLAG_QUIET),
        "release-reply": FDS_NONE + record(RELEASE | REPLY),
        "remove-request": FDS_NONE + record(REMOVE, struct.pack("=Q", 0) + name("a"), flags=FLAG_QUIET),
        "remove-reply": FDS_NONE + record(REMOVE | REPLY),
        "set-request": FDS_NONE + record(SET, struct.pack("=QIIII", 1, SET_MODE | SET_UID | SET_GID, 0o640, 1001, 100)
                                         + name("")),
        "set-reply": FDS_NONE + record(SET | REPLY, info(1, mode=0o640, text="a")),
        "wait-request": FDS_NONE + record(WAIT, struct.pack("=QII", 10 ** 9, ACCESS_READ, 0) + name("shared")),
        "wait-reply": FDS_ONE + record(WAIT | REPLY, struct.pack("=II", ACCESS_READ, 0)
                                       + info(1, text="shared", seals=F_SEAL_WRITE), nfds=1),
        "limits-request": FDS_NONE + record(LIMITS),
        "create-batch-request": FDS_NONE + record(CREATE_BATCH, struct.pack("=QIIII", 4096, batch, 0, 0o644, 0)),
        # As many fds as regions: the count byte says 3.
        "create-batch-reply": fds(batch) + record(CREATE_BATCH | REPLY, batch_reply, nfds=batch),
        "notifier-request": FDS_NONE + record(NOTIFIER, struct.pack("=QII", 1, 0, 0)),
        "notifier-reply": FDS_ONE + record(NOTIFIER | REPLY, struct.pack("=IIQ", ACCESS_READ | ACCESS_WRITE, 0, 5),
                                           nfds=1),
        "notify-watch-request": FDS_NONE + record(NOTIFY_WATCH, struct.pack("=QII", 1, 0, 0)),
        "notify-watch-reply": FDS_ONE + record(NOTIFY_WATCH | REPLY, struct.pack("=Q", 5), nfds=1),
        "notify-request": FDS_NONE + record(NOTIFY, struct.pack("=QII", 1, NOTIFY_ADVANCE, 0), flags=FLAG_QUIET),
        "notify-reply": FDS_NONE + record(NOTIFY | REPLY, struct.pack("=Q", 6)),
        "usage-request": FDS_NONE + record(USAGE, struct.pack("=II", 0, 0)),
        "usage-reply": FDS_NONE + record(USAGE | REPLY, usage),
        "allocated-request": FDS_NONE + record(ALLOCATED, struct.pack("=QII", 0, 1, 0)),
        "allocated-reply": FDS_NONE + record(ALLOCATED | REPLY, allocated),
        "release-queue-request": FDS_NONE + record(RELEASE_QUEUE),
        "release-queue-reply": FDS_ONE + record(RELEASE_QUEUE | REPLY, struct.pack("=II", 252, 0), nfds=1),
        "sync-request": FDS_NONE + record(SYNC, flags=FLAG_QUIET | FLAG_QUEUED),
        "sync-reply": FDS_NONE + record(SYNC | REPLY),
    })
    return seeds


# daemon/state.c: a header in the room of one record, then two copies of each slot.
STATE_RECORD = struct.Struct("=QQIIQQIIIIIIIIQQQQ256s")
STATE_HEADER = struct.Struct("=8sIIQ")
RECORD_FREE, RECORD_REGION, RECORD_MARK = 1, 2, 3


def fnv1a(data):
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def state_record(seq, kind, handle=0, size=0, text="", mode=0o600, flags=0):
    rest = STATE_RECORD.pack(0, seq, kind, flags, handle, size, 1000, 1000, 1000, 1000, mode, 42, 43, 0,
                             1, 2, 3, 4, name(text) if text else bytes(256))[8:]
    return struct.pack("=Q", fnv1a(rest)) + rest


def state_header():
    head = STATE_HEADER.pack(b"MFBSTATE", 1, STATE_RECORD.size, 0)[:16]
    return (head + struct.pack("=Q", fnv1a(head))).ljust(STATE_RECORD.size, b"\0")


EMPTY = bytes(STATE_RECORD.size)


def state_seeds():
    """fuzz-state: a byte of options, the region whose callback fails (0xff none), then the file."""
    slots = [
        state_record(1, RECORD_MARK, handle=4096) + EMPTY,
        state_record(2, RECORD_REGION, 1, 4096, "a") + state_record(5, RECORD_REGION, 1, 4096, "a", 0o640),
        state_record(3, RECORD_REGION, 2, 8192, "shared", 0o644, flags=1) + EMPTY,
        state_record(4, RECORD_REGION, 3, 4096, "b") + state_record(6, RECORD_FREE),
    ]
    whole = state_header() + b"".join(slots)
    torn = bytearray(whole)
    # Slot 1's newer copy, torn halfway as by a crash: the older one stands.
    start = STATE_RECORD.size * 4 + STATE_RECORD.size // 2
    torn[start:start + 16] = b"\xa5" * 16
    # The checksums left for the fuzzer to fill in.
    unchecked = b"".join(bytes(8) + slot[8:] for slot in slots[:2])
    return {
        "state": b"\0\xff" + whole,
        "state-torn": b"\0\xff" + bytes(torn),
        "state-callback-fails": b"\0\1" + whole,
        # Header added, checksums and size fixed up by the fuzzer: slots only.
        "state-slots-only": b"\7\xff" + unchecked,
    }


# tests/fuzz/fuzz-requests.c: steps and the indexes of its tables.
(STEP_SEND, STEP_SEND_FIXED, STEP_SEND_RAW, STEP_READ, STEP_RUN, STEP_CLOSE, STEP_SHUTDOWN, STEP_CONNECT,
 STEP_TIME, STEP_QUEUE) = range(10)
SEND_WITH_FD, SEND_MEMFD, SEND_MUTATE, SEND_RUN, SEND_READ = 0x08, 0x10, 0x20, 0x40, 0x80
OP = {"HELLO": 0, "CREATE": 1, "OPEN": 2, "SEAL": 3, "STAT": 4, "LIST": 5, "RELEASE": 6, "REMOVE": 7,
      "SET": 8, "WAIT": 9, "LIMITS": 10, "CREATE_BATCH": 15, "NOTIFIER": 16, "NOTIFY_WATCH": 17, "NOTIFY": 18,
      "USAGE": 20, "ALLOCATED": 21, "RELEASE_QUEUE": 22, "SYNC": 23}
# Requests whose body is followed by a byte that makes them quiet from 0x80 on.
QUIET_BYTE = ("RELEASE", "REMOVE", "STAT", "NOTIFY", "SYNC")
QUEUED = 0xC0               # the byte after the quiet byte: the release queue taken first (0xC0 to 0xDF)
ENTRY_COMPLETE, ENTRY_NOT_YET = 0, 0xE0         # STEP_QUEUE's byte after the handle: its seq
NAME_A, NAME_B, NAME_SHARED = 0, 1, 2
MODE_DEFAULT, MODE_0600, MODE_0644, MODE_0660 = 0, 1, 3, 4
BY_HANDLE, BY_NAME = 0, 4
READ, READ_WRITE = 0, 1     # OPEN's access
UID_1000 = 1                # in the fuzzer's identities
ID_0, ID_1000, ID_1001, ID_65534 = 0, 2, 3, 5   # in its table of uids and gids
GID_100 = 1
SEALS_WRITE = 0
CREATE_FLAGS_TRANSIENT = 0xE0
BATCH_FLAGS_TRANSIENT = 0xFE
BATCH_COUNT = {1: 0, 2: 1, 3: 2, 253: 3, 17: 6}
SIZE_4096, SIZE_8192 = 0, 1  # CREATE_BATCH's size byte: 4096 << n
FIRST_UID_0, FIRST_UID_FROM = 0, 0x80           # USAGE: then a byte of the table of uids
AFTER_0, AFTER_HANDLE = 0, 0x80                 # ALLOCATED: then a handle byte
ALLOCATED_COUNT = {"max": 0, 1: 1, 2: 2, 129: 4}
ADVANCE = 1                 # NOTIFY's flag byte


def handle(number):
    """A handle byte that names handle 1 to 15 itself, not one seen in a reply."""
    return 0xE0 | number


def carried(handles):
    """The byte after the body (and the quiet byte) that carries handles to release from 0xE0 on, then theirs."""
    if not handles:
        return b"\x00"
    return bytes([0xE0, len(handles) - 1, *handles])


def send(slot, op, *fields, how=SEND_RUN | SEND_READ, quiet=False, carry=(), queued=False):
    quiet_byte = bytes([0x80 if quiet else 0]) if op in QUIET_BYTE else b""
    return bytes([STEP_SEND, slot | how, OP[op], *fields]) + quiet_byte + (bytes([QUEUED]) if queued
                                                                           else carried(carry))


def queue_entry(slot, handle_byte, seq=ENTRY_COMPLETE):
    """An entry in slot's release queue: a handle byte (as handle() or an index of those seen), then its seq."""
    return bytes([STEP_QUEUE, slot, handle_byte, seq])


def hello(slot):
    return send(slot, "HELLO", 0)


def create(slot, mode, name_index=None):
    return send(slot, "CREATE", 0, 0, mode, *((1, name_index) if name_index is not None else (0,)))


def requests_seeds():
    """fuzz-requests: scripts. Connections 0, 1 and 2 are uid 0, 1000 and 1001."""
    everyone = hello(0) + hello(1) + hello(2)
    return {
        # Root creates a region others may read; each user opens it by name and lists.
        "share": everyone + create(0, MODE_0644, NAME_A)
        + send(1, "OPEN", BY_NAME, NAME_A, 0) + send(2, "OPEN", BY_NAME, NAME_A, 0)
        + send(1, "LIST", 0) + send(2, "STAT", BY_NAME, NAME_A) + send(0, "STAT", BY_HANDLE, 0) + send(0, "LIST", 0)
        + send(1, "OPEN", BY_NAME, NAME_A, 1) + send(0, "RELEASE", 0) + send(0, "REMOVE", BY_NAME, NAME_A),
        # A consumer waits for a region that its producer then creates and seals.
        "wait-seal": everyone + send(2, "WAIT", 0, NAME_SHARED, 0) + create(1, MODE_0644, NAME_SHARED)
        + send(1, "SEAL", 0, 0) + bytes([STEP_READ, 2]) + send(2, "LIMITS"),
        # A waiter that leaves, one whose region is removed, one whose time is up, one that shuts down.
        "wait-leave": everyone + send(1, "WAIT", 0, NAME_B, 0) + bytes([STEP_CLOSE, 1, STEP_RUN])
        + send(2, "WAIT", 0, NAME_A, 0) + create(0, MODE_0644, NAME_A) + send(0, "REMOVE", BY_NAME, NAME_A)
        + send(2, "WAIT", 2, NAME_B, 0) + bytes([STEP_TIME, STEP_READ, 2])
        + send(2, "WAIT", 0, NAME_B, 0) + bytes([STEP_SHUTDOWN, 2, STEP_RUN]),
        # A user runs into its limits: references per connection, regions, connections.
        "limits": everyone + bytes([STEP_CONNECT, 3 + 8 * UID_1000]) + hello(3)
        + create(1, MODE_DEFAULT) * 9 + create(3, MODE_DEFAULT) * 3 + send(1, "LIMITS")
        + bytes([STEP_CONNECT, 4 + 8 * UID_1000]) + hello(4),
        # chown and chmod: root gives a region away, its owner changes the group and mode.
        "set": everyone + create(1, MODE_0660, NAME_B) + send(0, "SET", BY_NAME, NAME_B, 1, ID_1001)
        + send(1, "SET", BY_NAME, NAME_B, 3, GID_100) + send(2, "STAT", BY_NAME, NAME_B)
        + send(1, "OPEN", BY_NAME, NAME_B, 0),
        # Replies left unread, then records the broker must refuse or drop for: with an fd, of an unknown
        # opcode (HELLO's, bits flipped), too short, and last, a body of the wrong size, the rest of the script.
        "bad-records": hello(0) + send(0, "LIST", 0, how=0) * 8
        + bytes([STEP_SEND, 0 | SEND_WITH_FD | SEND_MEMFD | SEND_RUN, OP["HELLO"], 0]) + carried(())
        + bytes([STEP_SEND, 0 | SEND_MUTATE | SEND_RUN, OP["HELLO"], 0]) + carried(()) + bytes([4, 0, 0x0f])
        + bytes([STEP_SEND_RAW, 1 | SEND_RUN | SEND_READ, 4, 0]) + b"\x10" * 4
        + bytes([STEP_SEND_FIXED, 0 | SEND_RUN, OP["CREATE"], 0xf4]),
        # Batches: of 3 read by another user, of 2 by root; one transient, one above the uid's regions, one above
        # SCM_MAX_FD's worth of what the broker may hold, all refused; then a batch region sealed, released, listed.
        "batch": everyone
        + send(1, "CREATE_BATCH", SIZE_4096, BATCH_COUNT[3], 0, MODE_0644, 0)
        + send(0, "CREATE_BATCH", SIZE_8192, BATCH_COUNT[2], 0, MODE_DEFAULT, 0)
        + send(2, "OPEN", BY_HANDLE, handle(2), READ) + send(2, "OPEN", BY_HANDLE, handle(4), READ)
        + send(2, "CREATE_BATCH", SIZE_4096, BATCH_COUNT[1], BATCH_FLAGS_TRANSIENT, MODE_DEFAULT, 0)
        + send(2, "CREATE_BATCH", SIZE_4096, BATCH_COUNT[17], 0, MODE_DEFAULT, 0)
        + send(0, "CREATE_BATCH", SIZE_4096, BATCH_COUNT[253], 0, MODE_DEFAULT, 0)
        + send(1, "SEAL", handle(2), SEALS_WRITE) + send(1, "RELEASE", handle(1), quiet=True)
        + send(2, "LIST", 0) + send(1, "ALLOCATED", AFTER_0, ALLOCATED_COUNT["max"]) + send(1, "LIMITS"),
        # Three users hold regions; root pages through USAGE and ALLOCATED a row or two at a time, the others
        # see only their own: from their uid, from above it, and with reserved set or too many asked for.
        "usage-allocated": everyone + create(0, MODE_0600, NAME_A) + create(1, MODE_0644, NAME_B)
        + send(1, "CREATE_BATCH", SIZE_8192, BATCH_COUNT[2], 0, MODE_DEFAULT, 0) + create(2, MODE_DEFAULT)
        + send(0, "USAGE", FIRST_UID_0) + send(0, "USAGE", FIRST_UID_FROM, ID_1000)
        + send(0, "USAGE", FIRST_UID_FROM, ID_65534) + send(1, "USAGE", FIRST_UID_0)
        + send(2, "USAGE", FIRST_UID_FROM, ID_1001) + send(2, "USAGE", FIRST_UID_FROM, ID_65534)
        + send(1, "USAGE", 0xFF, ID_0)
        + send(0, "ALLOCATED", AFTER_0, ALLOCATED_COUNT[1]) + send(0, "ALLOCATED", AFTER_HANDLE, handle(1),
                                                                    ALLOCATED_COUNT[2])
        + send(0, "ALLOCATED", AFTER_HANDLE, handle(3), ALLOCATED_COUNT[2])
        + send(1, "ALLOCATED", AFTER_0, ALLOCATED_COUNT[1]) + send(1, "ALLOCATED", AFTER_HANDLE, handle(2),
                                                                    ALLOCATED_COUNT["max"])
        + send(2, "ALLOCATED", AFTER_0, ALLOCATED_COUNT["max"]) + send(2, "ALLOCATED", AFTER_0, ALLOCATED_COUNT[129])
        + send(1, "RELEASE", handle(3)) + send(0, "USAGE", FIRST_UID_0),
        # A region shared by a writer (its creator), a reader and root: control pages for each, pipes for the
        # reader (twice: the same pipe) and root, notifications with and without the broker advancing seq, quiet
        # or not; the reader may not notify, nobody may with flags or on a region it does not hold. Then the
        # reader lets go of the region, and its watch with it, and leaves.
        "notify": everyone + create(1, MODE_0644, NAME_SHARED)
        + send(2, "OPEN", BY_NAME, NAME_SHARED, READ) + send(0, "OPEN", BY_NAME, NAME_SHARED, READ_WRITE)
        + send(1, "NOTIFIER", handle(1), 0) + send(2, "NOTIFIER", handle(1), 0)
        + send(2, "NOTIFY_WATCH", handle(1), 0) + send(2, "NOTIFY_WATCH", handle(1), 0)
        + send(1, "NOTIFY", handle(1), 0) + send(1, "NOTIFY", handle(1), ADVANCE)
        + send(1, "NOTIFY", handle(1), ADVANCE, quiet=True) + send(2, "NOTIFY", handle(1), ADVANCE)
        + send(0, "NOTIFIER", handle(1), 0) + send(0, "NOTIFY_WATCH", handle(1), 0)
        + send(0, "NOTIFY", handle(1), ADVANCE) + bytes([STEP_RUN])
        + send(2, "NOTIFY", handle(9), 0) + send(1, "NOTIFIER", handle(1), 0xF0, ADVANCE)
        + send(2, "RELEASE", handle(1)) + send(1, "NOTIFY", handle(1), ADVANCE, quiet=True)
        + send(2, "NOTIFY_WATCH", handle(1), 0) + bytes([STEP_CLOSE, 2, STEP_RUN]) + send(1, "NOTIFY", handle(1), 0),
        # Releases carried after a request's body: a STAT that lets go of a region first, a reader that carries
        # its own hold and then one more (the request fails), a quiet RELEASE carrying a handle nobody gave out,
        # 17 handles (one too many: the wrong size), and a first HELLO that carries one (it holds nothing yet).
        "carried": bytes([STEP_SEND, 0 | SEND_RUN | SEND_READ, OP["HELLO"], 0]) + carried((handle(1),))
        + everyone + create(1, MODE_0644, NAME_A) + create(1, MODE_DEFAULT)
        + send(2, "OPEN", BY_NAME, NAME_A, READ) + send(1, "STAT", BY_HANDLE, 1, carry=(1,))
        + send(2, "LIMITS", carry=(0, 0)) + send(1, "RELEASE", 0, quiet=True, carry=(handle(9),))
        + send(0, "LIST", 0, carry=tuple(range(17))) + send(1, "LIST", 0) + send(2, "STAT", BY_NAME, NAME_A),
        # A transient region lives while someone holds it: its creator leaves, the reader that opened it keeps
        # it and its name; once the reader lets go, the name is free for root's transient region, which a
        # waiter gets when sealed, and which ends when both leave. A transient region needs a name.
        # Release queues: a reader's, with its hold in it, taken by a flagged STAT; a second RELEASE_QUEUE
        # (refused), an entry not complete yet, then complete, taken by a quiet SYNC; an entry of a handle it
        # does not hold (the next request fails); the flag without a queue; a third and a fourth queue, over
        # the fuzzer's limit of three.
        "queue": everyone + create(1, MODE_0644, NAME_A) + send(2, "RELEASE_QUEUE")
        + send(2, "OPEN", BY_NAME, NAME_A, READ) + queue_entry(2, handle(1))
        + send(2, "STAT", BY_NAME, NAME_A, queued=True) + send(2, "RELEASE_QUEUE")
        + send(2, "OPEN", BY_NAME, NAME_A, READ) + queue_entry(2, handle(1), ENTRY_NOT_YET)
        + send(2, "SYNC", queued=True) + queue_entry(2, handle(1))
        + send(2, "SYNC", quiet=True, queued=True) + send(1, "STAT", BY_NAME, NAME_A)
        + queue_entry(2, handle(9)) + send(2, "LIMITS", queued=True) + send(2, "LIMITS")
        + send(0, "LIMITS", queued=True) + send(0, "RELEASE_QUEUE") + send(1, "RELEASE_QUEUE")
        + bytes([STEP_CONNECT, 3]) + hello(3) + send(3, "RELEASE_QUEUE") + bytes([STEP_CLOSE, 2, STEP_RUN])
        + send(3, "RELEASE_QUEUE"),
        "transient": everyone + send(1, "CREATE", 0, CREATE_FLAGS_TRANSIENT, MODE_0644, 1, NAME_A)
        + send(2, "OPEN", BY_NAME, NAME_A, READ) + send(2, "NOTIFY_WATCH", handle(1), 0)
        + bytes([STEP_CLOSE, 1, STEP_RUN]) + send(2, "STAT", BY_NAME, NAME_A) + send(0, "LIST", 0)
        + send(2, "RELEASE", handle(1)) + send(0, "STAT", BY_NAME, NAME_A)
        + bytes([STEP_CONNECT, 1 + 8 * UID_1000]) + hello(1) + send(1, "OPEN", BY_NAME, NAME_A, READ)
        + send(1, "WAIT", 0, NAME_A, 0) + send(0, "CREATE", 0, CREATE_FLAGS_TRANSIENT, MODE_0644, 1, NAME_A)
        + send(0, "SEAL", handle(2), SEALS_WRITE) + bytes([STEP_READ, 1])
        + send(2, "CREATE", 0, CREATE_FLAGS_TRANSIENT, MODE_DEFAULT, 0)
        + bytes([STEP_CLOSE, 0, STEP_RUN]) + send(1, "STAT", BY_HANDLE, handle(2))
        + bytes([STEP_CLOSE, 1, STEP_RUN]) + send(2, "STAT", BY_NAME, NAME_A),
    }


PARK_VALID_HEADER = 0x80
PARK_PIPE = 0x08
PARK_MAGIC = 0x5042464D
# daemon/kept.h: a region's control page is parked under its handle with this bit.
KEPT_PAGE_BIT = 1 << 63


def park_message(options, body=b""):
    return bytes([options, len(body)]) + body


def park_seeds():
    """fuzz-park: messages, each a byte of options (fds, pipe, valid header), a byte of length, the bytes."""
    magic = struct.pack("=II", 0x5042464D, 1) + struct.pack("=Q", 7)
    return {
        "one-region": park_message(1 | PARK_VALID_HEADER, bytes([1, 7])),
        "two-then-garbage": park_message(2 | PARK_VALID_HEADER, bytes([2, 5, 6]))
        + park_message(1, b"garbage!") + park_message(1 | PARK_VALID_HEADER, bytes([1, 9])),
        "fewer-fds": park_message(1 | PARK_VALID_HEADER, bytes([3, 1, 2, 3])),
        "a-pipe": park_message(1 | PARK_PIPE | PARK_VALID_HEADER, bytes([1, 4])),
        "empty": park_message(0, b"") + park_message(1 | PARK_VALID_HEADER, bytes([1, 2])),
        "raw-header": park_message(1, magic),
        # A kept region and its control page, in one message as persist parks them: the page's handle has
        # KEPT_PAGE_BIT, which the valid-header option cannot write (its handles are bytes).
        "control-page": park_message(2, struct.pack("=IIQQ", PARK_MAGIC, 2, 7, 7 | KEPT_PAGE_BIT)),
    }


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make-corpus.py CORPUS_DIR")
    for target, seeds in (("fuzz-codec", codec_seeds()), ("fuzz-state", state_seeds()),
                          ("fuzz-requests", requests_seeds()), ("fuzz-park", park_seeds())):
        directory = os.path.join(sys.argv[1], target)
        os.makedirs(directory, exist_ok=True)
        for seed, data in seeds.items():
            with open(os.path.join(directory, seed), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
