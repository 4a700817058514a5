#!/usr/bin/env python3
"""Check a destination folder against a manifest.

Usage: verify.py MANIFEST DEST [--full]
Every manifest path must exist under DEST with the right size; with --full
its bytes must also equal the source file's. Files under DEST that the
manifest does not name are reported (as "extra"), not counted as failure.
Prints one line: "OK files=N bytes=B extra=E" or "BAD <reason>"; exit 0/1.
"""
import os
import sys


def same_bytes(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x = fa.read(1 << 20)
            y = fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def main():
    manifest, dest = sys.argv[1], sys.argv[2]
    full = "--full" in sys.argv[3:]
    want = {}
    with open(manifest) as f:
        for line in f:
            rel, src, size = line.rstrip("\n").split("\t")
            want[rel] = (src, int(size))
    bad = []
    files = total = 0
    for rel, (src, size) in want.items():
        p = os.path.join(dest, rel)
        try:
            got = os.stat(p).st_size
        except OSError:
            bad.append("missing %s" % rel)
            continue
        if got != size:
            bad.append("%s has %d bytes, want %d" % (rel, got, size))
            continue
        if full and not same_bytes(p, src):
            bad.append("%s differs from source" % rel)
            continue
        files += 1
        total += got
    extra = []
    for root, _dirs, names in os.walk(dest):
        for n in names:
            rel = os.path.relpath(os.path.join(root, n), dest)
            if rel not in want:
                extra.append(rel)
    if bad:
        more = " (+%d more)" % (len(bad) - 3) if len(bad) > 3 else ""
        print("BAD %d/%d wrong: %s%s" % (len(bad), len(want), "; ".join(bad[:3]), more))
        sys.exit(1)
    note = (" (" + ", ".join(sorted(extra)[:4]) + (", ..." if len(extra) > 4 else "") + ")") if extra else ""
    print("OK files=%d bytes=%d extra=%d%s%s" % (files, total, len(extra), note, " full" if full else ""))


if __name__ == "__main__":
    main()
