"""Pairing image files with label files by stem, shared by every reader."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from murid_engine.errors import UserError
from murid_engine.imageio import list_images

from .base import Sample, require_nonempty

# A layout without splits accepts no split, or 'all' (the whole folder).
NO_SPLIT = (None, "all")


def check_no_split(kind: str, split: str | None) -> None:
    if split not in NO_SPLIT:
        raise UserError(f"{kind} has no splits (got --split {split}); leave it out or use 'all'")


def by_stem(paths: list[Path]) -> dict[str, Path]:
    """stem -> path; predictions are named by stem, so two files may not share one."""
    found: dict[str, Path] = {}
    for path in paths:
        if path.stem in found:
            raise UserError(f"{path} and {found[path.stem].name} have the same name; rename one")
        found[path.stem] = path
    return found


def pair_samples(
    images: dict[str, Path], labels: dict[str, Path], expected: Callable[[str, Path], Path]
) -> list[Sample]:
    """One sample per image with its label; an image without a label, or a label without an
    image, is an error naming the first (and counting the others). `expected(stem, image)` is
    the label path the message suggests."""
    missing = [stem for stem in images if stem not in labels]
    if missing:
        image = images[missing[0]]
        more = f" (and {len(missing) - 1} more without a label)" if len(missing) > 1 else ""
        raise UserError(f"{image} has no label (expected {expected(missing[0], image)}){more}")
    stray = [path for stem, path in labels.items() if stem not in images]
    if stray:
        more = f" (and {len(stray) - 1} more)" if len(stray) > 1 else ""
        raise UserError(f"{stray[0]} is a label without an image{more}")
    return [Sample(stem, image, labels[stem]) for stem, image in images.items()]


def pair_folders(image_dir: Path, label_dir: Path) -> list[Sample]:
    """`image_dir/<stem>.*` with `label_dir/<stem>.png`, every image labelled."""
    images = list_images(image_dir)
    require_nonempty(images, image_dir)
    labels = by_stem([p for p in list_images(label_dir) if p.suffix.lower() == ".png"])
    return pair_samples(by_stem(images), labels, lambda stem, _: label_dir / f"{stem}.png")
