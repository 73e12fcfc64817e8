"""The `murid` command line (also `python -m murid_engine`).

Each sub-command lives in its own module with `register(subparsers)`; a user's mistake raises
UserError, which is printed here as one sentence with exit code 2 and no traceback. So is a
write that the machine refuses (a full disk, a read-only folder, no permission): atomic writes
leave the previous file whole and no temporary file behind, so the sentence is all the user needs.
"""

from __future__ import annotations

import argparse
import errno
import shutil
import sys
from pathlib import Path

from murid_engine import __version__
from murid_engine.errors import UserError
from murid_engine.interrupts import stop_exit_code
from murid_engine.project_lock import release_all

from . import (bench_cmd, distill_cmd, evaluate_cmd, export_cmd, inspect_cmd, labels_cmd, predict_cmd,
               pseudo_cmd, synth_cmd, train_cmd)

COMMANDS = (synth_cmd, inspect_cmd, train_cmd, pseudo_cmd, distill_cmd, evaluate_cmd, predict_cmd,
            export_cmd, bench_cmd, labels_cmd)


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
        code = int(args.run(args) or 0)
        # A job stopped by SIGTERM or SIGHUP (not Ctrl+C) exits with 128 + that signal's number.
        return stop_exit_code(code) if code == 130 else code
    except UserError as exc:
        print(f"murid {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"murid {args.command}: interrupted", file=sys.stderr)
        return stop_exit_code(130)
    except OSError as exc:
        message = write_error_message(exc, resumable=args.command in RESUMABLE_COMMANDS)
        if message is None:
            raise
        print(f"murid {args.command}: error: {message}", file=sys.stderr)
        return UserError.exit_code
    finally:
        release_all()  # the project locks this command took


WRITE_ERRORS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exhausted",
                errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                errno.EPERM: "permission denied"}


RESUMABLE_COMMANDS = ("train", "distill")  # the ones a --resume continues


def write_error_message(exc: OSError, resumable: bool = False) -> str | None:
    """One sentence for a write the machine refused, naming the path and the free space (at the
    failed write, when the writer measured it); None for other OSErrors (a program error, whose
    traceback is wanted). `resumable`: the command continues with --resume, and the sentence
    says so."""
    what = WRITE_ERRORS.get(exc.errno)
    if what is None:
        return None
    path = exc.filename or getattr(exc, "murid_path", None)
    where = f"cannot write {path}: {what}" if path else f"cannot write: {what}"
    needed = getattr(exc, "murid_bytes", None)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        free = getattr(exc, "murid_free", None)
        if free is None and path:
            free = _free_bytes(Path(path))
        parts = []
        if needed:
            parts.append(f"{_size(needed)} needed")
        if free is not None:
            parts.append(f"{_size(free)} free")
        if parts:
            where += f" ({', '.join(parts)})"
        where += "; free some space and run the command again" + (" with --resume" if resumable else "")
    return where


def _free_bytes(path: Path) -> int | None:
    for folder in (path, *path.parents):
        if folder.is_dir():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"
