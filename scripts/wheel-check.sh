#!/usr/bin/env bash
# Checks that mastdl installs and works the way a Python user gets it.
#
# From a clean clone of this repository (committed files only), it:
#   1. builds the wheel and the sdist with maturin (pip-installed into a
#      throw-away virtualenv): `maturin build --release --locked`, `maturin sdist`;
#   2. installs the wheel into a fresh virtualenv with `pip install --no-index`
#      (so nothing but the wheel can be used: mastdl has no runtime dependency);
#   3. `pip install .` from the clone into another fresh virtualenv (PEP 517,
#      pip fetches the build backend, maturin, from PyPI);
#   4. `pip install` of the sdist (what pip does where no wheel fits);
# and, for each install, runs the `mastdl` that landed on the virtualenv's
# PATH: `mastdl --version`, then a real download from a small HTTP server on
# 127.0.0.1 that answers `/api/v0.1/Download/file?uri=mast:...`, checking the
# bytes of every file and DEST/MANIFEST.json; then the Python side:
# `python -m mastdl --version`, `mastdl.find_mastdl_bin()`, and
# `mastdl.download_products` (no astropy there: a list of dicts back);
#   5. installs the wheel, pytest, astropy and tqdm (from PyPI) into another
# fresh virtualenv and runs the Python package's tests (python/tests, their
# own mock archive on 127.0.0.1) against that installed package.
#
# Usage: scripts/wheel-check.sh [--no-sdist] [--no-pip-install-dot] [--no-pytest]
# Environment: PYTHON (default python3), CARGO_TARGET_DIR (default: a temporary
# one shared by the three builds), KEEP=1 keeps the work folder.
# Needs: git, cargo, python3 with venv, and PyPI + crates.io (or their caches).
# POSIX hosts only (Linux, macOS). Prints what each step cost, in seconds.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(git -C "$here" rev-parse --show-toplevel)"
py="${PYTHON:-python3}"
do_sdist=1
do_dot=1
do_pytest=1
for arg in "$@"; do
    case "$arg" in
        --no-sdist) do_sdist=0 ;;
        --no-pip-install-dot) do_dot=0 ;;
        --no-pytest) do_pytest=0 ;;
        -h | --help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "wheel-check: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

work="$(mktemp -d "${TMPDIR:-/tmp}/mastdl-wheel-check.XXXXXX")"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; fi
    if [[ "${KEEP:-0}" == 1 ]]; then
        echo "wheel-check: kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$work/target}"
export CARGO_TERM_COLOR=never
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1
# The loopback server must not go through a proxy.
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy="$NO_PROXY"

t_all=$SECONDS
timings=()
passed=0
step_start=0
step() { echo "== wheel-check: $*"; step_start=$SECONDS; }
done_step() {
    local d=$((SECONDS - step_start))
    timings+=("$(printf '%5ds  %s' "$d" "$1")")
}
fail() { echo "wheel-check: FAILED: $*" >&2; exit 1; }

# --- the clone -----------------------------------------------------------
step "clone $repo (HEAD $(git -C "$repo" rev-parse --short HEAD))"
if [[ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]]; then
    echo "wheel-check: note: uncommitted changes in $repo are NOT checked"
fi
head="$(git -C "$repo" rev-parse HEAD)"
git -c init.defaultBranch=main clone -q --no-hardlinks --no-checkout "$repo" "$work/src"
git -C "$work/src" -c advice.detachedHead=false checkout -q --detach "$head"
version="$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$work/src/Cargo.toml" | head -n1)"
[[ -n "$version" ]] || fail "no version in Cargo.toml"
[[ -f "$work/src/pyproject.toml" ]] || fail "pyproject.toml is not committed"
done_step "clone"

# --- the loopback archive ------------------------------------------------
cat >"$work/server.py" <<'PY'
"""A tiny MAST stand-in: GET /api/v0.1/Download/file?uri=mast:... -> bytes."""
import hashlib, http.server, sys, urllib.parse


