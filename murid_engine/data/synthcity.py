"""SynthCity, the built-in benchmark written by `murid synth OUT`.

`OUT/source/` is in the GTA5 layout (the labelled source domain); `OUT/target/` is in the
Cityscapes layout with splits train and val (the target domain, labelled so that it can be
evaluated). Splits: 'source', 'train', 'val'; the default is 'val'.
"""

from __future__ import annotations

from pathlib import Path

from murid_engine.errors import UserError

from .base import Dataset, require_dir
from .cityscapes import CityscapesDataset
from .gta5 import Gta5Dataset

SPLITS = ("source", "train", "val")


def open_synthcity(root: Path, split: str | None = None) -> Dataset:
    split = split or "val"
    if split not in SPLITS:
        raise UserError(f"synthcity has no split '{split}' (splits: {', '.join(SPLITS)})")
    root = Path(root)
    require_dir(root, "a SynthCity folder written by `murid synth`")
    if split == "source":
        ds: Dataset = Gta5Dataset.open(root / "source", None)
    else:
        ds = CityscapesDataset.open(root / "target", split)
    # Shown as `synthcity:OUT, split=...`, the spec that reopens it (file paths stay absolute).
    ds.kind = "synthcity"
    ds.root = root
    ds.split = split
    return ds
