#!/usr/bin/env python3
"""The steps of the mastdl GitHub Action (action.yml at the repository's top).

Each `run:` step of action.yml calls one subcommand of this script; every
input reaches it through the step's environment (never through the script's
text), and every result leaves through `$GITHUB_OUTPUT` and
`$GITHUB_STEP_SUMMARY`. Standard library only: it runs on the runner's own
Python (Linux, macOS, Windows).

  setup      check the inputs; mask the token; write `uris` to a file; hash the
             input's content (the data cache key) and the action's source (the
             wheel cache key)
  install    install mastdl into a virtualenv under RUNNER_TEMP: from PyPI when
             `version` is given, else from the action's own source (a wheel
             built once per source and cached); outputs `bin` and `version`
  cache-key  the data cache's key and restore prefixes (they need the version)
  fetch      run `mastdl fetch`, then read DEST/MANIFEST.json: outputs, job summary
  finish     fail the action when mastdl failed and `fail-on-error` is true
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import uuid
from typing import Dict, List, Optional

#: Failed files listed in the job summary; the rest are in MANIFEST.HTML.
SUMMARY_FAILED_ROWS = 50
#: Longest message shown for one failed file in the job summary.
SUMMARY_MESSAGE_CHARS = 300

EXIT_MEANINGS = {
    0: "every file complete or skipped",
    1: "at least one file failed",
    2: "usage or input error, nothing downloaded",
    3: "DEST is locked by another running mastdl",
    4: "every failed file failed for want of a valid token",
    130: "interrupted",
    143: "terminated",
}


class ActionError(Exception):
    """An error in the action's inputs or setup: printed as `::error::`, exit 1."""


def command_data(text: str) -> str:
    """Text made safe as the data of a workflow command (`::error::TEXT`)."""
    return str(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def truthy(value: str, name: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "yes", "1", "on"):
        return True
    if v in ("false", "no", "0", "off", ""):
        return False
    raise ActionError("input `%s` must be `true` or `false`, not `%s`" % (name, value))


def _delimiter(value: str) -> str:
    while True:
        d = "EOF_" + uuid.uuid4().hex
        if d not in value:
            return d


def set_outputs(values: Dict[str, str]) -> None:
    """Appends name=value pairs to $GITHUB_OUTPUT (heredoc form: values may hold newlines)."""
    path = env("GITHUB_OUTPUT")
    if not path:
        raise ActionError("GITHUB_OUTPUT is not set: run this from a GitHub Actions step")
    with open(path, "a", encoding="utf-8") as f:
        for name, value in values.items():
            d = _delimiter(value)
            f.write("%s<<%s\n%s\n%s\n" % (name, d, value, d))


def append_summary(text: str) -> None:
    path = env("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)


def runner_temp() -> str:
    base = env("RUNNER_TEMP")
    if not base:
        raise ActionError("RUNNER_TEMP is not set: run this from a GitHub Actions step")
    return os.path.join(base, "mastdl-action")


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- setup


def source_hash(root: str) -> str:
    """A hash of what the wheel is built from: the same source, the same wheel."""
    h = hashlib.sha256()
    files: List[str] = []
    for name in ("Cargo.toml", "Cargo.lock", "build.rs", "pyproject.toml"):
        if os.path.isfile(os.path.join(root, name)):
            files.append(name)
    for folder in ("src", "python/mastdl"):
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, folder)):
            dirnames.sort()
            for name in sorted(filenames):
                files.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    for rel in sorted(files):
        h.update(rel.encode() + b"\0")
        h.update(sha256_file(os.path.join(root, rel)).encode() + b"\n")
    return h.hexdigest()


def cmd_setup() -> None:
    token = env("INPUT_TOKEN")
    if token:
        # The runner hides this command from the log and masks the value from then on.
        for line in token.splitlines():
            if line.strip():
                print("::add-mask::%s" % line)
    given_input = env("INPUT_INPUT").strip()
    uris = env("INPUT_URIS")
    if given_input and uris.strip():
        raise ActionError("give either `input` or `uris`, not both")
    if not given_input and not uris.strip():
        raise ActionError("give `input` (a file in the workspace) or `uris` (one `mast:` URI a line)")
    for name in ("INPUT_CACHE", "INPUT_CLOUD", "INPUT_FAIL_ON_ERROR"):
        truthy(env(name), name[len("INPUT_") :].lower().replace("_", "-"))
    jobs = env("INPUT_JOBS").strip()
    if jobs and not (jobs == "auto" or jobs.isdigit()):
        raise ActionError("input `jobs` must be a number or `auto`, not `%s`" % jobs)
    try:
        shlex.split(env("INPUT_ARGS"))
    except ValueError as e:
        raise ActionError("input `args` does not parse as shell words: %s" % e)
    if not env("INPUT_DEST").strip():
        raise ActionError("input `dest` is empty")
    work = runner_temp()
    os.makedirs(work, exist_ok=True)
    if given_input:
        path = given_input
        if not os.path.isabs(path):
            path = os.path.join(env("GITHUB_WORKSPACE", os.getcwd()), path)
        if not os.path.isfile(path):
            raise ActionError("input `%s` is not a file" % given_input)
    else:
        path = os.path.join(work, "uris.txt")
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(uris if uris.endswith("\n") else uris + "\n")
    action_path = env("GITHUB_ACTION_PATH")
    set_outputs(
        {
            "input-file": path,
            "input-hash": sha256_file(path)[:32],
            "source-hash": source_hash(action_path)[:32] if action_path else "none",
            "wheel-dir": os.path.join(work, "wheel"),
        }
    )


