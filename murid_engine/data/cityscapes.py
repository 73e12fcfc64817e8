"""Cityscapes: `leftImg8bit/{split}/<city>/<stem>_leftImg8bit.png` and
`gtFine/{split}/<city>/<stem>_gtFine_labelIds.png` (8-bit grey, Cityscapes label ids).

A sample's stem is `<stem>` without `_leftImg8bit`: predictions are written under that name,
as the official evaluation expects. Labels are optional: without `gtFine/{split}` every image
is unlabelled (the usual case for the adaptation target); with it, every image needs its label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from murid_engine.errors import UserError
from murid_engine.imageio import read_index_png
from murid_engine.labels import LABEL_ID_TO_TRAIN_ID

from .base import Dataset, Sample, check_values, require_dir
from .gta5 import VALID_LABEL_IDS
from .pairing import pair_samples

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"


def _find(folder: Path, suffix: str) -> dict[str, Path]:
    """`<stem>` -> path for every `<city>/<stem><suffix>` under `folder`."""
    found: dict[str, Path] = {}
    for path in sorted(folder.glob(f"*/*{suffix}")):
        stem = path.name[: -len(suffix)]
        if stem in found:  # predictions are named by stem: two images may not share one
            raise UserError(f"{path} has the same name as {found[stem]}; rename one of them")
        found[stem] = path
    return found


class CityscapesDataset(Dataset):
    kind = "cityscapes"
    splits = ("train", "val", "test")

    @classmethod
    def open(cls, root: Path, split: str | None = None) -> "CityscapesDataset":
        split = split or "train"
        if split not in cls.splits:
            raise UserError(f"cityscapes has no split '{split}' (splits: {', '.join(cls.splits)})")
        root = Path(root)
        require_dir(root, "the Cityscapes folder")
        image_dir = require_dir(root / "leftImg8bit" / split, f"Cityscapes {split} images")
        images = _find(image_dir, IMAGE_SUFFIX)
        if not images:
            expected = f"<city>/<name>{IMAGE_SUFFIX}"
            raise UserError(f"no images found in {image_dir} (expected {expected})")
        label_dir = root / "gtFine" / split
        if not label_dir.exists():
            samples = [Sample(stem, path, None) for stem, path in images.items()]
            return cls(root, samples, split)
        require_dir(label_dir, f"Cityscapes {split} labels")
        labels = _find(label_dir, LABEL_SUFFIX)

        def expected(stem: str, image: Path) -> Path:
            return label_dir / image.parent.name / f"{stem}{LABEL_SUFFIX}"

        return cls(root, pair_samples(images, labels, expected), split)

    def decode_label(self, path: Path) -> np.ndarray:
        # read_index_png refuses a 3-channel image (e.g. a _gtFine_color.png given by mistake).
        label_ids = read_index_png(path)
        check_values(path, label_ids, VALID_LABEL_IDS, "Cityscapes label-id")
        return LABEL_ID_TO_TRAIN_ID[label_ids]
