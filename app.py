"""Launches the MURID Studio desktop app."""

import sys

from murid_gui.app import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
