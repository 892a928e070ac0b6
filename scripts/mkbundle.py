#!/usr/bin/env python3
"""Pack a guest bundle for the hypervisor (format: src/bundle.rs).

usage: mkbundle.py OUT NAME=FILE [NAME=FILE ...]
Each NAME (at most 15 bytes) becomes an entry; 'config' must be one of them.
"""
import struct
import sys


def main(argv):
    if len(argv) < 3 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) > 1 and argv[1] in ("-h", "--help") else 2
    out = argv[1]
    entries = []
    for arg in argv[2:]:
        name, sep, path = arg.partition("=")
        if not sep or not name or len(name.encode()) > 15:
            print(f"mkbundle: bad entry '{arg}' (want NAME=FILE, NAME at most 15 bytes)", file=sys.stderr)
            return 2
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            print(f"mkbundle: {name}: {e}", file=sys.stderr)
            return 1
        entries.append((name, data))
    if "config" not in [n for n, _ in entries]:
        print("mkbundle: no 'config' entry", file=sys.stderr)
        return 2
    table = 24 + 32 * len(entries)
    # Entries start 4 KiB-aligned so the hypervisor can copy them page-wise.
    offsets, off = [], (table + 4095) & ~4095
    for _, data in entries:
        offsets.append(off)
        off = (off + len(data) + 4095) & ~4095
    total = off
    blob = bytearray(total)
    blob[0:24] = b"HVBUNDLE" + struct.pack("<IIQ", 1, len(entries), total)
    for i, ((name, data), o) in enumerate(zip(entries, offsets)):
        e = 24 + 32 * i
        blob[e:e + 32] = name.encode().ljust(16, b"\0") + struct.pack("<QQ", o, len(data))
        blob[o:o + len(data)] = data
    with open(out, "wb") as f:
        f.write(blob)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
