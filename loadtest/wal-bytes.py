#!/usr/bin/env python3
"""What a write node writes ahead, by column family: reads RocksDB write-ahead-log files
(copy `*.log` out of a node's data directory while it runs: a clean stop deletes them) and
prints, per column family and operation, the count and the bytes of keys and values
(BENCHMARKS.md, "universal compaction for the records"). Not a test.

    python3 loadtest/wal-bytes.py 000017.log [more.log ...]

Column family ids are those a write node creates, in `write_node::storage::FAMILIES` order
after `default`.
"""

import collections
import struct
import sys

FAMILIES = ["default", "raft_log", "raft_state", "events", "meta", "snapshots", "records",
            "accounts"]
BLOCK = 32768
# WriteBatch record tags (rocksdb/db/dbformat.h): the column family ones carry its id first.
KINDS = {0x0: "delete", 0x1: "put", 0x2: "merge", 0x7: "single-delete", 0xF: "range-delete",
         0x4: "delete", 0x5: "put", 0x6: "merge", 0x8: "single-delete", 0xE: "range-delete"}
WITH_FAMILY = {0x4, 0x5, 0x6, 0x8, 0xE}
WITH_VALUE = {"put", "merge", "range-delete"}
LOG_DATA = 0x3


def batches(data):
    """The write batches of a log file: physical records (checksum, length, type; 4 more
    bytes of log number in the recyclable format) reassembled from their fragments."""
    pos, fragments = 0, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack_from("<IHB", data, pos)
        if kind == 0 and length == 0:  # preallocated, unwritten
            pos += left
            continue
        header = 7
        if kind >= 5:  # recyclable: full, first, middle, last are 5..8
            header, kind = 11, kind - 4
        payload = data[pos + header:pos + header + length]
        pos += header + length
        if kind == 1:
            yield payload
        elif kind == 2:
            fragments = payload
        elif kind == 3:
            fragments += payload
        elif kind == 4:
            yield fragments + payload
            fragments = b""


def varint(data, pos):
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def main(paths):
    count, size = collections.Counter(), collections.Counter()
    total_batches = 0
    for path in paths:
        with open(path, "rb") as file:
            data = file.read()
        for batch in batches(data):
            total_batches += 1
            pos = 12  # sequence number, count
            while pos < len(batch):
                tag = batch[pos]
                pos += 1
                family = 0
                if tag == LOG_DATA:
                    length, pos = varint(batch, pos)
                    pos += length
                    continue
                if tag in WITH_FAMILY:
                    family, pos = varint(batch, pos)
                kind = KINDS[tag]
                key, pos = varint(batch, pos)
                pos += key
                value = 0
                if kind in WITH_VALUE:
                    value, pos = varint(batch, pos)
                    pos += value
                name = FAMILIES[family] if family < len(FAMILIES) else str(family)
                count[(name, kind)] += 1
                size[(name, kind)] += key + value
    total = sum(size.values())
    print(f"{total_batches} write batches, {total} bytes of keys and values")
    for (name, kind), nbytes in size.most_common():
        n = count[(name, kind)]
        print(f"{name:>10} {kind:<13} {n:>9} x {nbytes / n:8.1f} B = {nbytes:>11} B "
              f"({100 * nbytes / total:.1f}%)")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
