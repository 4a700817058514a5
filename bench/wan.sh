#!/usr/bin/env bash
# WAN profile: mastdl against curl --parallel, aria2c and the portal's
# one-curl-per-file loop, served by bench/wan-archive on 127.0.0.1 with the
# costs of a wide-area link (time to first byte, a cost per new connection, a
# rate cap per connection), over HTTP/1.1 and over HTTP/2 (TLS + ALPN).
#
#   bench/run.sh --wan [--reps N] [--workloads LIST] [--quick] [--work DIR]
#                [--no-build] [--timeout S] [--portal-subset N] [--dest-root DIR]
#                [--ttfb-ms MS] [--connect-ms MS] [--rate RATE] [--no-update-results]
#
# LIST: any of small,small-h2,large,large-h2,mixed,mixed-h2,limit or `all`
# (default small,small-h2,large,mixed,limit). Results: WORK/results-wan.md and
# the `## WAN profile` section of bench/RESULTS.md. See bench/README.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
LIB=$HERE/lib
EMU_DIR=$HERE/wan-archive

QUICK=0
REPS=
WORK=$HERE/work/wan
DEST_ROOT=
WORKLOADS=small,small-h2,large,mixed,limit
BUILD=1
TIMEOUT=
PORTAL_SUBSET=
TTFB_MS=50
CONNECT_MS=100
RATE=20M
UPDATE_RESULTS=1
LIMIT_RATE=50M
MASTDL=${MASTDL:-$REPO/target/release/mastdl}
MASTDL_BASELINE=${MASTDL_BASELINE:-}

usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "bench: error: $*" >&2; exit 1; }
say() { echo "bench: $*" >&2; }

while [ $# -gt 0 ]; do
  case $1 in
    --wan) ;;
    --quick) QUICK=1 ;;
    --reps) REPS=${2:?--reps needs a number}; shift ;;
    --reps=*) REPS=${1#*=} ;;
    --work) WORK=${2:?--work needs a directory}; shift ;;
    --work=*) WORK=${1#*=} ;;
    --workloads) WORKLOADS=${2:?--workloads needs a list}; shift ;;
    --workloads=*) WORKLOADS=${1#*=} ;;
    --dest-root) DEST_ROOT=${2:?--dest-root needs a directory}; shift ;;
    --dest-root=*) DEST_ROOT=${1#*=} ;;
    --no-build) BUILD=0 ;;
    --timeout) TIMEOUT=${2:?--timeout needs seconds}; shift ;;
    --timeout=*) TIMEOUT=${1#*=} ;;
    --portal-subset) PORTAL_SUBSET=${2:?--portal-subset needs a number}; shift ;;
    --portal-subset=*) PORTAL_SUBSET=${1#*=} ;;
    --ttfb-ms) TTFB_MS=${2:?}; shift ;;
    --ttfb-ms=*) TTFB_MS=${1#*=} ;;
    --connect-ms) CONNECT_MS=${2:?}; shift ;;
    --connect-ms=*) CONNECT_MS=${1#*=} ;;
    --rate) RATE=${2:?}; shift ;;
    --rate=*) RATE=${1#*=} ;;
    --no-update-results) UPDATE_RESULTS=0 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done
[[ -z $REPS || $REPS =~ ^[1-9][0-9]*$ ]] || die "--reps must be a positive integer, got '$REPS'"
[[ -z $TIMEOUT || $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive integer, got '$TIMEOUT'"
[[ -z $PORTAL_SUBSET || $PORTAL_SUBSET =~ ^[1-9][0-9]*$ ]] || die "--portal-subset must be a positive integer"
[[ $TTFB_MS =~ ^[0-9]+$ && $CONNECT_MS =~ ^[0-9]+$ ]] || die "--ttfb-ms and --connect-ms take milliseconds"
[[ $RATE =~ ^[0-9]+[kKmMgG]?$ ]] || die "--rate: bytes per second such as 20M, got '$RATE'"
[ "$WORKLOADS" = all ] && WORKLOADS=small,small-h2,large,large-h2,mixed,mixed-h2,limit

if [ "$QUICK" = 1 ]; then
  REPS=${REPS:-1}
  TIMEOUT=${TIMEOUT:-120}
  PORTAL_SUBSET=${PORTAL_SUBSET:-10}
  PREFIX=wq
  SPEC_small=100x32768
  SPEC_large=2x16777216
  SPEC_mixed=2x33554432,100x32768
  SUFFIX=-wan-quick
  UPDATE_RESULTS=0
else
  REPS=${REPS:-3}
  TIMEOUT=${TIMEOUT:-300}
  PORTAL_SUBSET=${PORTAL_SUBSET:-50}
  PREFIX=w
  SPEC_small=2000x32768
  SPEC_large=4x268435456
  SPEC_mixed=2x1073741824,2000x32768
  SUFFIX=-wan
fi
for w in ${WORKLOADS//,/ }; do
  case $w in small|small-h2|large|large-h2|mixed|mixed-h2|limit) ;;
    *) die "unknown workload '$w' (small, small-h2, large, large-h2, mixed, mixed-h2, limit, all)" ;;
  esac
done
has_wl() { [[ ",$WORKLOADS," == *",$1,"* ]]; }
# data set behind a workload name
data_of() { case $1 in small*) echo small ;; large*|limit) echo large ;; mixed*) echo mixed ;; esac; }
proto_of() { case $1 in *-h2) echo h2 ;; *) echo h1 ;; esac; }

