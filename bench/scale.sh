#!/usr/bin/env bash
# The scale profile (issue 22): mastdl with 10^4, 10^5 and 10^6 files of 1 KiB
# served by a private nginx on 127.0.0.1, default flags, as a user would run it.
#
#   bench/run.sh --scale [--quick] [--counts "10000 100000 1000000"] [--work DIR]
#                [--dest-root DIR] [--no-build] [--base BIN [--base-max N]] [--timeout S]
#                [--fresh-fs | --no-fresh-fs]
#
# Per count: the first run into a fresh DEST, then the re-run of the complete
# pull (wall, CPU, peak RSS, files/s, requests nginx saw), the sizes of
# MANIFEST.json and MANIFEST.HTML (with its pages), and the time headless
# Chromium takes to its first screenshot of MANIFEST.HTML. Then `mastdl plan`
# of 10^6 URIs. --base BIN measures another binary (the one before a change)
# the same way, side by side (--base-max N: only up to N files). --quick: 10^4 files only (the CI smoke).
# --fresh-fs (the default as root with mkfs.ext4 and losetup, not with --quick):
# each DEST is a new ext4 file system (a sparse image under --dest-root, on a
# loop device), so no count inherits the name cache, freed inodes or journal
# of the one before it; --no-fresh-fs: plain folders under --dest-root.
# Results: WORK/results-scale.md (raw rows in WORK/raw-scale.tsv).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
LIB=$HERE/lib

QUICK=0
COUNTS=
WORK=$HERE/work
DEST_ROOT=
BUILD=1
BASE_BIN=
BASE_MAX=
TIMEOUT=
FRESH_FS=auto
MASTDL=${MASTDL:-$REPO/target/release/mastdl}
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}

die() { echo "bench: error: $*" >&2; exit 1; }
say() { echo "bench: $*" >&2; }

while [ $# -gt 0 ]; do
  case $1 in
    --scale) ;;
    --quick) QUICK=1 ;;
    --counts) COUNTS=${2:?--counts needs a list}; shift ;;
    --counts=*) COUNTS=${1#*=} ;;
    --work) WORK=${2:?--work needs a directory}; shift ;;
    --work=*) WORK=${1#*=} ;;
    --dest-root) DEST_ROOT=${2:?--dest-root needs a directory}; shift ;;
    --dest-root=*) DEST_ROOT=${1#*=} ;;
    --no-build) BUILD=0 ;;
    --base) BASE_BIN=${2:?--base needs a binary}; shift ;;
    --base=*) BASE_BIN=${1#*=} ;;
    --base-max) BASE_MAX=${2:?--base-max needs a count}; shift ;;
    --base-max=*) BASE_MAX=${1#*=} ;;
    --timeout) TIMEOUT=${2:?--timeout needs seconds}; shift ;;
    --timeout=*) TIMEOUT=${1#*=} ;;
    --fresh-fs) FRESH_FS=1 ;;
    --no-fresh-fs) FRESH_FS=0 ;;
    -h|--help) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument for --scale: $1" ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then
  COUNTS=${COUNTS:-10000}; PLAN_N=10000; TIMEOUT=${TIMEOUT:-120}; SUFFIX=-quick
else
  COUNTS=${COUNTS:-10000 100000 1000000}; PLAN_N=1000000; TIMEOUT=${TIMEOUT:-1800}; SUFFIX=
