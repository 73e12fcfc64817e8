"""`murid bench correct`: student mIoU after a simulated region review, per budget and strategy.

    murid bench correct --project DIR [--budgets 0.5,1,2,5] [--strategy ranked,random]
                        [--workdir DIR] [--seconds-per-region S] [--threads N] [--json FILE]
                        [--set KEY=VALUE ...]

See murid_engine.bench.correct for what is run and measured.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from murid_engine.errors import UserError
from murid_engine.imageio import atomic_write_bytes


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated percentages, not '{text}'") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one budget")
    return values


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def register_correct(which) -> None:
    p = which.add_parser("correct", help="what corrections are worth: simulated region review, then "
                                         "the next round and the student",
                         description="A simulated annotator relabels, from the target-train ground "
                                     "truth, the regions a strategy picks until a budget (percent of "
                                     "target-train pixels) is spent; the next curriculum round and the "
                                     "distillation run on a copy of the project; the student is scored "
                                     "on target val.")
    p.add_argument("--project", type=Path, required=True, metavar="DIR",
                   help="a trained project whose target-train split has labels")
    p.add_argument("--budgets", type=_floats, default=(0.5, 1.0, 2.0, 5.0), metavar="P,P,...",
                   help="percentages of target-train pixels (default 0.5,1,2,5)")
    p.add_argument("--strategy", type=_names, default=("ranked", "random"), metavar="S,S",
                   help="ranked (the region queue, worst first) and/or random (default both)")
    p.add_argument("--workdir", type=Path, default=None, metavar="DIR",
                   help="where the project copies go (default: a temporary folder, removed)")
    p.add_argument("--seconds-per-region", type=float, default=3.0, metavar="S",
                   help="review time of one region, for the minutes column (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random strategy (0)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (1)")
    p.add_argument("--json", dest="json_out", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a config setting of the copies, before their round is labelled (repeatable; "
                        "e.g. regions.min_regions=64, curriculum.edit_weight=3)")
    p.set_defaults(run=run_correct_cmd)


def run_correct_cmd(args: argparse.Namespace) -> int:
    from murid_engine.bench.correct import STRATEGIES, CorrectConfig, format_correct, run_correct

    bad = [s for s in args.strategy if s not in STRATEGIES]
    if bad or not args.strategy:
        raise UserError(f"--strategy takes {' and/or '.join(STRATEGIES)}, not '{','.join(args.strategy)}'")
    if not args.project.is_dir():
        raise UserError(f"project folder {args.project} does not exist")
    if args.seconds_per_region <= 0 or args.threads < 1:
        raise UserError("--seconds-per-region must be positive and --threads 1 or more")
    with tempfile.TemporaryDirectory(prefix="murid-correct-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        cfg = CorrectConfig(args.project, workdir, tuple(args.budgets), tuple(args.strategy),
                            args.seconds_per_region, args.seed, args.threads,
                            overrides=tuple(args.overrides))
        result = run_correct(cfg)
    print(format_correct(result))
    if args.json_out:
        atomic_write_bytes(Path(args.json_out), (json.dumps(result, indent=2) + "\n").encode())
    return 0