# ---------------------------------------------------------------- 1. tools
missing=()
command -v aria2c >/dev/null || missing+=(aria2)
command -v curl >/dev/null || missing+=(curl)
[ -x /usr/bin/time ] || missing+=(time)
command -v python3 >/dev/null || missing+=(python3)
command -v timeout >/dev/null || missing+=(coreutils)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root"
  say "installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
unset MAST_API_TOKEN MASTDL_BASE_URL MASTDL_RETRY_BASE_MS MASTDL_SHARD_COUNT
PY=$(python3 -c 'import sys; print(sys.executable)')

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
LOGS=$WORK/logs$SUFFIX
if [ -n "$DEST_ROOT" ]; then
  mkdir -p "$DEST_ROOT"
  DESTS=$(cd "$DEST_ROOT" && pwd)/mastdl-bench-wan-dest
else
  DESTS=$WORK/dest
fi
rm -rf "$LOGS" "$DESTS"
mkdir -p "$LOGS" "$DESTS" "$WORK/bin"
RAW=$WORK/raw$SUFFIX.tsv
printf 'workload\tproto\ttool\trep\twall_s\tcpu_s\trss_kb\tstatus\tnote\tconnections\tpeak_connections\tpeak_requests\trequests\th2_connections\th2_streams\tbody_bytes\tscale\textra\n' >"$RAW"

# The emulator: built from bench/wan-archive (its own workspace and lock file).
EMU=$EMU_DIR/target/release/wan-archive
if [ "$BUILD" = 1 ]; then
  say "building bench/wan-archive (cargo build --release --locked; log: $LOGS/wan-archive-build.log)"
  (cd "$EMU_DIR" && CARGO_TARGET_DIR=$EMU_DIR/target cargo build --release --locked) \
    >"$LOGS/wan-archive-build.log" 2>&1 ||
    { tail -n 20 "$LOGS/wan-archive-build.log" >&2; die "could not build bench/wan-archive"; }
fi
[ -x "$EMU" ] || die "$EMU missing (run without --no-build, or cargo build --release in bench/wan-archive)"
cp "$EMU" "$WORK/bin/wan-archive.tmp" && mv -f "$WORK/bin/wan-archive.tmp" "$WORK/bin/wan-archive"
EMU=$WORK/bin/wan-archive

# mastdl: a snapshot, so a rebuild during the run cannot mix two versions.
MASTDL_OK=0
MASTDL_WHY=
if [ ! -x "$MASTDL" ] && [ "$BUILD" = 1 ] && [ "$MASTDL" = "$REPO/target/release/mastdl" ]; then
  say "building mastdl (cargo build --release --locked; log: $LOGS/build.log)"
  (cd "$REPO" && cargo build --release --locked) >"$LOGS/build.log" 2>&1 ||
    MASTDL_WHY="binary missing: cargo build failed: $(grep -m1 '^error' "$LOGS/build.log" || tail -n1 "$LOGS/build.log")"
