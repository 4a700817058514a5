"""``download_products``: astroquery's call, run by the ``mastdl`` executable.

This module only drives the executable: it turns the products into a CSV
product table on the executable's standard input, runs ``mastdl fetch`` with
``--log-format json`` (its events drive one progress bar), and builds the
result from the ``MANIFEST.json`` the run writes. Every transfer, retry,
resume and check happens in the executable.

Standard library only at import time; astropy and tqdm are used when they
are importable, keyring only to look up a token astroquery stored.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import subprocess
import sys
import threading
import warnings
from typing import (
    IO,
    TYPE_CHECKING,
    Any,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Union,
)

from mastdl._find_bin import find_mastdl_bin

if TYPE_CHECKING:  # pragma: no cover
    from astropy.table import Row, Table  # type: ignore[import-untyped,unused-ignore]

__all__ = ["download_products", "MastdlError", "DownloadError", "RESULT_COLUMNS"]

#: The result's columns, as astroquery's ``download_products`` names them.
RESULT_COLUMNS = ("Local Path", "Status", "Message", "URL")

#: The product-table columns the executable reads (``src/input/table.rs``);
#: the others of a product list do not change what is downloaded or where.
_TABLE_COLUMNS = (
    "dataURI",
    "obs_collection",
    "obs_id",
    "productFilename",
    "size",
    "productType",
    "productGroupDescription",
    "calib_level",
)

#: Where astroquery's ``Observations.login(store_token=True)`` keeps the token.
KEYRING_SERVICE = "astroquery:mast.stsci.edu.token"
KEYRING_USER = "masttoken"

ResultRow = Dict[str, Optional[str]]
Products = Union[
    str,
    "Table",
    "Row",
    Sequence[str],
    Sequence[Mapping[str, Any]],
    Mapping[str, Any],
]


class MastdlError(RuntimeError):
    """The executable could not run the download.

    Raised for what stops a run before or instead of per-file results: input
    it refuses (exit 2), a download folder locked by another running mastdl
    (exit 3), an executable that crashed or was killed. Files that fail are
    not an error: they are ``ERROR`` rows of the result (see
    ``raise_on_error``).

    Attributes:
        exit_code: the executable's exit status (negative: killed by that
            signal).
        messages: what the executable said about it, one string per message.
    """

    def __init__(self, message: str, exit_code: int, messages: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.messages = list(messages)


class DownloadError(MastdlError):
    """Raised by ``download_products(..., raise_on_error=True)`` when files failed.

    Attributes:
        result: the whole result, as ``download_products`` would have
            returned it.
        failed: the ``ERROR`` rows, as dicts with the result's columns.
    """

    def __init__(self, message: str, result: Any, failed: List[ResultRow]) -> None:
        super().__init__(message, 1, [str(r["Message"]) for r in failed])
        self.result = result
        self.failed = failed


class _Secret:
    """A token that never shows itself in a ``repr``, ``str`` or traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<token redacted>"

    __str__ = __repr__


class _Environment(dict):  # type: ignore[type-arg]
    """The executable's environment: it may hold the token, so it hides its items."""

    def __repr__(self) -> str:
        return "<environment, %d variables, redacted>" % len(self)

    __str__ = __repr__


def _resolve_token(token: Optional[str]) -> Optional[_Secret]:
    """The token to hand to the executable, or None to leave its environment as is.

    Order: the argument, then ``MAST_API_TOKEN`` (inherited: nothing to do),
    then the entry astroquery's ``Observations.login(store_token=True)``
    keeps in the system keyring, when the ``keyring`` package is importable.
    """
    if token is not None:
        return _Secret(token.reveal() if isinstance(token, _Secret) else str(token))
    if os.environ.get("MAST_API_TOKEN"):
        return None
    try:
        import keyring  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except Exception:
        return None
    try:
        stored = keyring.get_password(KEYRING_SERVICE, KEYRING_USER)
    except Exception:  # no usable keyring backend: no stored token
        return None
    return _Secret(stored) if stored else None


# --- products in ---------------------------------------------------------


