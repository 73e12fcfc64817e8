"""SYNTHIA-RAND-CITYSCAPES: `RGB/NNNNNNN.png` and `GT/LABELS/NNNNNNN.png`.

Labels are 16-bit multi-channel PNGs: the class id is in the first (R) channel, the instance
id in the second. OpenCV returns BGR, so the class is channel index 2 of its array.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from murid_engine.errors import UserError
from murid_engine.imageio import read_unchanged
from murid_engine.labels import SYNTHIA_ID_TO_TRAIN_ID, SYNTHIA_MAX_ID

from .base import Dataset, check_values, require_dir
from .pairing import check_no_split, pair_folders

# Indexed by a uint16 class id: only 0..SYNTHIA_MAX_ID are SYNTHIA classes.
VALID_SYNTHIA_IDS = np.zeros(1 << 16, dtype=bool)
VALID_SYNTHIA_IDS[: SYNTHIA_MAX_ID + 1] = True


class SynthiaDataset(Dataset):
    kind = "synthia"

    @classmethod
    def open(cls, root: Path, split: str | None = None) -> "SynthiaDataset":
        check_no_split(cls.kind, split)
        root = Path(root)
        require_dir(root, "the SYNTHIA-RAND-CITYSCAPES folder")
        image_dir = require_dir(root / "RGB", "SYNTHIA images")
        label_dir = require_dir(root / "GT" / "LABELS", "SYNTHIA labels")
        return cls(root, pair_folders(image_dir, label_dir), None)

    def decode_label(self, path: Path) -> np.ndarray:
        array = read_unchanged(path)
        if array.ndim != 3 or array.shape[2] not in (3, 4):
            raise UserError(
                f"{path} is a single-channel image; a SYNTHIA label must be a 16-bit "
                "3-channel PNG with the class id in its first channel"
            )
        if array.dtype != np.uint16:
            raise UserError(
                f"{path} is an 8-bit image; a SYNTHIA label must be a 16-bit "
                "3-channel PNG with the class id in its first channel"
            )
        class_ids = array[:, :, 2]  # R in OpenCV's BGR(A) order
        check_values(path, class_ids, VALID_SYNTHIA_IDS, "SYNTHIA class-id")
        return SYNTHIA_ID_TO_TRAIN_ID[class_ids]