fi
if [ -z "$MASTDL_WHY" ]; then
  if [ ! -x "$MASTDL" ]; then
    MASTDL_WHY="binary missing: $MASTDL"
  elif ! "$MASTDL" fetch --help >"$LOGS/mastdl-help.log" 2>&1; then
    MASTDL_WHY="binary failed: \`mastdl fetch --help\`"
  else
    MASTDL_OK=1
    MASTDL_SRC=$MASTDL
    cp "$MASTDL" "$WORK/bin/mastdl.tmp" && mv -f "$WORK/bin/mastdl.tmp" "$WORK/bin/mastdl"
    MASTDL=$WORK/bin/mastdl
  fi
fi
# Does this mastdl have --limit-rate (issue 14)? Is its default still 0.1.0's -j 4?
HAS_LIMIT=0
DEFAULT_J4=0
if [ "$MASTDL_OK" = 1 ]; then
  grep -q -- '--limit-rate' "$LOGS/mastdl-help.log" && HAS_LIMIT=1
  awk '/--jobs/ {f=1} f && /\[default: 4\]/ {found=1} f && /^ *-/ && !/--jobs/ {f=0} END {exit !found}' \
    "$LOGS/mastdl-help.log" && DEFAULT_J4=1
  say "mastdl: $MASTDL_SRC ($("$MASTDL" --version 2>/dev/null || echo '?')); --limit-rate: $([ $HAS_LIMIT = 1 ] && echo yes || echo no); default -j 4: $([ $DEFAULT_J4 = 1 ] && echo yes || echo no)"
else
  say "mastdl rows will be n/a: $MASTDL_WHY"
fi
# The target baseline: mastdl 0.1.0 with its default (-j 4). MASTDL_BASELINE names
# such a binary; without it, a mastdl whose default is still -j 4 is its own baseline,
# and a newer one is run with -j 4.
BASELINE_MODE=none
if [ -n "$MASTDL_BASELINE" ]; then
  [ -x "$MASTDL_BASELINE" ] || die "MASTDL_BASELINE=$MASTDL_BASELINE is not executable"
  cp "$MASTDL_BASELINE" "$WORK/bin/mastdl-baseline"
  MASTDL_BASELINE=$WORK/bin/mastdl-baseline
  BASELINE_MODE=binary
elif [ "$MASTDL_OK" = 1 ] && [ "$DEFAULT_J4" = 1 ]; then
  BASELINE_MODE=same
elif [ "$MASTDL_OK" = 1 ]; then
  MASTDL_BASELINE=$MASTDL
  BASELINE_MODE=j4
fi

