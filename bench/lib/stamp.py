#!/usr/bin/env python3
"""Copy stdin to FILE, each line prefixed with its arrival time (Unix seconds) and a TAB.

Usage: some-command 2>&1 >/dev/null | stamp.py FILE
Used to time mastdl's `--log-format json` events to the millisecond (their
own `ts` field has whole seconds only).
"""
import sys
import time


def main():
    with open(sys.argv[1], "w") as out:
        read = sys.stdin.buffer.readline
        while True:
            line = read()
            if not line:
                break
            out.write("%.4f\t%s" % (time.time(), line.decode("utf-8", "replace")))
            out.flush()


if __name__ == "__main__":
    main()
