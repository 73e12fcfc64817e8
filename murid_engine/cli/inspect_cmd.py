"""`murid inspect KIND:PATH [--split S] [--json]`: check a dataset and summarise it.

Exit 0 when every file reads cleanly, 2 when problems were found (each listed on one line on
standard error). Structural problems (a missing folder, no images, a bad spec) are UserErrors.
"""

from __future__ import annotations

import argparse
import json
import sys

from murid_engine.data import KINDS, open_dataset
from murid_engine.inspection import InspectionReport, inspect_dataset


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="check a dataset: counts, sizes, class frequencies, bad files",
        description="Read every file of a dataset, report its contents and every bad file.",
    )
    p.add_argument("spec", metavar="KIND:PATH", help=f"dataset, KIND one of {', '.join(KINDS)}")
    p.add_argument("--split", default=None, help="split to read (default: the kind's default)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    ds = open_dataset(args.spec, args.split)
    report = inspect_dataset(ds, progress=not args.json)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print(format_report(report))
    for problem in report.problems:
        # One line each, so that the list can be grepped and counted.
        print(f"murid inspect: problem: {_one_line(problem)}", file=sys.stderr)
    return 2 if report.problems else 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


def format_report(r: InspectionReport) -> str:
    split = f" (split {r.split})" if r.split else ""
    lines = [
        f"{r.kind}:{r.root}{split}",
        f"  images:    {r.n_images}",
        f"  labelled:  {r.n_labelled}",
        "  sizes:     " + ", ".join(f"{size} ({n})" for size, n in r.sizes.items()),
    ]
    if r.n_valid_pixels:
        ignored = r.n_ignored_pixels / max(1, r.n_valid_pixels + r.n_ignored_pixels)
        lines.append(f"  labelled pixels: {r.n_valid_pixels} valid, {ignored:.1%} ignored")
        lines.append("  class           fraction")
        for name, fraction in r.class_pixel_fraction.items():
            bar = "#" * round(fraction * 40)
            lines.append(f"  {name:<15} {fraction:8.2%}  {bar}".rstrip())
    if r.problems:
        lines.append(f"  problems:  {len(r.problems)} (listed on standard error)")
    else:
        lines.append("  problems:  none")
    return "\n".join(lines)
