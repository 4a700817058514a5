"""The notebook line, timed: astroquery's ``Observations.download_products``
against ``mastdl.download_products``, same product table, same loopback
archive.

    python python/bench/notebook_bench.py [--latency-ms 100] [--reps 3]

Needs astroquery (which brings astropy) and the mastdl package installed in
the running Python. The archive is a threaded HTTP server on 127.0.0.1 that
answers ``HEAD``/``GET /api/v0.1/Download/file?uri=...``; ``--latency-ms``
holds every answer back that long before its first byte, a stand-in for the
round trip and queueing in front of a real archive (MAST's own varies with
load; measure yours with ``curl -w '%{time_starttransfer}'``). Nothing leaves
127.0.0.1: both tools are pointed at the loopback archive, and HTTP(S)_PROXY is
set to a closed local port so that any other request fails at once.

The product list is shaped like one JWST imaging observation's: 30 small
files (previews, association and log files, 32 KiB), 24 of 4 MiB, 6 of 32 MiB.
Each tool starts from an empty folder; then the same call again (everything
already there).
"""

from __future__ import annotations

import argparse
import http.server
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse

os.environ["HTTP_PROXY"] = os.environ["HTTPS_PROXY"] = "http://127.0.0.1:9"
os.environ["http_proxy"] = os.environ["https_proxy"] = "http://127.0.0.1:9"
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
os.environ.pop("MAST_API_TOKEN", None)

SHAPE = [(30, 32 * 1024), (24, 4 * 1024 * 1024), (6, 32 * 1024 * 1024)]
COLUMNS = [
    "obsID",
    "obs_collection",
    "dataproduct_type",
    "obs_id",
    "description",
    "type",
    "dataURI",
    "productType",
    "productGroupDescription",
    "productSubGroupDescription",
    "productDocumentationURL",
    "project",
    "prvversion",
    "proposal_id",
    "productFilename",
    "size",
    "parent_obsid",
    "dataRights",
    "calib_level",
    "filters",
]


def products():
    from astropy.table import Table

    rows, sizes = [], {}
    n = 0
    for count, size in SHAPE:
        for _ in range(count):
            n += 1
            name = "jw01073001001_02101_%05d_nrca1_cal.fits" % n
            uri = "mast:JWST/product/" + name
            sizes[uri] = size
            rows.append(
                [
                    "87602781",
                    "JWST",
                    "image",
                    "jw01073-o001_t001_nircam_clear-f150w",
                    "cal",
                    "S",
                    uri,
                    "SCIENCE",
                    "Minimum Recommended Products",
                    "CAL",
                    "",
                    "CALJWST",
                    "1.11.4",
                    "1073",
                    name,
                    size,
                    "87602781",
                    "PUBLIC",
                    2,
                    "F150W",
                ]
            )
    return Table(rows=rows, names=COLUMNS), sizes


def serve(sizes, latency):
    blobs = {size: os.urandom(size) for size in set(sizes.values())}
    counter = {"requests": 0}
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_HEAD(self):
            self.do_GET(head=True)

        def do_GET(self, head=False):
            with lock:
                counter["requests"] += 1
            u = urllib.parse.urlsplit(self.path)
            uri = urllib.parse.parse_qs(u.query).get("uri", [""])[0]
            time.sleep(latency)
            if u.path != "/api/v0.1/Download/file" or uri not in sizes:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = blobs[sizes[uri]]
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if not head:
                self.wfile.write(data)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, counter


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    import mastdl
    from astroquery import log
    from astroquery.mast import Observations

    log.setLevel("WARNING")  # not one "Found cached file" line per file

    table, sizes = products()
    server, counter = serve(sizes, args.latency_ms / 1000)
    base = "http://127.0.0.1:%d" % server.server_address[1]
    Observations._portal_api_connection.MAST_DOWNLOAD_URL = base + "/api/v0.1/Download/file"

    def astroquery_call(d):
        return Observations.download_products(table, download_dir=d, verbose=False)

    def mastdl_call(d):
        return mastdl.download_products(table, download_dir=d, base_url=base, verbose=False)

    total = sum(sizes.values())
    print(
        "%d products, %.0f MiB, latency %.0f ms, %d reps"
        % (len(table), total / 2**20, args.latency_ms, args.reps)
    )
    results = {}
    for name, call in (("astroquery", astroquery_call), ("mastdl", mastdl_call)):
        first, again, reqs = [], [], []
        for _ in range(args.reps):
            d = tempfile.mkdtemp(prefix="nb-bench-")
            try:
                before = counter["requests"]
                t = time.perf_counter()
                out = call(d)
                first.append(time.perf_counter() - t)
                assert list(out["Status"]) == ["COMPLETE"] * len(table), set(out["Status"])
                got = sum(os.path.getsize(p) for p in out["Local Path"])
                assert got == total, (got, total)
                reqs.append(counter["requests"] - before)
                before = counter["requests"]
                t = time.perf_counter()
                out = call(d)
                again.append(time.perf_counter() - t)
                assert list(out["Status"]) == ["COMPLETE"] * len(table)
                reqs.append(counter["requests"] - before)
            finally:
                shutil.rmtree(d)
        results[name] = (statistics.median(first), statistics.median(again), reqs[0], reqs[1])
    print("| tool | first call, median s | same call again, median s | requests (first / again) |")
    print("|---|---:|---:|---:|")
    for name, (a, b, r1, r2) in results.items():
        print("| %s | %.2f | %.2f | %d / %d |" % (name, a, b, r1, r2))
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
