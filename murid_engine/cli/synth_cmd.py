"""`murid synth OUT`: write the SynthCity benchmark."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from murid_engine.errors import UserError
from murid_engine.synthcity import SHIFTS, SynthConfig, generate


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)[xX](\d+)", text)
    if not m:
        raise argparse.ArgumentTypeError(f"'{text}' is not WIDTHxHEIGHT, e.g. 256x128")
    return int(m.group(1)), int(m.group(2))


def register(sub) -> None:
    p = sub.add_parser("synth", help="generate the SynthCity two-domain benchmark",
                       description="Write SynthCity: source in the GTA5 layout, target train/val "
                                   "in the Cityscapes layout, deterministic by seed.")
    d = SynthConfig()
    p.add_argument("out", type=Path, help="output folder (new or an earlier SynthCity folder)")
    p.add_argument("--n-source", type=int, default=d.n_source, help=f"source images ({d.n_source})")
    p.add_argument("--n-target", type=int, default=d.n_target, help=f"target train images ({d.n_target})")
    p.add_argument("--n-val", type=int, default=d.n_val, help=f"target val images ({d.n_val})")
    p.add_argument("--size", type=_size, default=(d.width, d.height), metavar="WxH",
                   help=f"image size ({d.width}x{d.height})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed ({d.seed})")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    # Not argparse choices: a bad value should be our one sentence, like every other bad option.
    p.add_argument("--shift", default=d.shift, metavar="|".join(SHIFTS),
                   help=f"how the domains differ ({d.shift}; hard: per-class appearance, rig, "
                        "density and sensor shift that BatchNorm statistics cannot remove)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier SynthCity folder (its generated files are removed first)")
    p.set_defaults(run=run)


def run(args) -> int:
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be 1 or more, not {args.workers}")
    cfg = SynthConfig(n_source=args.n_source, n_target=args.n_target, n_val=args.n_val,
                      width=args.size[0], height=args.size[1], seed=args.seed, shift=args.shift)
    generate(args.out, cfg, workers=args.workers, overwrite=args.overwrite)
    print(f"SynthCity ({cfg.shift} shift) written to {args.out}: {cfg.n_source} source images (gta5 layout in "
          f"{args.out / 'source'}), {cfg.n_target} target train and {cfg.n_val} target val images "
          f"(cityscapes layout in {args.out / 'target'})")
    return 0
