"""Training batches: every image decoded once into memory, then randomly scaled, cropped, flipped.

Decoding a PNG costs more than a small network's training step on a CPU, so a dataset that fits
in memory is decoded once. Labels are train ids; 255 is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from murid_engine.data.base import Dataset
from murid_engine.progress import progress


@dataclass
class AugmentConfig:
    crop: tuple[int, int] = (256, 128)  # width, height of a training crop
    scale: tuple[float, float] = (0.75, 1.25)  # random rescale range before cropping
    flip: bool = True


def resize_rgb(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """An H×W×3 uint8 image resized to (w, h) with area/linear interpolation; None keeps it."""
    if size is None or (image.shape[1], image.shape[0]) == tuple(size):
        return image
    shrink = size[0] < image.shape[1]
    return cv2.resize(image, tuple(size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resize_labels(labels: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """A label map resized to (w, h) with nearest neighbour (no invented class ids)."""
    if size is None or (labels.shape[1], labels.shape[0]) == tuple(size):
        return labels
    return cv2.resize(labels, tuple(size), interpolation=cv2.INTER_NEAREST)


class DecodedImages:
    """All images (uint8 N×3×H×W) and, if given, labels (uint8 N×H×W) of a dataset, in memory.

    `size` (w, h) resizes every image (and label) on load, e.g. GTA5's 1914×1052 to 1280×720.
    """

    def __init__(self, dataset: Dataset | None, with_labels: bool, desc: str = "decode",
                 size: tuple[int, int] | None = None):
        images, labels = [], []
        samples = dataset.samples if dataset is not None else []
        for i in progress(range(len(samples)), desc, len(samples)):
            if with_labels:
                image, label = dataset.read_pair(i)
                labels.append(torch.from_numpy(resize_labels(label, size)))
            else:
                image = dataset.read_image(i)
            images.append(torch.from_numpy(resize_rgb(image, size)).permute(2, 0, 1).contiguous())
        self.images = images
        self.labels = labels if with_labels else None
        self.stems = [s.stem for s in samples]

    def with_labels(self, labels: list[torch.Tensor]) -> "DecodedImages":
        """The same images (shared, not copied) with other labels, e.g. a round's pseudo-labels."""
        if len(labels) != len(self.images):
            raise ValueError(f"{len(labels)} label maps for {len(self.images)} images")
        other = DecodedImages(None, with_labels=False)
        other.images, other.labels, other.stems = self.images, labels, self.stems
        return other

    def __len__(self) -> int:
        return len(self.images)


def _fit(t: torch.Tensor, h: int, w: int, fill: float) -> torch.Tensor:
    """Pad (with `fill`) so that the tensor is at least h×w."""
    ph, pw = max(0, h - t.shape[-2]), max(0, w - t.shape[-1])
    if ph or pw:
        t = F.pad(t, (0, pw, 0, ph), value=fill)
    return t


def augmented_batch(data: DecodedImages, indices: np.ndarray, aug: AugmentConfig,
                    rng: np.random.Generator, label_fill: int = 255
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(float images B×3×h×w in [0, 1], long labels B×h×w or None) for the given indices.

    Padding (an image smaller than the crop) is black, its labels `label_fill`.
    """
    cw, ch = aug.crop
    images, labels = [], []
    for i in indices:
        img = data.images[i].float().div_(255.0)[None]
        lab = data.labels[i][None, None].float() if data.labels is not None else None
        s = rng.uniform(*aug.scale)
        if abs(s - 1.0) > 1e-3:
            size = (max(1, round(img.shape[-2] * s)), max(1, round(img.shape[-1] * s)))
            img = F.interpolate(img, size=size, mode="bilinear", align_corners=False)
            if lab is not None:
                lab = F.interpolate(lab, size=size, mode="nearest")
        img = _fit(img, ch, cw, 0.0)
        y0 = int(rng.integers(0, img.shape[-2] - ch + 1))
        x0 = int(rng.integers(0, img.shape[-1] - cw + 1))
        flip = aug.flip and rng.random() < 0.5
        img = img[..., y0:y0 + ch, x0:x0 + cw]
        images.append(img.flip(-1) if flip else img)
        if lab is not None:
            lab = _fit(lab, ch, cw, float(label_fill))[..., y0:y0 + ch, x0:x0 + cw]
            labels.append(lab.flip(-1) if flip else lab)
    x = torch.cat(images)
    y = torch.cat(labels)[:, 0].long() if labels else None
    return x, y
