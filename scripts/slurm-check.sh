#!/bin/bash
# slurm-check.sh: run docs/recipes/slurm-array.sh for real on a private one-node Slurm
# cluster, against a loopback stand-in of the MAST download API, and check the result.
#
#   sudo scripts/slurm-check.sh [PATH/TO/mastdl]      (default: target/release/mastdl, else PATH)
#
# What it does (Debian/Ubuntu, as root; everything it starts it stops again on exit):
#   1. apt-get installs slurmctld, slurmd, slurm-client, munge if missing;
#   2. under a temp dir: a munge key and a private munged (own socket), a minimal
#      slurm.conf (this host as the only node with at least 4 CPUs declared, partition
#      "debug", private ports, state/spool/logs in the temp dir), slurmctld and slurmd;
#   3. a loopback archive (python3 http.server on 127.0.0.1) serving 40 products with
#      deterministic bytes (0.2 s each, so the four tasks overlap), and a URI list;
#   4. submits the recipe (`bash docs/recipes/slurm-array.sh`: a 4-task array + a report
#      job with --dependency=afterany), waits (timeout $TIMEOUT s, default 300), and checks:
#      every task and the report job exited 0, the four tasks ran at the same time (one
#      DEST, one lock per shard), MANIFEST.K-of-4.json for K=0..3,
#      MANIFEST.json with 40 requested / 40 complete, every file's bytes;
#   5. submits it again and checks that all 40 are SKIPPED;
#   6. stops the daemons and the archive; removes the temp dir (KEEP=1 keeps it).
# Exit 0 when every check passed. Tested on Debian 12 (Slurm 22.05) in a container.
set -u -o pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
RECIPE=$HERE/docs/recipes/slurm-array.sh
TIMEOUT=${TIMEOUT:-300}
T0=$(date +%s)
say() { printf '[slurm-check %3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }
die() { say "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts slurmctld/slurmd as root)"
MASTDL=${1:-}
if [ -z "$MASTDL" ]; then
    if [ -x "$HERE/target/release/mastdl" ]; then MASTDL=$HERE/target/release/mastdl
    else MASTDL=$(command -v mastdl) || die "no mastdl: build it (cargo build --release) or pass its path"; fi
fi
MASTDL=$(realpath "$MASTDL"); [ -x "$MASTDL" ] || die "not executable: $MASTDL"
say "mastdl: $MASTDL ($("$MASTDL" --version))"

# 1. packages
missing=()
for cmd in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge python3:python3; do
    command -v "${cmd%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${cmd%%:*}" ] || missing+=("${cmd#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }; then
        die "apt-get install ${missing[*]} failed"
    fi
fi
PATH=$PATH:/usr/sbin:/sbin
say "slurm $(slurmctld -V 2>/dev/null | awk '{print $2}'), munge $(munged -V 2>/dev/null | awk '{print $1}' | sed 's/munge-//')"

# 2. private cluster
TMP=$(mktemp -d /tmp/slurm-check.XXXXXX); chmod 755 "$TMP"
PIDS=()
cleanup() {
    local rc=$?
    if [ -n "${SLURM_CONF:-}" ] && [ -S "${MSOCK:-/nonexistent}" ]; then
        # cancel what is left in the private cluster, so no slurmstepd outlives slurmd
        jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
        if [ -n "${jobs// }" ]; then
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null
            for _ in $(seq 20); do [ -z "$(squeue -h -t R,CG -o %i 2>/dev/null)" ] && break; sleep 0.5; done
        fi
    fi
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null
    done
    for p in "${PIDS[@]}"; do          # wait (at most ~10 s) for them to go
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$p" 2>/dev/null
    done
    if [ "${KEEP:-0}" = 1 ]; then say "kept $TMP"; else rm -rf "$TMP"; fi
    say "done, exit $rc, $(( $(date +%s) - T0 )) s in all"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$TMP"/{munge,state,spool,logs,work}
chmod 700 "$TMP/munge"
dd if=/dev/urandom of="$TMP/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$TMP/munge/munge.key"
MSOCK=$TMP/munge/munge.socket
munged --force --key-file="$TMP/munge/munge.key" --socket="$MSOCK" \
    --pid-file="$TMP/munge/munged.pid" --log-file="$TMP/logs/munged.log" \
    --seed-file="$TMP/munge/munged.seed" || die "munged did not start ($(tail -3 "$TMP/logs/munged.log" 2>/dev/null))"
PIDS+=("$(cat "$TMP/munge/munged.pid")")
munge -S "$MSOCK" -n </dev/null | unmunge -S "$MSOCK" >/dev/null || die "munge round trip failed"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HOST=$(hostname -s)
CPUS=$(( $(nproc) < 4 ? 4 : $(nproc) ))   # >= 4 so that all four array tasks run at once
MEM=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
export SLURM_CONF=$TMP/slurm.conf
cat >"$SLURM_CONF" <<CONF
ClusterName=mastdlcheck
SlurmctldHost=$HOST
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MSOCK
CredType=cred/munge
StateSaveLocation=$TMP/state
SlurmdSpoolDir=$TMP/spool
SlurmctldPidFile=$TMP/slurmctld.pid
SlurmdPidFile=$TMP/slurmd.pid
SlurmctldLogFile=$TMP/logs/slurmctld.log
SlurmdLogFile=$TMP/logs/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=600
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
slurmctld -i || die "slurmctld did not start: $(tail -5 "$TMP/logs/slurmctld.log")"
for _ in $(seq 50); do [ -s "$TMP/slurmctld.pid" ] && break; sleep 0.1; done
PIDS+=("$(cat "$TMP/slurmctld.pid")")
slurmd || die "slurmd did not start: $(tail -5 "$TMP/logs/slurmd.log")"
for _ in $(seq 50); do [ -s "$TMP/slurmd.pid" ] && break; sleep 0.1; done
PIDS+=("$(cat "$TMP/slurmd.pid")")
for _ in $(seq 60); do
    state=$(sinfo -h -N -o %T 2>/dev/null | head -1)
    [ "$state" = idle ] && break; sleep 0.5
done
[ "$state" = idle ] || die "node not idle (state '$state'): $(tail -5 "$TMP/logs/slurmd.log")"
say "cluster up: $(sinfo -h -o '%P %D node(s) %c CPUs %T')"

# 3. loopback archive and URI list
cat >"$TMP/archive.py" <<'PY'
import hashlib, json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qs
def body(uri):
    size = 20480 + int.from_bytes(hashlib.sha256(uri.encode()).digest()[:4], "big") % 40960
    out, seed = bytearray(), hashlib.sha256(uri.encode()).digest()
    while len(out) < size:
        seed = hashlib.sha256(seed).digest(); out += seed
    return bytes(out[:size])
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        u = urlsplit(self.path); uri = parse_qs(u.query).get("uri", [""])[0]
        if u.path == "/whoami": data, ct = b'{"ezid":"alice","anon":false}', "application/json"
        elif u.path == "/api/v0.1/Download/file" and uri.startswith("mast:"):
            data, ct = body(uri), "application/octet-stream"; time.sleep(0.2)   # so that the tasks overlap
        else:
            self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers(); return
        self.send_response(200); self.send_header("Content-Type", ct)
        self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
if __name__ == "__main__":
    s = ThreadingHTTPServer(("127.0.0.1", 0), H); print(s.server_address[1], flush=True); s.serve_forever()
PY
python3 "$TMP/archive.py" >"$TMP/archive.port" 2>"$TMP/logs/archive.log" </dev/null &
PIDS+=("$!")
for _ in $(seq 50); do [ -s "$TMP/archive.port" ] && break; sleep 0.1; done
MASTDL_BASE_URL=http://127.0.0.1:$(cat "$TMP/archive.port"); export MASTDL_BASE_URL
for i in $(seq -w 1 40); do echo "mast:JWST/product/jw02736-o0${i}_t001_nircam_clear-f090w_i2d.fits"; done >"$TMP/uris.txt"
say "archive stand-in at $MASTDL_BASE_URL, 40 URIs"

# 4. submit the recipe, wait, check
mkdir -p "$TMP/bin"; ln -s "$MASTDL" "$TMP/bin/mastdl"
export PATH=$TMP/bin:$PATH DEST=$TMP/dest URIS=$TMP/uris.txt

submit_and_wait() {   # sets A (array job id) and R (report job id)
    local out array report
    out=$(cd "$TMP/work" && bash "$RECIPE") || die "submitting failed: $out"
    say "$out"
    array=$(sed -n 's/.*array job \([0-9]*\).*/\1/p' <<<"$out")
    report=$(sed -n 's/.*report job \([0-9]*\).*/\1/p' <<<"$out")
    [ -n "$array" ] && [ -n "$report" ] || die "cannot read the job ids from: $out"
    local deadline=$(( $(date +%s) + TIMEOUT ))
    while [ -n "$(squeue -h -j "$array,$report" -o %i 2>/dev/null)" ]; do
        [ "$(date +%s)" -lt "$deadline" ] || { squeue >&2; die "jobs still queued after ${TIMEOUT}s"; }
        sleep 1
    done
    A=$array R=$report
}
job_field() { scontrol -o show job "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
check_jobs() {   # ARRAY REPORT: every array task and the report job COMPLETED with exit 0:0
    local t ok=1
    for t in 0 1 2 3; do
        local st ec
        st=$(job_field "${1}_$t" JobState); ec=$(job_field "${1}_$t" ExitCode)
        [ "$st" = COMPLETED ] && [ "$ec" = 0:0 ] || { ok=0; say "task ${1}_$t: $st exit $ec"; }
    done
    local st ec
    st=$(job_field "$2" JobState); ec=$(job_field "$2" ExitCode)
    [ "$st" = COMPLETED ] && [ "$ec" = 0:0 ] || { ok=0; say "report job $2: $st exit $ec"; }
    [ $ok = 1 ]
}
check_manifest() {   # WANT_COMPLETE WANT_SKIPPED
    python3 - "$DEST" "$1" "$2" <<'PY'
import json, os, sys
dest, want_c, want_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sys.path.insert(0, os.path.dirname(dest))
from archive import body
uris = [l.strip() for l in open(os.path.join(os.path.dirname(dest), "uris.txt")) if l.strip()]
errs = []
for k in range(4):
    if not os.path.exists(os.path.join(dest, f"MANIFEST.{k}-of-4.json")): errs.append(f"no MANIFEST.{k}-of-4.json")
m = json.load(open(os.path.join(dest, "MANIFEST.json")))
got = (m["requested"], m["complete"], m["skipped"], m["failed"])
if got != (40, want_c, want_s, 0): errs.append(f"MANIFEST.json requested/complete/skipped/failed = {got}, want {(40, want_c, want_s, 0)}")
if sorted(f["uri"] for f in m["files"]) != sorted(uris): errs.append("MANIFEST.json does not list exactly the 40 URIs")
for f in m["files"]:
    if open(os.path.join(dest, f["path"]), "rb").read() != body(f["uri"]): errs.append(f"wrong bytes in {f['path']}")
if not os.path.exists(os.path.join(dest, "MANIFEST.HTML")): errs.append("no MANIFEST.HTML")
print("\n".join(errs) if errs else f"MANIFEST.json: requested {got[0]}, complete {got[1]}, skipped {got[2]}, failed {got[3]}; 40 files verified byte for byte")
sys.exit(1 if errs else 0)
PY
}

say "round 1: fresh DEST"
submit_and_wait
check_jobs "$A" "$R" || die "round 1: some job did not exit 0 (logs: $TMP/work)"
for t in 0 1 2 3; do
    say "  task $t: $(job_field "${A}_$t" StartTime) - $(job_field "${A}_$t" EndTime): $(tail -1 "$TMP/work/mastdl-${A}_$t.out")"
done
starts=$(for t in 0 1 2 3; do job_field "${A}_$t" StartTime; done | sort -u | wc -l)
[ "$starts" = 1 ] || say "  note: the tasks did not all start together ($starts start times)"
say "  report: $(head -1 "$TMP/work/mastdl-report-$R.out")"
check_manifest 40 0 2>&1 | while read -r l; do say "  $l"; done; [ "${PIPESTATUS[0]}" = 0 ] || die "round 1 manifest check"

say "round 2: same DEST again"
submit_and_wait
check_jobs "$A" "$R" || die "round 2: some job did not exit 0 (logs: $TMP/work)"
say "  report: $(head -1 "$TMP/work/mastdl-report-$R.out")"
check_manifest 0 40 2>&1 | while read -r l; do say "  $l"; done; [ "${PIPESTATUS[0]}" = 0 ] || die "round 2 manifest check"

say "PASS"
