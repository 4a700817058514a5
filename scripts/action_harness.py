#!/usr/bin/env python3
"""Runs the steps of action.yml as a GitHub runner would, on this machine.

`ActionRunner.run(inputs)` parses action.yml (PyYAML), fills in the defaults
of the inputs, and for each step in order: evaluates its `if:` (a small
evaluator for the expressions the action uses: contexts `inputs`, `steps`,
`github`, `runner`; `==`, `!=`, `&&`, `||`, `!`, parentheses, literals and the
status functions), substitutes `${{ }}` in its `env:` and `with:`, then

  - runs a `run:` step with bash (`bash --noprofile --norc -eo pipefail`, as
    `shell: bash` does) in GITHUB_WORKSPACE, with GITHUB_OUTPUT, GITHUB_ENV,
    GITHUB_PATH, GITHUB_STEP_SUMMARY, RUNNER_TEMP, GITHUB_ACTION_PATH and
    GITHUB_WORKSPACE set; reads its outputs back from GITHUB_OUTPUT, applies
    GITHUB_ENV/GITHUB_PATH to later steps, and handles `::add-mask::` as the
    runner does (the command line is not logged);
  - stands in for `actions/cache/restore` and `actions/cache/save` with a
    folder copy into or out of a cache folder that outlives the run (exact key
    first, then the newest entry under each restore prefix), with the same
    outputs (`cache-hit`, `cache-primary-key`, `cache-matched-key`);
  - stands in for the step with id `install` (which would pip-install mastdl)
    with an already-built binary: outputs `bin`, `version`, `built=false`
    (unless `stand_in_install=False`: then the step runs, and a test seeds
    the wheel cache with a wheel so that pip needs no index).

A `run:` script holding `${{` is refused: the action must pass inputs through
`env:`. The result holds the action's outputs, each step's outcome, the job
summary, the whole log (unmasked, so a test can look for a secret in it), the
masks registered and what was written to GITHUB_ENV/GITHUB_PATH.

Usage (a demonstration against the mock archive; scripts/test_action.py has
the assertions):

  scripts/action_harness.py --binary target/debug/mastdl
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Variables from the caller's environment that never reach a step.
SCRUBBED_ENV = re.compile(r"^(MAST_API_TOKEN|MASTDL_.*|GITHUB_.*|RUNNER_.*|INPUT_.*|ACTIONS_.*|CI)$")


# ------------------------------------------------------------- expressions


class ExpressionError(Exception):
    pass


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op>==|!=|&&|\|\||!|\(|\)|,)"
    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)*))"
)


def _tokens(text: str) -> List[Tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExpressionError("cannot parse %r at %d" % (text, pos))
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def _truthy(v: Any) -> bool:
    return not (v is None or v is False or v == "" or v == 0)


def _loose_eq(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()  # GitHub compares strings ignoring case
    if a is None or b is None:
        return a is b or (a in ("", None) and b in ("", None))
    return str(a).lower() == str(b).lower()


class Evaluator:
    """Evaluates the expressions action.yml uses against a context."""

    def __init__(self, contexts: Dict[str, Any], status: str = "success") -> None:
        self.contexts = contexts
        self.status = status  # "success" or "failure": the job so far

    def evaluate(self, text: str) -> Any:
        self.toks = _tokens(text)
        self.i = 0
        value = self._or()
        if self.i != len(self.toks):
            raise ExpressionError("trailing tokens in %r" % text)
        return value

    def _peek(self) -> Optional[Tuple[str, str]]:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def _take(self, value: Optional[str] = None) -> Tuple[str, str]:
        tok = self._peek()
        if tok is None or (value is not None and tok[1] != value):
            raise ExpressionError("expected %r" % value)
        self.i += 1
        return tok

    def _or(self) -> Any:
        v = self._and()
        while self._peek() == ("op", "||"):
            self._take()
            rhs = self._and()
            v = v if _truthy(v) else rhs
        return v

    def _and(self) -> Any:
        v = self._cmp()
        while self._peek() == ("op", "&&"):
            self._take()
            rhs = self._cmp()
            v = rhs if _truthy(v) else v
        return v

    def _cmp(self) -> Any:
        v = self._unary()
        while self._peek() in (("op", "=="), ("op", "!=")):
            op = self._take()[1]
            rhs = self._unary()
            v = _loose_eq(v, rhs) if op == "==" else not _loose_eq(v, rhs)
        return v

    def _unary(self) -> Any:
        if self._peek() == ("op", "!"):
            self._take()
            return not _truthy(self._unary())
        return self._primary()

    def _primary(self) -> Any:
        kind, text = self._take()
        if kind == "op" and text == "(":
            v = self._or()
            self._take(")")
            return v
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind != "ident":
            raise ExpressionError("unexpected %r" % text)
        if self._peek() == ("op", "("):
            self._take()
            self._take(")")
            return {
                "always": True,
                "success": self.status == "success",
                "failure": self.status == "failure",
                "cancelled": False,
            }[text]
        if text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text]
        node: Any = self.contexts
        for part in text.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node

    def interpolate(self, text: Any) -> str:
        if not isinstance(text, str):
            return "" if text is None else str(text).lower() if isinstance(text, bool) else str(text)

        def one(m: "re.Match[str]") -> str:
            v = self.evaluate(m.group(1))
            if v is None:
                return ""
            if isinstance(v, bool):
                return "true" if v else "false"
            return str(v)

        return re.sub(r"\$\{\{(.*?)\}\}", one, text)

    def condition(self, text: Any) -> bool:
        if text is None:
            return self.status == "success"
        if isinstance(text, bool):
            return text and self.status == "success"
        expr = str(text).strip()
        m = re.fullmatch(r"\$\{\{(.*)\}\}", expr, re.S)
        if m:
            expr = m.group(1)
        if not re.search(r"\b(always|success|failure|cancelled)\s*\(", expr):
            expr = "success() && (%s)" % expr
        return _truthy(self.evaluate(expr))


# ---------------------------------------------------------------- the runner


@dataclass
class StepResult:
    name: str
    id: Optional[str]
    outcome: str  # success | failure | skipped
    outputs: Dict[str, str] = field(default_factory=dict)
    log: str = ""


@dataclass
class RunResult:
    outputs: Dict[str, str]
    steps: List[StepResult]
    summary: str
    log: str
    masks: List[str]
    env_file: str
    path_file: str
    success: bool

    def step(self, step_id: str) -> StepResult:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)


def parse_output_file(text: str) -> Dict[str, str]:
    """Reads name=value and name<<DELIMITER ... DELIMITER lines, as the runner does."""
    out: Dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip():
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            value: List[str] = []
            while i < len(lines) and lines[i] != delim:
                value.append(lines[i])
                i += 1
            if i >= len(lines):
                raise ValueError("unterminated output %r" % name)
            i += 1
            out[name] = "\n".join(value)
        elif "=" in line:
            name, value_s = line.split("=", 1)
            out[name] = value_s
        else:
            raise ValueError("bad output line %r" % line)
    return out


def mastdl_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], check=True, capture_output=True, text=True).stdout
    return out.split()[1]


class ActionRunner:
    """Runs action.yml's steps; one instance keeps one cache across runs (jobs)."""

    def __init__(self, binary: str, cache_root: str, action_dir: str = ROOT, stand_in_install: bool = True) -> None:
        self.stand_in_install = stand_in_install
        self.binary = os.path.abspath(binary)
        self.version = mastdl_version(self.binary)
        self.cache_root = cache_root
        self.action_dir = action_dir
        os.makedirs(cache_root, exist_ok=True)
        with open(os.path.join(action_dir, "action.yml"), encoding="utf-8") as f:
            self.action = yaml.safe_load(f)
        self.run_counter = 0

    # -- cache stand-ins

    def _index(self) -> List[dict]:
        path = os.path.join(self.cache_root, "index.json")
        if not os.path.exists(path):
            return []
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def _cache_restore(self, with_: Dict[str, str], workspace: str, log: List[str]) -> Dict[str, str]:
        key = with_["key"]
        prefixes = [p.strip() for p in with_.get("restore-keys", "").split("\n") if p.strip()]
        entries = self._index()
        match = next((e for e in entries if e["key"] == key), None)
        for prefix in prefixes:
            if match:
                break
            candidates = [e for e in entries if e["key"].startswith(prefix)]
            match = candidates[-1] if candidates else None  # the newest
        out = {"cache-primary-key": key, "cache-hit": "false", "cache-matched-key": ""}
        if match:
            target = os.path.join(workspace, with_["path"])
            shutil.copytree(os.path.join(self.cache_root, match["dir"]), target, dirs_exist_ok=True, symlinks=True)
            out["cache-matched-key"] = match["key"]
            out["cache-hit"] = "true" if match["key"] == key else "false"
            log.append("Cache restored from key: %s" % match["key"])
        else:
            log.append("Cache not found for input keys: %s" % ", ".join([key] + prefixes))
        return out

    def seed_cache(self, key: str, folder: str) -> None:
        """Adds a cache entry, as an earlier job's save would have."""
        self._cache_save({"key": key, "path": os.path.abspath(folder)}, "/", [])

    def _cache_save(self, with_: Dict[str, str], workspace: str, log: List[str]) -> Dict[str, str]:
        key = with_["key"]
        entries = self._index()
        if any(e["key"] == key for e in entries):
            log.append("Warning: cache entry %s already exists; not saved" % key)
            return {}
        source = os.path.join(workspace, with_["path"])
        if not os.path.exists(source):
            log.append("Warning: path %s does not exist; not saved" % with_["path"])
            return {}
        name = "entry-%d" % len(entries)
        shutil.copytree(source, os.path.join(self.cache_root, name), symlinks=True)
        entries.append({"key": key, "dir": name})
        with open(os.path.join(self.cache_root, "index.json"), "w", encoding="utf-8") as f:
            json.dump(entries, f)
        log.append("Cache saved with key: %s" % key)
        return {}

    # -- one run of the action (one job)

    def run(
        self,
        inputs: Dict[str, str],
        workspace: str,
        extra_env: Optional[Dict[str, str]] = None,
    ) -> RunResult:
        self.run_counter += 1
        declared = self.action.get("inputs") or {}
        unknown = set(inputs) - set(declared)
        if unknown:
            raise ValueError("inputs not declared in action.yml: %s" % sorted(unknown))
        values = {name: str((spec or {}).get("default", "")) for name, spec in declared.items()}
        values.update({k: str(v) for k, v in inputs.items()})

        job = tempfile.mkdtemp(prefix="action-job-")
        runner_temp = os.path.join(job, "_temp")
        os.makedirs(runner_temp)
        summary_all: List[str] = []
        masks: List[str] = []
        log_all: List[str] = []
        env_file_all: List[str] = []
        path_file_all: List[str] = []
        added_env: Dict[str, str] = {}
        added_path: List[str] = []
        steps_ctx: Dict[str, Dict[str, Any]] = {}
        results: List[StepResult] = []
        status = "success"
        base_env = {k: v for k, v in os.environ.items() if not SCRUBBED_ENV.match(k)}
        base_env.update(
            {
                "CI": "true",
                "GITHUB_ACTIONS": "true",
                "GITHUB_WORKSPACE": workspace,
                "GITHUB_ACTION_PATH": self.action_dir,
                "GITHUB_RUN_ID": str(1000 + self.run_counter),
                "GITHUB_RUN_ATTEMPT": "1",
                "RUNNER_TEMP": runner_temp,
                "RUNNER_OS": "Linux",
                "RUNNER_ARCH": "X64",
                "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost",
            }
        )
        base_env.update(extra_env or {})
        contexts = {
            "inputs": values,
            "steps": steps_ctx,
            "github": {
                "action_path": self.action_dir,
                "workspace": workspace,
                "run_id": base_env["GITHUB_RUN_ID"],
                "run_attempt": "1",
                "action_ref": "",
            },
            "runner": {"os": "Linux", "arch": "X64", "temp": runner_temp},
        }
        for index, step in enumerate(self.action["runs"]["steps"]):
            name = step.get("name") or step.get("uses") or "step %d" % index
            sid = step.get("id")
            ev = Evaluator(contexts, status)
            if not ev.condition(step.get("if")):
                results.append(StepResult(name, sid, "skipped"))
                if sid:
                    steps_ctx[sid] = {"outputs": {}, "outcome": "skipped", "conclusion": "skipped"}
                continue
            log: List[str] = ["##[group]Run %s" % name]
            outputs: Dict[str, str] = {}
            outcome = "success"
            uses = step.get("uses")
            with_ = {k: ev.interpolate(v) for k, v in (step.get("with") or {}).items()}
            if uses:
                if uses.startswith("actions/cache/restore@"):
                    outputs = self._cache_restore(with_, workspace, log)
                elif uses.startswith("actions/cache/save@"):
                    outputs = self._cache_save(with_, workspace, log)
                else:
                    raise ValueError("the harness has no stand-in for %s" % uses)
            elif sid == "install" and self.stand_in_install:
                # Stand-in: pip would install mastdl; use the binary built here.
                outputs = {"bin": self.binary, "version": self.version, "built": "false"}
                log.append("(harness) install stood in for by %s %s" % (self.binary, self.version))
            else:
                script = step["run"]
                if "${{" in script:
                    raise ValueError("step %r has an expression inside run:" % name)
                if step.get("shell") != "bash":
                    raise ValueError("step %r: the harness runs `shell: bash` steps only" % name)
                files = {}
                for var in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH", "GITHUB_STEP_SUMMARY"):
                    fd, files[var] = tempfile.mkstemp(prefix=var.lower() + "-", dir=runner_temp)
                    os.close(fd)
                script_path = os.path.join(runner_temp, "step-%d.sh" % index)
                with open(script_path, "w", encoding="utf-8") as f:
                    f.write(script)
                step_env = dict(base_env)
                step_env.update(added_env)
                if added_path:
                    step_env["PATH"] = os.pathsep.join(list(reversed(added_path)) + [step_env.get("PATH", "")])
                step_env.update({k: ev.interpolate(v) for k, v in (step.get("env") or {}).items()})
                step_env.update(files)
                proc = subprocess.run(
                    ["bash", "--noprofile", "--norc", "-eo", "pipefail", script_path],
                    cwd=workspace,
                    env=step_env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    timeout=600,
                )
                for line in proc.stdout.decode("utf-8", "replace").splitlines():
                    if line.startswith("::add-mask::"):
                        masks.append(line[len("::add-mask::") :])
                        continue  # the runner does not log this command
                    log.append(line)
                if proc.returncode != 0:
                    outcome = "failure"
                    log.append("##[error]Process completed with exit code %d." % proc.returncode)

                def read(var: str) -> str:
                    with open(files[var], encoding="utf-8") as f:
                        return f.read()

                outputs = parse_output_file(read("GITHUB_OUTPUT"))
                env_text, path_text = read("GITHUB_ENV"), read("GITHUB_PATH")
                env_file_all.append(env_text)
                path_file_all.append(path_text)
                added_env.update(parse_output_file(env_text))
                added_path.extend(p for p in path_text.splitlines() if p.strip())
                summary_all.append(read("GITHUB_STEP_SUMMARY"))
            log.append("##[endgroup]")
            log_all.extend(log)
            results.append(StepResult(name, sid, outcome, outputs, "\n".join(log)))
            if sid:
                steps_ctx[sid] = {"outputs": outputs, "outcome": outcome, "conclusion": outcome}
            if outcome == "failure":
                status = "failure"
        ev = Evaluator(contexts, status)
        action_outputs = {
            name: ev.interpolate((spec or {}).get("value", "")) for name, spec in (self.action.get("outputs") or {}).items()
        }
        shutil.rmtree(job, ignore_errors=True)
        return RunResult(
            outputs=action_outputs,
            steps=results,
            summary="".join(summary_all),
            log="\n".join(log_all),
            masks=masks,
            env_file="".join(env_file_all),
            path_file="".join(path_file_all),
            success=status == "success",
        )


