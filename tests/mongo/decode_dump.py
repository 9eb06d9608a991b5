"""Decodes a mongodump directory with pymongo's bson, an implementation independent of annals.

Usage: decode_dump.py DIR

Prints one JSON object: {"<collection>": {"documents": [...], "metadata": ...}} where every
BSON value is written as a tagged list that keeps its type and, for documents, the order of
their fields:

  ["doc", [[name, value], ...]]   ["array", [value, ...]]
  ["int32", n]  ["int64", n]  ["double", x]  ["decimal128", "text"]  ["string", s]
  ["bool", b]  ["null"]  ["date", milliseconds]  ["objectid", "hex"]
  ["uuid", "rfc text"] (Binary subtype 4)  ["binary", subtype, "hex"] (other subtypes)

The metadata file is read as extended JSON (as mongorestore reads it) into the same form.
"""

import gzip
import json
import os
import sys
import uuid

import bson
from bson import json_util
from bson.binary import Binary, UuidRepresentation
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.datetime_ms import DatetimeMS
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.objectid import ObjectId
from bson.son import SON

OPTIONS = CodecOptions(
    document_class=SON,
    uuid_representation=UuidRepresentation.UNSPECIFIED,
    datetime_conversion=DatetimeConversion.DATETIME_MS,
)


def tagged(value):
    if isinstance(value, (SON, dict)):
        return ["doc", [[name, tagged(inner)] for name, inner in value.items()]]
    if isinstance(value, list):
        return ["array", [tagged(inner) for inner in value]]
    if isinstance(value, bool):
        return ["bool", value]
    if isinstance(value, Int64):
        return ["int64", int(value)]
    if isinstance(value, int):
        return ["int32", value]
    if isinstance(value, float):
        return ["double", value]
    if isinstance(value, Decimal128):
        return ["decimal128", str(value)]
    if isinstance(value, str):
        return ["string", value]
    if value is None:
        return ["null"]
    if isinstance(value, DatetimeMS):
        return ["date", int(value)]
    if isinstance(value, ObjectId):
        return ["objectid", str(value)]
    if isinstance(value, Binary):
        if value.subtype == 4:
            return ["uuid", str(uuid.UUID(bytes=bytes(value)))]
        return ["binary", value.subtype, bytes(value).hex()]
    if isinstance(value, bytes):
        # Binary subtype 0, which pymongo gives as plain bytes (Binary is bytes too).
        return ["binary", 0, value.hex()]
    raise TypeError(f"unexpected BSON value {value!r} of type {type(value)}")


def opened(path):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def main():
    directory = sys.argv[1]
    out = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        for suffix in (".bson", ".bson.gz"):
            if name.endswith(suffix):
                collection = name[: -len(suffix)]
                with opened(path) as f:
                    documents = [tagged(d) for d in bson.decode_file_iter(f, OPTIONS)]
                out.setdefault(collection, {})["documents"] = documents
        for suffix in (".metadata.json", ".metadata.json.gz"):
            if name.endswith(suffix):
                collection = name[: -len(suffix)]
                with opened(path) as f:
                    metadata = json_util.loads(
                        f.read().decode("utf-8"),
                        json_options=json_util.JSONOptions(document_class=SON),
                    )
                out.setdefault(collection, {})["metadata"] = tagged(metadata)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
