"""A training domain's images and labels, read one image at a time from where they are kept.

`data.cache` says where (image_stores.py): in the decoded-image cache on disk (image_cache.py,
decoded once and memory-mapped) or in the dataset's own files (file_images.py, decoded at each
read). Both stores give image i exactly as decoding and resizing its file gives it, so a batch
is the same whichever keeps the images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, overload

import numpy as np
import torch


class ImageStore(Protocol):
    """Where a domain's decoded images (H×W×3 uint8) and labels (H×W uint8 train ids) come from."""

    @property
    def stems(self) -> list[str]: ...

    @property
    def has_labels(self) -> bool: ...

    def __len__(self) -> int: ...

    def image(self, i: int) -> np.ndarray: ...

    def label(self, i: int) -> np.ndarray: ...

    def shape(self, i: int) -> tuple[int, int]: ...  # (h, w) of image i


class LabelSource(Protocol):
    """Per-image label maps read on demand (e.g. a curriculum round's; see loader.RoundLabels)."""

    def read(self, stem: str, shape: tuple[int, int]) -> np.ndarray: ...


class _Tensors(Sequence[torch.Tensor]):
    """images[i] as a C×H×W (or labels[i] as H×W) uint8 tensor copied out of the store."""

    def __init__(self, store: ImageStore, labels: bool):
        self.store, self.labels = store, labels

    def __len__(self) -> int:
        return len(self.store)

    def _one(self, i: int) -> torch.Tensor:
        if self.labels:
            return torch.from_numpy(np.array(self.store.label(i)))
        return torch.from_numpy(np.ascontiguousarray(self.store.image(i).transpose(2, 0, 1)))

    @overload
    def __getitem__(self, i: int) -> torch.Tensor: ...
    @overload
    def __getitem__(self, i: slice) -> list[torch.Tensor]: ...

    def __getitem__(self, i: int | slice) -> torch.Tensor | list[torch.Tensor]:
        if isinstance(i, slice):
            return [self._one(j) for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return self._one(int(i) % len(self))


class DomainImages:
    """A domain for training: its ImageStore, read as DecodedImages is (`images[i]`, `stems`),
    so that pseudo-labelling, previews and the source bank read it one image at a time, and
    its labels: the store's own (source), a LabelSource (a curriculum round), or none."""

    def __init__(self, store: ImageStore, labels: LabelSource | None = None, own_labels: bool = False):
        self.store = store
        self.label_source = labels
        self.own_labels = own_labels and store.has_labels
        self.images: Sequence[torch.Tensor] = _Tensors(store, labels=False)
        self.stems = store.stems

    @property
    def labels(self) -> Sequence[torch.Tensor] | LabelSource | None:
        if self.own_labels:
            return _Tensors(self.store, labels=True)
        return self.label_source

    @property
    def has_labels(self) -> bool:
        return self.own_labels or self.label_source is not None

    def with_labels(self, labels: LabelSource) -> DomainImages:
        """The same images (shared, not copied) with other labels, e.g. a round's pseudo-labels."""
        return DomainImages(self.store, labels)

    def label_map(self, i: int) -> np.ndarray:
        """Label map i at the image's size: the store's, or the label source's for its stem."""
        if self.own_labels:
            return self.store.label(i)
        if self.label_source is None:
            raise ValueError("these images have no labels")
        return self.label_source.read(self.stems[i], self.store.shape(i))

    def __len__(self) -> int:
        return len(self.store)
