"""mastdl from Python: the ``mastdl`` executable shipped in this wheel, and
``download_products``, a drop-in for astroquery's
``Observations.download_products`` that it runs.

>>> import mastdl
>>> manifest = mastdl.download_products(products)    # doctest: +SKIP

``python -m mastdl ARGS`` runs the executable (``find_mastdl_bin()`` says
where it is). Importing this package uses only the standard library; astropy
(result tables), tqdm (a progress bar) and keyring (astroquery's stored
token) are used when they are installed.
"""

from __future__ import annotations

from mastdl._download import (
    RESULT_COLUMNS,
    DownloadError,
    MastdlError,
    download_products,
)
from mastdl._find_bin import find_mastdl_bin

__all__ = [
    "RESULT_COLUMNS",
    "DownloadError",
    "MastdlError",
    "__version__",
    "download_products",
    "find_mastdl_bin",
]


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("mastdl")
    except Exception:  # not installed (a source tree on sys.path)
        return "unknown"


__version__: str = _version()
