#!/usr/bin/env python3
"""Tests of the GitHub Action (action.yml), run as a runner would run it.

scripts/action_harness.py runs the action's steps (the cache steps stood in
for by a folder copy, the install step by the mastdl binary built here)
against scripts/mock_archive.py on 127.0.0.1, which counts requests. No
network beyond loopback.

  MASTDL_BIN=target/debug/mastdl python3 -m unittest scripts/test_action.py

MASTDL_BIN defaults to target/debug/mastdl. Needs PyYAML (.ci/run installs it
into its tools virtualenv).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import yaml  # noqa: E402

from action_harness import ActionRunner, Evaluator, parse_output_file  # noqa: E402
from mock_archive import DEFAULT_TOKEN, MockArchive  # noqa: E402

_spec = importlib.util.spec_from_file_location("mastdl_action", os.path.join(ROOT, ".github", "action", "mastdl_action.py"))
mastdl_action = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mastdl_action)

BINARY = os.environ.get("MASTDL_BIN") or os.path.join(ROOT, "target", "debug", "mastdl")

GOOD = [
    "mast:HST/product/ib1f01a1q_flt.fits",
    "mast:JWST/product/jw01234-o001_t001_nircam_clear-f200w_i2d.fits",
    "mast:TESS/product/tess2019-s0001-0000000012345678-0120-s_lc.fits",
]
PROTECTED = "mast:TESS/protected/tess2020-s0020-0000000087654321-0120-s_lc.fits"
MISSING = "mast:HST/missing/ib9z99zzq_raw.fits"
ECHO = "mast:HST/echo/ib1f01b2q_spt.fits"


def files_under(folder: str) -> dict:
    out = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


class ActionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        if not os.path.isfile(BINARY):
            raise unittest.SkipTest("no mastdl binary at %s (cargo build --locked)" % BINARY)
        cls.archive = MockArchive()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.archive.close()

    def setUp(self) -> None:
        self.work = tempfile.mkdtemp(prefix="action-test-")
        self.runner = ActionRunner(BINARY, os.path.join(self.work, "cache"))
        self.workspaces = 0

    def tearDown(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

    def workspace(self) -> str:
        self.workspaces += 1
        path = os.path.join(self.work, "workspace-%d" % self.workspaces)
        os.makedirs(path)
        return path

    def run_action(self, inputs: dict, workspace: str = None):
        inputs = dict(inputs)
        inputs["args"] = ("--base-url %s --retries 0 " % self.archive.url) + inputs.get("args", "")
        before = self.archive.stats()
        result = self.runner.run(inputs, workspace or self.workspace())
        after = self.archive.stats()
        result.requests = after["requests"] - before["requests"]
        result.downloads = after["downloads"] - before["downloads"]
        return result

    def step_outcomes(self, result) -> dict:
        return {s.name: s.outcome for s in result.steps}

    # ------------------------------------------------------------------

    def test_outputs_summary_and_the_token_never_shown(self) -> None:
        ws = self.workspace()
        result = self.run_action(
            {"uris": "\n".join(GOOD + [PROTECTED, MISSING, ECHO]), "token": DEFAULT_TOKEN, "fail-on-error": "false"},
            ws,
        )
        self.assertTrue(result.success, result.log)
        manifest = os.path.join(ws, "mastDownload", "MANIFEST.json")
        with open(manifest, encoding="utf-8") as f:
            recorded = json.load(f)
        self.assertEqual(
            result.outputs,
            {
                "cache-hit": "false",
                "manifest": manifest,
                "complete": "4",
                "skipped": "0",
                "failed": "2",
                "bytes": str(recorded["bytes"]),
            },
        )
        self.assertGreater(recorded["bytes"], 0)
        # The token reached the archive (the protected file came) ...
        self.assertGreater(self.archive.stats()["authorized"], 0)
        # ... was masked, and appears in no output, summary, log or file in DEST.
        self.assertEqual(result.masks, [DEFAULT_TOKEN])
        for where, text in [
            ("outputs", json.dumps(result.outputs)),
            ("summary", result.summary),
            ("log", result.log),
            ("GITHUB_ENV", result.env_file),
        ]:
            self.assertNotIn(DEFAULT_TOKEN, text, where)
        for name, data in files_under(os.path.join(ws, "mastDownload")).items():
            self.assertNotIn(DEFAULT_TOKEN.encode(), data, name)
        # Nothing written to GITHUB_ENV or GITHUB_PATH (the binary's path travels as a step output).
        self.assertEqual((result.env_file, result.path_file), ("", ""))
        # The job summary: counts, and each failed file with its message, escaped.
        self.assertIn("### mastdl: 4 complete, 0 skipped, 2 failed", result.summary)
        self.assertIn("| 6 | 4 | 0 | 2 | 0 |", result.summary)
        self.assertIn("#### Failed files", result.summary)
        self.assertIn("| mast:HST/missing/ib9z99zzq\\_raw.fits | FAILED | HTTP 404", result.summary)
        self.assertIn("mast:HST/echo/ib1f01b2q\\_spt.fits | FAILED | HTTP 403", result.summary)
        self.assertNotIn("ib1f01a1q", result.summary)  # complete files are not listed
        # The run added files: DEST was saved.
        self.assertEqual(self.step_outcomes(result)["Save DEST (this run added files)"], "success")
        self.assertIn("Cache saved with key: mastdl-linux-", result.log)

    def test_a_cached_complete_dest_makes_no_request(self) -> None:
        inputs = {"uris": "\n".join(GOOD)}
        first = self.run_action(inputs)
        self.assertTrue(first.success, first.log)
        self.assertEqual((first.outputs["complete"], first.outputs["cache-hit"]), ("3", "false"))
        self.assertEqual(first.downloads, 3)
        # Another job: a fresh workspace, the cache restored.
        second = self.run_action(inputs)
        self.assertTrue(second.success, second.log)
        self.assertEqual(second.requests, 0, "a cached complete DEST must make no request")
        self.assertEqual(
            {k: second.outputs[k] for k in ("cache-hit", "complete", "skipped", "failed", "bytes")},
            {"cache-hit": "true", "complete": "0", "skipped": "3", "failed": "0", "bytes": "0"},
        )
        # Nothing added: nothing saved.
        self.assertEqual(self.step_outcomes(second)["Save DEST (this run added files)"], "skipped")
        self.assertIn("Cache: DEST restored from a run with the same input", second.summary)
        self.assertNotIn("Failed files", second.summary)

    def test_the_cache_fills_up_across_inputs(self) -> None:
        ws = self.workspace()
        with open(os.path.join(ws, "small.txt"), "w") as f:
            f.write("\n".join(GOOD[:2]) + "\n")
        first = self.run_action({"input": "small.txt"}, ws)
        self.assertEqual(first.outputs["complete"], "2")
        # A bigger input in another job: restored from the smaller one (restore prefix).
        ws2 = self.workspace()
        with open(os.path.join(ws2, "big.txt"), "w") as f:
            f.write("\n".join(GOOD) + "\n")
        second = self.run_action({"input": "big.txt"}, ws2)
        self.assertEqual(
            {k: second.outputs[k] for k in ("cache-hit", "complete", "skipped")},
            {"cache-hit": "false", "complete": "1", "skipped": "2"},
        )
        self.assertEqual(second.downloads, 1)
        self.assertIn("restored from a run with another input", second.summary)
        # The same bigger input again: its own cache, no request.
        ws3 = self.workspace()
        shutil.copy(os.path.join(ws2, "big.txt"), os.path.join(ws3, "big.txt"))
        third = self.run_action({"input": "big.txt"}, ws3)
        self.assertEqual((third.outputs["cache-hit"], third.outputs["skipped"], third.requests), ("true", "3", 0))

    def test_cache_off_and_a_suffix(self) -> None:
        off = self.run_action({"uris": GOOD[0], "cache": "false", "dest": "data/mast"})
        self.assertEqual(self.step_outcomes(off)["Restore DEST"], "skipped")
        self.assertEqual(self.step_outcomes(off)["Save DEST (this run added files)"], "skipped")
        self.assertIn("Cache: off.", off.summary)
        self.assertTrue(off.outputs["manifest"].endswith(os.path.join("data", "mast", "MANIFEST.json")))
        keyed = self.run_action({"uris": GOOD[0], "cache-key": "calib week 12"})
        self.assertIn("Cache saved with key: mastdl-linux-%s-calib_week_12-" % self.runner.version, keyed.log)

    def test_a_failure_fails_the_step_by_default_after_saving(self) -> None:
        result = self.run_action({"uris": "\n".join([GOOD[0], MISSING])})
        self.assertFalse(result.success)
        outcomes = self.step_outcomes(result)
        self.assertEqual(outcomes["mastdl fetch"], "success")
        self.assertEqual(outcomes["Save DEST (this run added files)"], "success")
        self.assertEqual(outcomes["Result"], "failure")
        self.assertEqual((result.outputs["complete"], result.outputs["failed"]), ("1", "1"))
        self.assertIn("::error title=mastdl::mastdl fetch exited with code 1", result.log)

    def test_bad_inputs_stop_at_the_first_step(self) -> None:
        for inputs, message in [
            ({}, "give `input`"),
            ({"uris": GOOD[0], "input": "list.txt"}, "not both"),
            ({"input": "no-such-file.txt"}, "is not a file"),
            ({"uris": GOOD[0], "jobs": "many"}, "`jobs` must be"),
            ({"uris": GOOD[0], "cache": "maybe"}, "`cache` must be"),
        ]:
            result = self.run_action(inputs)
            self.assertFalse(result.success, inputs)
            self.assertEqual(result.steps[0].outcome, "failure", inputs)
            self.assertIn(message, result.log, inputs)
            self.assertEqual(result.outputs["complete"], "", inputs)

    def test_an_input_error_has_a_summary_without_manifest(self) -> None:
        result = self.run_action({"uris": "not-a-uri", "fail-on-error": "false"})
        self.assertTrue(result.success)
        self.assertEqual(result.outputs["manifest"], "")
        self.assertIn("exited with code 2", result.summary)

    def test_a_stale_manifest_from_the_cache_is_not_reported(self) -> None:
        first = self.run_action({"uris": GOOD[0]})
        self.assertEqual(first.outputs["complete"], "1")
        # Another input, DEST restored from the first (restore prefix), then an input error:
        # mastdl writes no manifest, and the restored one is not this run's.
        second = self.run_action({"uris": "not-a-uri", "fail-on-error": "false"})
        self.assertIn("restored from a run with another input", second.summary)
        self.assertEqual(second.outputs["manifest"], "")
        self.assertEqual(second.outputs["complete"], "0")
        self.assertIn("exited with code 2", second.summary)

    def test_no_input_can_inject_shell_code(self) -> None:
        marker = os.path.join(self.work, "pwned")
        for inputs in [
            {"uris": "mast:HST/product/$(touch %s).fits\n`touch %s`" % (marker, marker)},
            {"uris": GOOD[0], "args": "--retries 0 ; touch %s $(touch %s)" % (marker, marker)},
            {"uris": GOOD[0], "dest": "d$(touch %s)" % marker},
            {"uris": GOOD[0], "cache-key": "k\"; touch %s; #" % marker},
            {"uris": GOOD[0], "version": "1; touch %s" % marker},
        ]:
            inputs["fail-on-error"] = "false"
            self.run_action(inputs)
            self.assertFalse(os.path.exists(marker), inputs)

    def test_flags_reach_mastdl(self) -> None:
        ws = self.workspace()
        result = self.run_action({"uris": "\n".join(GOOD), "jobs": "2", "args": "--flat --extension _flt.fits"}, ws)
        self.assertTrue(result.success, result.log)
        self.assertIn("--jobs 2", result.log)
        self.assertEqual(result.outputs["complete"], "1")
        self.assertTrue(os.path.isfile(os.path.join(ws, "mastDownload", "ib1f01a1q_flt.fits")))

    def test_the_install_step_from_a_cached_wheel(self) -> None:
        # A stand-in wheel of the action's source (the real one takes maturin
        # and a release build): its `mastdl` script runs the binary built here.
        wheel_dir = os.path.join(self.work, "wheel")
        os.makedirs(wheel_dir)
        make_wheel(wheel_dir, "0.0.1", "#!/bin/sh\nexec %s \"$@\"\n" % shlex.quote(os.path.abspath(BINARY)))
        key = "mastdl-wheel-Linux-X64-" + mastdl_action.source_hash(ROOT)[:32]
        runner = ActionRunner(BINARY, os.path.join(self.work, "cache-install"), stand_in_install=False)
        runner.seed_cache(key, wheel_dir)
        result = runner.run({"uris": GOOD[0], "args": "--base-url %s" % self.archive.url}, self.workspace())
        self.assertTrue(result.success, result.log)
        install = result.step("install")
        self.assertIn("--no-index --find-links", install.log)
        self.assertEqual(install.outputs["version"], self.runner.version)
        self.assertEqual(install.outputs["built"], "false")
        self.assertTrue(install.outputs["bin"].endswith(os.path.join("venv", "bin", "mastdl")))
        self.assertEqual(self.step_outcomes(result)["Save the mastdl wheel"], "skipped")
        self.assertEqual(result.outputs["complete"], "1")
        self.assertEqual((result.env_file, result.path_file), ("", ""))
        # A `version` that is not one stops the install before pip runs.
        marker = os.path.join(self.work, "pwned")
        bad = runner.run({"uris": GOOD[0], "version": "1; touch %s" % marker}, self.workspace())
        self.assertFalse(bad.success)
        self.assertEqual(self.step_outcomes(bad)["Restore the mastdl wheel built from this action's source"], "skipped")
        self.assertEqual(bad.step("install").outcome, "failure")
        self.assertIn("input `version` must be a version", bad.log)
        self.assertNotIn("pip", bad.step("install").log)
        self.assertFalse(os.path.exists(marker))


def make_wheel(folder: str, version: str, script: str) -> str:
    """Writes a minimal `mastdl` wheel whose one file is the `mastdl` script."""
    import base64
    import hashlib
    import zipfile

    name = "mastdl-%s" % version
    files = {
        "%s.data/scripts/mastdl" % name: script.encode(),
        "%s.dist-info/METADATA" % name: ("Metadata-Version: 2.1\nName: mastdl\nVersion: %s\n" % version).encode(),
        "%s.dist-info/WHEEL" % name: b"Wheel-Version: 1.0\nGenerator: test_action\nRoot-Is-Purelib: false\nTag: py3-none-any\n",
    }
    record = "%s.dist-info/RECORD" % name
    lines = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append("%s,sha256=%s,%d" % (path, digest, len(data)))
    lines.append("%s,," % record)
    files[record] = ("\n".join(lines) + "\n").encode()
    path = os.path.join(folder, "%s-py3-none-any.whl" % name.replace("+", "_"))
    with zipfile.ZipFile(path, "w") as z:
        for member, data in files.items():
            info = zipfile.ZipInfo(member)
            info.external_attr = 0o100755 << 16
            z.writestr(info, data)
    return path


class StaticTest(unittest.TestCase):
    def test_action_yml_passes_inputs_through_env_only(self) -> None:
        with open(os.path.join(ROOT, "action.yml"), encoding="utf-8") as f:
            action = yaml.safe_load(f)
        self.assertEqual(action["runs"]["using"], "composite")
        for step in action["runs"]["steps"]:
            if "run" in step:
                self.assertNotIn("${{", step["run"], step["name"])
                self.assertEqual(step.get("shell"), "bash", step["name"])
            else:
                self.assertRegex(step["uses"], r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$", step["name"])
        # The token goes to mastdl's environment only.
        users = [s["name"] for s in action["runs"]["steps"] if "inputs.token" in json.dumps(s)]
        self.assertEqual(users, ["Check the inputs", "mastdl fetch"])
        self.assertEqual(set(action["outputs"]), {"cache-hit", "manifest", "complete", "skipped", "failed", "bytes"})

    def test_the_readme_workflow_matches_action_yml(self) -> None:
        with open(os.path.join(ROOT, "action.yml"), encoding="utf-8") as f:
            action = yaml.safe_load(f)
        with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        m = re.search(r"```yaml\n(# \.github/workflows/test\.yml\n.*?)```", readme, re.S)
        self.assertIsNotNone(m, "README's GitHub Actions workflow")
        workflow = yaml.safe_load(m.group(1))
        steps = workflow["jobs"]["test"]["steps"]
        ours = [s for s in steps if str(s.get("uses", "")).startswith("mastdl/mastdl@")]
        self.assertEqual(len(ours), 1)
        self.assertLessEqual(set(ours[0]["with"]), set(action["inputs"]))
        used = set(re.findall(r"steps\.%s\.outputs\.([\w-]+)" % ours[0]["id"], m.group(1)))
        self.assertTrue(used)
        self.assertLessEqual(used, set(action["outputs"]))
        # Every input and output is in the README's tables.
        section = readme[readme.index("## GitHub Actions") :]
        for name in list(action["inputs"]) + list(action["outputs"]):
            self.assertIn("| `%s` |" % name, section)

    def test_markdown_escaping(self) -> None:
        esc = mastdl_action.md_escape
        self.assertEqual(esc("a|b"), "a\\|b")
        self.assertEqual(esc("<script>x</script>"), "&lt;script&gt;x&lt;/script&gt;")
        self.assertEqual(esc("two\nlines\r\n`code` *b* [l](u)"), "two lines \\`code\\` \\*b\\* \\[l\\](u)")
        self.assertEqual(esc("a\\b & c"), "a\\\\b &amp; c")

    def test_summary_of_a_large_failure_list_is_bounded(self) -> None:
        files = [{"uri": "mast:X/y/f%d.fits" % i, "status": "FAILED", "message": "m" * 1000} for i in range(80)]
        manifest = {"requested": 80, "complete": 0, "skipped": 0, "failed": 80, "interrupted": 0, "bytes": 0, "files": files}
        text = mastdl_action.summary_markdown(manifest, 1, "Cache: off.")
        self.assertIn("and 30 more", text)
        self.assertLess(len(text), 50 * 400)

    def test_output_file_and_expressions(self) -> None:
        self.assertEqual(parse_output_file("a=1\nb<<EOF\nx\ny\nEOF\n"), {"a": "1", "b": "x\ny"})
        ctx = {"inputs": {"cache": "true", "version": ""}, "steps": {"f": {"outputs": {"complete": "0"}}}}
        ev = Evaluator(ctx)
        self.assertTrue(ev.condition("inputs.cache == 'TRUE' && inputs.version == ''"))
        self.assertFalse(ev.condition("inputs.cache == 'true' && steps.f.outputs.complete != '0'"))
        self.assertFalse(Evaluator(ctx, "failure").condition("inputs.cache == 'true'"))
        self.assertTrue(Evaluator(ctx, "failure").condition("${{ always() }}"))
        self.assertEqual(ev.interpolate("k-${{ steps.f.outputs.complete }}-${{ steps.g.outputs.x }}"), "k-0-")


if __name__ == "__main__":
    unittest.main()
