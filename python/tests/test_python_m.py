"""``python -m mastdl`` and ``mastdl.find_mastdl_bin()``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import Archive

import mastdl


def run(argv: list, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, **kw)


def test_find_mastdl_bin_is_the_installed_executable() -> None:
    exe = mastdl.find_mastdl_bin()
    assert os.path.isfile(exe) and os.access(exe, os.X_OK)
    assert os.path.basename(exe) in ("mastdl", "mastdl.exe")
    done = run([exe, "--version"])
    assert done.returncode == 0
    assert done.stdout.startswith("mastdl " + mastdl.__version__)


def test_python_m_has_the_executables_output_and_exit_code(tmp_path: Path) -> None:
    exe = mastdl.find_mastdl_bin()
    for args in (
        ["--version"],
        ["fetch", str(tmp_path / "no-such-list.txt"), "-d", str(tmp_path)],
        ["frobnicate"],
    ):
        direct = run([exe, *args])
        via = run([sys.executable, "-m", "mastdl", *args])
        assert (via.returncode, via.stdout, via.stderr) == (
            direct.returncode,
            direct.stdout,
            direct.stderr,
        ), args
    assert direct.returncode == 2  # `frobnicate`: a usage error, not a crash


def test_python_m_fetch_downloads(tmp_path: Path, archive: Archive) -> None:
    uri = "mast:HST/product/ib1f01x1q_flt.fits"
    body = archive.add(uri)
    listing = tmp_path / "list.txt"
    listing.write_text(uri + "\n")
    done = run(
        [
            sys.executable,
            "-m",
            "mastdl",
            "fetch",
            str(listing),
            "-d",
            str(tmp_path / "d"),
            "--base-url",
            archive.url,
            "--progress",
            "never",
        ]
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "d" / "HST" / "ib1f01x1q" / "ib1f01x1q_flt.fits").read_bytes() == body
