"""The images a run trains on: the labelled source, the target-train images, the target-val split.

The source and target-train images are read one image at a time, so no domain is ever held in
memory whole: from the run's decoded-image cache (image_cache.py: <project>/cache, reused by later
runs while the files and sizes stay the same) or from their own files, as `data.cache` says
(image_stores.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from murid_engine.data import open_dataset
from murid_engine.data.base import Dataset
from murid_engine.errors import UserError
from murid_engine.jobs import EventSink, Message
from murid_engine.run_config import RunConfig

from .domain_images import DomainImages
from .image_cache import temporary_cache_dir
from .image_stores import StorePlan


@dataclass
class Domains:
    source: DomainImages  # images and train-id labels
    target: DomainImages  # images only (their labels, if any, are never read)
    val: Dataset | None  # the labelled target split that previews and evaluation use

    @classmethod
    def load(cls, cfg: RunConfig, cache_dir: Path | None = None, sink: EventSink | None = None) -> "Domains":
        """The run's domains, decoded into `cache_dir` (a project's: image_cache.project_cache_dir;
        None: a temporary folder removed when the process ends) unless `data.cache` says
        otherwise; `sink` hears, in one Message, where `data.cache: auto` put them and why."""
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
        folder = temporary_cache_dir() if cache_dir is None else Path(cache_dir)
        plan = StorePlan(d.cache, folder, d.workers)
        source = plan.open(source_ds, "source", with_labels=True, size=d.source_size, desc="decode source")
        target = plan.open(target_ds, "target", with_labels=False, size=d.target_size, desc="decode target")
        if sink is not None and plan.note():
            sink(Message(plan.note()))
        return cls(DomainImages(source, own_labels=True), DomainImages(target), val)

    @property
    def val_labelled(self) -> bool:
        return self.val is not None and self.val.has_labels


def bank_indices(source: DomainImages, count: int, seed: int) -> list[int]:
    """A fixed random choice of source images for the teacher's source bank, in index order."""
    rng = np.random.default_rng(seed + 7919)
    return sorted(int(i) for i in rng.choice(len(source), size=min(count, len(source)), replace=False))
