#!/usr/bin/env bash
# s3-check.sh — run the real mastdl binary once against a real S3
# implementation (moto's server) and a stand-in MAST archive, all on loopback.
#
# What it does:
#   1. installs moto[server] and boto3 into a venv under a temp dir (PyPI);
#   2. starts `moto_server` on 127.0.0.1, creates the bucket `stpubdata`
#      (dummy credentials, public-read) and puts a few objects in it: a small
#      single-part one, one of 20 MiB + 3 bytes (ranged download), a multipart
#      one (ETag `"…-N"`), one under the PS1 and one under the GALEX rules;
#   3. checks with curl, anonymously, that moto serves them like S3: 200 with
#      the bytes, 206 + Content-Range for `Range: bytes=a-b` and `bytes=a-`,
#      the ETag of a single-part object is its MD5, a multipart one ends -N,
#      404 NoSuchKey for a missing key;
#   4. starts a small python archive: `/api/v0.1/path_lookup/` answers a path
#      for each bucket object (as MAST does: `/hst/public/…`, `/ps1/…`,
#      `/mast/galex/…`) and `null` for one URI, which `/api/v0.1/Download/file`
#      serves instead;
#   5. runs `mastdl plan --cloud`, `mastdl fetch --cloud` and
#      `mastdl fetch --cloud-only` and checks the bytes (cmp), the manifest's
#      `source`/`status`, that `--cloud-only` asked the archive for no file,
#      and (moto's request recorder) that no Authorization, cookie or x-amz-*
#      header reached the bucket although a token was given.
#
# Usage: scripts/s3-check.sh
# Env:   MASTDL_BIN     the binary (default: build with `cargo build --release`
#                       and use ${CARGO_TARGET_DIR:-target}/release/mastdl)
#        S3CHECK_VENV   an existing venv with moto[server] and boto3 to reuse
#        S3CHECK_KEEP=1 keep the temp dir (printed) for a look afterwards
# Exit:  0 all checks passed; 1 a check failed; 2 setup failed (no moto,
#        no binary); 3 the S3 checks passed but this mastdl has no `--cloud`.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/s3-check.XXXXXX")"
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ "${S3CHECK_KEEP:-0}" == 1 ]]; then
        echo "s3-check: kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*" >&2; }
ok() { printf '   ok: %s\n' "$*" >&2; }
fail() {
    printf '   FAIL: %s\n' "$*" >&2
    exit 1
}

# Loopback only: no proxy, whatever the environment says.
curl() { command curl --noproxy '*' "$@"; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_http() { # URL: wait up to 30 s for any HTTP answer
    local i
    for i in $(seq 1 150); do
        if curl -s -o /dev/null --max-time 2 "$1"; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# --- 1. moto ---------------------------------------------------------------
step "moto[server] in a venv"
if [[ -n "${S3CHECK_VENV:-}" && -x "${S3CHECK_VENV}/bin/moto_server" ]]; then
    VENV="$S3CHECK_VENV"
    ok "reusing $VENV"
else
    VENV="$WORK/venv"
    python3 -m venv "$VENV" || { echo "s3-check: cannot create a venv" >&2; exit 2; }
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'moto[server]' boto3 \
        || { echo "s3-check: pip install moto[server] boto3 failed" >&2; exit 2; }
fi
PY="$VENV/bin/python"
ok "$("$PY" -c 'import moto, boto3; print("moto", moto.__version__, "boto3", boto3.__version__)')"

S3PORT="$(free_port)"
S3="http://127.0.0.1:$S3PORT"
MOTO_ENABLE_RECORDING=1 MOTO_RECORDER_FILEPATH="$WORK/moto-recording.jsonl" \
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$S3PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=("$!")
wait_http "$S3/" || { cat "$WORK/moto.log" >&2; echo "s3-check: moto_server did not start" >&2; exit 2; }
ok "moto_server on $S3"

# --- 2. bucket and objects -------------------------------------------------
step "bucket stpubdata with objects"
mkdir -p "$WORK/objects"
"$PY" - "$S3" "$WORK/objects" <<'PY'
import hashlib, json, os, sys
import boto3
from boto3.s3.transfer import TransferConfig

endpoint, out = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
s3.create_bucket(Bucket="stpubdata", ACL="public-read")
s3.put_bucket_policy(Bucket="stpubdata", Policy=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
                   "Resource": ["arn:aws:s3:::stpubdata", "arn:aws:s3:::stpubdata/*"]}]}))

