"""A plain folder: `images/*` and optional `labels/<stem>.png` holding train ids (0..18, 255).

Labels are grey or palette PNGs whose values (indices, for a palette PNG) are train ids.

Splits: if `PATH/<split>/images` exists, `PATH/<split>` is the root for that split (e.g.
`folder:data --split val` reads `data/val/images`). Otherwise the layout has no splits and the
given split is ignored: `PATH/images` is read whatever `--split` says.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from murid_engine.errors import UserError
from murid_engine.imageio import list_images, read_index_png
from murid_engine.labels import IGNORE, NUM_CLASSES

from .base import Dataset, Sample, check_values, require_dir, require_nonempty
from .pairing import by_stem, pair_folders

VALID_TRAIN_IDS = np.zeros(256, dtype=bool)
VALID_TRAIN_IDS[:NUM_CLASSES] = True
VALID_TRAIN_IDS[IGNORE] = True


class FolderDataset(Dataset):
    kind = "folder"

    @classmethod
    def open(cls, root: Path, split: str | None = None) -> "FolderDataset":
        root = Path(root)
        require_dir(root, "the dataset folder")
        used_split = None
        if split and (root / split / "images").is_dir():
            root, used_split = root / split, split
        image_dir = root / "images"
        if not image_dir.exists():
            subs = sorted(p.name for p in root.iterdir() if (p / "images").is_dir())
            if subs:  # a split layout opened without a split, or with one it does not have
                asked = f"{root} has no split '{split}'" if split else f"{image_dir} does not exist"
                raise UserError(f"{asked}; choose a split with --split ({', '.join(subs)})")
        require_dir(image_dir, "the images of a folder dataset")
        label_dir = root / "labels"
        if label_dir.exists():
            require_dir(label_dir, "the labels of a folder dataset")
            return cls(root, pair_folders(image_dir, label_dir), used_split)
        images = list_images(image_dir)
        require_nonempty(images, image_dir)
        return cls(root, [Sample(s, p, None) for s, p in by_stem(images).items()], used_split)

    def decode_label(self, path: Path) -> np.ndarray:
        train_ids = read_index_png(path)
        check_values(path, train_ids, VALID_TRAIN_IDS, "train-id (0..18, 255)")
        return train_ids
