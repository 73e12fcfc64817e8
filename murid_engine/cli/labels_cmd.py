"""`murid labels`: a round's labels to and from other annotation tools (Cityscapes layout).

    murid labels export --project DIR [--round R] --out DIR
    murid labels import --project DIR --masks KIND:PATH [--round R]

See murid_engine.regions.masks for the formats and the rules of import.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from murid_engine.project import Project
from murid_engine.regions.masks import KINDS, export_masks, import_masks, parse_masks


def register(sub) -> None:
    p = sub.add_parser("labels", help="export a round's labels as Cityscapes masks, import corrected masks",
                       description="Move a pseudo-label round's labels (with your edits) to and from "
                                   "annotation tools that read Cityscapes masks (CVAT, ...).")
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    actions.required = True
    e = actions.add_parser("export", help="write the round's labels, edits applied, as gtFine masks")
    e.add_argument("--project", type=Path, required=True, metavar="DIR")
    e.add_argument("--round", type=int, default=None, metavar="R", help="default: the latest complete round")
    e.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write gtFine/ into")
    e.set_defaults(run=run_export)
    i = actions.add_parser("import", help="read corrected masks back as edits")
    i.add_argument("--project", type=Path, required=True, metavar="DIR")
    i.add_argument("--round", type=int, default=None, metavar="R", help="default: the latest complete round")
    i.add_argument("--masks", required=True, metavar="KIND:PATH",
                   help=f"KIND is {' or '.join(KINDS)} (Cityscapes label ids in *_gtFine_labelIds.png, "
                        "or train ids); unlabelled pixels count as not corrected")
    i.set_defaults(run=run_import)


def run_export(args: argparse.Namespace) -> int:
    s = export_masks(Project.open(args.project), args.out, args.round)
    print(f"round {s.round}: {s.images} masks written to {s.folder / 'gtFine'} "
          f"({s.labelled_pixels} of {s.pixels} pixels labelled)")
    return 0


def run_import(args: argparse.Namespace) -> int:
    kind, folder = parse_masks(args.masks)
    s = import_masks(Project.open(args.project), kind, folder, args.round)
    print(f"round {s.round}: {s.masks} masks read, {s.corrected_pixels} corrected pixels written as "
          f"edits of {s.changed_images} images")
    return 0