def data(seed, n):
    # Deterministic, incompressible enough: repeated SHA-256 blocks.
    blocks, h = [], hashlib.sha256(str(seed).encode()).digest()
    while sum(map(len, blocks)) < n:
        h = hashlib.sha256(h).digest()
        blocks.append(h * 64)
    return b"".join(blocks)[:n]

MiB = 1 << 20
objects = {
    # name: (key, bytes, multipart)
    "small": ("hst/public/u9o4/u9o40504m/u9o40504m_c3m.fits", data(1, 12345), False),
    "big": ("jwst/public/jw01345/jw01345001001/jw01345001001_10201_00001_nrca2_cal.fits",
            data(2, 20 * MiB + 3), False),
    "multi": ("tess/public/tid/s0001/0000/0000/2515/5310/tess2018206045859-s0001-0000000025155310-0120-s_lc.fits",
              data(3, 12 * MiB + 5), True),
    "ps1": ("panstarrs/ps1/public/rings.v3.skycell/1784/059/rings.v3.skycell.1784.059.stk.g.unconv.fits",
            data(4, 4321), False),
    "galex": ("galex/GR6/pipe/01-vsn/05000-MISDR1_24278_0266/d/01-main/0001-img/07-try/MISDR1_24278_0266-nd-int.fits.gz",
              data(5, 999), False),
}
for name, (key, body, multi) in objects.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(body)
    if multi:
        cfg = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
        s3.upload_file(os.path.join(out, name), "stpubdata", key, Config=cfg)
    else:
        s3.put_object(Bucket="stpubdata", Key=key, Body=body)
    with open(os.path.join(out, name + ".key"), "w") as f:
        f.write(key)
    print(f"   put {key} ({len(body)} bytes, {'multipart' if multi else 'single part'})", file=sys.stderr)
PY
ok "objects uploaded"

# --- 3. curl checks: anonymous, Range, ETag --------------------------------
step "moto serves anonymously, with Range and ETag = MD5"
key() { cat "$WORK/objects/$1.key"; }
url() { printf '%s/stpubdata/%s' "$S3" "$(key "$1")"; }
md5() { md5sum "$1" | cut -d' ' -f1; }
header() { # FILE NAME: the value of a header in a curl -D dump
    tr -d '\r' <"$1" | awk -v n="$(echo "$2" | tr 'A-Z' 'a-z')" 'BEGIN{IGNORECASE=1} { split($0, a, ": "); if (tolower(a[1]) == n) { sub(/^[^:]*: /, ""); print; exit } }'
}

for o in small big ps1 galex; do
    code=$(curl -s -D "$WORK/h" -o "$WORK/got" -w '%{http_code}' "$(url $o)" || true)
    [[ "$code" == 200 ]] || fail "anonymous GET $o: HTTP $code"
    cmp -s "$WORK/got" "$WORK/objects/$o" || fail "anonymous GET $o: bytes differ"
    etag=$(header "$WORK/h" ETag)
    [[ "$etag" == "\"$(md5 "$WORK/objects/$o")\"" ]] || fail "$o: ETag $etag is not the quoted MD5"
done
ok "anonymous GET 200, bytes equal, single-part ETag = \"md5\" (small, big, ps1, galex)"

