"""Finding the ``mastdl`` executable that was installed with this package.

maturin's ``bin`` bindings put the executable in the wheel's scripts, so pip
installs it beside the environment's ``python``: in the scripts folder of the
scheme pip used (a virtualenv, the system, ``--user``), or, for ``pip install
--target DIR`` and ``--prefix DIR``, in a ``bin`` (``Scripts`` on Windows)
folder relative to where this package landed.
"""

from __future__ import annotations

import os
import sys
import sysconfig

__all__ = ["find_mastdl_bin"]


def _exe_name() -> str:
    return "mastdl" + (sysconfig.get_config_var("EXE") or "")


def _user_scheme() -> str:
    if sys.version_info >= (3, 10):
        return sysconfig.get_preferred_scheme("user")
    if os.name == "nt":
        return "nt_user"
    if sys.platform == "darwin" and getattr(sys, "_framework", None):
        return "osx_framework_user"
    return "posix_user"


def _candidates() -> list[str]:
    """The folders to look in, most likely first."""
    folders = [sysconfig.get_path("scripts")]
    try:
        folders.append(sysconfig.get_path("scripts", scheme=_user_scheme()))
    except KeyError:  # a Python built without a user scheme
        pass
    scripts = "Scripts" if os.name == "nt" else "bin"
    # .../site-packages/mastdl/_find_bin.py -> .../site-packages
    site = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # pip install --target DIR: DIR/mastdl and DIR/bin.
    folders.append(os.path.join(site, scripts))
    # pip install --prefix DIR: DIR/lib/pythonX.Y/site-packages (POSIX) or
    # DIR/Lib/site-packages (Windows), and DIR/bin or DIR/Scripts.
    up = 2 if os.name == "nt" else 3
    prefix = site
    for _ in range(up):
        prefix = os.path.dirname(prefix)
    folders.append(os.path.join(prefix, scripts))
    seen: list[str] = []
    for folder in folders:
        if folder and folder not in seen:
            seen.append(folder)
    return seen


def find_mastdl_bin() -> str:
    """Return the path of the ``mastdl`` executable installed with this package.

    Looks where pip puts a wheel's scripts: the current environment's scripts
    folder, the user scheme's (``pip install --user``), then the ``bin``
    folders that ``pip install --target`` and ``--prefix`` create beside the
    package.

    Raises:
        FileNotFoundError: no ``mastdl`` executable is in any of those places
            (the package was copied without its executable, or installed from
            a source tree without building it).
    """
    name = _exe_name()
    looked = []
    for folder in _candidates():
        path = os.path.join(folder, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        looked.append(path)
    raise FileNotFoundError(
        "The `mastdl` executable of this package is missing; looked at: "
        + ", ".join(looked)
        + ". Reinstall it with `pip install --force-reinstall mastdl`."
    )
