"""`murid pseudo`: write the project's next pseudo-label round with its current teacher.

    murid pseudo --project DIR [--portion P] [--device D]

The round is numbered after the latest complete one (from 1) and written exactly as the
curriculum writes its rounds (usecases.write_next_round), so the user's threshold
overrides and edits apply, the Review view can open it, and a resumed curriculum trains on it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from murid_engine.curriculum.round_summary import RoundSummary
from murid_engine.project import Project
from murid_engine.project_lock import hold_project_lock
from murid_engine.usecases import check_portion, write_next_round

from .predict_cmd import device_option


def register(sub) -> None:
    p = sub.add_parser("pseudo", help="write the next pseudo-label round with the project's teacher",
                       description="Label the project's target-train images with its adapted teacher "
                                   "(checkpoints/teacher.pt) and write them as the next round: "
                                   "pseudo-labels, confidence maps, per-class thresholds and "
                                   "kept-pixel statistics.")
    p.add_argument("--project", type=Path, required=True, metavar="DIR", help="a trained project folder")
    p.add_argument("--portion", type=float, default=None, metavar="P",
                   help="fraction of each class's most confident pixels to keep, in (0, 1] "
                        "(default: the project's portion override, else the curriculum schedule)")
    p.add_argument("--device", type=device_option, default=None,
                   help="auto, cpu, cuda or cuda:N (default: the project's setting)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_portion(args.portion, "--portion")  # named as the user typed it
    project = Project.open(args.project)
    hold_project_lock(project.root)  # released when the command returns
    written = write_next_round(project, args.portion, args.device)
    print(format_round(written.folder, written.summary))
    return 0


def format_round(round_dir: Path, summary: RoundSummary) -> str:
    """The round's folder, portion, kept fraction, and a per-class table of kept pixels."""
    lines = [f"round {summary.round} written to {round_dir}",
             f"portion {summary.portion:g}, {len(summary.images)} images, "
             f"kept fraction {summary.kept_fraction:.4f}, "
             f"{summary.human_verified_pixels} human-verified pixels"]
    names = [n for n, count in summary.predicted_pixels.items() if count > 0]
    if names:
        width = max(len(n) for n in names)
        lines.append(f"{'class':<{width}}  threshold  {'kept':>9}  {'predicted':>9}  kept%")
        for name in names:
            kept, predicted = summary.kept_pixels[name], summary.predicted_pixels[name]
            lines.append(f"{name:<{width}}  {summary.thresholds[name]:>9.3f}  {kept:>9}  {predicted:>9}  "
                         f"{100 * kept / predicted:5.1f}")
    return "\n".join(lines)