# ---------------------------------------------------------------- 2. data
DATASETS=()
for d in small large mixed; do
  for w in ${WORKLOADS//,/ }; do [ "$(data_of "$w")" = "$d" ] && { DATASETS+=("$d"); break; }; done
done
need=0
for d in "${DATASETS[@]}"; do
  spec_var=SPEC_$d
  for part in ${!spec_var//,/ }; do need=$((need + ${part%x*} * ${part#*x})); done
done
avail=$(df -B1 --output=avail "$WORK" | tail -n1 | tr -d ' ')
# The data (kept between runs) plus one destination copy of the largest data set.
if [ "$avail" -lt $((need * 2 + (1 << 30))) ]; then
  have=$(du -sb "$WORK/data" 2>/dev/null | cut -f1 || echo 0)
  [ "$avail" -ge $((need * 2 + (1 << 30) - ${have:-0})) ] ||
    die "not enough disk under $WORK: $((avail >> 20)) MiB free, about $(((need * 2 + (1 << 30)) >> 20)) MiB needed"
fi
say "generating data under $WORK (kept between runs; $((need >> 20)) MiB)"
for d in "${DATASETS[@]}"; do
  spec_var=SPEC_$d
  "$PY" "$LIB/gen.py" workload "$WORK" "$d" "$PREFIX$d" "${!spec_var}" >&2
done

# ---------------------------------------------------------------- 3. emulators
EMU_PIDS=()
stop_emulators() {
  local p
  for p in "${EMU_PIDS[@]}"; do
    kill -TERM "$p" 2>/dev/null || true
  done
  for p in "${EMU_PIDS[@]}"; do
    wait "$p" 2>/dev/null || true
  done
  EMU_PIDS=()
}
cleanup() {
  local rc=$?
  stop_emulators
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

CA=$WORK/wan-ca.pem
start_emulator() { # PROTO -> sets BASE_<proto>
  local proto=$1 pf=$WORK/port-$1 extra=()
  rm -f "$pf"
  [ "$proto" = h2 ] && extra=(--http2 --cert-out "$CA")
  "$EMU" --dir "$WORK/data" --port 0 --port-file "$pf" --ttfb-ms "$TTFB_MS" \
    --connect-ms "$CONNECT_MS" --rate "$RATE" --stats-out "$WORK/stats-$proto.json" "${extra[@]}" \
    >>"$LOGS/wan-archive-$proto.log" 2>&1 &
  EMU_PIDS+=($!)
  for _ in $(seq 100); do [ -s "$pf" ] && break; sleep 0.05; done
  [ -s "$pf" ] || die "wan-archive ($proto) did not start; see $LOGS/wan-archive-$proto.log"
  local port; port=$(cat "$pf")
  if [ "$proto" = h2 ]; then BASE_h2=https://127.0.0.1:$port; else BASE_h1=http://127.0.0.1:$port; fi
  say "wan-archive ($proto) on $(base_of "$proto")"
}
base_of() { if [ "$1" = h2 ]; then echo "$BASE_h2"; else echo "$BASE_h1"; fi; }
tls_curl() { if [ "$1" = h2 ]; then echo "--cacert $CA"; fi; }
ctl() { # PROTO METHOD PATH
  # shellcheck disable=SC2046
  curl -sS --max-time 10 $(tls_curl "$1") -X "$2" "$(base_of "$1")$3"
}

self_test() { # PROTO: the emulator behaves like MAST's download endpoint
  local proto=$1 d=${DATASETS[0]} name src url size code out=$LOGS/selftest.bin base tls
  base=$(base_of "$proto"); tls=$(tls_curl "$proto")
  name=$(head -n1 "$WORK/uris-$d.txt"); name=${name##*/}
  src=$WORK/data/$name; size=$(stat -c %s "$src")
  for form in "mast:BENCH/product/$name" "mast%3ABENCH%2Fproduct%2F$name"; do
    url="$base/api/v0.1/Download/file?uri=$form"
    # shellcheck disable=SC2086
    code=$(curl -sS $tls --globoff -o "$out" -w '%{http_code}' "$url")
    [ "$code" = 200 ] && cmp -s "$out" "$src" || die "self-test ($proto): GET $form gave $code or wrong bytes"
  done
  # shellcheck disable=SC2086
  code=$(curl -sS $tls --globoff -r 100-199 -o "$out" -w '%{http_code}' "$url")
  [ "$code" = 206 ] && cmp -s "$out" <(tail -c +101 "$src" | head -c 100) || die "self-test ($proto): Range gave $code"
  # shellcheck disable=SC2086
  curl -sS $tls --globoff -I "$url" | tr -d '\r' | grep -qi "^content-length: $size\$" ||
    die "self-test ($proto): HEAD lacks Content-Length: $size"
  # shellcheck disable=SC2086
  code=$(curl -sS $tls -o /dev/null -w '%{http_code}' "$base/api/v0.1/Download/file?uri=mast:BENCH/product/nope_1.fits")
  [ "$code" = 404 ] || die "self-test ($proto): missing file gave $code"
  # shellcheck disable=SC2086
  code=$(curl -sS $tls -o /dev/null -w '%{http_code}' "$base/api/v0.1/Download/file?uri=junk")
  [ "$code" = 400 ] || die "self-test ($proto): malformed uri gave $code"
  local v
  # shellcheck disable=SC2086
  v=$(curl -sS $tls --globoff -o /dev/null -o /dev/null -w '%{num_connects}/%{http_version} ' "$url" "$url")
  if [ "$proto" = h2 ]; then
    [ "$v" = "1/2 0/2 " ] || die "self-test (h2): want one HTTP/2 connection reused, got $v"
  else
    [ "$v" = "1/1.1 0/1.1 " ] || die "self-test (h1): want one HTTP/1.1 connection reused, got $v"
  fi
  rm -f "$out"
  say "wan-archive self-test passed ($proto: raw and %-encoded uri, Range, HEAD, 404, 400, keep-alive)"
}

for p in h1 h2; do
  for w in ${WORKLOADS//,/ }; do
    if [ "$(proto_of "$w")" = "$p" ]; then start_emulator "$p"; self_test "$p"; break; fi
  done
done

# ---------------------------------------------------------------- 4. inputs per protocol
made=
for w in ${WORKLOADS//,/ }; do
  d=$(data_of "$w"); p=$(proto_of "$w"); in=$WORK/inputs/$d
  [[ $made == *" $d-$p "* ]] && continue
  made="$made $d-$p "
  base=$(base_of "$p")
  sed "s|{BASE}|$base|g" "$in/curl.cfg" >"$in/run-$p-curl.cfg"
  sed "s|{BASE}|$base|g" "$in/aria2.txt" >"$in/run-$p-aria2.txt"
  n=$PORTAL_SUBSET; [ "$d" = small ] || n=1
  sed -n "1,$((n + 2))p" "$in/portal.sh" | sed "s|{BASE}|$base|g" >"$in/run-$p-portal.sh"
  sed -n "1,${n}p" "$WORK/manifest-$d.tsv" >"$WORK/manifest-$d-portal.tsv"
  if [ "$p" = h2 ]; then
    printf 'http2\ncacert = "%s"\n' "$CA" >>"$in/run-$p-curl.cfg"
    sed -i "s|^curl |curl --cacert '$CA' |" "$in/run-$p-portal.sh"
  fi
done
# Page cache: every tool reads the source from memory.
for d in "${DATASETS[@]}"; do find "$WORK/src-$d" -type f -exec cat {} + >/dev/null; done

# ---------------------------------------------------------------- 5. runs
elapsed() {
  local a=${1//[.,]/} b=${2//[.,]/}
  local us=$((10#$b - 10#$a))
  printf '%d.%04d' $((us / 1000000)) $(((us % 1000000) / 100))
}
clean() { printf '%s' "$*" | tr '\t\n\r' '   ' | cut -c1-200; }

tools_for() { # WORKLOAD
  case $1 in
    small|small-h2)
      echo mastdl mastdl-j16 mastdl-j50
      case $BASELINE_MODE in binary|j4) echo mastdl-0.1.0 ;; esac
      echo curl-parallel
      [ "$1" = small ] && echo aria2c
      echo portal-curl-loop ;;
    large|large-h2) echo mastdl mastdl-j16 curl-parallel aria2c aria2c-x16 portal-curl-loop ;;
    mixed|mixed-h2) echo mastdl ;;
    limit) echo mastdl-limit ;;
  esac
}

tool_cmd() { # TOOL WORKLOAD DEST -> CMD array, MANIFEST, SCALE
  local tool=$1 w=$2 dest=$3 d p in base m=()
  d=$(data_of "$w"); p=$(proto_of "$w"); in=$WORK/inputs/$d; base=$(base_of "$p")
  MANIFEST=$WORK/manifest-$d.tsv
  SCALE=1
  [ "$p" = h2 ] && m=(--cacert "$CA")
  local mfetch=(fetch --base-url "$base" --progress never -d "$dest" "${m[@]}")
  local aria=(--no-conf -i "$in/run-$p-aria2.txt" --file-allocation=none --console-log-level=warn
              --summary-interval=0 --auto-file-renaming=false --allow-overwrite=true)
  [ "$p" = h2 ] && aria+=(--ca-certificate="$CA")
  case $tool in
    mastdl)
      if [[ $w == mixed* ]]; then
        # mastdl's JSON events, stamped on arrival: when did the last small file finish?
        CMD=(bash -c '"$@" 2>&1 >/dev/null | "'"$PY"'" "'"$LIB/stamp.py"'" "'"$EVENTS"'"; exit "${PIPESTATUS[0]}"'
             mastdl "$MASTDL" "${mfetch[@]}" --log-format json "$WORK/uris-$d.txt")
      else
        CMD=("$MASTDL" "${mfetch[@]}" -q "$WORK/uris-$d.txt")
      fi ;;
    mastdl-j16) CMD=("$MASTDL" "${mfetch[@]}" -q -j 16 "$WORK/uris-$d.txt") ;;
    mastdl-j50) CMD=("$MASTDL" "${mfetch[@]}" -q -j 50 "$WORK/uris-$d.txt") ;;
    mastdl-0.1.0) CMD=("$MASTDL_BASELINE" "${mfetch[@]}" -q -j 4 "$WORK/uris-$d.txt") ;;
    mastdl-limit) CMD=("$MASTDL" "${mfetch[@]}" -q --limit-rate "$LIMIT_RATE" "$WORK/uris-$d.txt") ;;
    curl-parallel) CMD=(curl --parallel -K "$in/run-$p-curl.cfg") ;;
    aria2c) CMD=(aria2c "${aria[@]}") ;;
    aria2c-x16) CMD=(aria2c -j 1 -x 16 -s 16 "${aria[@]}") ;;
    portal-curl-loop)
      CMD=(bash "$in/run-$p-portal.sh")
      MANIFEST=$WORK/manifest-$d-portal.tsv
      SCALE=$(awk -v a="$(wc -l <"$WORK/manifest-$d.tsv")" -v b="$(wc -l <"$MANIFEST")" 'BEGIN {printf "%.4f", a / b}') ;;
  esac
}

