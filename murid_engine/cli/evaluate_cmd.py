"""`murid evaluate`: score predictions against labels (mIoU, mIoU16/13, per-class IoU, accuracy).

    murid evaluate --pred DIR --gt KIND:PATH [--split val] [--json FILE|-]
    murid evaluate --project DIR [--model teacher|student|both] [--target KIND:PATH] [--split val] [--json FILE|-]

Scores are fractions 0..1 in JSON and percents in the text table. With --project, teacher,
student and (with --model both) the source-only model are evaluated side by side, each timed
in ms per target image, and a report (HTML, confusion-matrix PNGs, JSON) is written into the
project's reports/ folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from murid_engine.data import KINDS, open_dataset, resolve_split
from murid_engine.errors import UserError
from murid_engine.evaluation import evaluate_predictions
from murid_engine.imageio import atomic_write_bytes
from murid_engine.metrics import SegmentationScores

DEFAULT_SPLIT = "val"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score predictions (or a project's models) against labels: mIoU, per-class IoU",
        description="Score predicted train-id PNGs against a labelled dataset, or a trained "
        "project's models against its target validation split.",
    )
    p.add_argument("--pred", type=Path, metavar="DIR",
                   help="folder of predictions, <stem>.png holding train ids (as `murid predict` writes)")
    p.add_argument("--gt", metavar="KIND:PATH", help=f"labelled dataset, KIND one of {', '.join(KINDS)}")
    p.add_argument("--project", type=Path, metavar="DIR", help="a trained project folder")
    p.add_argument("--model", choices=("teacher", "student", "both"), default=None,
                   help="with --project: which model to evaluate (default: both)")
    p.add_argument("--target", metavar="KIND:PATH",
                   help="with --project: evaluate on this dataset instead of the project's target")
    p.add_argument("--split", default=None,
                   help=f"split to evaluate (default: {DEFAULT_SPLIT}; gta5 and synthia have no splits)")
    p.add_argument("--threads", type=int, default=None,
                   help="with --project: CPU threads for the speed measurement (default: torch's count)")
    p.add_argument("--json", dest="json_out", metavar="FILE",
                   help="also write the scores as JSON to FILE ('-': print only the JSON on stdout)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if (args.pred is None) == (args.project is None):
        raise UserError("give either --pred DIR with --gt KIND:PATH, or --project DIR")
    if args.project is not None:
        return _run_project(args)
    if args.gt is None:
        raise UserError("--pred needs --gt KIND:PATH, the labelled dataset to score against")
    if args.model is not None or args.target is not None:
        raise UserError("--model and --target go with --project, not with --pred")
    if not args.pred.is_dir():
        what = "does not exist" if not args.pred.exists() else "is not a folder"
        raise UserError(f"{args.pred} {what} (the --pred folder of predictions)")
    _check_json_target(args.json_out)
    gt = open_dataset(args.gt, resolve_split(args.gt, args.split, DEFAULT_SPLIT))
    scores = evaluate_predictions(
        args.pred, gt, warn=lambda message: print(f"murid evaluate: warning: {message}", file=sys.stderr))
    _report(scores, args.json_out, title=f"{args.pred} vs {gt!r}")
    return 0


def _run_project(args: argparse.Namespace) -> int:
    if args.gt is not None:
        raise UserError("--gt goes with --pred; with --project use --target KIND:PATH")
    folder: Path = args.project
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is a file"
        raise UserError(f"{folder} is not a project folder (it {what})")
    checkpoints = folder / "checkpoints"
    if not checkpoints.is_dir() or not any(p.is_file() for p in checkpoints.iterdir()):
        raise UserError(f"evaluating a project needs `murid train` first: {folder} has no checkpoint")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be 1 or more, not {args.threads}")
    _check_json_target(args.json_out)
    from murid_engine.comparison import available_models  # torch: only when used
    from murid_engine.project import Project
    from murid_engine.usecases import evaluate_project

    project = Project.open(folder)
    which = args.model or "both"
    if which == "both":
        held = available_models(project)
        names = [n for n in held if n in ("source_only", "student")] + ["teacher"]
        if "student" not in held:
            print(f"note: {folder} has no student yet (run `murid distill`); evaluating the teacher",
                  file=sys.stderr)
    else:
        names = [which]
    evaluation = evaluate_project(project, names, args.target, args.split, args.threads)
    comparison, report = evaluation.comparison, evaluation.report
    data = evaluation.to_json()
    text = json.dumps(data, indent=2) + "\n"
    if args.json_out == "-":
        print(text, end="")
        return 0
    if args.json_out is not None:
        _write(Path(args.json_out), text)
    print(format_comparison(comparison))
    print(f"report written to {report}")
    if args.json_out is not None:
        print(f"scores written to {args.json_out}")
    return 0


def format_comparison(c) -> str:
    """Models side by side: per-class IoU, the means, pixel accuracy and speed (percent, ms)."""
    w, h = c.speed_size
    titles = [m.title for m in c.models]
    width = max(9, *(len(t) + 1 for t in titles))
    lines = [f"{c.dataset}", f"{'class':<15}" + "".join(f"{t:>{width}}" for t in titles),
             "-" * (15 + width * len(titles))]
    names = c.models[0].scores.class_names()
    for i, name in enumerate(names):
        lines.append(f"{name:<15}" + "".join(f"{_pct(m.scores.iou[i]):>{width}}" for m in c.models))
    lines.append("-" * (15 + width * len(titles)))
    for label, get in (("mIoU", lambda s: s.miou), ("mIoU16", lambda s: s.miou16),
                       ("mIoU13", lambda s: s.miou13), ("pixel accuracy", lambda s: s.pixel_acc)):
        lines.append(f"{label:<15}" + "".join(f"{_pct(get(m.scores)):>{width}}" for m in c.models))
    lines.append(f"{'ms / image':<15}" + "".join(f"{m.speed.ms:>{width}.2f}" for m in c.models))
    ups = [c.speedup(m.name) for m in c.models]
    if c.model("teacher") is not None:
        lines.append(f"{'vs teacher':<15}" + "".join(
            f"{'-' if u is None else f'{u:.2f}x':>{width}}" for u in ups))
    lines.append(f"speed: one {w}x{h} image, {c.threads} thread(s), {c.device}, after a warm-up; "
                 "the teacher's time includes its source bank")
    return "\n".join(lines)


def _write(path: Path, text: str) -> None:
    try:
        atomic_write_bytes(path, text.encode("utf-8"))
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None


def _check_json_target(json_out: str | None) -> None:
    # Before the evaluation, so that a wrong --json does not cost a whole run.
    if json_out not in (None, "-") and Path(json_out).is_dir():
        raise UserError(f"--json {json_out} is a folder; give a file name")


def _report(scores: SegmentationScores, json_out: str | None, title: str) -> None:
    text = json.dumps(scores.to_json(), indent=2) + "\n"
    if json_out == "-":  # machine output only, so that stdout can be piped into a parser
        print(text, end="")
        return
    if json_out is not None:  # written first: a failed write is then the only output
        path = Path(json_out)
        try:
            atomic_write_bytes(path, text.encode("utf-8"))
        except OSError as exc:
            raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(format_scores(scores, title))
    if json_out is not None:
        print(f"scores written to {json_out}")


def _pct(value: float | None) -> str:
    return "     -" if value is None else f"{100 * value:6.2f}"


def format_scores(s: SegmentationScores, title: str = "") -> str:
    """The human table: per-class IoU, then the means and pixel accuracy, in percent."""
    lines = [title] if title else []
    lines.append(f"{'class':<15} {'IoU %':>6}")
    lines.append("-" * 22)
    for name, iou in zip(s.class_names(), s.iou):
        note = "  (absent from labels and predictions)" if iou is None else ""
        lines.append(f"{name:<15} {_pct(iou)}{note}")
    lines.append("-" * 22)
    counted = sum(v is not None for v in s.iou)
    lines.append(f"{'mIoU':<15} {_pct(s.miou)}  (mean over {counted} classes present)")
    lines.append(f"{'mIoU16':<15} {_pct(s.miou16)}  (SYNTHIA 16-class protocol)")
    lines.append(f"{'mIoU13':<15} {_pct(s.miou13)}  (SYNTHIA 13-class protocol)")
    lines.append(f"{'pixel accuracy':<15} {_pct(s.pixel_acc)}")
    lines.append(f"{'images':<15} {s.n_images:6d}")
    return "\n".join(lines)
