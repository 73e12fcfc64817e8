"""GTA5 (Richter et al. 2016): `images/NNNNN.png` and `labels/NNNNN.png`.

The real download stores each label as a palette (indexed) PNG whose INDICES are Cityscapes
label ids; the palette only makes them viewable. The indices are read, never the colours.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from murid_engine.errors import UserError
from murid_engine.imageio import list_images, read_index_png
from murid_engine.labels import IGNORE, LABEL_ID_TO_TRAIN_ID, MAX_LABEL_ID

from .base import Dataset, Sample, check_values, require_dir, require_nonempty

# Label ids 0..33, and 255 (license plate, id -1 in the official table, stored as uint8).
VALID_LABEL_IDS = np.zeros(256, dtype=bool)
VALID_LABEL_IDS[: MAX_LABEL_ID + 1] = True
VALID_LABEL_IDS[IGNORE] = True

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


class Gta5Dataset(Dataset):
    kind = "gta5"

    @classmethod
    def open(cls, root: Path, split: str | None = None) -> "Gta5Dataset":
        check_no_split(cls.kind, split)
        root = Path(root)
        require_dir(root, "the GTA5 folder")
        image_dir = require_dir(root / "images", "GTA5 images")
        label_dir = require_dir(root / "labels", "GTA5 labels")
        return cls(root, pair_folders(image_dir, label_dir), None)

    def decode_label(self, path: Path) -> np.ndarray:
        label_ids = read_index_png(path)
        check_values(path, label_ids, VALID_LABEL_IDS, "Cityscapes label-id")
        return LABEL_ID_TO_TRAIN_ID[label_ids]
