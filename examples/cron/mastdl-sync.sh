#!/bin/sh
# mastdl-sync: one unattended sync of a MAST mirror, for cron (see
# `crontab` beside this file and the README's "Unattended runs").
#
# Fetches what INPUT names (MAST's change feed, a URI list, a script or a
# table) into DEST, then checks the whole mirror with `mastdl verify`.
# Everything mastdl says goes to LOG; only what needs a person goes to
# stderr, which cron mails to MAILTO. Exit codes (mastdl's own, see the
# README's exit-code table):
#   0    all complete (cron mails nothing)
#   1    some files failed, or verify found a problem: they are named in LOG
#        and DEST/MANIFEST.HTML; the next run retries failed files
#   2    the input was refused (nothing downloaded): fix INPUT
#   3    another sync still holds DEST: this run did nothing (exits 0 here)
#   4    every failure wants a valid token: make a new one
#   130, 143  interrupted: the next run resumes the .part files
set -u

input=${MASTDL_INPUT:-$HOME/mast/events.json}
dest=${MASTDL_DEST:-$HOME/mast/mirror}
log=${MASTDL_LOG:-$HOME/mast/mastdl-sync.log}
token_file=${MASTDL_TOKEN_FILE:-$HOME/.config/mastdl/token}

# The token from a file only its owner reads, never from the crontab or a
# command line (where `ps` would show it).
if [ -z "${MAST_API_TOKEN:-}" ] && [ -r "$token_file" ]; then
    MAST_API_TOKEN=$(cat "$token_file")
    export MAST_API_TOKEN
fi

mkdir -p "$(dirname "$log")"
echo "== $(date -u '+%Y-%m-%dT%H:%M:%SZ') mastdl-sync $input -> $dest" >>"$log"
mastdl fetch --quiet --progress never -d "$dest" "$input" >>"$log" 2>&1
code=$?

case $code in
0 | 1)
    # The whole mirror, not only tonight's files: rot shows up here.
    if ! mastdl verify --quiet --progress never "$dest" >>"$log" 2>&1; then
        echo "mastdl-sync: verify found problems in $dest; the repair command is in $log" >&2
        code=1
    fi
    ;;
esac

case $code in
0) ;;
1) echo "mastdl-sync: some files failed; see $log and $dest/MANIFEST.HTML (the next run retries them)" >&2 ;;
2) echo "mastdl-sync: mastdl refused $input (exit 2); see $log" >&2 ;;
3)
    echo "mastdl-sync: another sync still holds $dest; skipped" >>"$log"
    code=0
    ;;
4) echo "mastdl-sync: the MAST token is missing, rejected or expired: make a new one at https://auth.mast.stsci.edu/token and put it in $token_file" >&2 ;;
130 | 143) echo "mastdl-sync: interrupted (exit $code); the next run resumes" >&2 ;;
*) echo "mastdl-sync: mastdl exited $code; see $log" >&2 ;;
esac
exit "$code"
