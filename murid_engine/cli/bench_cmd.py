"""`murid bench ...`: measured figures for docs/BENCHMARKS.md."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from murid_engine.errors import UserError

from murid_engine.imageio import atomic_write_bytes
from murid_engine.labels import CLASS_NAMES

from .bench_correct import register_correct
from .bench_faults import register_faults
from .bench_gui import register_gui
from .bench_quality import register_quality
from .bench_speed import parse_size, register_speed

__all__ = ["register", "parse_size"]  # parse_size: export_cmd's --size reads sizes the same way


def register(sub) -> None:
    p = sub.add_parser("bench", help="measure quality and speed (figures for docs/BENCHMARKS.md)")
    which = p.add_subparsers(dest="bench", metavar="BENCH")
    which.required = True
    register_quality(which)
    register_gui(which)
    gap = which.add_parser("gap", help="SynthCity's domain gap: source-only vs oracle, one budget")
    gap.add_argument("--data", type=Path, help="a SynthCity folder (default: generate one, seed 0)")
    gap.add_argument("--iterations", type=int, default=2000, help="training iterations per run (2000)")
    gap.add_argument("--threads", type=int, default=2, help="CPU threads (2)")
    gap.add_argument("--runs", default="source-only,adabn,oracle",
                     help="comma-separated subset of source-only,adabn,oracle (all)")
    gap.add_argument("--shift", default="standard",
                     help="SynthCity shift of the generated folder when --data is not given (standard)")
    gap.add_argument("--json", dest="json_out", metavar="FILE", help="also write the results as JSON")
    gap.set_defaults(run=run_gap_cmd)
    register_speed(which)
    register_faults(which)
    register_correct(which)


def run_gap_cmd(args) -> int:
    # Imported here: torch is only needed once a benchmark really runs.
    from murid_engine.bench.domain_gap import GapConfig, run_gap
    from murid_engine.synthcity import SynthConfig, generate

    if args.iterations < 1:
        raise UserError(f"--iterations must be 1 or more, not {args.iterations}")
    runs = tuple(r.strip() for r in args.runs.split(",") if r.strip())
    unknown = [r for r in runs if r not in ("source-only", "adabn", "oracle")]
    if unknown or not runs:
        raise UserError(f"--runs '{args.runs}' must list some of source-only, adabn, oracle")
    cfg = GapConfig(iterations=args.iterations, threads=args.threads, runs=runs)
    with tempfile.TemporaryDirectory(prefix="murid-synth-") as tmp:
        data = args.data
        if data is None:
            data = Path(tmp) / "synthcity"
            generate(data, SynthConfig(shift=args.shift))
        elif not (data / "synthcity.json").is_file():
            raise UserError(f"{data} is not a SynthCity folder (no synthcity.json); make one with `murid synth`")
        result = run_gap(data, cfg)
    print(format_gap(result))
    if args.json_out:
        atomic_write_bytes(Path(args.json_out), (json.dumps(result, indent=2) + "\n").encode())
    return 0


def format_gap(result: dict) -> str:
    runs = result["runs"]
    lines = [f"{'run':<12} {'mIoU':>6} {'time':>7}   trained on"]
    for r in runs:
        lines.append(f"{r['name']:<12} {100 * r['miou']:6.1f} {r['seconds']:6.0f}s   {r['trained_on']}")
    lines.append("")
    lines.append(f"{'class':<14}" + "".join(f"{r['name']:>13}" for r in runs))
    for c in CLASS_NAMES:
        cells = "".join(f"{_pct(r['per_class_iou'][c]):>13}" for r in runs)
        lines.append(f"{c:<14}{cells}")
    absent = {d: c for d, c in result["classes_absent"].items() if c}
    lines.append("")
    lines.append("classes absent: " + (json.dumps(absent) if absent else "none (all 19 in every domain)"))
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"
