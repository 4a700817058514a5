#!/usr/bin/env python3
"""A mock MAST archive on 127.0.0.1 for the GitHub Action's tests.

It answers what `mastdl fetch` asks and counts every request:

  /api/v0.1/Download/file?uri=mast:COLL/...   a product (deterministic bytes per URI)
  /whoami                                    who the token is (`anon: true` without it)
  /api/v0.1/path_lookup/                     nothing is in the cloud
  /_mock/stats                               JSON: {"requests": N, "downloads": N,
                                             "authorized": N, "paths": {...}} (not counted)

Products are made up from their URI, so any `mast:` URI downloads, except:
a URI with `/missing/` in it answers 404; one with `/protected/` needs the token
(401 without it); one with `/echo/` answers 403 with a body that repeats the
request's Authorization header, as a careless server might (mastdl must not
repeat it). Nothing here contacts the real MAST.

Used two ways: imported by scripts/action_harness.py (`MockArchive`), and run
on its own by the repository's CI workflow, in the background:

  python3 scripts/mock_archive.py --url-file PATH [--token TOKEN]

which writes the archive's URL (http://127.0.0.1:PORT) to PATH once it listens
and serves until killed.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import os
import sys
import threading
import urllib.parse
from typing import Dict, Optional

#: The token the mock accepts unless told another.
DEFAULT_TOKEN = "tok-Action-s3cret-5e1d"


def body_of(uri: str) -> bytes:
    """Deterministic bytes per URI; sizes differ so a mix-up is caught."""
    seed = hashlib.sha256(uri.encode()).digest()
    n = 700 + seed[0] * 17
    return (seed * (n // len(seed) + 1))[:n]


class MockArchive:
    """A running mock archive; `close()` stops it."""

    def __init__(self, token: str = DEFAULT_TOKEN, port: int = 0) -> None:
        self.token = token
        self.lock = threading.Lock()
        self.requests = 0
        self.downloads = 0
        self.authorized = 0
        self.paths: Dict[str, int] = {}
        handler = type("BoundHandler", (_Handler,), {"archive": self})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stats(self) -> dict:
        with self.lock:
            return {
                "requests": self.requests,
                "downloads": self.downloads,
                "authorized": self.authorized,
                "paths": dict(self.paths),
            }

    def reset(self) -> None:
        with self.lock:
            self.requests = self.downloads = self.authorized = 0
            self.paths.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    archive: MockArchive

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _send(self, code: int, body: bytes, ctype: str = "text/plain", head: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET(head=True)

    def do_GET(self, head: bool = False) -> None:
        archive = self.archive
        u = urllib.parse.urlsplit(self.path)
        if u.path == "/_mock/stats":
            self._send(200, json.dumps(archive.stats()).encode(), "application/json", head)
            return
        query = urllib.parse.parse_qs(u.query)
        uri: Optional[str] = query.get("uri", [None])[0]
        auth = self.headers.get("Authorization")
        authorized = auth == "token " + archive.token
        with archive.lock:
            archive.requests += 1
            archive.paths[u.path] = archive.paths.get(u.path, 0) + 1
            if authorized:
                archive.authorized += 1
            if u.path == "/api/v0.1/Download/file":
                archive.downloads += 1
        if u.path == "/whoami":
            who = {"ezid": "action-tester", "anon": False} if authorized else {"ezid": "anonymous", "anon": True}
            self._send(200, json.dumps(who).encode(), "application/json", head)
            return
        if u.path.rstrip("/") == "/api/v0.1/path_lookup":
            answer = {v: {"path": None} for v in query.get("uri", [])}
            self._send(200, json.dumps(answer).encode(), "application/json", head)
            return
        if u.path != "/api/v0.1/Download/file" or not uri or not uri.startswith("mast:"):
            self._send(404, b"not found", head=head)
            return
        if "/missing/" in uri:
            self._send(404, b"no such product", head=head)
            return
        if "/protected/" in uri and not authorized:
            self._send(401, b"unauthorized", head=head)
            return
        if "/echo/" in uri:
            self._send(403, ("forbidden for Authorization: %s" % auth).encode(), head=head)
            return
        data = body_of(uri)
        self._send(200, data, "application/octet-stream", head)


def main(argv: list) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url-file", required=True, help="write the archive's URL here once listening")
    parser.add_argument("--token", default=os.environ.get("MOCK_ARCHIVE_TOKEN", DEFAULT_TOKEN))
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    archive = MockArchive(token=args.token, port=args.port)
    tmp = args.url_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(archive.url + "\n")
    os.replace(tmp, args.url_file)
    print("mock archive listening on %s" % archive.url, flush=True)
    try:
        archive.thread.join()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
