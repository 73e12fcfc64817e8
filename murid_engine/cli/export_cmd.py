"""`murid export`: the distilled student as a TorchScript or ONNX file that runs without this project.

    murid export (--project DIR | --checkpoint FILE) --format torchscript|onnx [--out FILE] [--size WxH]

Input: float32 N×3×H×W RGB in [0, 1] (normalised inside). Output: N×19×H×W logits. N, H and W
are dynamic; the file is checked against the PyTorch student at two sizes before this returns.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from murid_engine.errors import UserError
from murid_engine.export import FORMATS, SUFFIXES

from .bench_cmd import parse_size


def register(sub) -> None:
    p = sub.add_parser("export", help="export the student to TorchScript or ONNX",
                       description="Export the distilled student for deployment: float32 N×3×H×W RGB "
                                   "in [0, 1] in, N×C×H×W logits out, any N, H and W.")
    p.add_argument("--project", type=Path, metavar="DIR", help="a project with a distilled student")
    p.add_argument("--checkpoint", type=Path, metavar="FILE", help="or a lone student checkpoint (student.pt)")
    p.add_argument("--format", required=True, choices=FORMATS, help="torchscript or onnx")
    p.add_argument("--out", type=Path, metavar="FILE",
                   help="file to write (default: the project's exports/student.pt or exports/student.onnx)")
    p.add_argument("--size", type=parse_size, metavar="WxH",
                   help="example input size for tracing (default: the size the student was trained at)")
    p.add_argument("--json", dest="json_out", action="store_true", help="print the result as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if (args.project is None) == (args.checkpoint is None):
        raise UserError("give either --project DIR or --checkpoint FILE")
    from murid_engine.bench.speed import project_input_size
    from murid_engine.export import export_student
    from murid_engine.model_store import load_model, project_model
    from murid_engine.project import Project

    if args.project is not None:
        project = Project.open(args.project)
        loaded = project_model(project, "student")
        out = args.out
        if out is None:
            out = project.exports_dir / f"student{SUFFIXES[args.format]}"
            out.parent.mkdir(parents=True, exist_ok=True)
        size = args.size or project_input_size(project)
    else:
        loaded = load_model(args.checkpoint, "student")
        if args.out is None:
            raise UserError("--checkpoint needs --out FILE, the file to write")
        out = args.out
        crop = loaded.config.data.target_size or loaded.config.data.crop
        size = args.size or tuple(crop)
    result = export_student(loaded.model, args.format, out, size, loaded.config.data.target_size)
    if args.json_out:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    classes = loaded.config.student_model.num_classes
    checks = ", ".join(f"{100 * share:.2f}% at {s}" for s, share in result.agreement.items())
    print(f"student exported to {out} ({args.format})")
    print(f"input  float32 N x 3 x H x W, RGB in [0, 1] (any N, H, W); output N x {classes} x H x W logits")
    print(f"argmax agreement with the PyTorch student: {checks}")
    return 0