def body(uri):
    # Deterministic bytes per URI; sizes differ so a mix-up is caught.
    seed = hashlib.sha256(uri.encode()).digest()
    n = 1000 + seed[0] * 37
    return (seed * (n // len(seed) + 1))[:n]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        uri = urllib.parse.parse_qs(u.query).get("uri", [""])[0]
        if u.path != "/api/v0.1/Download/file" or not uri.startswith("mast:"):
            self.send_error(404)
            return
        data = body(uri)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        sys.stderr.write("server: " + (fmt % args) + "\n")


if __name__ == "__main__":
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    import os
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    srv.serve_forever()
PY

cat >"$work/verify.py" <<'PY'
"""Checks DEST against the server's bytes and DEST/MANIFEST.json."""
import hashlib, json, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server import body  # noqa: E402

dest, listing, version = sys.argv[1], sys.argv[2], sys.argv[3]
uris = [l.strip() for l in open(listing) if l.strip() and not l.startswith("#")]
m = json.load(open(os.path.join(dest, "MANIFEST.json")))
errors = []
if m.get("tool") != "mastdl":
    errors.append("manifest tool is %r" % m.get("tool"))
if not str(m.get("version", "")).startswith(version):
    errors.append("manifest version %r, Cargo.toml says %s" % (m.get("version"), version))
for key, want in (("requested", len(uris)), ("complete", len(uris)), ("failed", 0)):
    if m.get(key) != want:
        errors.append("manifest %s = %r, want %r" % (key, m.get(key), want))
by_uri = {f["uri"]: f for f in m.get("files", [])}
for uri in uris:
    rec = by_uri.get(uri)
    if rec is None:
        errors.append("%s: not in the manifest" % uri)
        continue
    want = body(uri)
    path = os.path.join(dest, rec["path"])
    if rec["status"] != "COMPLETE" or rec["bytes"] != len(want):
        errors.append("%s: status %s, %s bytes" % (uri, rec["status"], rec["bytes"]))
    if not os.path.isfile(path):
        errors.append("%s: no file at %s" % (uri, path))
    elif hashlib.sha256(open(path, "rb").read()).digest() != hashlib.sha256(want).digest():
        errors.append("%s: wrong bytes in %s" % (uri, path))
    else:
        print("  ok %s -> %s (%d bytes)" % (uri, rec["path"], len(want)))
if errors:
    print("\n".join("  " + e for e in errors), file=sys.stderr)
    sys.exit(1)
PY

cat >"$work/list.txt" <<'EOF'
# wheel-check: three products from three collections
mast:HST/product/ib1f01x1q_flt.fits
mast:JWST/product/jw01073001001_02101_00001_nrca1_cal.fits
mast:IUE/url/pub/iue/data/lwp/13000/lwp13058.mxlo.gz
EOF

"$py" "$work/server.py" "$work/port" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 1 100); do [[ -s "$work/port" ]] && break; sleep 0.1; done
[[ -s "$work/port" ]] || fail "the loopback server did not start: $(cat "$work/server.log")"
port="$(cat "$work/port")"

cat >"$work/py-side.py" <<'PY'
"""The Python package of an install: python -m mastdl, find_mastdl_bin,
download_products (astropy absent: a list of dicts)."""
import hashlib, os, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server import body  # noqa: E402

venv, base, dest, listing = sys.argv[1:5]
import mastdl  # noqa: E402

errors = []
if not os.path.abspath(mastdl.__file__).startswith(os.path.abspath(venv) + os.sep):
    errors.append("mastdl imported from %s, not from %s" % (mastdl.__file__, venv))
exe = mastdl.find_mastdl_bin()
if exe != os.path.join(venv, "bin", "mastdl"):
    errors.append("find_mastdl_bin() = %r" % exe)
direct = subprocess.run([exe, "--version"], capture_output=True, text=True)
via = subprocess.run([sys.executable, "-m", "mastdl", "--version"], capture_output=True, text=True)
if (via.returncode, via.stdout) != (direct.returncode, direct.stdout) or direct.returncode:
    errors.append("python -m mastdl --version: %r, mastdl --version: %r" % (via.stdout, direct.stdout))
uris = [l.strip() for l in open(listing) if l.strip() and not l.startswith("#")]
rows = mastdl.download_products(uris, dest, base_url=base, verbose=False)
if not isinstance(rows, list):
    errors.append("without astropy, download_products returned %s" % type(rows).__name__)
for uri, row in zip(uris, rows):
    ok = row["Status"] == "COMPLETE" and os.path.isfile(row["Local Path"])
    if ok and hashlib.sha256(open(row["Local Path"], "rb").read()).digest() != hashlib.sha256(body(uri)).digest():
        ok = False
    if not ok:
        errors.append("%s: %r" % (uri, row))
    else:
        print("  ok download_products %s -> %s" % (uri, row["Local Path"]))
if len(rows) != len(uris):
    errors.append("%d rows for %d products" % (len(rows), len(uris)))
if errors:
    print("\n".join("  " + e for e in errors), file=sys.stderr)
    sys.exit(1)
PY

# Runs the mastdl found on VENV's PATH: --version, then a loopback download;
# then the Python package: python -m mastdl, find_mastdl_bin, download_products.
exercise() {
    local venv="$1" label="$2" exe dest out
    exe="$(PATH="$venv/bin:$PATH" command -v mastdl || true)"
    [[ "$exe" == "$venv/bin/mastdl" ]] || fail "$label: mastdl on PATH is '$exe', not $venv/bin/mastdl"
    out="$(PATH="$venv/bin:$PATH" mastdl --version)"
    echo "  $out"
    [[ "$out" == "mastdl $version"* ]] || fail "$label: --version says '$out', Cargo.toml says $version"
    dest="$work/dest-$label"
    PATH="$venv/bin:$PATH" mastdl fetch --base-url "http://127.0.0.1:$port" \
        -d "$dest" "$work/list.txt" --progress never \
        || fail "$label: mastdl fetch exited $?"
    "$py" "$work/verify.py" "$dest" "$work/list.txt" "$version" \
        || fail "$label: the download does not match"
    (cd "$work" && "$venv/bin/python" "$work/py-side.py" "$venv" "http://127.0.0.1:$port" \
        "$work/py-dest-$label" "$work/list.txt") \
        || fail "$label: the Python package does not work"
    passed=$((passed + 1))
}

fresh_venv() {
    "$py" -m venv "$1"
    "$1/bin/python" -m pip --version >/dev/null
}

# --- build: wheel and sdist ---------------------------------------------
step "install maturin into a build virtualenv"
fresh_venv "$work/venv-build"
"$work/venv-build/bin/python" -m pip install --quiet "maturin>=1.9.4,<2.0"
echo "  $("$work/venv-build/bin/maturin" --version)"
done_step "pip install maturin"

step "maturin build --release --locked (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
(cd "$work/src" && "$work/venv-build/bin/maturin" build --release --locked -o "$work/dist")
wheels=("$work"/dist/mastdl-"$version"-*.whl)
[[ -f "${wheels[0]}" && ${#wheels[@]} -eq 1 ]] || fail "expected one wheel, got: ${wheels[*]}"
wheel="${wheels[0]}"
echo "  $(basename "$wheel"), $(($(wc -c <"$wheel") / 1024)) KiB"
"$py" - "$wheel" <<'PY' || fail "unexpected wheel contents"
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
scripts = [n for n in names if ".data/scripts/" in n]
package = sorted(n for n in names if n.startswith("mastdl/"))
native = [n for n in names if n.endswith((".so", ".pyd", ".dll", ".dylib"))]
want = ["mastdl/__init__.py", "mastdl/__main__.py", "mastdl/_download.py",
        "mastdl/_find_bin.py", "mastdl/py.typed"]
print("  scripts: %s" % scripts)
print("  package: %s" % package)
ok = len(scripts) == 1 and scripts[0].endswith(("/mastdl", "/mastdl.exe"))
sys.exit(0 if ok and package == want and not native else 1)
PY
done_step "maturin build (wheel)"

# --- 1: the wheel, nothing else -------------------------------------------
step "pip install --no-index the wheel into a fresh virtualenv"
fresh_venv "$work/venv-wheel"
"$work/venv-wheel/bin/python" -m pip install --quiet --no-index "$wheel"
exercise "$work/venv-wheel" wheel
done_step "pip install wheel + fetch"

# --- 2: pip install . (PEP 517 build from the clone) ---------------------
if [[ "$do_dot" == 1 ]]; then
    step "pip install . (from the clone) into a fresh virtualenv"
    fresh_venv "$work/venv-dot"
    (cd "$work/src" && "$work/venv-dot/bin/python" -m pip install --quiet .)
    exercise "$work/venv-dot" dot
    done_step "pip install . + fetch"
fi

# --- 3: the sdist (what pip builds where no wheel fits) --------------------
if [[ "$do_sdist" == 1 ]]; then
    step "maturin sdist, then pip install the sdist into a fresh virtualenv"
    (cd "$work/src" && "$work/venv-build/bin/maturin" sdist -o "$work/dist")
    sdist="$work/dist/mastdl-$version.tar.gz"
    [[ -f "$sdist" ]] || fail "no sdist at $sdist"
    tar tzf "$sdist" | sed 's/^/  sdist: /' | grep -E 'pyproject.toml|Cargo.(toml|lock)|LICENSE|build.rs' || true
    fresh_venv "$work/venv-sdist"
    "$work/venv-sdist/bin/python" -m pip install --quiet "$sdist"
    exercise "$work/venv-sdist" sdist
    done_step "pip install sdist + fetch"
fi

# --- 5: the Python package's tests, against the installed wheel -----------
if [[ "$do_pytest" == 1 ]]; then
    step "pytest python/tests against the wheel in a fresh virtualenv (+ pytest, astropy, tqdm)"
    fresh_venv "$work/venv-test"
    "$work/venv-test/bin/python" -m pip install --quiet --no-index "$wheel"
    "$work/venv-test/bin/python" -m pip install --quiet pytest astropy tqdm
    # From $work, so that the clone's python/mastdl is not importable: the
    # tests must use the installed package and its executable.
    (cd "$work" && "$work/venv-test/bin/python" -c \
        'import mastdl, os, sys; sys.exit(not os.path.abspath(mastdl.__file__).startswith(sys.prefix + os.sep))') \
        || fail "the tests would not import the installed mastdl"
    set +e
    (cd "$work" && "$work/venv-test/bin/python" -m pytest -p no:cacheprovider -q \
        --rootdir "$work/src/python/tests" "$work/src/python/tests")
    rc=$?
    set -e
    [[ $rc -ne 5 ]] || fail "pytest found no tests in python/tests"
    [[ $rc -eq 0 ]] || fail "pytest python/tests exited $rc"
    passed=$((passed + 1))
    done_step "pytest python/tests (wheel)"
fi

echo "== wheel-check: what it cost (seconds)"
printf '%s\n' "${timings[@]}"
printf '%5ds  total\n' "$((SECONDS - t_all))"
echo "wheel-check: $passed passed, 0 failed"