# ---------------------------------------------------------------- demo


def main(argv: List[str]) -> int:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from mock_archive import DEFAULT_TOKEN, MockArchive

    parser = argparse.ArgumentParser(description="Run action.yml twice against the mock archive and print what it reports.")
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "debug", "mastdl"))
    args = parser.parse_args(argv)
    archive = MockArchive()
    work = tempfile.mkdtemp(prefix="action-demo-")
    try:
        runner = ActionRunner(args.binary, os.path.join(work, "cache"))
        uris = "\n".join(
            [
                "mast:HST/product/ib1f01a1q_flt.fits",
                "mast:JWST/product/jw01234-o001_t001_nircam_clear-f200w_i2d.fits",
                "mast:TESS/protected/tess2019_lc.fits",
                "mast:HST/missing/ib9z99zzq_raw.fits",
                "mast:HST/echo/ib1f01b2q_spt.fits",
            ]
        )
        runs = [
            ("mixed input, with the token", {"uris": uris, "token": DEFAULT_TOKEN}),
            ("the same input in another job (DEST from the cache)", {"uris": uris, "token": DEFAULT_TOKEN}),
            ("only files that download, no token", {"uris": "\n".join(uris.split("\n")[:2])}),
            ("the same again in another job (DEST from the cache)", {"uris": "\n".join(uris.split("\n")[:2])}),
        ]
        for n, (title, inputs) in enumerate(runs, 1):
            workspace = os.path.join(work, "workspace-%d" % n)
            os.makedirs(workspace)
            before = archive.stats()["requests"]
            inputs = dict(inputs, args="--base-url %s --retries 0" % archive.url)
            inputs["fail-on-error"] = "false"
            result = runner.run(inputs, workspace)
            print("=== run %d: %s; requests to the archive: %d" % (n, title, archive.stats()["requests"] - before))
            print("--- steps: " + ", ".join("%s: %s" % (st.name, st.outcome) for st in result.steps))
            print("--- outputs")
            for k, v in result.outputs.items():
                print("%s=%s" % (k, v.replace(work, "$WORK")))
            print("--- job summary")
            print(result.summary.replace(work, "$WORK"))
            leaked = any(DEFAULT_TOKEN in t for t in [json.dumps(result.outputs), result.summary, result.log])
            print("--- token in outputs/summary/log: %s; masks registered: %d" % (leaked, len(result.masks)))
    finally:
        archive.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
