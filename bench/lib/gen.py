#!/usr/bin/env python3
"""Generate benchmark data and the per-tool input files.

Usage:
  gen.py workload WORK NAME PREFIX SPEC     e.g. SPEC = "200x32768,20x4194304"
  gen.py plan WORK COUNT                    writes WORK/plan/uris-COUNT.txt

For a workload it writes, under WORK:
  data/NAME_FILES           random bytes (kept between runs when the size matches)
  src-NAME/                 hard links to this workload's data files (for the `cp -r` floor)
  uris-NAME.txt             one `mast:BENCH/product/<file>` URI per line
  manifest-NAME.tsv         <path under DEST> TAB <source file> TAB <size>
  manifest-NAME-cp.tsv      the same for the `cp -r src-NAME DEST/` floor
  inputs/NAME/portal.sh     one sequential `curl -f ... -o PATH URL` per file (run with cwd = DEST)
  inputs/NAME/curl.cfg      url/output pairs for `curl --parallel -K` (cwd = DEST)
  inputs/NAME/aria2.txt     aria2c input file with dir=/out= options (cwd = DEST)
The URLs in the peers' inputs carry {BASE} which the caller replaces by
sed at run time (the port is only known once nginx is up).
"""
import os
import sys

CHUNK = 1 << 20


def write_random(path, size):
    try:
        if os.path.getsize(path) == size:
            return False
    except OSError:
        pass
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        left = size
        while left:
            n = min(left, CHUNK)
            f.write(os.urandom(n))
            left -= n
    os.replace(tmp, path)
    return True


def layout(name):
    """mastdl's layout for mast:BENCH/product/NAME: BENCH/<name up to last _>/NAME."""
    return "BENCH/%s/%s" % (name[: name.rfind("_")], name)


def workload(work, wl, prefix, spec):
    data = os.path.join(work, "data")
    os.makedirs(data, exist_ok=True)
    files = []
    n = 0
    for part in spec.split(","):
        count, size = (int(x) for x in part.split("x"))
        for _ in range(count):
            n += 1
            files.append(("%s_%05d_i2d.fits" % (prefix, n), size))
    created = sum(write_random(os.path.join(data, name), size) for name, size in files)

    src = os.path.join(work, "src-" + wl)
    os.makedirs(src, exist_ok=True)
    want = {name for name, _ in files}
    for old in os.listdir(src):
        if old not in want:
            os.unlink(os.path.join(src, old))
    for name, _ in files:
        link = os.path.join(src, name)
        target = os.path.join(data, name)
        if os.path.exists(link):
            if os.path.samefile(link, target):
                continue
            os.unlink(link)
        os.link(target, link)

    with open(os.path.join(work, "uris-%s.txt" % wl), "w") as f:
        for name, _ in files:
            f.write("mast:BENCH/product/%s\n" % name)
    with open(os.path.join(work, "manifest-%s.tsv" % wl), "w") as f:
        for name, size in files:
            f.write("%s\t%s\t%d\n" % (layout(name), os.path.join(data, name), size))
    with open(os.path.join(work, "manifest-%s-cp.tsv" % wl), "w") as f:
        for name, size in files:
            f.write("src-%s/%s\t%s\t%d\n" % (wl, name, os.path.join(data, name), size))

    inp = os.path.join(work, "inputs", wl)
    os.makedirs(inp, exist_ok=True)
    # The portal's way: what MAST's "curl script" bundle does, one file at a time.
    with open(os.path.join(inp, "portal.sh"), "w") as f:
        f.write("#!/bin/bash\n# MAST-portal-style download script: one curl per file, sequential.\n")
        for name, _ in files:
            f.write(
                "curl -f --location-trusted --globoff --create-dirs -o './%s' "
                "'{BASE}/api/v0.1/Download/file?uri=mast:BENCH/product/%s'\n" % (layout(name), name)
            )
    with open(os.path.join(inp, "curl.cfg"), "w") as f:
        f.write("create-dirs\nfail\ngloboff\nsilent\nshow-error\n")
        for name, _ in files:
            f.write('url = "{BASE}/api/v0.1/Download/file?uri=mast:BENCH/product/%s"\n' % name)
            f.write('output = "%s"\n' % layout(name))
    # aria2c gets the percent-encoded form of the same URL, so both forms are exercised.
    with open(os.path.join(inp, "aria2.txt"), "w") as f:
        for name, _ in files:
            f.write("{BASE}/api/v0.1/Download/file?uri=mast%%3ABENCH%%2Fproduct%%2F%s\n" % name)
            d, base = layout(name).rsplit("/", 1)
            f.write("  dir=%s\n  out=%s\n" % (d, base))
    total = sum(s for _, s in files)
    print("%s: %d files, %.1f MiB (%d newly generated)" % (wl, len(files), total / 2**20, created))


def plan(work, count):
    d = os.path.join(work, "plan")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "uris-%d.txt" % count)
    if os.path.exists(path):
        with open(path, "rb") as f:
            if sum(1 for _ in f) == count:
                return
    # JWST-like names (~75 chars a URI), every one distinct, several products per observation.
    filters = ["f090w", "f150w", "f200w", "f277w", "f356w", "f444w"]
    kinds = ["cal", "i2d", "rate", "uncal"]
    with open(path + ".tmp", "w") as f:
        for i in range(count):
            prog, rest = divmod(i, 4 * 6 * 100)
            obs, rest = divmod(rest, 24)
            filt, kind = divmod(rest, 4)
            f.write(
                "mast:JWST/product/jw%05d-o%03d_t001_nircam_clear-%s_%s.fits\n"
                % (prog + 1000, obs + 1, filters[filt], kinds[kind])
            )
    os.replace(path + ".tmp", path)


def main(argv):
    if argv[1] == "workload":
        workload(argv[2], argv[3], argv[4], argv[5])
    elif argv[1] == "plan":
        plan(argv[2], int(argv[3]))
    else:
        sys.exit("usage: gen.py workload WORK NAME PREFIX SPEC | gen.py plan WORK COUNT")


if __name__ == "__main__":
    main(sys.argv)
