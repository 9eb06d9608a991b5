"""Writes, with pymongo's bson, a dump of the event store a Dolittle Runtime before 9.0 left:
documents written out by hand from the original's schema (dolittle.md section 3; Runtime
v8.9.5 and v9.9.0's MongoDB class maps), in the forms the V9 migration had not yet converted.

Usage: write_legacy_dump.py DIR TENANT [ARCHIVE [--gzip]]

With ARCHIVE, the same collections are also written as `mongodump --archive` writes them
(mongo-tools common/archive: magic number, prelude, interleaved blocks, each collection's
end with the CRC-64/XZ of its documents), gzipped whole with --gzip.

What it holds (the test importing it checks each point):
- event-log: six events, _id Decimal128 0..5; event 0's Metadata.EventSource is a Binary
  subtype 4 GUID (before 9.0); events 0, 2, 4, 5 carry the default Aggregate and EventHorizon
  sub-documents older runtimes wrote on every event; events 1 and 3 are applied by aggregate
  ROOT instance "cart-1" at versions 0 and 1; event 4's content holds an Int64 and a Date;
  event 5 has no SpanId;
- aggregates: cart-1 at version 2;
- stream-definitions: the event handler HANDLER of TYPE_A (v8's EventTypeId filter);
- stream-<HANDLER>: the handler's stream (events 0, 4, 5), partitions as Binary GUIDs and
  strings;
- stream-processor-states: the handler's filter state (HANDLER, nil GUID) and its processor
  state (HANDLER, HANDLER) at stream position 1, both without EventLogPosition; and the state
  of the private filter FILTER at event 3;
- stream-definitions and stream-<FILTER>: that filter (Remote) and its stream of events 0, 2
  and 4, the last written past the filter's state (as the original writes an entry before
  the filter's position);
- no metadata collection (no migration had run).
"""

import datetime
import gzip
import os
import sys
import uuid

import bson
from bson.binary import Binary
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.objectid import ObjectId
from bson.son import SON

TYPE_A = uuid.UUID("0a0a0000-0000-4000-8000-0000000000a1")
TYPE_B = uuid.UUID("0b0b0000-0000-4000-8000-0000000000b1")
TYPE_C = uuid.UUID("0c0c0000-0000-4000-8000-0000000000c1")
ROOT = uuid.UUID("70070000-0000-4000-8000-000000000007")
HANDLER = uuid.UUID("4a4d0000-0000-4000-8000-0000000000f1")
FILTER = uuid.UUID("f1170000-0000-4000-8000-0000000000f2")
LEGACY_SOURCE = uuid.UUID("e5e50000-0000-4000-8000-0000000000e5")
MICROSERVICE = uuid.UUID("4a5d2bc3-543f-459a-ab0b-e8e924093260")
CORRELATION = uuid.UUID("c0ffee00-0000-4000-8000-00000000beef")
NIL = uuid.UUID(int=0)
DOTNET_MIN = datetime.datetime(1, 1, 1, tzinfo=datetime.timezone.utc)
BASE_MS = 1_700_000_000_000


def guid(value):
    return Binary(value.bytes, 4)


def dec(n):
    return Decimal128(str(n))


def when(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)


def context(tenant, span=True):
    fields = [("Correlation", guid(CORRELATION))]
    if span:
        fields.append(("SpanId", Binary(bytes(8), 0)))
    fields += [
        ("Microservice", guid(MICROSERVICE)),
        ("Tenant", guid(tenant)),
        ("Version", SON([("Major", 1), ("Minor", 2), ("Patch", 3), ("Build", 4), ("PreRelease", "")])),
        ("Environment", "Production"),
        ("Claims", [SON([("Name", "sub"), ("Value", "ada"), ("ValueType", "string")])]),
    ]
    return SON(fields)


DEFAULT_AGGREGATE = SON([
    ("WasAppliedByAggregate", False),
    ("TypeId", guid(NIL)),
    ("TypeGeneration", Int64(0)),
    ("Version", dec(0)),
])
DEFAULT_HORIZON = SON([
    ("FromEventHorizon", False),
    ("ExternalEventLogSequenceNumber", dec(0)),
    ("Received", DOTNET_MIN),
    ("Consent", guid(NIL)),
])

# (event type, event source, aggregate version or None, content)
EVENTS = [
    (TYPE_A, guid(LEGACY_SOURCE), None, SON([("n", 0)])),
    (TYPE_C, "cart-1", 0, SON([("item", "book")])),
    (TYPE_B, "es-2", None, SON([("n", 2)])),
    (TYPE_C, "cart-1", 1, SON([("item", "pen")])),
    (TYPE_A, "es-2", None, SON([("big", Int64(7)), ("at", when(BASE_MS + 5))])),
    (TYPE_A, "es-3", None, SON([("n", 5)])),
]


def metadata(seq, event_type, source, stream=False):
    fields = [
        ("Occurred", when(BASE_MS + seq)),
        ("EventSource", source),
        ("TypeId", guid(event_type)),
        ("TypeGeneration", Int64(1)),
        ("Public", False),
    ]
    if stream:
        fields.append(("EventLogSequenceNumber", dec(seq)))
    return SON(fields)