fi
for n in $COUNTS; do [[ $n =~ ^[1-9][0-9]*$ ]] || die "--counts: not a count: $n"; done
can_mount() { [ "$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null && command -v losetup >/dev/null; }
FRESH_AUTO=0
if [ "$FRESH_FS" = auto ]; then
  FRESH_FS=0; [ "$QUICK" = 0 ] && can_mount && FRESH_FS=1 && FRESH_AUTO=1
fi
[ "$FRESH_FS" = 0 ] || can_mount || die "--fresh-fs needs root, mkfs.ext4 and losetup"

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || die "nginx is missing (apt-get install nginx-light)"
[ -x /usr/bin/time ] || die "/usr/bin/time is missing (apt-get install time)"
unset MAST_API_TOKEN MASTDL_BASE_URL MASTDL_RETRY_BASE_MS MASTDL_SHARD_COUNT MASTDL_HTML_PAGE_ROWS
PY=$(python3 -c 'import sys; print(sys.executable)')

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
LOGS=$WORK/logs-scale$SUFFIX
DESTS=${DEST_ROOT:+$(mkdir -p "$DEST_ROOT" && cd "$DEST_ROOT" && pwd)/mastdl-scale-dest}
DESTS=${DESTS:-$WORK/dest-scale}
rm -rf "$LOGS" "$DESTS"
mkdir -p "$LOGS" "$DESTS" "$WORK/data" "$WORK/scale"
DEST_FS=$(df -h --output=source,fstype "$DESTS" | tail -n1 | tr -s ' ')
RAW=$WORK/raw-scale$SUFFIX.tsv
printf 'binary\tfiles\trun\twall_s\tcpu_s\trss_kb\texit\trequests\tjson_bytes\thtml_bytes\tpages\tchromium_s\n' >"$RAW"

# ---------------------------------------------------------------- binaries
if [ ! -x "$MASTDL" ] && [ "$BUILD" = 1 ] && [ "$MASTDL" = "$REPO/target/release/mastdl" ]; then
  say "building mastdl (cargo build --release --locked)"
  (cd "$REPO" && cargo build --release --locked) >"$LOGS/build.log" 2>&1 || die "cargo build failed: $LOGS/build.log"
fi
[ -x "$MASTDL" ] || die "no mastdl binary at $MASTDL"
mkdir -p "$WORK/bin"
cp "$MASTDL" "$WORK/bin/mastdl-scale.tmp" && mv -f "$WORK/bin/mastdl-scale.tmp" "$WORK/bin/mastdl-scale"
BINS=("this=$WORK/bin/mastdl-scale")
if [ -n "$BASE_BIN" ]; then
  [ -x "$BASE_BIN" ] || die "--base: no binary at $BASE_BIN"
  cp "$BASE_BIN" "$WORK/bin/mastdl-base"
  BINS+=("base=$WORK/bin/mastdl-base")
fi

# ---------------------------------------------------------------- data and nginx
head -c 1024 /dev/urandom >"$WORK/data/scale-1k.bin"
for n in $COUNTS; do
  f=$WORK/scale/uris-$n.txt
  [ -s "$f" ] && [ "$(wc -l <"$f")" = "$n" ] && continue
  # 100 files per observation folder: SCALE/o00042/o00042_0004217.fits
  awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++) printf "mast:SCALE/product/o%05d_%07d.fits\n", int(i / 100), i }' >"$f"
done
"$PY" "$LIB/gen.py" plan "$WORK" "$PLAN_N"

