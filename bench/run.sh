#!/usr/bin/env bash
# Reproducible benchmark: mastdl against the ways people pull MAST data today
# (the portal's one-curl-per-file script, curl --parallel, aria2c) and the
# no-network floor (cp -r), all served by a local nginx on 127.0.0.1.
#
#   bench/run.sh [--quick] [--reps N] [-j|--jobs N] [--work DIR]
#                [--workloads small,mixed,large,close,plan] [--no-build] [--timeout S]
#                [--dest-root DIR]
#   bench/run.sh --wan [...]     the WAN profile instead (bench/wan.sh: a loopback
#                                archive with latency, connection cost and rate caps)
#   bench/run.sh --scale [...]   the scale profile instead (bench/scale.sh: 10^4, 10^5
#                                and 10^6 files, manifests, Chromium, plan of 10^6)
#
# Results: WORK/results.md, raw runs in WORK/raw.tsv, logs in WORK/logs/
# (results-quick.md, raw-quick.tsv, logs-quick/ with --quick). See bench/README.md.
# MASTDL_BEFORE=/path/to/mastdl also measures that binary on the close workload
# (a before/after comparison, e.g. a build of main).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
LIB=$HERE/lib

# The WAN profile is its own harness (bench/wan.sh) with its own options.
for a in "$@"; do [ "$a" = --wan ] && exec bash "$HERE/wan.sh" "$@"; done
# The scale profile too (bench/scale.sh).
for a in "$@"; do [ "$a" = --scale ] && exec bash "$HERE/scale.sh" "$@"; done

QUICK=0
REPS=
JOBS=4
WORK=$HERE/work
DEST_ROOT=
WORKLOADS=small,mixed,large,close,plan
BUILD=1
TIMEOUT=
MASTDL=${MASTDL:-$REPO/target/release/mastdl}
MASTDL_BEFORE=${MASTDL_BEFORE:-}

usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "bench: error: $*" >&2; exit 1; }
say() { echo "bench: $*" >&2; }

