"""Inspecting a dataset: counts, image sizes, class frequencies and every bad file.

File errors are collected rather than raised, so that one bad file does not hide the others.
Samples are streamed one at a time: a large dataset is never held in memory.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from murid_engine.data.base import Dataset, check_same_size
from murid_engine.errors import UserError
from murid_engine.imageio import image_size
from murid_engine.labels import CLASS_NAMES, NUM_CLASSES
from murid_engine.progress import progress as progress_bar


@dataclass
class InspectionReport:
    kind: str
    root: str
    split: str | None
    n_images: int
    n_labelled: int
    sizes: dict[str, int] = field(default_factory=dict)  # "WxH" -> number of images
    class_pixel_count: dict[str, int] = field(default_factory=dict)  # class name -> pixels
    class_pixel_fraction: dict[str, float] = field(default_factory=dict)  # of valid pixels
    n_valid_pixels: int = 0  # labelled pixels of the 19 classes (ignore excluded)
    n_ignored_pixels: int = 0
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "root": self.root,
            "split": self.split,
            "n_images": self.n_images,
            "n_labelled": self.n_labelled,
            "sizes": dict(self.sizes),
            "class_pixel_count": dict(self.class_pixel_count),
            "class_pixel_fraction": dict(self.class_pixel_fraction),
            "n_valid_pixels": self.n_valid_pixels,
            "n_ignored_pixels": self.n_ignored_pixels,
            "problems": list(self.problems),
        }


def inspect_dataset(ds: Dataset, progress: bool = True) -> InspectionReport:
    """Read every sample of `ds` (labels in full, images as far as needed) and summarise it."""
    sizes: Counter[str] = Counter()
    counts = np.zeros(256, dtype=np.int64)
    problems: list[str] = []
    indices = range(len(ds))
    if progress:
        indices = progress_bar(indices, desc=f"inspect {ds.kind}", total=len(ds))
    for index in indices:
        sample = ds.samples[index]
        if sample.label is None:
            # Unlabelled: the header gives the size without decoding the pixels.
            try:
                w, h = image_size(sample.image)
                sizes[f"{w}x{h}"] += 1
            except UserError as exc:
                problems.append(str(exc))
            continue
        # Labelled: image and label are decoded in full to check both and their sizes agree;
        # each is tried on its own so that a bad image does not hide a bad label.
        image = label = None
        try:
            image = ds.read_image(index)
            sizes[f"{image.shape[1]}x{image.shape[0]}"] += 1
        except UserError as exc:
            problems.append(str(exc))
        try:
            label = ds.read_label(index)
        except UserError as exc:
            problems.append(str(exc))
        if image is None or label is None:
            continue
        try:
            check_same_size(sample, image, label)
        except UserError as exc:
            problems.append(str(exc))
            continue
        counts += np.bincount(label.ravel(), minlength=256)
    valid = int(counts[:NUM_CLASSES].sum())
    return InspectionReport(
        kind=ds.kind,
        root=str(ds.root),
        split=ds.split,
        n_images=len(ds),
        n_labelled=ds.n_labelled,
        sizes=dict(sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))),
        class_pixel_count={n: int(counts[c]) for c, n in enumerate(CLASS_NAMES)},
        class_pixel_fraction={
            n: (float(counts[c]) / valid if valid else 0.0) for c, n in enumerate(CLASS_NAMES)
        },
        n_valid_pixels=valid,
        n_ignored_pixels=int(counts[NUM_CLASSES:].sum()),
        problems=problems,
    )
