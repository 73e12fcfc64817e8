"""Entry point of the desktop app."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    # The views are built in a later milestone (the desktop-app issue); until then say so plainly
    # rather than open an empty window.
    print("The MURID Studio desktop app is not built yet; use the `murid` command line "
          "(see README.md).", file=sys.stderr)
    return 1
