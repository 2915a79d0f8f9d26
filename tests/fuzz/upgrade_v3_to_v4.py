#!/usr/bin/env python3
"""Rewrites .dfq files of format version 3 as version 4 in place, keeping what
they are about: version 4 adds the config keys power_of_two_scales and
weight_lut (false) and a per-weight "lut": false; everything else, the
tensor data included, is carried over byte for byte and the CRC-32 rewritten.
Used for the fuzzers' regression inputs and seeds when the format moved on.
usage: tests/fuzz/upgrade_v3_to_v4.py FILE..."""
import json
import struct
import sys
import zlib

for path in sys.argv[1:]:
    data = open(path, "rb").read()
    magic, (version,), (length,) = data[:8], struct.unpack_from("<I", data, 8), struct.unpack_from("<Q", data, 12)
    if magic != b"DFQMODEL" or version != 3:
        print(f"{path}: not a version 3 .dfq file, left alone")
        continue
    header = json.loads(data[20:20 + length])
    header["config"].setdefault("power_of_two_scales", False)
    header["config"].setdefault("weight_lut", False)
    for w in header["weights"].values() if isinstance(header["weights"], dict) else header["weights"]:
        if isinstance(w, dict):
            w.setdefault("lut", False)
    text = json.dumps(header, separators=(",", ":")).encode()
    body = b"DFQMODEL" + struct.pack("<IQ", 4, len(text)) + text + data[20 + length:-4]
    open(path, "wb").write(body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF))
    print(f"{path}: version 4")
