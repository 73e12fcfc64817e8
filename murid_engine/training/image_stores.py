"""Where each domain's decoded images are kept for training: `data.cache = auto | disk | off`.

disk  the decoded-image cache (image_cache.py): every image decoded once, then read from a
      memory-mapped file; costs the decoded size on disk (GTA5 at 1280×720: about 92 GB).
off   the dataset's own files (file_images.py), decoded at each read in the DataLoader workers
      (or in the training process with `data.workers: 0`); no disk space, a decode per crop.
auto  disk when the cache is built already, or fits with a margin (a tenth of its size and
      1 GiB left free after it); off otherwise. The choice is said once, with its reason.

Both stores give the same pixels, so the batches are the same either way. The source is placed
first, then the target with what room the source leaves.
"""

from __future__ import annotations

from pathlib import Path

from murid_engine.data.base import Dataset
from murid_engine.imageio import image_size
from murid_engine.run_config import CACHE_MODES

from .file_images import FileImages
from .image_cache import CacheIndex, ImageCache, free_bytes

GIB = 1024 ** 3
MARGIN_FRACTION = 0.10  # of the cache's size, left free after it
MARGIN_BYTES = GIB  # and at least this


def decoded_bytes(dataset: Dataset, with_labels: bool, size: tuple[int, int] | None) -> int:
    """The size of a domain's cache, from `size` or from the first image's header (as the
    cache's own space check estimates it)."""
    if len(dataset) == 0:
        return 0
    w, h = size if size is not None else image_size(dataset.samples[0].image)
    return CacheIndex.item_bytes(h, w, with_labels) * len(dataset)


def _size(n: int) -> str:
    return f"{n / GIB:.1f} GB" if n >= GIB else f"{n / 1024 ** 2:.1f} MB"


class StorePlan:
    """Opens the stores of one run's domains under `mode`, and says what `auto` chose."""

    def __init__(self, mode: str, folder: Path, workers: int = 0):
        if mode not in CACHE_MODES:  # RunConfig.validate says it to the user
            raise ValueError(f"data.cache must be one of {CACHE_MODES}, not {mode!r}")
        self.mode, self.folder, self.workers = mode, Path(folder), workers
        self._free: int | None = None  # free bytes left for the caches not yet placed (auto)
        self._said: list[str] = []

    def open(self, dataset: Dataset, name: str, with_labels: bool, size: tuple[int, int] | None,
             desc: str) -> ImageCache | FileImages:
        on_disk = self.mode == "disk" or (self.mode == "auto" and self._fits(dataset, name, with_labels, size))
        if not on_disk:
            return FileImages(dataset, with_labels, size)
        return ImageCache.open(dataset, self.folder, name, with_labels=with_labels, size=size,
                               workers=self.workers, desc=desc)

    def _fits(self, dataset: Dataset, name: str, with_labels: bool, size: tuple[int, int] | None) -> bool:
        if ImageCache.built(dataset, self.folder, name, with_labels, size):
            self._said.append(f"the {name} images in the disk cache (built already)")
            return True
        if self._free is None:
            self._free = free_bytes(self.folder)
        free = self._free + ImageCache.reclaimable_bytes(self.folder, name)
        needed = decoded_bytes(dataset, with_labels, size)
        if needed + max(MARGIN_BYTES, int(MARGIN_FRACTION * needed)) <= free:
            self._free = free - needed
            self._said.append(f"the {name} images in the disk cache ({_size(needed)} to write, "
                              f"{_size(free)} free)")
            return True
        self._said.append(f"the {name} images decoded from their files at each read (their cache "
                          f"would need {_size(needed)} and a margin; the disk has {_size(free)} free)")
        return False

    def note(self) -> str:
        """What auto chose and why, in one line ("" under disk or off: the user chose)."""
        return f"data.cache auto ({self.folder}): " + "; ".join(self._said) if self._said else ""
