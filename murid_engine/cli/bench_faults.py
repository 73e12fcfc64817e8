"""`murid bench faults`: kill -9 smoke-preset training runs at random moments, resume, count.

    murid bench faults [--runs N] [--seed S] [--data DIR] [--json FILE]

Prints runs / recovered / corrupted (murid_engine.bench.faults); not a timed benchmark.
"""

from __future__ import annotations

import json
from pathlib import Path

from murid_engine.errors import UserError
from murid_engine.imageio import atomic_write_bytes


def register_faults(which) -> None:
    p = which.add_parser("faults", help="kill -9 training runs at random moments, resume them, "
                                         "count the recovered and the corrupted projects")
    p.add_argument("--runs", type=int, default=30, help="killed runs (30)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments (0)")
    p.add_argument("--data", type=Path, default=None, help="a SynthCity folder (default: generate one)")
    p.add_argument("--stages", default=None, help="stages to train (default: all of the smoke preset)")
    p.add_argument("--json", dest="json_out", metavar="FILE", help="also write the results as JSON")
    p.set_defaults(run=run_faults_cmd)


def run_faults_cmd(args) -> int:
    from murid_engine.bench.faults import FaultConfig, format_faults, run_faults

    if args.runs < 1:
        raise UserError(f"--runs must be 1 or more, not {args.runs}")
    if args.data is not None and not (args.data / "synthcity.json").is_file():
        raise UserError(f"{args.data} is not a SynthCity folder (no synthcity.json); make one with `murid synth`")
    data = args.data.resolve() if args.data is not None else None
    result = run_faults(FaultConfig(runs=args.runs, seed=args.seed, stages=args.stages), data=data,
                        log=lambda line: print(line, flush=True))
    print(format_faults(result))
    if args.json_out:
        atomic_write_bytes(Path(args.json_out), (json.dumps(result.to_json(), indent=2) + "\n").encode())
    return 0 if result.to_json()["corrupted"] == 0 else 1