def _cell(value: Any) -> str:
    """A product-table cell as CSV text; masked and missing values are empty."""
    if value is None:
        return ""
    if type(value).__name__ == "MaskedConstant":  # numpy.ma.masked
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, float) and math.isnan(value):
        return ""
    if hasattr(value, "item") and not isinstance(value, str):  # a numpy scalar
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
        if isinstance(value, float) and math.isnan(value):
            return ""
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
    return str(value)


def _is_astropy_row(obj: Any) -> bool:
    return hasattr(obj, "colnames") and hasattr(obj, "table") and hasattr(obj, "index")


def _is_astropy_table(obj: Any) -> bool:
    return hasattr(obj, "colnames") and hasattr(obj, "columns") and not _is_astropy_row(obj)


def _records(products: Any) -> List[Dict[str, str]]:
    """The products as records holding the columns the executable reads."""
    if isinstance(products, (str, bytes)):
        products = [products]
    if (
        hasattr(products, "to_dict")
        and hasattr(products, "columns")
        and not hasattr(products, "colnames")
    ):
        products = products.to_dict("records")  # a pandas DataFrame
    if _is_astropy_row(products):
        products = [products]
    if _is_astropy_table(products):
        names = [n for n in _TABLE_COLUMNS if n in products.colnames]
        if "dataURI" not in names:
            raise ValueError(
                "The product table has no `dataURI` column; its columns are: "
                + ", ".join(products.colnames)
            )
        columns = [(n, products[n]) for n in names]
        return [{n: _cell(col[i]) for n, col in columns} for i in range(len(products))]
    if isinstance(products, Mapping):
        if "dataURI" not in products:
            raise ValueError(
                "The products have no `dataURI`; keys: " + ", ".join(map(str, products))
            )
        uris = products["dataURI"]
        if isinstance(uris, (str, bytes)) or not isinstance(uris, Iterable):
            return [_record(products)]
        # A dict of columns.
        cols = {n: list(products[n]) for n in _TABLE_COLUMNS if n in products}
        n_rows = len(cols["dataURI"])
        for name, values in cols.items():
            if len(values) != n_rows:
                raise ValueError(
                    "Column `%s` has %d values, `dataURI` has %d" % (name, len(values), n_rows)
                )
        return [{n: _cell(v[i]) for n, v in cols.items()} for i in range(n_rows)]
    if not isinstance(products, Iterable):
        raise TypeError(
            "products must be an astropy Table or Row, a data URI, a list of data URIs "
            "or of product dicts; got %s" % type(products).__name__
        )
    out = []
    for item in products:
        if isinstance(item, bytes):
            item = item.decode("utf-8", "replace")
        if isinstance(item, str):
            out.append({"dataURI": item})
        elif isinstance(item, Mapping) or _is_astropy_row(item):
            out.append(_record(item))
        else:
            raise TypeError(
                "Each product must be a data URI string or a product dict; got %s"
                % type(item).__name__
            )
    return out


def _record(row: Any) -> Dict[str, str]:
    names = row.colnames if _is_astropy_row(row) else list(row.keys())
    if "dataURI" not in names:
        raise ValueError("A product has no `dataURI`; it has: " + ", ".join(map(str, names)))
    return {n: _cell(row[n]) for n in _TABLE_COLUMNS if n in names}


def _check_uris(records: List[Dict[str, str]]) -> None:
    for rec in records:
        uri = rec.get("dataURI", "").strip()
        if not uri.lower().startswith("mast:"):
            raise ValueError(
                "%r is not a MAST data URI (`mast:...`). mastdl downloads products: "
                "for an observation id, get its products first with astroquery's "
                "`Observations.get_product_list(obsid)`." % uri
            )


def _input_text(records: List[Dict[str, str]]) -> bytes:
    """What the executable reads on stdin: a URI list when the products are
    only URIs, else a CSV product table (a one-column CSV would read as a
    URI list with a bad first line)."""
    names = [n for n in _TABLE_COLUMNS if any(r.get(n) for r in records)]
    if names == ["dataURI"]:
        return "".join(r["dataURI"].strip() + "\n" for r in records).encode("utf-8")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(names)
    for rec in records:
        writer.writerow([rec.get(n, "") for n in names])
    return buf.getvalue().encode("utf-8")


