#!/bin/bash
# mastdl on a Slurm cluster: a job array of 4 shards into one shared DEST, then one
# dependent job that merges the shard manifests (`mastdl report`).
#
# How this was checked (2026-11-25, mastdl 0.1.0 from commit 6cf5e9b, Slurm 22.05.8 from
# Debian 12, one node): `scripts/slurm-check.sh` installs slurmctld/slurmd/munge if missing,
# starts a private one-node cluster (4 CPUs declared, so the 4 tasks run at once) and a
# loopback stand-in of the MAST download API (40 products, 0.2 s each), then submits THIS
# file with `DEST=... URIS=... bash docs/recipes/slurm-array.sh` and waits. Observed:
#   the 4 array tasks started in the same second, one DEST, each COMPLETED exit 0:0 with
#   "10 complete, 0 skipped, 0 failed" and its DEST/MANIFEST.K-of-4.json;
#   the report job then ran, COMPLETED 0:0, and printed
#   "4 of 4 shards: 40 requested, 40 complete, 0 skipped, 0 failed, 1.60 MiB transferred";
#   MANIFEST.json listed the 40 URIs and every file had the expected bytes;
#   submitting again: "4 of 4 shards: 40 requested, 0 complete, 40 skipped, 0 failed".
# The whole check takes about 15 s with the packages installed; 27 s on the first run here,
# apt-get downloading and installing them included.
# Also observed (by hand, same cluster): with one URI the archive answers 404, task 0 ended
# FAILED 1:0, the report job still ran (afterany) and ended FAILED 1:0 with
# "4 of 4 shards: 41 requested, 40 complete, 0 skipped, 1 failed". Submitting a second time
# while the first array was running: without --dependency=singleton, the new tasks whose shard
# was still running exited 3 ("... is in use by another running mastdl (shard 0/4)") and the
# new report job saw "missing shard manifests: 0/4, 3/4"; with it (as below), the second
# array stayed PD (Dependency) until the first had ended, then ran: "10 complete" x 4, and
# its report "40 requested, 40 complete, 0 skipped, 0 failed", COMPLETED 0:0.
#
# Usage (on a login node, with mastdl on your PATH; the jobs inherit your environment):
#   DEST=/shared/scratch/$USER/mast URIS=$PWD/uris.txt bash slurm-array.sh
# which submits
#   1. this file as an array job (--array=0-3): task K runs
#        mastdl fetch --shard auto -d "$DEST" "$URIS"
#      and `--shard auto` turns SLURM_ARRAY_TASK_ID (minus SLURM_ARRAY_TASK_MIN) and
#      SLURM_ARRAY_TASK_COUNT into shard K of 4; each shard writes DEST/MANIFEST.K-of-4.json
#      and locks only its own part of DEST, so the four tasks share DEST;
#   2. `mastdl report "$DEST"` with --dependency=afterany:<array job id>: it runs once
#      every task has ended (also when some failed), merges the shard manifests into
#      DEST/MANIFEST.json and MANIFEST.HTML, and exits 1 (job state FAILED) if any file
#      failed or a shard never wrote its manifest.
# Re-submitting resumes: complete files are SKIPPED, .part files are resumed.
# --dependency=singleton makes a new submission wait until every earlier job named
# "mastdl" of yours has ended, so a re-submission never races the previous array (without
# it, tasks whose shard is still running exit 3 and the new report sees missing shards).
#
# DEST must be on a file system every node sees (and which supports flock, as Lustre,
# GPFS and NFSv4 do); URIS must be readable from every node. Change --array to use more
# shards (a range such as 0-15, 1-16 or 0-30:2, optionally with a %limit; not a list
# such as 1,5,9). Keep -j small: every task opens -j connections to MAST at once.
#
#SBATCH --job-name=mastdl
#SBATCH --array=0-3
#SBATCH --dependency=singleton
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --time=04:00:00
#SBATCH --output=mastdl-%A_%a.out

set -u
: "${DEST:=$PWD/mastDownload}"
: "${URIS:=$PWD/uris.txt}"
: "${JOBS:=4}"

if [ -z "${SLURM_JOB_ID:-}" ]; then
    # Not inside Slurm: submit the array and the report job.
    DEST=$(realpath -m "$DEST"); URIS=$(realpath "$URIS") || exit 2
    export DEST URIS JOBS
    mkdir -p "$DEST" || exit 2
    array=$(sbatch --parsable "$0") || exit 1
    array=${array%%;*}                       # "ID;cluster" on multi-cluster sites
    report=$(sbatch --parsable --job-name=mastdl-report --dependency="afterany:$array" \
        --ntasks=1 --time=00:30:00 --output="mastdl-report-%j.out" \
        --wrap="mastdl report $(printf %q "$DEST")") || exit 1
    echo "submitted array job $array (4 shards) and report job ${report%%;*} into $DEST"
    exit 0
fi

# Inside an array task. Exit codes: 0 ok, 1 some files FAILED (see the manifest),
# 2 bad input, 3 this shard is already running on DEST (an earlier submission).
echo "task ${SLURM_ARRAY_TASK_ID:-?} of array ${SLURM_ARRAY_JOB_ID:-?} on $(hostname): DEST=$DEST"
exec mastdl fetch --shard auto -d "$DEST" -j "$JOBS" --progress never "$URIS"