NGX=$WORK/nginx-scale
NGINX_PID=
stop_nginx() {
  if [ -n "$NGINX_PID" ] && kill -0 "$NGINX_PID" 2>/dev/null; then
    kill -QUIT "$NGINX_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
    kill -TERM "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
  fi
  NGINX_PID=
}
# A DEST on a file system of its own (--fresh-fs): a sparse ext4 image
# sized for N files of 1 KiB and their manifests, on a loop device with
# direct I/O (no second copy in the page cache).
MOUNTED=
MOUNTED_ONCE=
make_dest() {
  local dest=$1 n=$2 img loop
  if [ "$FRESH_FS" = 0 ]; then
    rm -rf "$dest"; mkdir -p "$dest"; sync
    return
  fi
  img=$dest.img
  rm -rf "$dest" "$img"; mkdir -p "$dest"
  if truncate -s $((n * 8 + 512 * 1024))K "$img" \
    && mkfs.ext4 -q -F -N $((n + n / 50 + 65536)) -E lazy_itable_init=0,lazy_journal_init=0 "$img" \
    && loop=$(losetup --find --show --direct-io=on "$img"); then
    if mount "$loop" "$dest"; then
      MOUNTED=$dest
      MOUNTED_ONCE=1
      sync
      return
    fi
    losetup -d "$loop" || true
  fi
  rm -f "$img"
  # Chosen by default and not allowed here (a container without loop
  # devices): plain folders for every count, said once.
  [ "$FRESH_AUTO" = 1 ] && [ -z "$MOUNTED_ONCE" ] || die "cannot make a file system for $dest (--no-fresh-fs uses plain folders)"
  say "cannot make a file system for $dest: plain folders for every count (--no-fresh-fs)"
  FRESH_FS=0
  sync
}
drop_dest() {
  local dest=$1 loop
  if [ -n "$MOUNTED" ]; then
    loop=$(findmnt -n -o SOURCE --target "$MOUNTED" 2>/dev/null || true)
    umount "$MOUNTED" 2>/dev/null || umount -l "$MOUNTED" 2>/dev/null || true
    [ -n "$loop" ] && losetup -d "$loop" 2>/dev/null || true
    rm -f "$MOUNTED.img"
    MOUNTED=
  fi
  rm -rf "$dest"
}
trap 'rc=$?; stop_nginx; [ -n "$MOUNTED" ] && drop_dest "$MOUNTED"; exit $rc' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$NGX/logs" "$NGX/tmp"
userline=; [ "$(id -u)" = 0 ] && userline="user $(id -un) $(id -gn);"
cat >"$NGX/nginx.conf" <<EOF
# Generated by bench/scale.sh: every mast:SCALE/product/NAME is the same 1 KiB file.
$userline
worker_processes 1;
pid $NGX/nginx.pid;
error_log $NGX/logs/error.log warn;
events { worker_connections 1024; }
http {
    default_type application/octet-stream;
    types { }
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 100000000;
    server_tokens off;
    open_file_cache max=16;
    client_body_temp_path $NGX/tmp/body;
    proxy_temp_path $NGX/tmp/proxy;
    fastcgi_temp_path $NGX/tmp/fastcgi;
    uwsgi_temp_path $NGX/tmp/uwsgi;
    scgi_temp_path $NGX/tmp/scgi;
    log_format count '\$status';
    access_log $NGX/logs/access.log count buffer=256k flush=1s;
    map \$arg_uri \$scale_ok {
        "~^mast(?::|%3[Aa])SCALE(?:/|%2[Ff])product(?:/|%2[Ff])[A-Za-z0-9][A-Za-z0-9._-]*\$" 1;
        default "";
    }
    server {
        listen 127.0.0.1:$PORT backlog=4096;
        root $WORK/data;
        location = /api/v0.1/Download/file {
            if (\$scale_ok = "") { return 400; }
            try_files /scale-1k.bin =404;
        }
        location / { return 404; }
    }
}
EOF
: >"$NGX/logs/access.log"
"$NGINX" -p "$NGX/" -c "$NGX/nginx.conf" -e "$NGX/logs/error.log" -g 'daemon off;' >>"$LOGS/nginx.out" 2>&1 &
NGINX_PID=$!
BASE=http://127.0.0.1:$PORT
for _ in $(seq 50); do curl -s -o /dev/null "$BASE/" 2>/dev/null && break; sleep 0.1; done
code=$(curl -sS --globoff -o /dev/null -w '%{http_code}' "$BASE/api/v0.1/Download/file?uri=mast:SCALE/product/o00000_0000000.fits")
[ "$code" = 200 ] || die "nginx self-test: $code"
say "nginx $NGINX_PID on $BASE"

