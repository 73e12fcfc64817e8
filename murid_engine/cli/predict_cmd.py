"""`murid predict`: segment images with a trained model and write train-id PNGs.

    murid predict (--project DIR [--model teacher|student] | --checkpoint FILE)
                  --input DIR_OR_KIND:PATH [--split S] --output DIR [--color] [--device D]

One single-channel PNG of train ids per image, `<stem>.png`, at the input image's own size
(the network sees the image at the checkpoint's data.target_size, as in training); with
--color also `<stem>_color.png` in the Cityscapes palette. The PNGs are what
`murid evaluate --pred DIR --gt KIND:PATH` scores. A Cityscapes-style name keeps its stem only:
`aachen_000000_000019_leftImg8bit.png` gives `aachen_000000_000019.png`, from any kind of input.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from murid_engine.data import KINDS, Dataset, Sample, open_dataset, resolve_split
from murid_engine.errors import UserError
from murid_engine.imageio import list_images
from murid_engine.usecases import prediction_names, save_prediction

DEFAULT_SPLIT = "val"  # the same default as `murid evaluate`, so their outputs line up


def device_option(text: str) -> str:
    """argparse type for --device: the names RunConfig.device accepts (a typo is a one-line error)."""
    if re.fullmatch(r"auto|cpu|cuda(:\d+)?", text) is None:
        raise argparse.ArgumentTypeError(f"'{text}' is not a device (auto, cpu, cuda or cuda:N)")
    return text


def register(sub) -> None:
    p = sub.add_parser("predict", help="segment images with a trained model, one train-id PNG each",
                       description="Write one single-channel PNG of train ids per input image, named "
                                   "by the image's stem and at the image's size.")
    p.add_argument("--project", type=Path, metavar="DIR", help="a trained project folder")
    p.add_argument("--model", choices=("teacher", "student"), default=None,
                   help="which model (default: the student if distilled, else the teacher)")
    p.add_argument("--checkpoint", type=Path, metavar="FILE",
                   help="a checkpoint file instead of a project (e.g. a copied teacher.pt)")
    p.add_argument("--input", required=True, metavar="DIR_OR_KIND:PATH",
                   help=f"a folder of images, or a dataset KIND:PATH ({', '.join(KINDS)})")
    p.add_argument("--split", default=None,
                   help=f"with a KIND:PATH input: the split (default: {DEFAULT_SPLIT} where the "
                        "layout has splits)")
    p.add_argument("--output", type=Path, required=True, metavar="DIR", help="folder for the PNGs")
    p.add_argument("--color", action="store_true", help="also write <stem>_color.png in the palette")
    p.add_argument("--device", type=device_option, default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.set_defaults(run=run)


def open_input(spec: str, split: str | None) -> Dataset:
    """A dataset from KIND:PATH, or the images of a plain folder (as an unlabelled dataset)."""
    kind, sep, _ = spec.partition(":")
    if sep and kind in KINDS:
        return open_dataset(spec, resolve_split(spec, split, DEFAULT_SPLIT))
    if split is not None:
        raise UserError(f"--split goes with a KIND:PATH input, and '{spec}' is a plain folder")
    folder = Path(spec).expanduser()
    if not folder.exists():
        if sep:  # looks like KIND:PATH with a kind we do not know
            raise UserError(f"input '{spec}' is not a folder, and '{kind}' is not a dataset kind "
                            f"(kinds: {', '.join(KINDS)})")
        raise UserError(f"input folder {folder} does not exist")
    if not folder.is_dir():
        raise UserError(f"input {folder} is a file; give a folder of images or a dataset KIND:PATH")
    images = list_images(folder)
    if not images:
        raise UserError(f"no images in {folder} (looked for .png, .jpg, .jpeg, .bmp, .tif, .webp)")
    dataset = Dataset(folder, [Sample(p.stem, p, None) for p in images])
    dataset.kind = "folder of images"
    return dataset


output_names = prediction_names  # the files save_prediction writes (no _leftImg8bit)


def check_outputs(dataset: Dataset, output: Path, color: bool) -> None:
    """Refuse what would overwrite an input image or write two images to one file."""
    if output.exists() and not output.is_dir():
        raise UserError(f"output {output} is a file; give a folder for the predictions")
    names: dict[str, Path] = {}
    for sample in dataset.samples:
        for name in output_names(sample.stem, color):
            if name in names:
                raise UserError(f"{sample.image} and {names[name]} would both be written to "
                                f"{output / name}; rename one of them")
            names[name] = sample.image
            if (output / name).resolve() == sample.image.resolve():
                raise UserError(f"writing {output / name} would overwrite the input image; "
                                "choose another --output folder")


def run(args: argparse.Namespace) -> int:
    if (args.project is None) == (args.checkpoint is None):
        raise UserError("give either --project DIR or --checkpoint FILE (one of them)")
    dataset = open_input(args.input, args.split)
    check_outputs(dataset, args.output, args.color)
    # torch and the models load only now, so that argument mistakes are reported at once.
    from murid_engine.inference import predict_dataset
    from murid_engine.model_store import load_model, project_model
    from murid_engine.devices import resolve_device

    if args.project is not None:
        from murid_engine.project import Project

        project = Project.open(args.project)
        which = args.model or ("student" if project.checkpoint_path("student").is_file() else "teacher")
        loaded = project_model(project, which)
    else:
        loaded = load_model(args.checkpoint, args.model)
    device = resolve_device(args.device)
    model = loaded.model.to(device)
    size = loaded.config.data.target_size
    count = 0
    try:
        args.output.mkdir(parents=True, exist_ok=True)
        for stem, pred, _ in predict_dataset(model, dataset, size, desc=f"predict ({loaded.name})",
                                             device=device):
            save_prediction(args.output, stem, pred, args.color)
            count += 1
    except OSError as exc:  # a read-only or full disk, a parent that is a file
        from murid_engine.cli import write_error_message  # the free space, when the disk is full

        raise UserError(write_error_message(exc) or
                        f"cannot write to {exc.filename or args.output}: {exc.strerror or exc}") from None
    print(f"{count} predictions by the {loaded.name} of {loaded.path} written to {args.output}"
          + (" (with _color.png)" if args.color else ""))
    return 0