while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --reps) REPS=${2:?--reps needs a number}; shift ;;
    --reps=*) REPS=${1#*=} ;;
    -j|--jobs) JOBS=${2:?--jobs needs a number}; shift ;;
    --jobs=*) JOBS=${1#*=} ;;
    --work) WORK=${2:?--work needs a directory}; shift ;;
    --work=*) WORK=${1#*=} ;;
    --workloads) WORKLOADS=${2:?--workloads needs a list}; shift ;;
    --workloads=*) WORKLOADS=${1#*=} ;;
    --dest-root) DEST_ROOT=${2:?--dest-root needs a directory}; shift ;;
    --dest-root=*) DEST_ROOT=${1#*=} ;;
    --no-build) BUILD=0 ;;
    --timeout) TIMEOUT=${2:?--timeout needs seconds}; shift ;;
    --timeout=*) TIMEOUT=${1#*=} ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || die "--jobs must be a positive integer, got '$JOBS'"
[[ -z $REPS || $REPS =~ ^[1-9][0-9]*$ ]] || die "--reps must be a positive integer, got '$REPS'"
[[ -z $TIMEOUT || $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive integer, got '$TIMEOUT'"

if [ "$QUICK" = 1 ]; then
  REPS=${REPS:-1}
  TIMEOUT=${TIMEOUT:-120}
  PREFIX=q
  SPEC_small=50x32768
  SPEC_mixed=20x32768,4x1048576,1x8388608
  SPEC_large=2x8388608
  SPEC_close=200x1000
  PLAN_COUNTS="1000 10000"
  RESULTS=results-quick.md
  SUFFIX=-quick
else
  REPS=${REPS:-3}
  TIMEOUT=${TIMEOUT:-900}
  PREFIX=b
  SPEC_small=2000x32768
  SPEC_mixed=200x32768,20x4194304,2x67108864
  SPEC_large=4x268435456
  SPEC_close=200x1000
  PLAN_COUNTS="1000 10000 100000 1000000"
  RESULTS=results.md
  SUFFIX=
fi
for w in ${WORKLOADS//,/ }; do
  case $w in small|mixed|large|close|plan) ;; *) die "unknown workload '$w' (small, mixed, large, close, plan)";; esac
done
has_wl() { [[ ",$WORKLOADS," == *",$1,"* ]]; }

# ---------------------------------------------------------------- 1. tools
NGINX=$(command -v nginx || true)
[ -n "$NGINX" ] || { [ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx; } || true
missing=()
[ -n "$NGINX" ] || missing+=(nginx)
command -v aria2c >/dev/null || missing+=(aria2)
command -v curl >/dev/null || missing+=(curl)
[ -x /usr/bin/time ] || missing+=(time)
command -v python3 >/dev/null || missing+=(python3)
command -v timeout >/dev/null || missing+=(coreutils)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing ${missing[*]}; install them (apt-get install ${missing[*]/nginx/nginx-light}) or run as root"
  say "installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  pkgs=()
  for p in "${missing[@]}"; do [ "$p" = nginx ] || pkgs+=("$p"); done
  [ ${#pkgs[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
  if [[ " ${missing[*]} " == *" nginx "* ]]; then
    apt-get install -y -qq --no-install-recommends nginx-light >&2 ||
      apt-get install -y -qq --no-install-recommends nginx >&2
  fi
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
  [ -x "$NGINX" ] || die "nginx still missing after apt-get"
fi

# Hermetic tools: no token (nothing may leave 127.0.0.1), no stray mastdl settings.
unset MAST_API_TOKEN MASTDL_BASE_URL MASTDL_RETRY_BASE_MS MASTDL_SHARD_COUNT

# Resolve the interpreter once (a pyenv shim costs ~0.2 s a call).
PY=$(python3 -c 'import sys; print(sys.executable)')

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
LOGS=$WORK/logs$SUFFIX
if [ -n "$DEST_ROOT" ]; then
  mkdir -p "$DEST_ROOT"
  DESTS=$(cd "$DEST_ROOT" && pwd)/mastdl-bench-dest
else
  DESTS=$WORK/dest
fi
rm -rf "$LOGS" "$DESTS"
mkdir -p "$LOGS" "$DESTS"
DEST_FS=$(df -h --output=source,fstype,size,avail "$DESTS" | tail -n1 | tr -s ' ')
RAW=$WORK/raw$SUFFIX.tsv
printf 'workload\ttool\trep\twall_s\tcpu_s\trss_kb\tstatus\tnote\trequests\tbody_bytes\n' >"$RAW"

# ---------------------------------------------------------------- 2. data
say "generating data under $WORK (kept between runs)"
WLS=()
for w in small mixed large close; do has_wl "$w" && WLS+=("$w"); done
for w in "${WLS[@]}"; do
  spec_var=SPEC_$w
  "$PY" "$LIB/gen.py" workload "$WORK" "$w" "$PREFIX$w" "${!spec_var}" >&2
  # Warm the page cache so every tool reads the source from memory.
  find "$WORK/src-$w" -type f -exec cat {} + >/dev/null
done

# ---------------------------------------------------------------- 3. nginx
NGX=$WORK/nginx
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
cleanup() {
  local rc=$?
  stop_nginx
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

write_nginx_conf() {
  local port=$1 close_port=$2 userline=
  [ "$(id -u)" = 0 ] && userline="user $(id -un) $(id -gn);"
  mkdir -p "$NGX/logs" "$NGX/tmp"
  cat >"$NGX/nginx.conf" <<EOF
# Generated by bench/run.sh. Serves MAST's download API for the BENCH collection:
#   GET /api/v0.1/Download/file?uri=mast:BENCH/product/NAME  ->  $WORK/data/NAME
$userline
worker_processes auto;
pid $NGX/nginx.pid;
error_log $NGX/logs/error.log warn;
events { worker_connections 1024; }
http {
    default_type application/octet-stream;
    types { }
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    server_tokens off;
    client_body_temp_path $NGX/tmp/body;
    proxy_temp_path $NGX/tmp/proxy;
    fastcgi_temp_path $NGX/tmp/fastcgi;
    uwsgi_temp_path $NGX/tmp/uwsgi;
    scgi_temp_path $NGX/tmp/scgi;
    # Field 4 is the body size; run.sh sums it to count bytes sent during a run.
    log_format bench '\$msec \$request_method \$status \$body_bytes_sent \$request_time "\$request_uri" "\$http_range" "\$http_user_agent"';
    access_log $NGX/logs/access.log bench;

    # nginx does not percent-decode \$arg_uri: accept ':' or %3A, '/' or %2F (any case),
    # so both "uri=mast:BENCH/product/NAME" and "uri=mast%3ABENCH%2Fproduct%2FNAME" work.
    map \$arg_uri \$bench_name {
        "~^mast(?::|%3[Aa])BENCH(?:/|%2[Ff])product(?:/|%2[Ff])(?<name>[A-Za-z0-9][A-Za-z0-9._-]*)\$" \$name;
        default "";
    }

    server {
        listen 127.0.0.1:$port backlog=4096;
        root $WORK/data;
        location = /api/v0.1/Download/file {
            if (\$bench_name = "") { return 400; }
            try_files /\$bench_name =404;
        }
        location / { return 404; }
    }

    # The close workload: the same files from a server that keeps no
    # connection alive (every answer says Connection: close).
    server {
        listen 127.0.0.1:$close_port backlog=4096;
        keepalive_timeout 0;
        root $WORK/data;
        location = /api/v0.1/Download/file {
            if (\$bench_name = "") { return 400; }
            try_files /\$bench_name =404;
        }
        location / { return 404; }
    }
}
EOF
}

start_nginx() {
  local try
  for try in 1 2 3; do
    PORT=$(free_port)
    CLOSE_PORT=$(free_port)
    write_nginx_conf "$PORT" "$CLOSE_PORT"
    : >"$NGX/logs/access.log"
    "$NGINX" -p "$NGX/" -c "$NGX/nginx.conf" -e "$NGX/logs/error.log" -t >"$LOGS/nginx-test.log" 2>&1 ||
      { cat "$LOGS/nginx-test.log" >&2; die "nginx rejected its configuration ($NGX/nginx.conf)"; }
    "$NGINX" -p "$NGX/" -c "$NGX/nginx.conf" -e "$NGX/logs/error.log" -g 'daemon off;' \
      >>"$LOGS/nginx.out" 2>&1 &
    NGINX_PID=$!
    for _ in $(seq 50); do
      kill -0 "$NGINX_PID" 2>/dev/null || break
      if curl -s -o /dev/null "http://127.0.0.1:$PORT/" 2>/dev/null; then
        BASE=http://127.0.0.1:$PORT
        BASE_CLOSE=http://127.0.0.1:$CLOSE_PORT
        say "nginx $NGINX_PID listening on $BASE (and $BASE_CLOSE, no keep-alive)"
        return 0
      fi
      sleep 0.1
    done
    stop_nginx
    say "nginx did not come up on port $PORT (try $try); see $NGX/logs/error.log"
  done
  die "could not start nginx"
}

# The server must behave like MAST's download endpoint before anything is measured.
self_test() {
  local w=${WLS[0]} name src url code out=$LOGS/selftest.bin
  name=$(head -n1 "$WORK/uris-$w.txt"); name=${name##*/}
  src=$WORK/data/$name
  local size; size=$(stat -c %s "$src")
  for form in "mast:BENCH/product/$name" "mast%3ABENCH%2Fproduct%2F$name" \
              "mast%3aBENCH%2fproduct%2f$name" "mast%3ABENCH/product/$name"; do
    url="$BASE/api/v0.1/Download/file?uri=$form"
    code=$(curl -sS --globoff -o "$out" -w '%{http_code}' "$url")
    [ "$code" = 200 ] && cmp -s "$out" "$src" || die "self-test: $url gave $code or wrong bytes"
  done
  url="$BASE/api/v0.1/Download/file?uri=mast:BENCH/product/$name"
  code=$(curl -sS --globoff -r 100-199 -o "$out" -w '%{http_code}' "$url")
  [ "$code" = 206 ] && [ "$(stat -c %s "$out")" = 100 ] && cmp -s "$out" <(tail -c +101 "$src" | head -c 100) ||
    die "self-test: Range request gave $code"
  curl -sS --globoff -I "$url" | tr -d '\r' | grep -qi "^content-length: $size\$" ||
    die "self-test: HEAD lacks Content-Length: $size"
  code=$(curl -sS --globoff -o /dev/null -w '%{http_code}' "$BASE/api/v0.1/Download/file?uri=mast:BENCH/product/nope_1.fits")
  [ "$code" = 404 ] || die "self-test: missing file gave $code, want 404"
  code=$(curl -sS --globoff -o /dev/null -w '%{http_code}' "$BASE/api/v0.1/Download/file?uri=junk")
  [ "$code" = 400 ] || die "self-test: malformed uri gave $code, want 400"
  local conns
  conns=$(curl -sS --globoff -o /dev/null -o /dev/null -w '%{num_connects} ' "$url" "$url")
  [ "$conns" = "1 0 " ] || die "self-test: keep-alive not reused (connects: $conns)"
  local closing="$BASE_CLOSE/api/v0.1/Download/file?uri=mast:BENCH/product/$name"
  curl -sS --globoff -o /dev/null -D - "$closing" | tr -d '\r' | grep -qi '^connection: close$' ||
    die "self-test: the close server does not say Connection: close"
  rm -f "$out"
  say "nginx self-test passed (raw and %-encoded uri, Range, HEAD, 404, 400, keep-alive)"
}

# ---------------------------------------------------------------- measuring
# elapsed T0 T1: seconds between two $EPOCHREALTIME values, 4 decimals.
elapsed() {
  local a=${1//[.,]/} b=${2//[.,]/}
  local us=$((10#$b - 10#$a))
  printf '%d.%04d' $((us / 1000000)) $(((us % 1000000) / 100))
}
log_lines() { wc -l <"$NGX/logs/access.log"; }
clean() { printf '%s' "$*" | tr '\t\n\r' '   ' | cut -c1-200; }

# run_one WORKLOAD TOOL REP DEST MANIFEST VERIFY KEEP -- CMD...
#   VERIFY: none | size | full.  KEEP=1 runs into the existing DEST (re-run).
#   STDOUT env: where the command's stdout goes (default: its log file).
# Appends a line to raw.tsv; sets LAST_STATUS.
run_one() {
  local wl=$1 tool=$2 rep=$3 dest=$4 manifest=$5 verify=$6 keep=$7
  shift 8
  local tag=$wl-$tool-$rep log tf rc before t0 t1 wall cpu rss status=ok note='' reqs=- body=- v
  log=$LOGS/$tag.log
  tf=$LOGS/$tag.time
  if [ "$keep" != 1 ]; then rm -rf "$dest"; mkdir -p "$dest"; sync; fi
  before=$(log_lines)
  t0=$EPOCHREALTIME
  set +e
  (cd "$dest" && exec /usr/bin/time -v -o "$tf" timeout -k 5 "$TIMEOUT" "$@") </dev/null >"${STDOUT:-$log}" 2>>"$log"
  rc=$?
  set -e
  t1=$EPOCHREALTIME
  sleep 0.1 # let nginx finish its log lines
  wall=$(elapsed "$t0" "$t1")
  cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {printf "%.3f", s}' "$tf" 2>/dev/null || echo 0)
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tf" 2>/dev/null || true)
  rss=${rss:-0}
  read -r reqs body < <(tail -n +"$((before + 1))" "$NGX/logs/access.log" | awk '{n++; s += $4} END {print n+0, s+0}')
  if [ $rc -ne 0 ]; then
    local why="exit $rc"
    [ $rc = 124 ] && why="timed out after ${TIMEOUT}s"
    note="$why: $(grep -v '^\s*$' "$log" | grep -v '^Command exited' | tail -n1 || true)"
    if [[ $tool == mastdl* ]]; then status=na; note="binary failed: $note"; else status=FAILED; fi
  elif [ "$verify" != none ]; then
    local vflag=; [ "$verify" = full ] && vflag=--full
    if v=$("$PY" "$LIB/verify.py" "$manifest" "$dest" $vflag 2>&1); then
      note=$v
    else
      status=FAILED; note="wrong bytes: $v"
    fi
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$wl" "$tool" "$rep" "$wall" "$cpu" "$rss" \
    "$status" "$(clean "$note")" "$reqs" "$body" >>"$RAW"
  say "$(printf '%-12s %-17s rep %s: %8.3f s wall %7.3f s cpu %7.1f MiB  %s %s' \
    "$wl" "$tool" "$rep" "$wall" "$cpu" "$(awk "BEGIN {print $rss/1024}")" "$status" "$(clean "$note" | cut -c1-90)")"
}

# record_na WORKLOAD TOOL REASON: a row for a tool that could not run at all.
record_na() {
  printf '%s\t%s\t1\t0\t0\t0\tna\t%s\t-\t-\n' "$1" "$2" "$(clean "$3")" >>"$RAW"
  say "$(printf '%-12s %-17s n/a: %s' "$1" "$2" "$3")"
}

# ---------------------------------------------------------------- mastdl binary
MASTDL_OK=0
MASTDL_WHY=
check_mastdl() {
  if [ ! -x "$MASTDL" ] && [ "$BUILD" = 1 ] && [ "$MASTDL" = "$REPO/target/release/mastdl" ]; then
    say "building mastdl (cargo build --release --locked; log: $LOGS/build.log)"
    if ! (cd "$REPO" && cargo build --release --locked) >"$LOGS/build.log" 2>&1; then
      MASTDL_WHY="binary missing: cargo build failed: $(grep -m1 '^error' "$LOGS/build.log" || tail -n1 "$LOGS/build.log")"
      return
    fi
  fi
  if [ ! -x "$MASTDL" ]; then
    MASTDL_WHY="binary missing: $MASTDL"
  elif ! "$MASTDL" fetch --help >"$LOGS/mastdl-help.log" 2>&1; then
    MASTDL_WHY="binary failed: \`mastdl fetch --help\`: $(grep -v '^\s*$' "$LOGS/mastdl-help.log" | tail -n1)"
  else
    MASTDL_OK=1
    # Measure a snapshot, so a rebuild during the run cannot mix two versions.
    mkdir -p "$WORK/bin"
    cp "$MASTDL" "$WORK/bin/mastdl.tmp" && mv -f "$WORK/bin/mastdl.tmp" "$WORK/bin/mastdl"
    MASTDL_SRC=$MASTDL
    MASTDL=$WORK/bin/mastdl
  fi
  if [ -n "$MASTDL_BEFORE" ]; then
    [ -x "$MASTDL_BEFORE" ] || die "MASTDL_BEFORE=$MASTDL_BEFORE is not an executable"
    cp "$MASTDL_BEFORE" "$WORK/bin/mastdl-before.tmp" && mv -f "$WORK/bin/mastdl-before.tmp" "$WORK/bin/mastdl-before"
    say "mastdl-before: $MASTDL_BEFORE"
    MASTDL_BEFORE=$WORK/bin/mastdl-before
  fi
  [ "$MASTDL_OK" = 1 ] && say "mastdl: $MASTDL_SRC ($("$MASTDL" --version 2>/dev/null || echo '?'))" ||
    say "mastdl rows will be n/a: $MASTDL_WHY"
}

# ---------------------------------------------------------------- 4. transfers
# cpu_busy: percent of all CPUs busy over the next second (other work skews the numbers).
cpu_busy() {
  local a b
  read -ra a </proc/stat; sleep 1; read -ra b </proc/stat
  local i tot=0 idle
  for i in 1 2 3 4 5 6 7 8; do tot=$((tot + b[i] - a[i])); done
  idle=$((b[4] - a[4] + b[5] - a[5]))
  echo $((tot > 0 ? 100 * (tot - idle) / tot : 0))
}
start_nginx
[ ${#WLS[@]} -eq 0 ] || self_test
check_mastdl
BUSY_START=$(cpu_busy)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
if [ "$BUSY_START" -gt 20 ]; then
  say "warning: the CPUs are ${BUSY_START}% busy before the runs (load $LOAD_START); other work on this machine will skew the numbers"
fi

base_for() { if [ "$1" = close ]; then echo "$BASE_CLOSE"; else echo "$BASE"; fi; }

for w in "${WLS[@]}"; do
  in=$WORK/inputs/$w
  for f in portal.sh curl.cfg aria2.txt; do sed "s|{BASE}|$(base_for "$w")|g" "$in/$f" >"$in/run-$f"; done
done

tools_for() {
  echo mastdl
  if [ "$1" = close ] && [ -n "$MASTDL_BEFORE" ]; then echo mastdl-before; fi
  echo portal-curl-loop curl-parallel aria2c
  [ "$1" = large ] && echo cp-floor
  return 0
}

tool_cmd() { # tool workload dest -> sets CMD array
  local in=$WORK/inputs/$2 base
  base=$(base_for "$2")
  case $1 in
    mastdl) CMD=("$MASTDL" fetch --base-url "$base" --progress never -q -j "$JOBS" -d "$3" "$WORK/uris-$2.txt") ;;
    mastdl-before) CMD=("$MASTDL_BEFORE" fetch --base-url "$base" --progress never -q -j "$JOBS" -d "$3" "$WORK/uris-$2.txt") ;;
    portal-curl-loop) CMD=(bash "$in/run-portal.sh") ;;
    curl-parallel) CMD=(curl --parallel --parallel-max "$JOBS" -K "$in/run-curl.cfg") ;;
    aria2c) CMD=(aria2c --no-conf -j "$JOBS" -x1 -i "$in/run-aria2.txt" --file-allocation=none
                 --console-log-level=warn --summary-interval=0 --auto-file-renaming=false --allow-overwrite=true) ;;
    cp-floor) CMD=(cp -r --reflink=never "$WORK/src-$2" .) ;;
  esac
}

for w in "${WLS[@]}"; do
  say "== workload $w: $(wc -l <"$WORK/uris-$w.txt") files, $REPS rep(s), -j $JOBS"
  for rep in $(seq "$REPS"); do
    for tool in $(tools_for "$w"); do
      dest=$DESTS/$w/$tool
      manifest=$WORK/manifest-$w.tsv
      [ "$tool" = cp-floor ] && manifest=$WORK/manifest-$w-cp.tsv
      verify=size; [ "$rep" = 1 ] && verify=full
      if [[ $tool == mastdl* ]] && [ "$MASTDL_OK" != 1 ]; then
        [ "$rep" = 1 ] && record_na "$w" mastdl "$MASTDL_WHY"
        continue
      fi
      tool_cmd "$tool" "$w" "$dest"
      run_one "$w" "$tool" "$rep" "$dest" "$manifest" "$verify" 0 -- "${CMD[@]}"
      # Keep mastdl's completed small pull for the re-run measurement; drop the rest.
      if ! { [ "$w" = small ] && [ "$tool" = mastdl ]; }; then rm -rf "$dest"; fi
    done
  done
  if [ "$w" = small ]; then
    dest=$DESTS/small/mastdl
    if [ "$MASTDL_OK" != 1 ]; then
      record_na rerun-small mastdl "$MASTDL_WHY"
    elif ! "$PY" "$LIB/verify.py" "$WORK/manifest-small.tsv" "$dest" >/dev/null 2>&1; then
      record_na rerun-small mastdl "no completed small pull to re-run"
    else
      for rep in $(seq "$REPS"); do
        tool_cmd mastdl small "$dest"
        run_one rerun-small mastdl "$rep" "$dest" "$WORK/manifest-small.tsv" size 1 -- "${CMD[@]}"
      done
    fi
  fi
  rm -rf "${DESTS:?}/$w"
  sync
done

# ---------------------------------------------------------------- 5. planning scale
if has_wl plan; then
  say "== planning scale: $PLAN_COUNTS URIs"
  for n in $PLAN_COUNTS; do
    "$PY" "$LIB/gen.py" plan "$WORK" "$n"
    if [ "$MASTDL_OK" != 1 ]; then record_na "plan-$n" mastdl "$MASTDL_WHY"; continue; fi
    cat "$WORK/plan/uris-$n.txt" >/dev/null
    for rep in $(seq "$REPS"); do
      STDOUT=/dev/null run_one "plan-$n" mastdl "$rep" "$WORK/plan" - none 1 -- \
        "$MASTDL" plan --base-url http://127.0.0.1:1 "$WORK/plan/uris-$n.txt"
    done
  done
fi

stop_nginx
rm -rf "$DESTS"
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
BUSY_END=$(cpu_busy)

# ---------------------------------------------------------------- 6. report
{
  echo "## Machine"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- nproc: $(nproc)"
  echo "- CPU: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "- memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "- kernel: $(uname -srm)"
  echo "- OS: $(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-?}")"
  echo "- disk (work dir): $(df -h --output=source,fstype,size,avail "$WORK" | tail -n1 | tr -s ' ')"
  echo "- destination folders: $DESTS on $DEST_FS"
  echo "- nginx: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //')"
  echo "- curl: $(curl --version | head -n1)"
  echo "- aria2c: $(aria2c --version | head -n1)"
  echo "- cp: $(cp --version | head -n1)"
  echo "- python3: $(python3 --version 2>&1)"
  if [ "$MASTDL_OK" = 1 ]; then
    echo "- mastdl: $("$MASTDL" --version 2>&1 | head -n1) (snapshot of $MASTDL_SRC)"
  else
    echo "- mastdl: $MASTDL_WHY"
  fi
  echo "- CPU busy in the second before the runs: ${BUSY_START}%, after: ${BUSY_END}%; load average (1/5/15 min) before: $LOAD_START, after: $LOAD_END"
  if [ "$BUSY_START" -gt 20 ] || [ "$BUSY_END" -gt 20 ]; then
    echo "- **warning: other work was running on the machine; the numbers are skewed**"
  fi
  echo "- repo commit: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo none)"
} >"$WORK/machine$SUFFIX.md"
{
  echo "Command: \`bench/run.sh$([ $QUICK = 1 ] && echo ' --quick') --reps $REPS --jobs $JOBS --workloads $WORKLOADS\`"
  echo
  [ $QUICK = 1 ] && echo "**Quick mode: tiny sizes, one repetition; the target checks are not meaningful here.**" && echo
  echo "Workloads (random bytes, served by nginx on 127.0.0.1 with sendfile and keep-alive):"
  echo
  echo "- small: $SPEC_small; mixed: $SPEC_mixed; large: $SPEC_large; close: $SPEC_close from a server answering Connection: close to every request (count x bytes)"
  echo "- concurrency $JOBS for mastdl, curl --parallel and aria2c; the portal loop is sequential"
  echo "- $REPS repetition(s), tools interleaved within each repetition; every run into a fresh folder;"
  echo "  each run's files checked for count and size, the first repetition's byte for byte"
} >"$WORK/params$SUFFIX.md"
"$PY" "$LIB/report.py" "$RAW" "$WORK/machine$SUFFIX.md" "$WORK/params$SUFFIX.md" >"$WORK/$RESULTS"
cat "$WORK/$RESULTS"
say "wrote $WORK/$RESULTS (raw runs: $RAW, logs: $LOGS)"
