#!/usr/bin/env python3
"""Writes the seed corpus of the fuzzers: python3 make-corpus.py CORPUS_DIR.

The seeds are committed under tests/fuzz/corpus/; run this again after
changing an input format (the comments of the fuzzers describe them) and
commit what changed. Each seed is a small valid input that takes its
fuzzer deep at once: records of every shape, a saved state with regions,
and scripts in which several users create, open, share, wait, seal and
leave.
"""

import os
import struct
import sys

# proto/wire.h
HEADER = struct.Struct("=IHHQiHH")
NAME_MAX = 255
REPLY = 0x8000
HELLO, CREATE, OPEN, SEAL, STAT, LIST, RELEASE, REMOVE, SET, WAIT, LIMITS = range(1, 12)
VERSION = 2
REGION_INFO = struct.Struct("=QQIIIIIIIIIIQQQQ256s")
F_SEAL_SHRINK, F_SEAL_GROW = 0x2, 0x4
RESOURCE_COUNT = 8
LIMIT_NONE = 0xFFFFFFFFFFFFFFFF


def record(opcode, body=b"", cookie=1, status=0, nfds=0):
    return HEADER.pack(HEADER.size + len(body), opcode, 0, cookie, status, nfds, 0) + body


def name(text):
    return text.encode().ljust(NAME_MAX + 1, b"\0")


def info(handle, size=4096, mode=0o644, text=""):
    return REGION_INFO.pack(handle, size, 1000, 1000, 1000, 1000, mode, 42, 42, 1,
                            F_SEAL_SHRINK | F_SEAL_GROW, 0, 1, 0, 0, 1, name(text))


def codec_seeds():
    """fuzz-codec: a byte of fd count, then a record."""
    region_reply = struct.pack("=II", 3, 0) + info(1, text="a")
    limits = struct.pack("=II", 1000, RESOURCE_COUNT) + struct.pack("=5Q", 100, LIMIT_NONE, 25, 1, 24) * RESOURCE_COUNT
    return {
        "hello-request": b"\0" + record(HELLO, struct.pack("=II", 1, VERSION)),
        "create-request": b"\0" + record(CREATE, struct.pack("=QII", 4096, 0, 0o644) + name("a")),
        "create-reply": b"\1" + record(CREATE | REPLY, region_reply, nfds=1),
        "error-reply": b"\0" + record(OPEN | REPLY, b"no region is named a", status=-2),
        "list-reply": b"\0" + record(LIST | REPLY, struct.pack("=IIQ", 1, 1, 1) + info(1)),
        "limits-reply": b"\0" + record(LIMITS | REPLY, limits),
    }


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
 STEP_TIME) = range(9)
SEND_WITH_FD, SEND_MEMFD, SEND_MUTATE, SEND_RUN, SEND_READ = 0x08, 0x10, 0x20, 0x40, 0x80
OP = {"HELLO": 0, "CREATE": 1, "OPEN": 2, "SEAL": 3, "STAT": 4, "LIST": 5, "RELEASE": 6, "REMOVE": 7,
      "SET": 8, "WAIT": 9, "LIMITS": 10}
NAME_A, NAME_B, NAME_SHARED = 0, 1, 2
MODE_DEFAULT, MODE_0644, MODE_0660 = 0, 3, 4
BY_HANDLE, BY_NAME = 0, 4
UID_1000 = 1                # in the fuzzer's identities
ID_1001 = 3                 # in its table of uids and gids
GID_100 = 1


def send(slot, op, *fields, how=SEND_RUN | SEND_READ):
    return bytes([STEP_SEND, slot | how, OP[op], *fields])


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
        + bytes([STEP_SEND, 0 | SEND_WITH_FD | SEND_MEMFD | SEND_RUN, OP["HELLO"], 0])
        + bytes([STEP_SEND, 0 | SEND_MUTATE | SEND_RUN, OP["HELLO"], 0, 4, 0, 0x0f])
        + bytes([STEP_SEND_RAW, 1 | SEND_RUN | SEND_READ, 4, 0]) + b"\x10" * 4
        + bytes([STEP_SEND_FIXED, 0 | SEND_RUN, OP["CREATE"], 0xf4]),
    }


PARK_VALID_HEADER = 0x80
PARK_PIPE = 0x08


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