def event(tenant, seq, stream_position=None, partition=None):
    event_type, source, version, content = EVENTS[seq]
    fields = [("_id", dec(seq if stream_position is None else stream_position))]
    if stream_position is not None:
        fields.append(("Partition", partition))
    fields += [
        ("ExecutionContext", context(tenant, span=seq != 5)),
        ("Metadata", metadata(seq, event_type, source, stream=stream_position is not None)),
    ]
    if version is None:
        fields.append(("Aggregate", DEFAULT_AGGREGATE))
        fields.append(("EventHorizon", DEFAULT_HORIZON))
    else:
        fields.append(("Aggregate", SON([
            ("WasAppliedByAggregate", True),
            ("TypeId", guid(ROOT)),
            ("TypeGeneration", Int64(1)),
            ("Version", dec(version)),
        ])))
    fields.append(("Content", content))
    return SON(fields)


WRITTEN = {}


def write(directory, name, documents):
    WRITTEN[name] = [bson.encode(document) for document in documents]
    with open(os.path.join(directory, name + ".bson"), "wb") as out:
        for encoded in WRITTEN[name]:
            out.write(encoded)


def crc64_xz(data, crc=0):
    """CRC-64/XZ (Go's crc64.ECMA table with the standard inversions), bit by bit."""
    crc ^= 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xC96C5795D7870F42 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFFFFFFFFFF


def write_archive(path, database, gzipped):
    terminator = b"\xff\xff\xff\xff"
    out = bytearray((0x8199E26D).to_bytes(4, "little"))
    out += bson.encode(SON([("concurrent_collections", 4), ("version", "0.1"),
                            ("server_version", "7.0.14"), ("tool_version", "100.9.4")]))
    for name in sorted(WRITTEN):
        out += bson.encode(SON([("db", database), ("collection", name), ("metadata", "{}"),
                                ("size", 0), ("type", "")]))
    out += terminator

    def block(name, documents):
        out.extend(bson.encode(SON([("db", database), ("collection", name), ("EOF", False),
                                    ("CRC", Int64(0))])))
        for encoded in documents:
            out.extend(encoded)
        out.extend(terminator)

    # Interleaved: the event log in two blocks around the others.
    events = WRITTEN["event-log"]
    block("event-log", events[:3])
    for name in sorted(WRITTEN):
        if name != "event-log":
            block(name, WRITTEN[name])
    block("event-log", events[3:])
    for name in sorted(WRITTEN):
        crc = 0
        for encoded in WRITTEN[name]:
            crc = crc64_xz(encoded, crc)
        signed = crc - (1 << 64) if crc >= 1 << 63 else crc
        out += bson.encode(SON([("db", database), ("collection", name), ("EOF", True),
                                ("CRC", Int64(signed))]))
        out += terminator
    data = gzip.compress(bytes(out)) if gzipped else bytes(out)
    with open(path, "wb") as file:
        file.write(data)


def main():
    directory, tenant = sys.argv[1], uuid.UUID(sys.argv[2])
    os.makedirs(directory, exist_ok=True)
    write(directory, "event-log", [event(tenant, seq) for seq in range(len(EVENTS))])
    write(directory, "aggregates", [SON([
        ("_id", ObjectId()),
        ("EventSource", "cart-1"),
        ("AggregateType", guid(ROOT)),
        ("Version", dec(2)),
    ])])
    write(directory, "stream-definitions", [SON([
        ("_id", guid(HANDLER)),
        ("Partitioned", True),
        ("Public", False),
        ("Filter", SON([("Type", "EventTypeId"), ("Types", [guid(TYPE_A)])])),
    ]), SON([
        ("_id", guid(FILTER)),
        ("Partitioned", False),
        ("Public", False),
        ("Filter", SON([("Type", "Remote")])),
    ])])
    write(directory, "stream-" + str(FILTER), [
        event(tenant, 0, stream_position=0, partition=str(NIL)),
        event(tenant, 2, stream_position=1, partition=str(NIL)),
        event(tenant, 4, stream_position=2, partition=str(NIL)),
    ])
    write(directory, "stream-" + str(HANDLER), [
        event(tenant, 0, stream_position=0, partition=guid(LEGACY_SOURCE)),
        event(tenant, 4, stream_position=1, partition="es-2"),
        event(tenant, 5, stream_position=2, partition="es-3"),
    ])
    last = when(BASE_MS + 100)
    write(directory, "stream-processor-states", [
        SON([
            ("_id", ObjectId()),
            ("Partitioned", False),
            ("EventProcessor", guid(HANDLER)),
            ("SourceStream", guid(NIL)),
            ("Position", dec(6)),
            ("LastSuccessfullyProcessed", last),
            ("RetryTime", last),
            ("FailureReason", ""),
            ("ProcessingAttempts", 0),
            ("IsFailing", False),
        ]),
        SON([
            ("_id", ObjectId()),
            ("Partitioned", True),
            ("EventProcessor", guid(HANDLER)),
            ("SourceStream", guid(HANDLER)),
            ("Position", dec(1)),
            ("LastSuccessfullyProcessed", last),
            ("FailingPartitions", SON()),
        ]),
        SON([
            ("_id", ObjectId()),
            ("Partitioned", False),
            ("EventProcessor", guid(FILTER)),
            ("SourceStream", guid(NIL)),
            ("Position", dec(3)),
            ("EventLogPosition", dec(3)),
            ("LastSuccessfullyProcessed", last),
            ("RetryTime", last),
            ("FailureReason", ""),
            ("ProcessingAttempts", 0),
            ("IsFailing", False),
        ]),
    ])
    if len(sys.argv) > 3:
        write_archive(sys.argv[3], os.path.basename(directory), "--gzip" in sys.argv[4:])


if __name__ == "__main__":
    main()
