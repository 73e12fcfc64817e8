"""A domain's images decoded from the dataset's own files at each read (`data.cache: off`).

No disk space beyond the dataset, a PNG decode per crop: what the public UDA code bases do, and
what a full-size dataset needs on a disk too small for its decoded cache (GTA5 at 1280×720:
about 92 GB). `decode_item` is also what the disk cache stores, so both give the same pixels.
"""

from __future__ import annotations

import numpy as np

from murid_engine.data.base import Dataset

from .batches import resize_labels, resize_rgb


def decode_item(dataset: Dataset, i: int, with_labels: bool, size: tuple[int, int] | None
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """Image i (H×W×3 uint8) and, `with_labels`, its label map (H×W uint8), resized to `size`."""
    if not with_labels:
        return np.ascontiguousarray(resize_rgb(dataset.read_image(i), size)), None
    image, label = dataset.read_pair(i)
    return (np.ascontiguousarray(resize_rgb(image, size)),
            np.ascontiguousarray(resize_labels(label, size), dtype=np.uint8))


class FileImages:
    """An ImageStore (domain_images.py) that decodes image i when it is read.

    Picklable (the dataset is its file list), so DataLoader workers decode in their own
    processes. The last item read is kept: a batch reads an image and then its label.
    """

    def __init__(self, dataset: Dataset, with_labels: bool, size: tuple[int, int] | None = None):
        self.dataset, self.size = dataset, None if size is None else tuple(size)
        self._with_labels = with_labels
        self._last: tuple[int, np.ndarray, np.ndarray | None] | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def stems(self) -> list[str]:
        return [s.stem for s in self.dataset.samples]

    @property
    def has_labels(self) -> bool:
        return self._with_labels

    def _item(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        last = self._last
        if last is None or last[0] != i:
            last = (i, *decode_item(self.dataset, i, self._with_labels, self.size))
            self._last = last
        return last[1], last[2]

    def image(self, i: int) -> np.ndarray:
        return self._item(i)[0]

    def label(self, i: int) -> np.ndarray:
        if not self._with_labels:
            raise ValueError("these images were opened without their labels")
        return self._item(i)[1]

    def shape(self, i: int) -> tuple[int, int]:
        if self.size is not None:
            return self.size[1], self.size[0]
        return tuple(self._item(i)[0].shape[:2])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_last": None}
