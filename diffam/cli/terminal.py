"""Console set-up shared by the command-line entry points."""

from __future__ import annotations

import sys


def tolerate_any_terminal() -> None:
    """Never crash on a terminal in the C locale: tables print non-ASCII signs (e.g. +-)."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
