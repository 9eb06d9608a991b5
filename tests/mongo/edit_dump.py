"""Damages one collection of a mongodump directory in one way, with pymongo's bson, so that
tests can check that `annals import` refuses it.

Usage: edit_dump.py DIR COLLECTION EDIT INDEX [PATH VALUE]

EDIT is one of:
  drop   remove document INDEX
  set    set the field at dotted PATH of document INDEX to VALUE, a JSON text read as
         MongoDB extended JSON ({"$numberDecimal": "5"}, "text", ...)
"""

import os
import sys

import bson
from bson import json_util
from bson.codec_options import CodecOptions
from bson.son import SON

OPTIONS = CodecOptions(document_class=SON)


def main():
    directory, collection, edit, index = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    path = os.path.join(directory, collection + ".bson")
    with open(path, "rb") as source:
        documents = bson.decode_all(source.read(), OPTIONS)
    if edit == "drop":
        del documents[index]
    elif edit == "set":
        names, value = sys.argv[5].split("."), json_util.loads(sys.argv[6])
        target = documents[index]
        for name in names[:-1]:
            target = target[name]
        target[names[-1]] = value
    else:
        raise SystemExit("unknown edit " + edit)
    with open(path, "wb") as out:
        for document in documents:
            out.write(bson.encode(document))


if __name__ == "__main__":
    main()
