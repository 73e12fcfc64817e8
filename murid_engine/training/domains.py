"""The images a run trains on: the labelled source, the target-train images, the target-val split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from murid_engine.data import open_dataset
from murid_engine.data.base import Dataset
from murid_engine.errors import UserError
from murid_engine.run_config import RunConfig

from .batches import DecodedImages


@dataclass
class Domains:
    source: DecodedImages  # images and train-id labels
    target: DecodedImages  # images only (their labels, if any, are never read)
    val: Dataset | None  # the labelled target split that previews and evaluation use

    @classmethod
    def load(cls, cfg: RunConfig) -> "Domains":
        d = cfg.data
        if not d.source or not d.target:
            raise UserError("a run needs a source and a target dataset (--source KIND:PATH "
                            "--target KIND:PATH, or data.source / data.target in the project)")
        source_ds = open_dataset(d.source, d.resolved_source_split()).require_labels()
        target_ds = open_dataset(d.target, d.target_split)
        val = None
        try:
            val = open_dataset(d.target, d.val_split)
        except UserError:
            val = None  # no validation split: previews use training images, no evaluation
        source = DecodedImages(source_ds, with_labels=True, desc="decode source", size=d.source_size)
        target = DecodedImages(target_ds, with_labels=False, desc="decode target", size=d.target_size)
        return cls(source, target, val)

    @property
    def val_labelled(self) -> bool:
        return self.val is not None and self.val.has_labels


def bank_images(source: DecodedImages, count: int, seed: int) -> list[torch.Tensor]:
    """A fixed random choice of source images (float, [0, 1]) for the teacher's source bank."""
    rng = np.random.default_rng(seed + 7919)
    idx = rng.choice(len(source), size=min(count, len(source)), replace=False)
    return [source.images[i].float().div(255.0) for i in sorted(idx)]