# ---------------------------------------------------------------- install


def venv_bin(venv: str, name: str) -> str:
    if os.name == "nt":
        return os.path.join(venv, "Scripts", name + ".exe")
    return os.path.join(venv, "bin", name)


def run(argv: List[str]) -> None:
    print("+ " + " ".join(shlex.quote(a) for a in argv), flush=True)
    subprocess.run(argv, check=True)


def cmd_install() -> None:
    version = env("INPUT_VERSION").strip()
    if version and not re.fullmatch(r"[0-9A-Za-z.+!-]+", version):
        raise ActionError("input `version` must be a version such as `0.2.0`, not `%s`" % version)
    work = runner_temp()
    venv = os.path.join(work, "venv")
    run([sys.executable, "-m", "venv", venv])
    py = venv_bin(venv, "python")
    pip = [py, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = False
    if version:
        run(pip + ["install", "mastdl==" + version])
    else:
        wheel_dir = env("WHEEL_DIR") or os.path.join(work, "wheel")
        if not glob.glob(os.path.join(wheel_dir, "mastdl-*.whl")):
            # A wheel of the action's own source: maturin (from PyPI) and Rust
            # (on GitHub's runners) build it; the cache step keeps it.
            run(pip + ["wheel", "--no-deps", "--wheel-dir", wheel_dir, env("GITHUB_ACTION_PATH")])
            built = True
        run(pip + ["install", "--no-index", "--find-links", wheel_dir, "mastdl"])
    binary = venv_bin(venv, "mastdl")
    out = subprocess.run([binary, "--version"], check=True, capture_output=True, text=True).stdout
    words = out.split()
    if len(words) < 2:
        raise ActionError("`mastdl --version` printed `%s`" % out.strip())
    print("installed %s" % out.strip())
    set_outputs({"bin": binary, "version": words[1], "built": "true" if built else "false"})


# ---------------------------------------------------------------- cache-key


def cmd_cache_key() -> None:
    suffix = re.sub(r"[^0-9A-Za-z._-]+", "_", env("INPUT_CACHE_KEY").strip())[:100]
    parts = ["mastdl", env("RUNNER_OS", "os").lower(), env("MASTDL_VERSION", "unknown")]
    if suffix:
        parts.append(suffix)
    base = "-".join(parts) + "-"
    same_input = base + env("INPUT_HASH") + "-"
    # A new entry per run that added files (cache entries cannot be overwritten);
    # the restore prefixes find the newest one for this input, else for any input.
    key = "%s%s-%s" % (same_input, env("GITHUB_RUN_ID", "0"), env("GITHUB_RUN_ATTEMPT", "1"))
    set_outputs({"key": key, "same-input": same_input, "restore-keys": same_input + "\n" + base})


# ---------------------------------------------------------------- fetch


#: Characters with a meaning inside a Markdown table cell (the rest matter only at a line's start).
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md_escape(text: str) -> str:
    """Text as it should read inside a Markdown table cell: no markup, no HTML, one line."""
    text = " ".join(str(text).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return ("%d %s" % (size, unit)) if unit == "B" else ("%.1f %s" % (size, unit))
        size /= 1024
    return "%d B" % n


def summary_markdown(manifest: Optional[dict], code: int, cache_line: str) -> str:
    meaning = EXIT_MEANINGS.get(code, "unexpected exit code")
    if manifest is None:
        return (
            "### mastdl: no manifest\n\n"
            "`mastdl fetch` exited with code %d (%s) before writing `MANIFEST.json`; "
            "its messages are in this step's log.\n\n%s\n\n" % (code, md_escape(meaning), cache_line)
        )
    counts = {k: int(manifest.get(k) or 0) for k in ("requested", "complete", "skipped", "failed", "interrupted", "bytes")}
    head = "%d complete, %d skipped, %d failed" % (counts["complete"], counts["skipped"], counts["failed"])
    if counts["interrupted"]:
        head += ", %d interrupted" % counts["interrupted"]
    lines = [
        "### mastdl: %s" % head,
        "",
        "| requested | complete | skipped | failed | interrupted | downloaded | exit |",
        "|---:|---:|---:|---:|---:|---:|---|",
        "| %d | %d | %d | %d | %d | %s | %d (%s) |"
        % (
            counts["requested"],
            counts["complete"],
            counts["skipped"],
            counts["failed"],
            counts["interrupted"],
            human_bytes(counts["bytes"]),
            code,
            md_escape(meaning),
        ),
        "",
        cache_line,
        "",
    ]
    bad = [f for f in manifest.get("files") or [] if f.get("status") in ("FAILED", "INTERRUPTED")]
    if bad:
        lines += ["#### Failed files", "", "| file | status | message |", "|---|---|---|"]
        for f in bad[:SUMMARY_FAILED_ROWS]:
            message = str(f.get("message") or "")
            if len(message) > SUMMARY_MESSAGE_CHARS:
                message = message[: SUMMARY_MESSAGE_CHARS - 1] + "…"
            lines.append(
                "| %s | %s | %s |"
                % (md_escape(f.get("uri") or f.get("path") or "?"), md_escape(f.get("status")), md_escape(message))
            )
        if len(bad) > SUMMARY_FAILED_ROWS:
            lines.append("")
            lines.append("… and %d more: see `MANIFEST.HTML` in DEST." % (len(bad) - SUMMARY_FAILED_ROWS))
        lines.append("")
    return "\n".join(lines) + "\n"


def file_identity(path: str) -> Optional[tuple]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def cmd_fetch() -> None:
    binary = env("MASTDL_BIN")
    if not binary:
        raise ActionError("the install step gave no mastdl binary")
    dest = env("INPUT_DEST").strip()
    argv = [binary, "fetch", "--dest", dest, "--progress", "never"]
    if truthy(env("INPUT_CLOUD"), "cloud"):
        argv.append("--cloud")
    jobs = env("INPUT_JOBS").strip()
    if jobs:
        argv += ["--jobs", jobs]
    argv += shlex.split(env("INPUT_ARGS"))
    argv += ["--", env("INPUT_FILE")]
    # The token reaches mastdl through MAST_API_TOKEN (the step's environment) only.
    print("+ " + " ".join(shlex.quote(a) for a in argv), flush=True)
    manifest_path = os.path.abspath(os.path.join(dest, "MANIFEST.json"))
    # A manifest restored from the cache, which this run did not rewrite (an
    # input error, a locked DEST), says nothing about this run.
    before = file_identity(manifest_path)
    code = subprocess.run(argv).returncode
    manifest = None
    if os.path.isfile(manifest_path) and file_identity(manifest_path) != before:
        try:
            with open(manifest_path, encoding="utf-8") as f:
                manifest = json.load(f)
        except (OSError, ValueError) as e:
            print("::warning::%s" % command_data("cannot read %s: %s" % (manifest_path, e)))
    matched = env("CACHE_MATCHED_KEY")
    same_input = env("CACHE_SAME_INPUT")
    cache_hit = bool(matched) and bool(same_input) and matched.startswith(same_input)
    if not truthy(env("INPUT_CACHE"), "cache"):
        cache_line = "Cache: off."
    elif cache_hit:
        cache_line = "Cache: DEST restored from a run with the same input (%s)." % md_escape(matched)
    elif matched:
        cache_line = "Cache: DEST restored from a run with another input (%s)." % md_escape(matched)
    else:
        cache_line = "Cache: nothing to restore."
    counts = {k: str(int((manifest or {}).get(k) or 0)) for k in ("complete", "skipped", "failed", "bytes")}
    set_outputs(
        dict(
            counts,
            manifest=manifest_path if manifest is not None else "",
            **{"cache-hit": "true" if cache_hit else "false", "exit-code": str(code)},
        )
    )
    append_summary(summary_markdown(manifest, code, cache_line))


def cmd_finish() -> None:
    code = int(env("EXIT_CODE") or "1")
    if code != 0 and truthy(env("INPUT_FAIL_ON_ERROR"), "fail-on-error"):
        meaning = EXIT_MEANINGS.get(code, "unexpected exit code")
        print("::error title=mastdl::mastdl fetch exited with code %d (%s); see the job summary" % (code, meaning))
        sys.exit(code if 0 < code < 256 else 1)


COMMANDS = {
    "setup": cmd_setup,
    "install": cmd_install,
    "cache-key": cmd_cache_key,
    "fetch": cmd_fetch,
    "finish": cmd_finish,
}


def main(argv: List[str]) -> int:
    if len(argv) != 1 or argv[0] not in COMMANDS:
        print("usage: mastdl_action.py {%s}" % ",".join(COMMANDS), file=sys.stderr)
        return 2
    try:
        COMMANDS[argv[0]]()
    except ActionError as e:
        print("::error title=mastdl action::%s" % command_data(e), flush=True)
        return 1
    except subprocess.CalledProcessError as e:
        print("::error title=mastdl action::%s" % command_data(e), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
