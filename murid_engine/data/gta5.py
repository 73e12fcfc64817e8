"""GTA5 (Richter et al. 2016): `images/NNNNN.png` and `labels/NNNNN.png`.

The real download stores each label as a palette (indexed) PNG whose INDICES are Cityscapes
label ids; the palette only makes them viewable. The indices are read, never the colours.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from murid_engine.imageio import read_index_png
from murid_engine.labels import IGNORE, LABEL_ID_TO_TRAIN_ID, MAX_LABEL_ID

from .base import Dataset, check_values, require_dir
from .pairing import check_no_split, pair_folders

# Label ids 0..33, and 255 (license plate, id -1 in the official table, stored as uint8).
VALID_LABEL_IDS = np.zeros(256, dtype=bool)
VALID_LABEL_IDS[: MAX_LABEL_ID + 1] = True
VALID_LABEL_IDS[IGNORE] = True


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