# run_one WORKLOAD TOOL REP: one measured run into a fresh folder, checked, with the
# emulator's counts. Appends a line to raw.tsv.
run_one() {
  local w=$1 tool=$2 rep=$3 p d tag log tf dest rc t0 t1 wall cpu rss status=ok note='' extra=- v stats
  p=$(proto_of "$w"); d=$(data_of "$w")
  tag=$w-$tool-$rep; log=$LOGS/$tag.log; tf=$LOGS/$tag.time; dest=$DESTS/$w-$tool
  EVENTS=$LOGS/$tag.events
  rm -rf "$dest"; mkdir -p "$dest"; sync
  tool_cmd "$tool" "$w" "$dest"
  ctl "$p" POST /__reset >/dev/null || die "wan-archive ($p) does not answer /__reset"
  t0=$EPOCHREALTIME
  set +e
  (cd "$dest" && exec /usr/bin/time -v -o "$tf" timeout -k 5 "$TIMEOUT" "${CMD[@]}") </dev/null >"$log" 2>>"$log"
  rc=$?
  set -e
  t1=$EPOCHREALTIME
  wall=$(elapsed "$t0" "$t1")
  sleep 0.2 # let the closing connections be counted
  ctl "$p" GET /__stats >"$LOGS/$tag.stats.json" || echo '{}' >"$LOGS/$tag.stats.json"
  stats=$("$PY" -c '
import json, sys
s = json.load(open(sys.argv[1]))
print("\t".join(str(s.get(k, "-")) for k in ("connections", "peak_connections", "peak_requests", "requests", "h2_connections", "h2_streams", "body_bytes")))
' "$LOGS/$tag.stats.json")
  cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {printf "%.3f", s}' "$tf" 2>/dev/null || echo 0)
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tf" 2>/dev/null || true)
  rss=${rss:-0}
  if [ $rc -ne 0 ]; then
    local why="exit $rc"
    [ $rc = 124 ] && why="timed out after ${TIMEOUT}s"
    note="$why: $(grep -v '^\s*$' "$log" | grep -v '^Command exited' | tail -n1 || true)"
    if [[ $tool == mastdl* ]]; then status=na; note="binary failed: $note"; else status=FAILED; fi
  elif v=$("$PY" "$LIB/verify.py" "$MANIFEST" "$dest" --full 2>&1); then
    note=$v
  else
    status=FAILED; note="wrong bytes: $v"
  fi
  if [[ $w == mixed* && $tool == mastdl && $status == ok ]]; then
    # Seconds from the start to the last small (< 1 MiB) file's `finish` event.
    extra=$("$PY" -c '
import json, sys
t0, last = float(sys.argv[2]), None
for line in open(sys.argv[1]):
    ts, _, ev = line.partition("\t")
    try:
        e = json.loads(ev)
    except ValueError:
        continue
    if e.get("event") == "finish" and (e.get("bytes") or 0) < (1 << 20):
        last = max(last or 0.0, float(ts))
print("%.4f" % (last - t0) if last else "-")
' "$EVENTS" "$t0")
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$p" "$tool" "$rep" "$wall" "$cpu" "$rss" \
    "$status" "$(clean "$note")" "$stats" "$SCALE" "$extra" >>"$RAW"
  say "$(printf '%-9s %-16s rep %s: %8.3f s%s %6.1f MiB conns %s  %s %s' "$w" "$tool" "$rep" "$wall" \
    "$([ "$SCALE" = 1 ] || echo " (x$SCALE)")" "$(awk "BEGIN {print $rss/1024}")" \
    "$(echo "$stats" | cut -f1,2 | tr '\t' /)" "$status" "$(clean "$note" | cut -c1-70)")"
  rm -rf "$dest"
}

record_na() { # WORKLOAD TOOL REASON
  printf '%s\t%s\t%s\t1\t0\t0\t0\tna\t%s\t-\t-\t-\t-\t-\t-\t-\t1\t-\n' "$1" "$(proto_of "$1")" "$2" "$(clean "$3")" >>"$RAW"
  say "$(printf '%-9s %-16s n/a: %s' "$1" "$2" "$3")"
}

cpu_busy() {
  local a b i tot=0 idle
  read -ra a </proc/stat; sleep 1; read -ra b </proc/stat
  for i in 1 2 3 4 5 6 7 8; do tot=$((tot + b[i] - a[i])); done
  idle=$((b[4] - a[4] + b[5] - a[5]))
  echo $((tot > 0 ? 100 * (tot - idle) / tot : 0))
}
BUSY_START=$(cpu_busy)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
[ "$BUSY_START" -le 20 ] ||
  say "warning: the CPUs are ${BUSY_START}% busy before the runs (load $LOAD_START); other work will skew the numbers"
T_START=$EPOCHREALTIME

for w in ${WORKLOADS//,/ }; do
  say "== $w ($(proto_of "$w")): $(wc -l <"$WORK/uris-$(data_of "$w").txt") files, $REPS rep(s)"
  for rep in $(seq "$REPS"); do
    for tool in $(tools_for "$w"); do
      if [[ $tool == mastdl* ]]; then
        if [ "$MASTDL_OK" != 1 ]; then
          [ "$rep" = 1 ] && record_na "$w" "$tool" "$MASTDL_WHY"
          continue
        fi
        if [ "$tool" = mastdl-limit ] && [ "$HAS_LIMIT" != 1 ]; then
          [ "$rep" = 1 ] && record_na "$w" "$tool" "this mastdl has no --limit-rate"
          continue
        fi
      fi
      run_one "$w" "$tool" "$rep"
    done
  done
done
T_END=$EPOCHREALTIME
stop_emulators
rm -rf "$DESTS"
BUSY_END=$(cpu_busy)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- 6. report
{
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); measuring took $(elapsed "$T_START" "$T_END" | cut -d. -f1) s"
  echo "- machine: $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), $(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-?}")"
  echo "- destination folders: $(df -h --output=source,fstype "$WORK" | tail -n1 | tr -s ' ')"
  echo "- curl: $(curl --version | head -n1 | cut -d' ' -f1-2,4-5); aria2c: $(aria2c --version | head -n1 | sed 's/aria2 version //')"
  if [ "$MASTDL_OK" = 1 ]; then
    echo "- mastdl: $("$MASTDL" --version 2>&1 | head -n1) (snapshot of $MASTDL_SRC); --limit-rate: $([ $HAS_LIMIT = 1 ] && echo yes || echo no)"
  else
    echo "- mastdl: $MASTDL_WHY"
  fi
  echo "- CPU busy in the second before the runs: ${BUSY_START}%, after: ${BUSY_END}%; load average before: $LOAD_START, after: $LOAD_END"
  if [ "$BUSY_START" -gt 20 ] || [ "$BUSY_END" -gt 20 ]; then
    echo "- **warning: other work was running on the machine; the numbers are skewed**"
  fi
  echo "- repo commit: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo none)"
} >"$WORK/machine$SUFFIX.md"
cat >"$WORK/meta$SUFFIX.json" <<EOF
{"command": "bench/run.sh --wan$([ $QUICK = 1 ] && echo ' --quick') --reps $REPS --workloads $WORKLOADS",
 "quick": $QUICK, "reps": $REPS, "ttfb_ms": $TTFB_MS, "connect_ms": $CONNECT_MS, "rate": "$RATE",
 "limit_rate": "$LIMIT_RATE", "portal_subset": $PORTAL_SUBSET, "timeout": $TIMEOUT,
 "baseline": "$BASELINE_MODE",
 "spec": {"small": "$SPEC_small", "large": "$SPEC_large", "mixed": "$SPEC_mixed"}}
EOF
into=()
[ "$UPDATE_RESULTS" = 1 ] && into=(--into "$HERE/RESULTS.md")
"$PY" "$LIB/report.py" wan "$RAW" "$WORK/machine$SUFFIX.md" "$WORK/meta$SUFFIX.json" "${into[@]}" >"$WORK/results$SUFFIX.md"
cat "$WORK/results$SUFFIX.md"
say "wrote $WORK/results$SUFFIX.md$([ "$UPDATE_RESULTS" = 1 ] && echo " and the WAN section of bench/RESULTS.md") (raw runs: $RAW, logs: $LOGS)"