code=$(curl -s -D "$WORK/h" -o "$WORK/got" -w '%{http_code}' -H 'Range: bytes=100-199' "$(url big)" || true)
[[ "$code" == 206 ]] || fail "Range bytes=100-199: HTTP $code"
size=$(stat -c %s "$WORK/objects/big")
[[ "$(header "$WORK/h" Content-Range)" == "bytes 100-199/$size" ]] || fail "Content-Range: $(header "$WORK/h" Content-Range)"
cmp -s "$WORK/got" <(tail -c +101 "$WORK/objects/big" | head -c 100) || fail "Range bytes=100-199: bytes differ"
code=$(curl -s -D "$WORK/h" -o "$WORK/got" -w '%{http_code}' -H "Range: bytes=$((size - 10))-" "$(url big)" || true)
[[ "$code" == 206 ]] || fail "Range bytes=N-: HTTP $code"
cmp -s "$WORK/got" <(tail -c 10 "$WORK/objects/big") || fail "Range bytes=N-: bytes differ"
ok "Range bytes=a-b and bytes=a- → 206 with Content-Range"

code=$(curl -s -o /dev/null -w '%{http_code}' -H "Range: bytes=$size-" "$(url big)" || true)
ok "Range past the end → HTTP $code"

curl -s -I -o "$WORK/h" "$(url multi)"
etag=$(header "$WORK/h" ETag)
[[ "$etag" =~ ^\"[0-9a-f]{32}-[0-9]+\"$ ]] || fail "multipart ETag $etag does not end with -N"
[[ "$(header "$WORK/h" Content-Length)" == "$(stat -c %s "$WORK/objects/multi")" ]] || fail "multipart HEAD Content-Length"
ok "HEAD: Content-Length, multipart ETag $etag, Last-Modified $(header "$WORK/h" Last-Modified)"

code=$(curl -s -o "$WORK/got" -w '%{http_code}' "$S3/stpubdata/hst/public/nope/nope.fits" || true)
[[ "$code" == 404 ]] && grep -q '<Code>NoSuchKey</Code>' "$WORK/got" || fail "missing key: HTTP $code $(head -c 300 "$WORK/got")"
ok "missing key → 404 NoSuchKey (XML)"

# --- 4. the stand-in archive -----------------------------------------------
step "stand-in MAST archive"
APORT="$(free_port)"
ARCHIVE="http://127.0.0.1:$APORT"
ONLY_ARCHIVE="mast:HST/product/ib0x01abq_flt.fits"
head -c 5000 /dev/urandom >"$WORK/objects/archive-only"
cat >"$WORK/archive.py" <<'PY'
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qs

port, objects, log = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def read(name):
    with open(f"{objects}/{name}", "rb") as f:
        return f.read()
def key(name):
    return read(name + ".key").decode()

# What path_lookup answers, as MAST does (the object key is derived by mastdl).
PATHS = {
    "mast:HST/product/u9o40504m_c3m.fits": "/" + key("small"),
    "mast:JWST/product/jw01345001001_10201_00001_nrca2_cal.fits": "/" + key("big"),
    "mast:TESS/product/tess2018206045859-s0001-0000000025155310-0120-s_lc.fits": "/" + key("multi"),
    "mast:PS1/product/rings.v3.skycell.1784.059.stk.g.unconv.fits": "/ps1/" + key("ps1")[len("panstarrs/ps1/public/"):],
    "mast:GALEX/url/data/GR6/pipe/01-vsn/05000-MISDR1_24278_0266/d/01-main/0001-img/07-try/MISDR1_24278_0266-nd-int.fits.gz": "/mast/" + key("galex"),
    "mast:HST/product/ib0x01abq_flt.fits": None,
}
FILES = {"mast:HST/product/ib0x01abq_flt.fits": read("archive-only")}

class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def reply(self, code, body, ctype):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
    def do_HEAD(self):
        self.do_GET()
    def do_GET(self):
        u = urlsplit(self.path)
        q = parse_qs(u.query, keep_blank_values=True)
        with open(log, "a") as f:
            f.write(json.dumps({"method": self.command, "path": u.path, "uri": q.get("uri", []),
                                "authorization": self.headers.get("Authorization")}) + "\n")
        if u.path == "/api/v0.1/path_lookup/":
            out = {}
            for uri in q.get("uri", []):
                p = PATHS.get(uri)
                out[uri] = {"status_code": 200 if p else 404, "path": p}
            return self.reply(200, json.dumps(out).encode(), "application/json")
        if u.path == "/api/v0.1/Download/file":
            uri = (q.get("uri") or [""])[0]
            if uri in FILES:
                return self.reply(200, FILES[uri], "application/octet-stream")
            return self.reply(404, b"not found", "text/plain")
        if u.path == "/whoami":
            return self.reply(200, json.dumps({"ezid": "tester", "anon": False}).encode(), "application/json")
        return self.reply(404, b"no such endpoint", "text/plain")

ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
python3 "$WORK/archive.py" "$APORT" "$WORK/objects" "$WORK/archive.log" 2>"$WORK/archive.err" &
PIDS+=("$!")
wait_http "$ARCHIVE/whoami" || { cat "$WORK/archive.err" >&2; echo "s3-check: archive did not start" >&2; exit 2; }
: >"$WORK/archive.log"
curl -s "$ARCHIVE/api/v0.1/path_lookup/?uri=mast%3AHST%2Fproduct%2Fu9o40504m_c3m.fits&uri=$(printf %s "$ONLY_ARCHIVE" | sed 's/:/%3A/; s,/,%2F,g')" >"$WORK/got"
grep -q '"path": "/hst/public/' "$WORK/got" && grep -q '"path": null' "$WORK/got" || fail "path_lookup answer: $(cat "$WORK/got")"
ok "archive on $ARCHIVE: $(cat "$WORK/got")"
: >"$WORK/archive.log"

# --- 5. mastdl -------------------------------------------------------------
step "mastdl"
if [[ -z "${MASTDL_BIN:-}" ]]; then
    (cd "$ROOT" && cargo build --release --quiet) || { echo "s3-check: cargo build --release failed" >&2; exit 2; }
    MASTDL_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/mastdl"
fi
[[ -x "$MASTDL_BIN" ]] || { echo "s3-check: no binary at $MASTDL_BIN" >&2; exit 2; }
ok "binary $MASTDL_BIN ($("$MASTDL_BIN" --version 2>/dev/null || echo '?'))"

cat >"$WORK/uris.txt" <<EOF
# in the bucket (single part, > 16 MiB, multipart, PS1 and GALEX key rules)
mast:HST/product/u9o40504m_c3m.fits
mast:JWST/product/jw01345001001_10201_00001_nrca2_cal.fits
mast:TESS/product/tess2018206045859-s0001-0000000025155310-0120-s_lc.fits
mast:PS1/product/rings.v3.skycell.1784.059.stk.g.unconv.fits
mast:GALEX/url/data/GR6/pipe/01-vsn/05000-MISDR1_24278_0266/d/01-main/0001-img/07-try/MISDR1_24278_0266-nd-int.fits.gz
# path_lookup says null: from the archive (SKIPPED with --cloud-only)
$ONLY_ARCHIVE
EOF
# uri -> the object file it must equal
cat >"$WORK/expect.json" <<EOF
{"mast:HST/product/u9o40504m_c3m.fits": ["small", "cloud"],
 "mast:JWST/product/jw01345001001_10201_00001_nrca2_cal.fits": ["big", "cloud"],
 "mast:TESS/product/tess2018206045859-s0001-0000000025155310-0120-s_lc.fits": ["multi", "cloud"],
 "mast:PS1/product/rings.v3.skycell.1784.059.stk.g.unconv.fits": ["ps1", "cloud"],
 "mast:GALEX/url/data/GR6/pipe/01-vsn/05000-MISDR1_24278_0266/d/01-main/0001-img/07-try/MISDR1_24278_0266-nd-int.fits.gz": ["galex", "cloud"],
 "$ONLY_ARCHIVE": ["archive-only", "mast"]}
EOF

mastdl() {
    env -u MAST_API_TOKEN -u MASTDL_BASE_URL -u MASTDL_CLOUD -u MASTDL_S3_URL \
        -u HTTP_PROXY -u HTTPS_PROXY -u http_proxy -u https_proxy -u ALL_PROXY \
        NO_PROXY='*' NO_COLOR=1 MASTDL_RETRY_BASE_MS=50 "$MASTDL_BIN" "$@"
}
TOKEN="s3check-SECRET-token-value"
COMMON=(--base-url "$ARCHIVE" --s3-url "$S3/stpubdata" --progress never -t "$TOKEN")

# plan --cloud: the object URL for what the bucket holds.
set +e
mastdl plan --cloud "${COMMON[@]}" "$WORK/uris.txt" >"$WORK/plan.out" 2>"$WORK/plan.err"
code=$?
set -e
if [[ $code -eq 2 ]] && grep -qiE "unexpected argument|unknown|unrecognized" "$WORK/plan.err"; then
    sed 's/^/   | /' "$WORK/plan.err" >&2
    echo "s3-check: the S3 checks passed; this mastdl has no --cloud yet" >&2
    exit 3
fi
[[ $code -eq 0 ]] || { sed 's/^/   | /' "$WORK/plan.err" >&2; fail "plan --cloud exited $code"; }
grep -qF "$S3/stpubdata/$(key small)" "$WORK/plan.out" || fail "plan --cloud does not show the object URL: $(cat "$WORK/plan.out")"
grep -F "$ONLY_ARCHIVE" "$WORK/plan.out" | grep -qF "$ARCHIVE/api/v0.1/Download/file" || fail "plan --cloud: the null one should come from the archive"
ok "plan --cloud prints object URLs ($(wc -l <"$WORK/plan.out") lines)"
: >"$WORK/archive.log"

# Recording from here on: what reaches the bucket during the fetches.
curl -s -X POST "$S3/moto-api/recorder/reset-recording" >/dev/null
curl -s -X POST "$S3/moto-api/recorder/start-recording" >/dev/null

verify() { # DEST CLOUD_ONLY(0|1)
    "$PY" - "$1" "$2" "$WORK/expect.json" "$WORK/objects" "$TOKEN" <<'PY'
import filecmp, json, os, sys
dest, cloud_only, expect, objects, token = sys.argv[1], sys.argv[2] == "1", sys.argv[3], sys.argv[4], sys.argv[5]
expect = json.load(open(expect))
text = open(os.path.join(dest, "MANIFEST.json")).read()
assert token not in text, "the token is in the manifest"
m = json.loads(text)
rows = {r["uri"]: r for r in m["files"]}
errors = []
for uri, (obj, source) in expect.items():
    r = rows.get(uri)
    if r is None:
        errors.append(f"{uri}: no manifest row"); continue
    if cloud_only and source == "mast":
        if r["status"] != "SKIPPED" or "not in cloud" not in (r.get("message") or ""):
            errors.append(f"{uri}: want SKIPPED 'not in cloud', got {r['status']} {r.get('message')!r}")
        if os.path.exists(os.path.join(dest, r["path"])):
            errors.append(f"{uri}: --cloud-only wrote {r['path']}")
        continue
    if r["status"] != "COMPLETE":
        errors.append(f"{uri}: {r['status']} {r.get('message')!r}"); continue
    if r.get("source") != source:
        errors.append(f"{uri}: source {r.get('source')!r}, want {source!r}")
    if source == "cloud" and not r["url"].startswith("http://127.0.0.1:"):
        errors.append(f"{uri}: url {r['url']}")
    p = os.path.join(dest, r["path"])
    if not filecmp.cmp(p, os.path.join(objects, obj), shallow=False):
        errors.append(f"{uri}: {r['path']} differs from the object")
    else:
        print(f"   ok: {r['status']} {r['source']:5} {r['path']} ({os.path.getsize(p)} bytes)", file=sys.stderr)
leftover = [os.path.join(d, f) for d, _, fs in os.walk(dest) for f in fs if f.endswith(".part")]
if leftover:
    errors.append(f".part files left: {leftover}")
if errors:
    print("\n".join("   FAIL: " + e for e in errors), file=sys.stderr)
    sys.exit(1)
PY
}

step "fetch --cloud"
set +e
mastdl fetch --cloud "${COMMON[@]}" -d "$WORK/dest-cloud" "$WORK/uris.txt" >"$WORK/fetch.out" 2>"$WORK/fetch.err"
code=$?
set -e
sed 's/^/   | /' "$WORK/fetch.err" >&2
[[ $code -eq 0 ]] || fail "fetch --cloud exited $code"
verify "$WORK/dest-cloud" 0 || fail "fetch --cloud: see above"
if grep -q "$TOKEN" "$WORK/fetch.err" "$WORK/fetch.out"; then fail "the token was printed"; fi
"$PY" - "$WORK/archive.log" "$ONLY_ARCHIVE" <<'PY' || fail "fetch --cloud: the archive saw the wrong downloads"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
downloads = [r for r in rows if r["path"] == "/api/v0.1/Download/file"]
lookups = [r for r in rows if r["path"] == "/api/v0.1/path_lookup/"]
assert lookups, "no path_lookup request"
assert all(len(r["uri"]) <= 50 for r in lookups), "more than 50 uri= in one path_lookup"
assert {u for r in downloads for u in r["uri"]} == {sys.argv[2]}, f"downloads from the archive: {downloads}"
print(f"   ok: archive saw {len(lookups)} path_lookup and {len(downloads)} download request(s), only for the null one", file=sys.stderr)
PY
: >"$WORK/archive.log"

step "fetch --cloud-only"
set +e
mastdl fetch --cloud-only "${COMMON[@]}" -d "$WORK/dest-only" "$WORK/uris.txt" >"$WORK/only.out" 2>"$WORK/only.err"
code=$?
set -e
sed 's/^/   | /' "$WORK/only.err" >&2
[[ $code -eq 0 ]] || fail "fetch --cloud-only exited $code"
verify "$WORK/dest-only" 1 || fail "fetch --cloud-only: see above"
if grep -q '"/api/v0.1/Download/file"' "$WORK/archive.log"; then
    fail "--cloud-only asked the archive's download endpoint: $(cat "$WORK/archive.log")"
fi
ok "--cloud-only: nothing requested from /api/v0.1/Download/file"

step "what reached the bucket (moto's recorder)"
curl -s -X POST "$S3/moto-api/recorder/stop-recording" >/dev/null
curl -s "$S3/moto-api/recorder/download-recording" >"$WORK/recording.jsonl"
"$PY" - "$WORK/recording.jsonl" "$(key big)" "$TOKEN" <<'PY' || fail "bucket requests: see above"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
big, token = sys.argv[2], sys.argv[3]
bad = []
for r in rows:
    for name, value in r["headers"].items():
        n = name.lower()
        if n in ("authorization", "proxy-authorization", "cookie") or n.startswith("x-amz-") or token in value:
            bad.append((r["method"], r["url"], name))
    if "X-Amz-" in r["url"] or "Signature=" in r["url"]:
        bad.append((r["method"], r["url"], "signed query"))
if bad:
    print(f"   FAIL: credentials reached the bucket: {bad}", file=sys.stderr)
    sys.exit(1)
ranged = [r for r in rows if r["url"].endswith(big) and r["method"] == "GET"
          and any(k.lower() == "range" for k in r["headers"])]
print(f"   ok: {len(rows)} bucket requests, none with Authorization, cookie, x-amz-* or the token;"
      f" {len(ranged)} ranged GETs of the 20 MiB object", file=sys.stderr)
if len(ranged) < 2:
    print("   FAIL: the object > 16 MiB was not fetched as parallel byte ranges", file=sys.stderr)
    sys.exit(1)
PY

printf '\ns3-check: all checks passed\n' >&2
