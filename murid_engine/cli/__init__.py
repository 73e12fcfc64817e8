"""The `murid` command line (also `python -m murid_engine`).

Each sub-command lives in its own module with `register(subparsers)`; a user's mistake raises
UserError, which is printed here as one sentence with exit code 2 and no traceback.
"""

from __future__ import annotations

import argparse
import sys

from murid_engine import __version__
from murid_engine.errors import UserError

from . import (bench_cmd, distill_cmd, evaluate_cmd, export_cmd, inspect_cmd, predict_cmd, pseudo_cmd,
               synth_cmd, train_cmd)

COMMANDS = (synth_cmd, inspect_cmd, train_cmd, pseudo_cmd, distill_cmd, evaluate_cmd, predict_cmd,
            export_cmd, bench_cmd)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors: one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="murid", description="MURID Studio: domain adaptation for segmentation.")
    parser.add_argument("--version", action="version", version=f"murid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or argparse's one-line usage error
        return int(exc.code or 0)
    try:
        return int(args.run(args) or 0)
    except UserError as exc:
        print(f"murid {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"murid {args.command}: interrupted", file=sys.stderr)
        return 130
