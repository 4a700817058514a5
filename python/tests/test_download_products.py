"""``mastdl.download_products`` against the mock archive (conftest.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

import mastdl
from conftest import TOKEN, Archive

HST = "mast:HST/product/ib1f01x1q_flt.fits"
JWST = "mast:JWST/product/jw01073001001_02101_00001_nrca1_cal.fits"
IUE = "mast:IUE/url/pub/iue/data/lwp/13000/lwp13058.mxlo.gz"

HST_REL = ("HST", "ib1f01x1q", "ib1f01x1q_flt.fits")
JWST_REL = ("JWST", "jw01073001001_02101_00001_nrca1", "jw01073001001_02101_00001_nrca1_cal.fits")
IUE_REL = ("IUE", "lwp13058", "lwp13058.mxlo.gz")


def rows_of(result: Any) -> List[Dict[str, Any]]:
    """The result as dicts, whether it is an astropy Table or a list."""
    if isinstance(result, list):
        return result
    return [{c: row[c] for c in result.colnames} for row in result]


def url_of(archive: Archive, uri: str) -> str:
    return archive.url + "/api/v0.1/Download/file?uri=" + uri


def run_python(
    code: str, *args: str, env: Optional[Dict[str, str]] = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


# --- the result table -------------------------------------------------------


def test_uri_list_gives_astroquerys_table_paths_and_bytes(tmp_path: Path, archive: Archive) -> None:
    table_cls = pytest.importorskip("astropy.table").Table
    bodies = {uri: archive.add(uri) for uri in (HST, JWST, IUE)}

    result = mastdl.download_products([HST, JWST, IUE], tmp_path, base_url=archive.url)

    assert isinstance(result, table_cls)
    assert result.colnames == ["Local Path", "Status", "Message", "URL"]
    rows = rows_of(result)
    assert [r["Status"] for r in rows] == ["COMPLETE"] * 3
    assert [r["Message"] for r in rows] == [None] * 3
    assert [r["URL"] for r in rows] == [url_of(archive, u) for u in (HST, JWST, IUE)]
    for row, uri, rel in zip(rows, (HST, JWST, IUE), (HST_REL, JWST_REL, IUE_REL)):
        want = os.path.join(str(tmp_path), "mastDownload", *rel)
        assert row["Local Path"] == want
        assert Path(want).read_bytes() == bodies[uri]
    assert (tmp_path / "mastDownload" / "MANIFEST.json").is_file()


def test_one_uri_lands_under_the_current_folder_by_default(
    tmp_path: Path, archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = archive.add(HST)
    monkeypatch.chdir(tmp_path)

    rows = rows_of(mastdl.download_products(HST, base_url=archive.url))

    # astroquery: os.path.join(download_dir or ".", "mastDownload", coll, obs_id, file)
    assert [r["Local Path"] for r in rows] == [os.path.join(".", "mastDownload", *HST_REL)]
    assert [r["Status"] for r in rows] == ["COMPLETE"]
    assert (tmp_path / "mastDownload" / Path(*HST_REL)).read_bytes() == body


def test_second_call_is_complete_and_asks_the_archive_nothing(
    tmp_path: Path, archive: Archive
) -> None:
    for uri in (HST, JWST, IUE):
        archive.add(uri)
    first = rows_of(mastdl.download_products([HST, JWST, IUE], tmp_path, base_url=archive.url))
    asked = archive.count()
    assert asked >= 3

    second = rows_of(mastdl.download_products([HST, JWST, IUE], tmp_path, base_url=archive.url))

    assert archive.count() == asked, "the second call sent requests to the archive"
    assert [r["Status"] for r in second] == ["COMPLETE"] * 3  # astroquery 0.4.11: COMPLETE
    assert [r["Message"] for r in second] == [None] * 3
    assert [r["Local Path"] for r in second] == [r["Local Path"] for r in first]


def test_flat_puts_files_straight_into_download_dir(tmp_path: Path, archive: Archive) -> None:
    archive.add(HST)
    archive.add(IUE)
    rows = rows_of(mastdl.download_products([HST, IUE], tmp_path, flat=True, base_url=archive.url))
    assert [r["Local Path"] for r in rows] == [
        os.path.join(str(tmp_path), HST_REL[-1]),
        os.path.join(str(tmp_path), IUE_REL[-1]),
    ]
    assert all(Path(r["Local Path"]).is_file() for r in rows)
    assert not (tmp_path / "mastDownload").exists()


def test_values_that_start_with_a_dash_are_values(
    tmp_path: Path, archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `--dest -data` would read `-data` as an option; `--dest=-data` cannot.
    archive.add(HST)
    archive.add(IUE)
    monkeypatch.chdir(tmp_path)
    for flat in (True, False):
        rows = rows_of(
            mastdl.download_products([HST, IUE], "-data", flat=flat, base_url=archive.url)
        )
        assert [r["Status"] for r in rows] == ["COMPLETE", "COMPLETE"], rows
        assert all(Path(r["Local Path"]).is_file() for r in rows)
    assert (tmp_path / "-data" / HST_REL[-1]).is_file()
    assert (tmp_path / "-data" / "mastDownload" / Path(*HST_REL)).is_file()


def test_failed_files_are_error_rows_and_raise_only_when_asked(
    tmp_path: Path, archive: Archive
) -> None:
    archive.add(HST, need_token=True)
    archive.add(IUE)

    rows = rows_of(mastdl.download_products([HST, IUE], tmp_path, base_url=archive.url))
    assert [r["Status"] for r in rows] == ["ERROR", "COMPLETE"]
    assert rows[0]["Message"]  # says why
    assert "--token" not in rows[0]["Message"]  # in Python it is `token=`
    assert rows[0]["URL"] == url_of(archive, HST)
    assert not Path(rows[0]["Local Path"]).exists()

    with pytest.raises(mastdl.DownloadError) as err:
        mastdl.download_products([HST, IUE], tmp_path, base_url=archive.url, raise_on_error=True)
    assert [r["URL"] for r in err.value.failed] == [url_of(archive, HST)]
    assert [r["Status"] for r in rows_of(err.value.result)] == ["ERROR", "COMPLETE"]
    assert HST in str(err.value)


def test_cloud_only_skips_what_is_not_in_the_bucket_as_astroquery(
    tmp_path: Path, archive: Archive
) -> None:
    archive.add(HST)
    rows = rows_of(mastdl.download_products([HST], tmp_path, cloud_only=True, base_url=archive.url))
    assert [r["Status"] for r in rows] == ["SKIPPED"]
    assert [r["Local Path"] for r in rows] == [""]  # as astroquery's SKIPPED rows
    assert archive.downloads() == []  # nothing asked of the archive's download endpoint


# --- astroquery's product tables -------------------------------------------

#: The columns of ``Observations.get_product_list`` (astroquery 0.4.x).
PRODUCT_COLUMNS = [
    "obsID",
    "obs_collection",
    "dataproduct_type",
    "obs_id",
    "description",
    "type",
    "dataURI",
    "productType",
    "productGroupDescription",
    "productSubGroupDescription",
    "productDocumentationURL",
    "project",
    "prvversion",
    "proposal_id",
    "productFilename",
    "size",
    "parent_obsid",
    "dataRights",
    "calib_level",
    "filters",
]

JWST_OBS = "jw01073-o001_t001_nircam_clear-f150w"
JWST_I2D = "mast:JWST/product/jw01073-o001_t001_nircam_clear-f150w_i2d.fits"
JWST_JPG = "mast:JWST/product/jw01073-o001_t001_nircam_clear-f150w_i2d.jpg"
JWST_ASN = "mast:JWST/product/jw01073-o001_20230101t000000_image3_00001_asn.json"


def product_table(archive: Archive, tmp_path: Path) -> Any:
    """A product list with astroquery's full column set, written and read
    back with astropy as a notebook saves one."""
    table_mod = pytest.importorskip("astropy.table")
    specs = [
        # uri, obs_collection, obs_id, productType, group, level, masked size
        (JWST, "JWST", JWST_OBS, "SCIENCE", "Minimum Recommended Products", 2, False),
        (JWST_I2D, "JWST", JWST_OBS, "SCIENCE", "Minimum Recommended Products", 3, True),
        (JWST_JPG, "JWST", JWST_OBS, "PREVIEW", "", 3, False),
        (JWST_ASN, "JWST", JWST_OBS, "INFO", "", 3, False),
        (HST, "HST", "ib1f01010", "SCIENCE", "Minimum Recommended Products", 2, False),
    ]
    rows = []
    mask = []
    for uri, coll, obs_id, ptype, group, level, masked_size in specs:
        body = archive.add(uri)
        name = uri.rsplit("/", 1)[1]
        rows.append(
            [
                "87602781",
                coll,
                "image",
                obs_id,
                "description of " + name,
                "S",
                uri,
                ptype,
                group,
                "CAL",
                "",
                "CALJWST",
                "1.11.4",
                "1073",
                name,
                len(body),
                "87602781",
                "PUBLIC",
                level,
                "F150W",
            ]
        )
        mask.append([False] * 15 + [masked_size] + [False] * 4)
    table = table_mod.Table(rows=rows, names=PRODUCT_COLUMNS, masked=True)
    for i, row_mask in enumerate(mask):
        for j, m in enumerate(row_mask):
            if m:
                table[PRODUCT_COLUMNS[j]].mask[i] = True
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "products.ecsv"
    table.write(path, format="ascii.ecsv")
    return table_mod.Table.read(path, format="ascii.ecsv")


def test_astroquery_product_table_uses_its_obs_collection_and_obs_id(
    tmp_path: Path, archive: Archive
) -> None:
    products = product_table(archive, tmp_path / "in")
    assert products.colnames == PRODUCT_COLUMNS
    dest = tmp_path / "out"

    result = mastdl.download_products(products, str(dest), base_url=archive.url)

    rows = rows_of(result)
    assert [r["Status"] for r in rows] == ["COMPLETE"] * len(products)
    # astroquery: download_dir/mastDownload/<obs_collection>/<obs_id>/<productFilename>
    want = [
        os.path.join(
            str(dest), "mastDownload", p["obs_collection"], p["obs_id"], p["productFilename"]
        )
        for p in products
    ]
    assert [r["Local Path"] for r in rows] == want
    # JWST's obs_id from the table, not from the file name:
    assert os.path.join("JWST", JWST_OBS, JWST_REL[-1]) in rows[0]["Local Path"]
    assert all(os.path.isfile(p) for p in want)


def test_a_row_and_duplicate_rows(tmp_path: Path, archive: Archive) -> None:
    products = product_table(archive, tmp_path / "in")
    vstack = pytest.importorskip("astropy.table").vstack

    one = rows_of(mastdl.download_products(products[4], tmp_path, base_url=archive.url))
    assert [r["Local Path"] for r in one] == [
        os.path.join(str(tmp_path), "mastDownload", "HST", "ib1f01010", HST_REL[-1])
    ]

    twice = vstack([products, products])
    rows = rows_of(mastdl.download_products(twice, tmp_path / "d", base_url=archive.url))
    assert len(rows) == len(products)  # one row per distinct dataURI, as astroquery


def test_filters_as_astroquerys(tmp_path: Path, archive: Archive) -> None:
    products = product_table(archive, tmp_path / "in")

    fits = rows_of(
        mastdl.download_products(products, tmp_path / "a", extension="fits", base_url=archive.url)
    )
    assert [os.path.basename(r["Local Path"]) for r in fits] == [
        JWST_REL[-1],
        JWST_I2D.rsplit("/", 1)[1],
        HST_REL[-1],
    ]

    science = rows_of(
        mastdl.download_products(
            products,
            tmp_path / "b",
            productType=["SCIENCE", "INFO"],
            extension=["json", "_i2d.fits"],
            base_url=archive.url,
        )
    )
    assert [os.path.basename(r["Local Path"]) for r in science] == [
        JWST_I2D.rsplit("/", 1)[1],
        JWST_ASN.rsplit("/", 1)[1],
    ]

    level2 = rows_of(
        mastdl.download_products(products, tmp_path / "d", calib_level=2, base_url=archive.url)
    )
    assert [os.path.basename(r["Local Path"]) for r in level2] == [JWST_REL[-1], HST_REL[-1]]

    mrp = rows_of(
        mastdl.download_products(products, tmp_path / "c", mrp_only=True, base_url=archive.url)
    )
    assert len(mrp) == 3
    asked = {r.uri for r in archive.downloads()}
    assert JWST_JPG not in asked  # filtered everywhere: never requested


def test_records_and_columns_dicts(tmp_path: Path, archive: Archive) -> None:
    archive.add(HST)
    archive.add(IUE)
    records = [
        {
            "dataURI": HST,
            "obs_collection": "HST",
            "obs_id": "myobs",
            "productFilename": HST_REL[-1],
        },
        {"dataURI": IUE},
    ]
    rows = rows_of(mastdl.download_products(records, tmp_path, base_url=archive.url))
    assert [r["Local Path"] for r in rows] == [
        os.path.join(str(tmp_path), "mastDownload", "HST", "myobs", HST_REL[-1]),
        os.path.join(str(tmp_path), "mastDownload", *IUE_REL),
    ]
    cols = {"dataURI": [HST, IUE]}
    rows = rows_of(mastdl.download_products(cols, tmp_path / "c", base_url=archive.url))
    assert [r["Status"] for r in rows] == ["COMPLETE", "COMPLETE"]


def test_bad_products_are_refused_before_anything_runs(tmp_path: Path, archive: Archive) -> None:
    with pytest.raises(ValueError, match="get_product_list"):
        mastdl.download_products("87602781", tmp_path, base_url=archive.url)  # an obsid
    with pytest.raises(ValueError, match="dataURI"):
        mastdl.download_products([{"uri": HST}], tmp_path, base_url=archive.url)
    with pytest.raises(mastdl.MastdlError) as err:  # the executable refuses it (exit 2)
        mastdl.download_products("mast:HST/product/../x_flt.fits", tmp_path, base_url=archive.url)
    assert err.value.exit_code == 2
    assert err.value.messages
    assert archive.count() == 0


# --- the token ------------------------------------------------------------------


def test_token_argument_then_env_then_astroquerys_keyring(
    tmp_path: Path, archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive.add(HST, need_token=True)
    asked: List[Any] = []

    class FakeKeyring:
        @staticmethod
        def get_password(service: str, user: str) -> Optional[str]:
            asked.append((service, user))
            return TOKEN

    monkeypatch.setitem(sys.modules, "keyring", FakeKeyring)
    rows = rows_of(mastdl.download_products(HST, tmp_path / "k", base_url=archive.url))
    assert asked == [("astroquery:mast.stsci.edu.token", "masttoken")]
    assert [r["Status"] for r in rows] == ["COMPLETE"]
    assert archive.downloads()[-1].authorization == "token " + TOKEN

    # MAST_API_TOKEN comes before the keyring (here: a wrong one, so it fails).
    asked.clear()
    monkeypatch.setenv("MAST_API_TOKEN", "not-the-token")
    rows = rows_of(mastdl.download_products(HST, tmp_path / "e", base_url=archive.url))
    assert [r["Status"] for r in rows] == ["ERROR"]
    assert asked == []

    # The argument comes first.
    rows = rows_of(mastdl.download_products(HST, tmp_path / "a", token=TOKEN, base_url=archive.url))
    assert [r["Status"] for r in rows] == ["COMPLETE"]


def _proc_children(parent: int) -> List[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent:
            out.append(int(entry))
    return out


def _all_cmdlines() -> Dict[int, bytes]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                out[int(entry)] = Path("/proc", entry, "cmdline").read_bytes()
            except OSError:
                pass
    return out


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_token_is_never_on_a_command_line(tmp_path: Path, archive: Archive) -> None:
    archive.add(HST, size=256 * 1024, need_token=True, stall=True)
    result: List[Any] = []
    worker = threading.Thread(
        target=lambda: result.append(
            mastdl.download_products(
                HST, tmp_path, token=TOKEN, base_url=archive.url, verbose=False
            )
        )
    )
    worker.start()
    try:
        assert archive.stalled.wait(60), "the download never started"
        # The executable is running, mid-transfer, with the token.
        children = [
            pid
            for pid in _proc_children(os.getpid())
            if os.path.basename(_all_cmdlines().get(pid, b"").split(b"\0")[0]).startswith(b"mastdl")
        ]
        assert len(children) == 1, children
        child = children[0]
        cmdlines = _all_cmdlines()
        assert b"--log-format" in cmdlines[child]  # the scan sees the child's arguments
        leaks = [pid for pid, cmd in cmdlines.items() if TOKEN.encode() in cmd]
        assert leaks == []
        # It got the token, through its environment.
        assert b"MAST_API_TOKEN=" + TOKEN.encode() in Path(
            "/proc", str(child), "environ"
        ).read_bytes().split(b"\0")
    finally:
        archive.release.set()
        worker.join(120)
    assert [r["Status"] for r in rows_of(result[0])] == ["COMPLETE"]
    assert archive.downloads()[-1].authorization == "token " + TOKEN


def test_token_is_not_in_errors_reprs_or_traceback_locals(tmp_path: Path, archive: Archive) -> None:
    archive.add(HST)
    failures = []
    try:
        mastdl.download_products(
            [HST, "mast:HST/product/missing_flt.fits"],
            tmp_path,
            token=TOKEN,
            base_url=archive.url,
            raise_on_error=True,
        )
    except mastdl.DownloadError as e:
        failures.append(e)
    try:
        mastdl.download_products(
            "mast:HST/product/../x_flt.fits", tmp_path, token=TOKEN, base_url=archive.url
        )
    except mastdl.MastdlError as e:
        failures.append(e)
    assert [type(e) for e in failures] == [mastdl.DownloadError, mastdl.MastdlError]
    for e in failures:
        texts = [
            str(e),
            repr(e),
            repr(e.messages),
            "".join(traceback.format_exception(type(e), e, e.__traceback__)),
        ]
        # The locals of every frame from download_products down (the test's own
        # frame, which holds the mock archive's request log, left out).
        inner = e.__traceback__.tb_next
        assert inner is not None and inner.tb_frame.f_code.co_name == "download_products"
        texts.append(
            "".join(traceback.TracebackException(type(e), e, inner, capture_locals=True).format())
        )
        for text in texts:
            assert TOKEN not in text
    assert "token " + TOKEN in {r.authorization for r in archive.requests}  # it was used


# --- interruption ---------------------------------------------------------------

INTERRUPTED_SCRIPT = """
    import sys, mastdl
    base, dest, *uris = sys.argv[1:]
    try:
        mastdl.download_products(uris, dest, base_url=base)
    except KeyboardInterrupt:
        print("KeyboardInterrupt re-raised", flush=True)
        sys.exit(42)
    print("returned", flush=True)
