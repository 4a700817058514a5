"""``python -m mastdl ARGS``: runs the ``mastdl`` executable with ARGS.

Same arguments, output and exit code as running ``mastdl`` itself. On POSIX
the Python process is replaced by the executable (``exec``), so signals,
the terminal and the exit status are the executable's own.
"""

from __future__ import annotations

import os
import sys

from mastdl._find_bin import find_mastdl_bin


def _run() -> "int | None":
    exe = os.fsdecode(find_mastdl_bin())
    argv = [exe, *sys.argv[1:]]
    if sys.platform == "win32":
        import subprocess

        proc = subprocess.Popen(argv)
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:
                # The console sent Ctrl-C to the executable as well: wait
                # while it writes its manifest, then pass on its exit code.
                continue
    os.execv(exe, argv)
    return None  # not reached


if __name__ == "__main__":
    sys.exit(_run())