# --- progress ------------------------------------------------------------


def _for_python(message: str) -> str:
    """The executable's advice, in this function's terms."""
    return message.replace("pass `--token`", "pass `token=`")


def _clean(text: Any) -> str:
    """Text from the archive or a table, safe to print: no control characters."""
    return "".join(
        c if c.isprintable() else "\\x%02x" % ord(c) if ord(c) < 256 else "\\u%04x" % ord(c)
        for c in str(text)
    )


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024
    return "%d B" % n  # not reached


class _Progress:
    """One progress bar (tqdm when installed) or plain lines, from the run's events."""

    def __init__(self, verbose: bool, stream: IO[str]) -> None:
        self.verbose = verbose
        self.stream = stream
        self.bar: Any = None
        self.bytes = 0
        self.failed = 0

    def _say(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def _make_bar(self, total: int) -> Any:
        try:
            with warnings.catch_warnings():
                # In a notebook without ipywidgets tqdm.auto warns, then
                # falls back to its text bar: the text bar is fine.
                warnings.simplefilter("ignore")
                from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]
        except Exception:
            return None
        kwargs = dict(
            total=total, unit="file", desc="mastdl", file=self.stream, dynamic_ncols=False
        )
        try:
            return tqdm(**kwargs)
        except Exception:  # tqdm.notebook without ipywidgets
            try:
                from tqdm.std import tqdm as plain_tqdm  # type: ignore[import-untyped,unused-ignore]

                return plain_tqdm(ascii=True, **kwargs)
            except Exception:
                return None

    def event(self, ev: Dict[str, Any]) -> None:
        kind = ev.get("event")
        if kind == "plan":
            if not self.verbose:
                return
            files, to_fetch = int(ev.get("files") or 0), int(ev.get("to_fetch") or 0)
            self.bar = self._make_bar(files)
            if self.bar is None:
                self._say("mastdl: %d files, %d to download" % (files, to_fetch))
        elif kind == "finish":
            status = ev.get("status")
            self.bytes += int(ev.get("bytes") or 0) if status == "COMPLETE" else 0
            # INTERRUPTED (Ctrl-C: the .part kept, or not started) is no
            # file in the result either: astroquery's ERROR, like FAILED.
            if status == "INTERRUPTED":
                status = "FAILED"
            if status == "FAILED":
                self.failed += 1
            if not self.verbose:
                return
            if self.bar is not None:
                self.bar.update(1)
                post = _human(self.bytes)
                if self.failed:
                    post += ", %d failed" % self.failed
                self.bar.set_postfix_str(post, refresh=False)
                if status == "FAILED":
                    self._say(
                        "ERROR    %s: %s"
                        % (_clean(ev.get("path")), _clean(_for_python(str(ev.get("message")))))
                    )
            elif status != "SKIPPED" or ev.get("message"):
                line = "%-8s %s" % (
                    "ERROR" if status == "FAILED" else status,
                    _clean(ev.get("path")),
                )
                if status == "COMPLETE":
                    line += " (%s)" % _human(int(ev.get("bytes") or 0))
                if ev.get("message"):
                    line += ": " + _clean(_for_python(str(ev.get("message"))))
                self._say(line)
        elif kind == "message":
            level = str(ev.get("level") or "info")
            if self.verbose or level in ("warn", "warning", "error"):
                self._say(
                    "mastdl: %s: %s" % (_clean(level), _clean(_for_python(str(ev.get("message")))))
                )
        elif kind == "summary":
            self.close()
            if self.verbose:
                line = (
                    "mastdl: %s complete, %s already present or skipped, %s failed, %s downloaded"
                    % (
                        ev.get("complete"),
                        ev.get("skipped"),
                        ev.get("failed"),
                        _human(int(ev.get("bytes") or 0)),
                    )
                )
                if ev.get("stopped"):
                    line += " (interrupted)"
                self._say(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# --- running the executable ---------------------------------------------


def _feed(pipe: IO[bytes], data: bytes) -> None:
    try:
        pipe.write(data)
    except OSError:  # the executable stopped reading (it refused the input)
        pass
    finally:
        try:
            pipe.close()
        except OSError:
            pass


def _interrupt(proc: "subprocess.Popen[Any]") -> None:
    """Asks the executable to stop as Ctrl-C would: it writes its manifest, keeps `.part`."""
    if proc.poll() is not None:
        return
    if os.name == "nt":
        # No SIGINT on Windows: Ctrl-Break to its process group ends it (the
        # `.part` files stay; the manifest of this run may not be written).
        proc.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined,unused-ignore]
    else:
        proc.send_signal(signal.SIGINT)


