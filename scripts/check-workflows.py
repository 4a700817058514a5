#!/usr/bin/env python3
"""Checks every GitHub Actions workflow in .github/workflows/.

Each file must parse as YAML (duplicate keys are errors, as on GitHub) and be
a mapping with `on` and a non-empty `jobs` mapping; every job needs `runs-on`
(or `uses`, for a reusable workflow) and a non-empty list of `steps`, each
step `uses` or `run` (not both); `needs` must name jobs of the same file.
This is a structural check, not actionlint: it does not know the schema of
every key or of expressions.

Usage: scripts/check-workflows.py [FILE...]   (default: .github/workflows/*.y*ml)

PyYAML is used if it can be imported; otherwise it is pip-installed into a
temporary virtualenv (PyPI or a pip cache must be reachable) and the script
runs again with that interpreter. Exits 1 on any problem, 2 on a setup error.
"""

import glob
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REEXEC_FLAG = "MASTDL_CHECK_WORKFLOWS_REEXEC"


def load_yaml_module():
    try:
        import yaml  # noqa: F401

        return yaml
    except ImportError:
        pass
    if os.environ.get(REEXEC_FLAG):
        print("check-workflows: PyYAML still missing after installing it", file=sys.stderr)
        sys.exit(2)
    with tempfile.TemporaryDirectory(prefix="check-workflows-") as tmp:
        print("check-workflows: PyYAML not importable; installing it into %s" % tmp)
        venv = os.path.join(tmp, "venv")
        subprocess.check_call([sys.executable, "-m", "venv", venv])
        bindir = "Scripts" if os.name == "nt" else "bin"
        python = os.path.join(venv, bindir, "python")
        subprocess.check_call(
            [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "pyyaml"]
        )
        env = dict(os.environ, **{REEXEC_FLAG: "1"})
        sys.exit(subprocess.call([python, os.path.abspath(__file__)] + sys.argv[1:], env=env))


def strict_loader(yaml):
    """A SafeLoader that refuses duplicate keys (GitHub refuses them too)."""

    class Loader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, "duplicate key `%s`" % key_node.value, key_node.start_mark
                )
            seen.add(key)
        return loader.construct_mapping(node, deep=deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return Loader


def check(doc):
    """Returns the problems of one parsed workflow."""
    if not isinstance(doc, dict):
        return ["not a mapping at the top level"]
    problems = []
    # YAML 1.1 (PyYAML) reads the bare key `on` as the boolean True.
    if "on" not in doc and True not in doc:
        problems.append("no `on` key")
    jobs = doc.get("jobs")
    if not isinstance(jobs, dict) or not jobs:
        problems.append("no `jobs` mapping (or it is empty)")
        return problems
    for name, job in jobs.items():
        where = "job `%s`" % name
        if not isinstance(job, dict):
            problems.append("%s: not a mapping" % where)
            continue
        needs = job.get("needs", [])
        for need in [needs] if isinstance(needs, str) else needs or []:
            if need not in jobs:
                problems.append("%s: needs unknown job `%s`" % (where, need))
        if "uses" in job:  # a reusable workflow call has no steps
            continue
        if "runs-on" not in job:
            problems.append("%s: no `runs-on`" % where)
        steps = job.get("steps")
        if not isinstance(steps, list) or not steps:
            problems.append("%s: no `steps` list" % where)
            continue
        for i, step in enumerate(steps, 1):
            if not isinstance(step, dict):
                problems.append("%s, step %d: not a mapping" % (where, i))
            elif ("uses" in step) == ("run" in step):
                problems.append("%s, step %d: needs exactly one of `uses` and `run`" % (where, i))
    return problems


def main(argv):
    yaml = load_yaml_module()
    loader = strict_loader(yaml)
    files = argv or sorted(
        glob.glob(os.path.join(ROOT, ".github", "workflows", "*.yml"))
        + glob.glob(os.path.join(ROOT, ".github", "workflows", "*.yaml"))
    )
    if not files:
        print("check-workflows: no workflow files found", file=sys.stderr)
        return 1
    failed = 0
    for path in files:
        rel = os.path.relpath(path, ROOT) if os.path.abspath(path).startswith(ROOT + os.sep) else path
        try:
            with open(path, encoding="utf-8") as f:
                doc = yaml.load(f, Loader=loader)
            problems = check(doc)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            problems = [str(e).replace("\n", "\n    ")]
        if problems:
            failed += 1
            print("FAIL %s" % rel)
            for p in problems:
                print("    " + p)
        else:
            print("ok   %s (%d jobs)" % (rel, len(doc["jobs"])))
    print("check-workflows: %d passed, %d failed" % (len(files) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
