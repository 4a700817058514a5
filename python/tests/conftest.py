"""A mock MAST archive on 127.0.0.1 for the Python package's tests.

It answers what ``mastdl fetch`` asks: ``/api/v0.1/Download/file?uri=...``
(products; some need the token, some stall halfway until released),
``/whoami`` and ``/api/v0.1/path_lookup/`` (nothing is in the cloud). Every
request is recorded. Nothing here contacts the real MAST.

These tests run against the installed package (``import mastdl`` as pip put
it, with the executable from the wheel): ``scripts/wheel-check.sh`` runs them
in a fresh virtualenv.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import sys
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional

import pytest

#: The token the mock accepts.
TOKEN = "tok-Py7-s3cret-9f2a"


def body_of(uri: str, size: Optional[int] = None) -> bytes:
    """Deterministic bytes per URI; sizes differ so a mix-up is caught."""
    seed = hashlib.sha256(uri.encode()).digest()
    n = size if size is not None else 1000 + seed[0] * 23
    return (seed * (n // len(seed) + 1))[:n]


@dataclass
class Product:
    body: bytes
    need_token: bool = False
    #: Send half the body, then wait until the archive's `release` is set.
    stall: bool = False


@dataclass
class Request:
    method: str
    path: str
    uri: Optional[str]
    authorization: Optional[str]


@dataclass
class Archive:
    url: str = ""
    products: Dict[str, Product] = field(default_factory=dict)
    requests: List[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Set once a stalled product's first half has been sent.
    stalled: threading.Event = field(default_factory=threading.Event)
    #: Set to let stalled products finish.
    release: threading.Event = field(default_factory=threading.Event)

    def add(
        self, uri: str, *, size: Optional[int] = None, need_token: bool = False, stall: bool = False
    ) -> bytes:
        body = body_of(uri, size)
        self.products[uri] = Product(body, need_token, stall)
        return body

    def downloads(self) -> List[Request]:
        with self.lock:
            return [r for r in self.requests if r.path == "/api/v0.1/Download/file"]

    def count(self) -> int:
        with self.lock:
            return len(self.requests)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    archive: Archive  # set on the subclass made per server

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
        u = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(u.query)
        uri = query.get("uri", [None])[0]
        auth = self.headers.get("Authorization")
        archive = self.archive
        with archive.lock:
            archive.requests.append(Request(self.command, u.path, uri, auth))
        authorized = auth == "token " + TOKEN
        if u.path == "/whoami":
            who = (
                {"ezid": "tester", "anon": False}
                if authorized
                else {"ezid": "anonymous", "anon": True}
            )
            self._send(200, json.dumps(who).encode(), "application/json", head)
            return
        if u.path.rstrip("/") == "/api/v0.1/path_lookup":
            answer = {v: {"path": None} for v in query.get("uri", [])}
            self._send(200, json.dumps(answer).encode(), "application/json", head)
            return
        if u.path != "/api/v0.1/Download/file" or uri not in archive.products:
            self._send(404, b"not found", head=head)
            return
        product = archive.products[uri]
        if product.need_token and not authorized:
            self._send(401, b"unauthorized", head=head)
            return
        data = product.body
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if head:
            return
        if product.stall and not archive.release.is_set():
            half = len(data) // 2
            self.wfile.write(data[:half])
            self.wfile.flush()
            archive.stalled.set()
            archive.release.wait(120)
            try:
                self.wfile.write(data[half:])
            except OSError:  # the client went away (interrupted)
                pass
            return
        self.wfile.write(data)


@pytest.fixture
def archive() -> Iterator[Archive]:
    """A running mock archive; stalled responses are released at the end."""
    arch = Archive()
    handler = type("BoundHandler", (Handler,), {"archive": arch})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    arch.url = "http://127.0.0.1:%d" % server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield arch
    finally:
        arch.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No token, archive or cloud settings from the outside; no real keyring."""
    for name in (
        "MAST_API_TOKEN",
        "MASTDL_BASE_URL",
        "MASTDL_CLOUD",
        "MASTDL_S3_URL",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    # `import keyring` fails: a developer's stored token never leaks into a test.
    monkeypatch.setitem(sys.modules, "keyring", None)


def pytest_report_header(config: pytest.Config) -> List[str]:
    import mastdl

    return [
        "mastdl package: %s" % os.path.dirname(mastdl.__file__),
        "mastdl executable: %s" % mastdl.find_mastdl_bin(),
    ]
