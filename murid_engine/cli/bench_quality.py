"""`murid bench quality`: the ablation table of docs/BENCHMARKS.md (registered by bench_cmd)."""

from __future__ import annotations

import json
from pathlib import Path

from murid_engine.errors import UserError
from murid_engine.imageio import atomic_write_bytes


def register_quality(which) -> None:
    from murid_engine.bench.quality import RUNS, QualityConfig

    d = QualityConfig(Path())
    p = which.add_parser("quality", help="MURID, its ablations and plain baselines side by side, per seed",
                         description="Train MURID (in full and per ablation), the plain baselines "
                                     "(AdaBN, MixStyle, DACS) and the references (source-only, "
                                     "oracle) on the same data and budget, at each seed; print "
                                     "target-val mIoU (mean, spread, per seed) and wall time.")
    p.add_argument("--data", type=Path, help="a SynthCity folder (`murid synth`)")
    p.add_argument("--source", default="", metavar="KIND:PATH", help="a labelled source (instead of --data)")
    p.add_argument("--target", default="", metavar="KIND:PATH",
                   help="a target with a labelled val split (instead of --data)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds; every run runs at each (0)")
    p.add_argument("--placement", default=d.placement, choices=("alone", "shared"),
                   help="whether the runs had the machine alone; wall times are reported only then (alone)")
    p.add_argument("--workdir", type=Path, required=True, help="new folder for the runs' projects")
    p.add_argument("--preset", default=d.preset, help=f"preset ({d.preset})")
    p.add_argument("--runs", default=",".join(d.runs),
                   help=f"comma-separated runs among {', '.join(RUNS)} ({','.join(d.runs)})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change a setting of every run")
    p.add_argument("--oracle-iterations", type=int, default=d.oracle_iterations,
                   help=f"iterations of the oracle ({d.oracle_iterations})")
    p.add_argument("--dacs-iterations", type=int, default=None, metavar="N",
                   help="iterations of the dacs run (default: as many as MURID's curriculum); "
                        "give more to compare at equal wall time")
    p.add_argument("--threads", type=int, default=d.threads, help=f"CPU threads ({d.threads})")
    p.add_argument("--json", dest="json_out", metavar="FILE", help="also write the results as JSON")
    p.set_defaults(run=run_quality_cmd)


def run_quality_cmd(args) -> int:
    from murid_engine.bench.quality import QualityConfig, format_quality, run_quality
    from murid_engine.cli.progress_sink import TerminalSink

    too_few_dacs = args.dacs_iterations is not None and args.dacs_iterations < 1
    if args.threads < 1 or args.oracle_iterations < 1 or too_few_dacs:
        raise UserError("--threads, --oracle-iterations and --dacs-iterations must be 1 or more")
    try:
        seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
    except ValueError:
        raise UserError(f"--seeds must be comma-separated integers, not '{args.seeds}'") from None
    cfg = QualityConfig(args.workdir, args.data, args.source, args.target, args.preset,
                        tuple(r.strip() for r in args.runs.split(",") if r.strip()), seeds,
                        tuple(args.overrides), args.oracle_iterations, args.threads, args.placement,
                        args.dacs_iterations)
    with TerminalSink() as sink:
        result = run_quality(cfg, sink)
    if args.json_out:
        atomic_write_bytes(Path(args.json_out), (json.dumps(result, indent=2) + "\n").encode())
    print(format_quality(result))
    return 0
