#!/usr/bin/env python3
"""Write a gzip-compressed initramfs in the cpio "newc" format, without cpio(1).

    scripts/mkinitramfs.py OUT.cpio.gz ENTRY...

Each ENTRY describes one archive member (paths are inside the archive, no leading /):

    dir:PATH[:MODE]                      a directory (default mode 0755)
    file:PATH=SRC[:MODE]                 a regular file copied from SRC on the host
                                         (default mode: 0755 if SRC is executable, else 0644)
    text:PATH=STRING[:MODE]              a regular file holding STRING (default 0644)
    symlink:PATH=TARGET                  a symbolic link
    nod:PATH=c|b:MAJOR:MINOR[:MODE]      a device node (default mode 0600)

Parent directories are added automatically. The output is reproducible: every member
has uid/gid 0 and mtime 0, inode numbers are assigned in order, and the gzip header
carries no timestamp or file name. The format is the kernel's
Documentation/driver-api/early-userspace/buffer-format.rst: a 110-byte ASCII header
("070701", then 13 eight-digit hex fields), the NUL-terminated name, padding to 4
bytes, the data, padding to 4 bytes; the archive ends with the member "TRAILER!!!".
"""

import gzip
import os
import stat
import sys

MAGIC = b"070701"


def usage(msg):
    sys.stderr.write(f"mkinitramfs.py: {msg}\n(try --help)\n")
    sys.exit(2)


def pad4(n):
    return (4 - n % 4) % 4


class Archive:
    def __init__(self):
        self.members = {}  # path -> (mode, data, rdevmajor, rdevminor)

    def add(self, path, mode, data=b"", rdev=(0, 0)):
        path = path.strip("/")
        if not path or path in (".", "..") or ".." in path.split("/"):
            usage(f"bad archive path '{path}'")
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent not in self.members:
                self.members[parent] = (stat.S_IFDIR | 0o755, b"", (0, 0))
            elif not stat.S_ISDIR(self.members[parent][0]):
                usage(f"'{parent}' is both a file and a directory")
        if path in self.members and not (stat.S_ISDIR(mode) and stat.S_ISDIR(self.members[path][0])):
            usage(f"'{path}' given twice")
        self.members[path] = (mode, data, rdev)

    def bytes(self):
        out = bytearray()
        ino = 1
        # Parents sort before their children because "a" < "a/b".
        items = sorted(self.members.items())
        items.append(("TRAILER!!!", (0, b"", (0, 0))))
        for path, (mode, data, (rmaj, rmin)) in items:
            name = path.encode() + b"\0"
            nlink = 2 if stat.S_ISDIR(mode) else 1
            fields = [
                ino if path != "TRAILER!!!" else 0,  # c_ino
                mode,  # c_mode
                0,  # c_uid
                0,  # c_gid
                nlink if path != "TRAILER!!!" else 1,  # c_nlink
                0,  # c_mtime
                len(data),  # c_filesize
                0,  # c_devmajor
                0,  # c_devminor
                rmaj,  # c_rdevmajor
                rmin,  # c_rdevminor
                len(name),  # c_namesize
                0,  # c_check
            ]
            hdr = MAGIC + b"".join(b"%08X" % f for f in fields)
            assert len(hdr) == 110
            out += hdr + name + b"\0" * pad4(110 + len(name))
            out += data + b"\0" * pad4(len(data))
            ino += 1
        return bytes(out)


def split_mode(spec, default):
    """'x:0755' -> ('x', 0o755); 'x' -> ('x', default)."""
    head, sep, tail = spec.rpartition(":")
    if sep and len(tail) in (3, 4) and all(c in "01234567" for c in tail):
        return head, int(tail, 8)
    return spec, default


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) >= 2 else 2
    out = argv[1]
    if not out.endswith(".gz"):
        usage(f"output '{out}' should end in .gz (the archive is gzip-compressed)")
    ar = Archive()
    for spec in argv[2:]:
        kind, sep, rest = spec.partition(":")
        if not sep:
            usage(f"entry '{spec}' has no kind (dir:, file:, text:, symlink:, nod:)")
        if kind == "dir":
            path, mode = split_mode(rest, 0o755)
            ar.add(path, stat.S_IFDIR | mode)
        elif kind == "file":
            path, sep, src = rest.partition("=")
            if not sep:
                usage(f"'{spec}': expected file:PATH=SRC[:MODE]")
            src, mode = split_mode(src, None)
            try:
                with open(src, "rb") as f:
                    data = f.read()
                st = os.stat(src)
            except OSError as e:
                sys.stderr.write(f"mkinitramfs.py: cannot read '{src}': {e.strerror}\n")
                return 1
            if mode is None:
                mode = 0o755 if st.st_mode & 0o111 else 0o644
            ar.add(path, stat.S_IFREG | mode, data)
        elif kind == "text":
            path, sep, text = rest.partition("=")
            if not sep:
                usage(f"'{spec}': expected text:PATH=STRING[:MODE]")
            text, mode = split_mode(text, 0o644)
            ar.add(path, stat.S_IFREG | mode, text.encode())
        elif kind == "symlink":
            path, sep, target = rest.partition("=")
            if not sep or not target:
                usage(f"'{spec}': expected symlink:PATH=TARGET")
            ar.add(path, stat.S_IFLNK | 0o777, target.encode())
        elif kind == "nod":
            path, sep, dev = rest.partition("=")
            dev, mode = split_mode(dev, 0o600)
            parts = dev.split(":")
            if not sep or len(parts) != 3 or parts[0] not in ("c", "b") or not all(p.isdigit() for p in parts[1:]):
                usage(f"'{spec}': expected nod:PATH=c|b:MAJOR:MINOR[:MODE]")
            ftype = stat.S_IFCHR if parts[0] == "c" else stat.S_IFBLK
            ar.add(path, ftype | mode, b"", (int(parts[1]), int(parts[2])))
        else:
            usage(f"unknown entry kind '{kind}' in '{spec}'")
    data = ar.bytes()
    tmp = out + ".tmp"
    with open(tmp, "wb") as raw:
        # mtime=0 and no file name in the header keep the output reproducible.
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
            gz.write(data)
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