"""


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_keyboard_interrupt_stops_the_executable_cleanly_and_reraises(
    tmp_path: Path, archive: Archive
) -> None:
    big = archive.add(HST, size=1024 * 1024, stall=True)
    archive.add(IUE)
    script = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(INTERRUPTED_SCRIPT),
            archive.url,
            str(tmp_path),
            HST,
            IUE,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert archive.stalled.wait(60), "the download never started"
        part = tmp_path / "mastDownload" / Path(*HST_REL[:-1]) / (HST_REL[-1] + ".part")
        for _ in range(600):  # until the transfer has its `.part` (bounded wait)
            if part.is_file():
                break
            time.sleep(0.05)
        assert part.is_file()
        exes = _proc_children(script.pid) if os.path.isdir("/proc") else []

        script.send_signal(signal.SIGINT)  # the notebook's stop button
        out, err = script.communicate(timeout=120)
    finally:
        archive.release.set()
        if script.poll() is None:
            script.kill()
    assert script.returncode == 42, (out, err)
    assert "KeyboardInterrupt re-raised" in out
    assert "\x1b" not in err
    # The executable wrote its manifest, kept the partial file, made no final file.
    manifest = json.loads((tmp_path / "mastDownload" / "MANIFEST.json").read_text())
    status = {f["uri"]: f["status"] for f in manifest["files"]}
    assert status[HST] == "INTERRUPTED"  # the .part kept; not a failure
    assert part.is_file() and part.stat().st_size < len(big)
    assert not (tmp_path / "mastDownload" / Path(*HST_REL)).exists()
    for exe in exes:
        assert not os.path.exists("/proc/%d" % exe)  # it is gone, not left running

    # The same call later resumes and completes.
    rows = rows_of(mastdl.download_products([HST, IUE], tmp_path, base_url=archive.url))
    assert [r["Status"] for r in rows] == ["COMPLETE", "COMPLETE"]
    assert (tmp_path / "mastDownload" / Path(*HST_REL)).read_bytes() == big


# --- progress and optional packages --------------------------------------------

RUN_SCRIPT = """
    import json, sys
    for name in sys.argv[3].split(","):
        if name:
            sys.modules[name] = None  # not installed
    import mastdl
    result = mastdl.download_products(json.loads(sys.argv[4]), sys.argv[2], base_url=sys.argv[1])
    print(json.dumps({"type": type(result).__name__,
                      "rows": result if isinstance(result, list) else None}))
