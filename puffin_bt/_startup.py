"""The CLI's first second: importing puffin_bt (torch, pandas, Backtrader) takes a while, and a Ctrl-C then must read
as one during a run does (one line, exit 130), not as a traceback through the import machinery."""

from __future__ import annotations

import os
import signal
import sys
import threading

EXIT_INTERRUPTED = 130


def _launched_as_cli() -> bool:
    # `puffin-bt ...` (the console script), or `python -m puffin_bt.cli ...`, whose argv[0] is "-m" while the
    # package it lives in is imported.
    first = os.path.basename(sys.argv[0]) if sys.argv else ""
    return first in ("puffin-bt", "puffin-bt.exe", "-m") and threading.current_thread() is threading.main_thread()


def _interrupted(signum, frame) -> None:
    sys.stderr.write("puffin-bt: interrupted\n")
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


def _guard_imports():
    """Under the CLI: Ctrl-C ends the process with one line and exit code 130 until ``release``. Returns the handler
    to restore; None when not launched as the CLI (a library import keeps Python's KeyboardInterrupt)."""
    if not _launched_as_cli() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return None
    return signal.signal(signal.SIGINT, _interrupted)


_previous = _guard_imports()  # on import: puffin_bt/__init__.py imports this module before anything heavy


def release() -> None:
    """The package is imported: Ctrl-C is a KeyboardInterrupt again, which the CLI's main() reports itself."""
    global _previous
    if _previous is not None:
        signal.signal(signal.SIGINT, _previous)
        _previous = None