def _run(
    args: List[str], env: _Environment, data: bytes, progress: _Progress
) -> "tuple[int, List[str], bool]":
    """Runs the executable; returns its exit code, its error messages, and
    whether a KeyboardInterrupt arrived (the caller re-raises it)."""
    popen_kw: Dict[str, Any] = {}
    if os.name == "nt":
        popen_kw["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined,unused-ignore]
    else:
        # Its own session: a Ctrl-C at a terminal reaches only Python, which
        # passes on exactly one SIGINT (a second one makes mastdl exit at once).
        popen_kw["start_new_session"] = True
    proc = subprocess.Popen(
        args,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        **popen_kw,
    )
    errors: List[str] = []
    interrupted = False
    assert proc.stdin is not None and proc.stderr is not None
    feeder = threading.Thread(target=_feed, args=(proc.stdin, data), daemon=True)
    feeder.start()
    stderr = io.TextIOWrapper(proc.stderr, encoding="utf-8", errors="replace")
    try:
        while True:
            try:
                for line in stderr:
                    _handle_line(line, progress, errors)
                code = proc.wait()
                break
            except KeyboardInterrupt:
                if interrupted:  # a second one: stop waiting
                    proc.kill()
                    raise
                interrupted = True
                _interrupt(proc)
    finally:
        progress.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr.close()
    return code, errors, interrupted


def _handle_line(line: str, progress: _Progress, errors: List[str]) -> None:
    line = line.rstrip("\r\n")
    if not line.strip():
        return
    try:
        ev = json.loads(line)
    except ValueError:
        ev = None
    if not isinstance(ev, dict) or "event" not in ev:
        # Not an event (a usage error is printed before JSON logging starts).
        errors.append(_clean(line))
        return
    if ev["event"] == "error":
        errors.append(_clean(_for_python(str(ev.get("message")))))
        return
    if ev["event"] == "message" and ev.get("level") == "error":
        errors.append(_clean(_for_python(str(ev.get("message")))))
    progress.event(ev)


# --- results out ---------------------------------------------------------


def _result_rows(
    manifest: Mapping[str, Any], base_dir: str, uris: Sequence[str]
) -> List[ResultRow]:
    """astroquery's result rows, in the order of the products, from the manifest."""
    by_uri = {f.get("uri"): f for f in manifest.get("files", [])}
    order = list(dict.fromkeys(uris))
    order += [u for u in by_uri if u not in set(order)]
    rows: List[ResultRow] = []
    for uri in order:
        f = by_uri.get(uri)
        if f is None:  # filtered out (extension, productType, ...)
            continue
        local = os.path.join(base_dir, *str(f.get("path", "")).split("/"))
        status, message = f.get("status"), f.get("message")
        if status == "COMPLETE":
            row_status = "COMPLETE"
        elif status == "SKIPPED" and os.path.isfile(local):
            # Already complete on disk: astroquery (cache=True) says COMPLETE.
            row_status, message = "COMPLETE", None
        elif status == "SKIPPED":
            # Not downloaded on purpose (cloud_only and not in the bucket):
            # astroquery's SKIPPED, with an empty local path.
            row_status, local = "SKIPPED", ""
        else:
            row_status = "ERROR"
            message = message or "File was not downloaded"
        rows.append(
            {
                "Local Path": local,
                "Status": row_status,
                "Message": None if message is None else _for_python(str(message)),
                "URL": f.get("url"),
            }
        )
    return rows


def _as_table(rows: List[ResultRow]) -> Any:
    """An astropy Table like astroquery's, or the rows themselves without astropy."""
    try:
        from astropy.table import Table  # type: ignore[import-untyped,unused-ignore]
    except Exception:
        return rows
    if not rows:
        return Table(names=RESULT_COLUMNS, dtype=[str, str, str, str])
    return Table(rows=[[r[c] for c in RESULT_COLUMNS] for r in rows], names=RESULT_COLUMNS)


def _listify(value: Union[None, str, Iterable[str]]) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def download_products(
    products: Products,
    download_dir: Union[None, str, "os.PathLike[str]"] = None,
    *,
    flat: bool = False,
    cloud: bool = False,
    cloud_only: bool = False,
    extension: Union[None, str, Sequence[str]] = None,
    productType: Union[None, str, Sequence[str]] = None,  # noqa: N803 (astroquery's name)
    mrp_only: bool = False,
    calib_level: Union[None, int, Sequence[int]] = None,
    token: Optional[str] = None,
    jobs: Union[None, int, str] = None,
    update: bool = False,
    base_url: Optional[str] = None,
    raise_on_error: bool = False,
    cache: bool = True,
    verbose: bool = True,
) -> Any:
    """Download MAST data products, as astroquery's ``Observations.download_products`` does.

    A drop-in for ``Observations.download_products(products)``: the same
    products in, the same folders on disk, the same result table out; the
    downloads run concurrently in the ``mastdl`` executable, with retries and
    resume. A second call with the same products and folder asks the
    archive nothing and reports every file ``COMPLETE``.

    Args:
        products: an astropy ``Table`` of products (as
            ``Observations.get_product_list`` returns, or one read back from a
            file) or a ``Row`` of one, which must have ``dataURI`` (its
            ``obs_collection``, ``obs_id`` and ``productFilename`` decide the
            layout, as in astroquery); a data URI (``"mast:HST/product/..."``);
            a list of data URIs; a list of product dicts, or a dict of
            columns, with a ``dataURI`` key.
        download_dir: the folder; files go to
            ``download_dir/mastDownload/<obs_collection>/<obs_id>/<file>``.
            Default: the current folder.
        flat: put the files straight into ``download_dir`` (no
            ``mastDownload`` or sub-folders), as astroquery's ``flat=True``.
        cloud: fetch public products from MAST's AWS Open Data bucket when
            they are there (astroquery's ``enable_cloud_dataset()``).
        cloud_only: like ``cloud``, and skip (status ``SKIPPED``) what is
            not in the bucket instead of downloading it from MAST.
        extension: keep only files whose name ends with this (or one of
            these), e.g. ``"fits"`` or ``["_cal.fits", "_i2d.fits"]``.
        productType: keep only products of this type (or one of these),
            e.g. ``"SCIENCE"``.
        mrp_only: keep only "Minimum Recommended Products".
        calib_level: keep only products of this calibration level (or one
            of these), as astroquery's ``calib_level=`` filter.
        token: a MAST API token. Default: ``MAST_API_TOKEN``, then the token
            astroquery stored with ``Observations.login(store_token=True)``
            (read with ``keyring`` when it is installed). It reaches the
            executable through its environment, never its command line.
        jobs: concurrent transfers (an int, or ``"auto"``); default: the
            executable's.
        update: ask the archive whether files already downloaded changed
            (reprocessed) and replace those that did.
        base_url: the archive root (default ``https://mast.stsci.edu``, or
            ``MASTDL_BASE_URL``).
        raise_on_error: raise ``DownloadError`` (with the failed rows) when a
            file failed. Default False: as astroquery, failures are rows
            with status ``ERROR``.
        cache: as astroquery's: False downloads again files already there.
        verbose: as astroquery's: False shows no progress (warnings and
            errors still show).

    Returns:
        An astropy ``Table`` with astroquery's columns ``Local Path``,
        ``Status``, ``Message``, ``URL``, one row per product downloaded
        (after the filters), in the order of ``products``. ``Status`` is
        ``COMPLETE`` (downloaded now, or already complete on disk),
        ``SKIPPED`` (``cloud_only`` and not in the bucket; ``Local Path`` is
        empty, as in astroquery) or ``ERROR`` (``Message`` says why). Without
        astropy: a list of dicts with those keys.

    Raises:
        KeyboardInterrupt: the run was interrupted (the stop button in
            Jupyter, Ctrl-C). The executable is stopped cleanly first: it
            writes ``MANIFEST.json``, keeps partial files (``.part``) to
            resume, and the same call later goes on where this one stopped.
        DownloadError: ``raise_on_error`` and at least one file failed.
        MastdlError: the executable refused the input or the folder is in
            use by another download.
        ValueError, TypeError: products it cannot read.
    """
    secret = _resolve_token(token)
    # Only the redacted wrapper stays in this frame (tracebacks that show
    # locals, IPython's verbose mode); rebound, not deleted, so that
    # debuggers and IPython still resolve the arguments.
    token = None
    records = _records(products)
    _check_uris(records)
    if not records:
        warnings.warn("No products to download.", stacklevel=2)
        return _as_table([])

    root = os.fspath(download_dir) if download_dir else "."
    base_dir = root if flat else os.path.join(root, "mastDownload")
    # Every value rides in its option's own word (`--dest=-data`): a value
    # that starts with `-` is never read as an option.
    args = [os.fsdecode(find_mastdl_bin()), "fetch", "-", "--dest=" + base_dir]
    args += ["--log-format=json", "--progress=never"]
    if flat:
        args.append("--flat")
    if cloud_only:
        args.append("--cloud-only")
    elif cloud:
        args.append("--cloud")
    for ext in _listify(extension):
        args.append("--extension=" + ext)
    for ptype in _listify(productType):
        args.append("--product-type=" + ptype)
    levels = [calib_level] if isinstance(calib_level, int) else list(calib_level or [])
    for level in levels:
        args.append("--calib-level=%d" % int(level))
    if mrp_only:
        args.append("--mrp-only")
    if jobs is not None:
        args.append("--jobs=%s" % jobs)
    if update:
        args.append("--update")
    if not cache:
        args.append("--force")
    if base_url:
        args.append("--base-url=" + str(base_url))

    env = _Environment(os.environ)
    if secret is not None:
        env["MAST_API_TOKEN"] = secret.reveal()
    progress = _Progress(verbose, sys.stderr)
    code, errors, interrupted = _run(args, env, _input_text(records), progress)
    env.clear()

    # Exit 0, 1, 4 (every failure wants a valid token) and 130
    # (interrupted) write the manifest; the others (refused input, folder
    # locked, crash) write none.
    manifest: Optional[Mapping[str, Any]] = None
    if code in (0, 1, 4, 130):
        try:
            with open(os.path.join(base_dir, "MANIFEST.json"), encoding="utf-8") as f:
                manifest = json.load(f)
        except (OSError, ValueError):
            manifest = None
    if interrupted:
        if verbose:
            print(
                "mastdl: interrupted; partial files (.part) were kept: "
                "the same call resumes the download",
                file=sys.stderr,
                flush=True,
            )
        raise KeyboardInterrupt
    if manifest is None:
        detail = "; ".join(errors) if errors else "no message"
        if code < 0:
            what = "was killed by signal %d" % -code
        else:
            what = "exited %d" % code
        raise MastdlError("mastdl %s: %s" % (what, detail), code, errors)

    rows = _result_rows(manifest, base_dir, [r["dataURI"].strip() for r in records])
    result = _as_table(rows)
    if not rows:
        warnings.warn("No products to download.", stacklevel=2)
    failed = [r for r in rows if r["Status"] == "ERROR"]
    if raise_on_error and failed:
        shown = "; ".join("%s: %s" % (r["URL"], r["Message"]) for r in failed[:3])
        more = " (and %d more)" % (len(failed) - 3) if len(failed) > 3 else ""
        raise DownloadError(
            "%d of %d files failed: %s%s" % (len(failed), len(rows), shown, more), result, failed
        )
    return result