"""


def test_import_needs_only_the_standard_library() -> None:
    done = run_python(
        """
        import sys
        before = set(sys.modules)
        import mastdl
        optional = ("astropy", "numpy", "tqdm", "keyring", "pandas")
        third = sorted(m for m in set(sys.modules) - before if m.split(".")[0] in optional)
        print(third)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_without_astropy_lists_in_and_dicts_out(tmp_path: Path, archive: Archive) -> None:
    archive.add(HST)
    archive.add(IUE)
    done = run_python(
        RUN_SCRIPT, archive.url, str(tmp_path), "astropy,numpy", json.dumps([HST, IUE])
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["type"] == "list"
    assert [sorted(r) for r in out["rows"]] == [sorted(mastdl.RESULT_COLUMNS)] * 2
    assert [r["Status"] for r in out["rows"]] == ["COMPLETE", "COMPLETE"]
    assert out["rows"][1]["Local Path"] == os.path.join(str(tmp_path), "mastDownload", *IUE_REL)


def test_progress_plain_lines_without_tqdm_no_escape_codes(
    tmp_path: Path, archive: Archive
) -> None:
    archive.add(HST)
    archive.add(IUE, need_token=True)
    done = run_python(RUN_SCRIPT, archive.url, str(tmp_path), "tqdm", json.dumps([HST, IUE]))
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stderr and "\r" not in done.stderr
    lines = done.stderr.splitlines()
    assert any(line.startswith("COMPLETE") and "ib1f01x1q_flt.fits" in line for line in lines), (
        lines
    )
    assert any(line.startswith("ERROR") and "lwp13058" in line for line in lines), lines
    assert "1 failed" in lines[-1]


def test_progress_bar_with_tqdm_no_escape_codes(tmp_path: Path, archive: Archive) -> None:
    pytest.importorskip("tqdm")
    for uri in (HST, JWST, IUE):
        archive.add(uri)
    done = run_python(RUN_SCRIPT, archive.url, str(tmp_path), "", json.dumps([HST, JWST, IUE]))
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stderr
    assert "3/3" in done.stderr  # one bar, counting files
    assert "COMPLETE" not in done.stderr  # no per-file lines under the bar