# ---------------------------------------------------------------- measuring
elapsed() {
  local a=${1//[.,]/} b=${2//[.,]/}
  local us=$((10#$b - 10#$a))
  printf '%d.%04d' $((us / 1000000)) $(((us % 1000000) / 100))
}
# nginx writes its buffered log lines within a second (flush=1s).
requests() { sleep 1.2; wc -l <"$NGX/logs/access.log"; }

# measure TAG DEST -- CMD...: sets WALL CPU RSS RC
measure() {
  local tag=$1 dest=$2 tf=$LOGS/$1.time t0 t1
  shift 3
  t0=$EPOCHREALTIME
  set +e
  (cd "$dest" && exec /usr/bin/time -v -o "$tf" timeout -k 5 "$TIMEOUT" "$@") </dev/null >"$LOGS/$tag.out" 2>"$LOGS/$tag.log"
  RC=$?
  set -e
  t1=$EPOCHREALTIME
  WALL=$(elapsed "$t0" "$t1")
  CPU=$(awk -F': ' '/User time|System time/ {s += $2} END {printf "%.2f", s}' "$tf" 2>/dev/null || echo 0)
  RSS=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tf" 2>/dev/null || echo 0)
}

# chromium_time HTML: seconds to the first screenshot (or "timeout").
chromium_time() {
  [ -n "$CHROMIUM" ] || { echo na; return; }
  local prof t0 t1 shot=$LOGS/shot.png
  prof=$(mktemp -d)
  rm -f "$shot"
  t0=$EPOCHREALTIME
  if timeout -k 5 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
      --disable-background-networking --disable-component-update --disable-sync \
      --user-data-dir="$prof" --window-size=1280,900 --screenshot="$shot" "file://$1" \
      >>"$LOGS/chromium.log" 2>&1 && [ -s "$shot" ]; then
    t1=$EPOCHREALTIME
    elapsed "$t0" "$t1"
  else
    echo timeout
  fi
  rm -rf "$prof"
}

CHROME_WARM=0
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for n in $COUNTS; do
  for spec in "${BINS[@]}"; do
    name=${spec%%=*}; bin=${spec#*=}
    if [ "$name" = base ] && [ -n "$BASE_MAX" ] && [ "$n" -gt "$BASE_MAX" ]; then continue; fi
    dest=$DESTS/$name-$n
    make_dest "$dest" "$n"
    for run in first rerun; do
      before=$(requests)
      measure "$name-$n-$run" "$dest" -- "$bin" fetch --base-url "$BASE" --progress never -q -d "$dest" "$WORK/scale/uris-$n.txt"
      reqs=$(( $(requests) - before ))
      json=$(stat -c %s "$dest/MANIFEST.json" 2>/dev/null || echo 0)
      html=$({ du -sb "$dest/MANIFEST.HTML" "$dest"/MANIFEST.pages-* 2>/dev/null || true; } | awk '{s += $1} END {print s + 0}')
      pages=$(find "$dest" -maxdepth 2 -path "$dest/MANIFEST.pages-*" -name '*.html' | wc -l)
      shot=-
      if [ "$run" = rerun ] && [ -f "$dest/MANIFEST.HTML" ]; then
        if [ "$CHROME_WARM" = 0 ]; then chromium_time "$dest/MANIFEST.HTML" >/dev/null; CHROME_WARM=1; fi
        shot=$(chromium_time "$dest/MANIFEST.HTML")
      fi
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$n" "$run" "$WALL" "$CPU" "$RSS" "$RC" \
        "$reqs" "$json" "$html" "$pages" "$shot" >>"$RAW"
      say "$(printf '%-4s %8s %-6s %9.3f s %8.2f s cpu %8.1f MiB exit %s requests %s chromium %s' \
        "$name" "$n" "$run" "$WALL" "$CPU" "$(awk "BEGIN {print $RSS/1024}")" "$RC" "$reqs" "$shot")"
    done
    drop_dest "$dest"
  done
done
for spec in "${BINS[@]}"; do
  name=${spec%%=*}; bin=${spec#*=}
  # The input in the page cache, and the removal of the folders above
  # written back: the plan is measured, not the clean-up before it.
  cat "$WORK/plan/uris-$PLAN_N.txt" >/dev/null
  sync
  measure "$name-plan" "$WORK/plan" -- "$bin" plan --base-url http://127.0.0.1:1 "$WORK/plan/uris-$PLAN_N.txt"
  printf '%s\t%s\tplan\t%s\t%s\t%s\t%s\t0\t0\t0\t0\t-\n' "$name" "$PLAN_N" "$WALL" "$CPU" "$RSS" "$RC" >>"$RAW"
  say "$(printf '%-4s plan %s URIs: %.3f s, %.1f MiB, exit %s' "$name" "$PLAN_N" "$WALL" "$(awk "BEGIN {print $RSS/1024}")" "$RC")"
done
stop_nginx
rm -rf "$DESTS"
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

{
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); nproc: $(nproc); CPU: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
  if [ "$FRESH_FS" = 1 ]; then
    echo "- destination: a new ext4 file system for each DEST (sparse image on a loop device, direct I/O) on $DEST_FS"
  else
    echo "- destination file system: $DEST_FS"
  fi
  echo "- load average (1/5/15 min) before: $LOAD_START, after: $LOAD_END"
  echo "- mastdl: $("$WORK/bin/mastdl-scale" --version 2>&1 | head -n1) (repo commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo none))"
  [ -n "$BASE_BIN" ] && echo "- base: $("$WORK/bin/mastdl-base" --version 2>&1 | head -n1) ($BASE_BIN)"
  echo "- chromium: $([ -n "$CHROMIUM" ] && "$CHROMIUM" --version 2>/dev/null | head -n1 || echo missing)"
} >"$WORK/machine-scale$SUFFIX.md"
"$PY" "$LIB/report.py" scale "$RAW" "$WORK/machine-scale$SUFFIX.md" >"$WORK/results-scale$SUFFIX.md"
cat "$WORK/results-scale$SUFFIX.md"
say "wrote $WORK/results-scale$SUFFIX.md (raw: $RAW, logs: $LOGS)"
