"""What every dataset reader shares: the sample list, reading pairs, validating what is read.

A reader finds its files when it is opened (structure errors are raised then) and decodes them
when asked (file errors are raised then, naming the file). Nothing is skipped silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from murid_engine.errors import UserError
from murid_engine.imageio import read_rgb


@dataclass(frozen=True)
class Sample:
    stem: str  # the name predictions are written under (for Cityscapes, without _leftImg8bit)
    image: Path
    label: Path | None


class Dataset:
    """A list of image (and label) files of one kind and split; labels come back as train ids."""

    kind: str = ""
    splits: tuple[str, ...] = ()  # empty: the layout has no splits

    def __init__(self, root: Path, samples: list[Sample], split: str | None = None):
        self.root = root
        self.split = split
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        split = f", split={self.split}" if self.split else ""
        return f"{self.kind}:{self.root}{split} ({len(self)} images)"

    @property
    def n_labelled(self) -> int:
        return sum(s.label is not None for s in self.samples)

    @property
    def has_labels(self) -> bool:
        return len(self.samples) > 0 and self.n_labelled == len(self.samples)

    def read_image(self, index: int) -> np.ndarray:
        return read_rgb(self.samples[index].image)

    def read_label(self, index: int) -> np.ndarray:
        """Train ids (H, W) uint8, 255 = ignore."""
        sample = self.samples[index]
        if sample.label is None:
            raise UserError(f"{sample.image} has no label in {self.root}")
        return self.decode_label(sample.label)

    def read_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image = self.read_image(index)
        label = self.read_label(index)
        check_same_size(self.samples[index], image, label)
        return image, label

    def decode_label(self, path: Path) -> np.ndarray:
        raise NotImplementedError

    def require_labels(self) -> "Dataset":
        """Raise, naming the first image without a label, unless every image has one."""
        for s in self.samples:
            if s.label is None:
                raise UserError(f"{s.image} has no label, and labels are required here")
        return self


def check_same_size(sample: Sample, image: np.ndarray, label: np.ndarray) -> None:
    if image.shape[:2] != label.shape[:2]:
        raise UserError(
            f"{sample.label} is {label.shape[1]}x{label.shape[0]} but its image "
            f"{sample.image.name} is {image.shape[1]}x{image.shape[0]}"
        )


def check_values(path: Path, values: np.ndarray, valid: np.ndarray, encoding: str) -> None:
    """Raise unless every value of `values` is flagged True in the lookup `valid`."""
    bad = ~valid[values]
    if bad.any():
        wrong = np.unique(values[bad])[:5].tolist()
        raise UserError(f"{path} holds values {wrong} outside the {encoding} encoding")


def require_dir(path: Path, what: str) -> Path:
    if not path.exists():
        raise UserError(f"{path} does not exist ({what})")
    if not path.is_dir():
        raise UserError(f"{path} is not a folder ({what})")
    return path


def require_nonempty(samples: list[Sample], where: Path) -> list[Sample]:
    if not samples:
        raise UserError(f"no images found in {where}")
    return samples
