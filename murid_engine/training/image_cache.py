"""The decoded-image cache: each image of a domain decoded once, into one file on disk.

Decoding a PNG costs more than a small network's training step on a CPU, and a large domain
(GTA5: 25k images of 1914x1052) does not fit in memory, so a domain is decoded once into one flat
uint8 file (each image H×W×3, then its label H×W, back to back) that every process memory-maps:
the training process and its DataLoader workers read crops from the page cache, and a process
holds only the pages it touches. A small JSON index beside it holds the stems, shapes, offsets and
a fingerprint of what was decoded (the file list with sizes and modification times, the resize
setting, whether labels are included).

    <cache dir>/<name>-<build>.bin   the decoded pixels
    <cache dir>/<name>.json          the index, written last; it names its .bin, and without it
                                     no .bin is trusted

Both are written to temporary files and renamed into place. A build first deletes the index and
the older data files (a GTA5 cache at 1280x720 is ~90 GB: two must not have to fit), then writes
a data file of a new name, so a process that still reads an older build (it keeps its mapping)
never sees another build's bytes under its index. A cache whose index is missing,
unreadable or of another fingerprint, or whose data file is not the size the index says (a
truncated copy), is rebuilt, never trusted. The byte content of a data file of the right size is
not checksummed: that would cost a full read of up to ~100 GB at every start.

A run uses the cache under `data.cache: disk`, and under `auto` when it fits (image_stores.py).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from murid_engine.data.base import Dataset
from murid_engine.errors import UserError
from murid_engine.imageio import atomic_write_bytes
from murid_engine.progress import progress

from .file_images import decode_item

FORMAT = "murid-decoded-cache"
VERSION = 1
CACHE_DIR = "cache"  # the cache folder inside a project


def project_cache_dir(project_root: Path) -> Path:
    """<project>/cache: where a project's decoded domains live (rebuilt whenever stale)."""
    return Path(project_root) / CACHE_DIR


_TEMP_ROOT: Path | None = None


def temporary_cache_dir() -> Path:
    """A per-process folder for runs without a project (benchmarks); removed at exit."""
    global _TEMP_ROOT
    if _TEMP_ROOT is None:
        _TEMP_ROOT = Path(tempfile.mkdtemp(prefix="murid-cache-"))
        atexit.register(shutil.rmtree, _TEMP_ROOT, True)
    return _TEMP_ROOT


def fingerprint(dataset: Dataset, with_labels: bool, size: tuple[int, int] | None) -> str:
    """A hash of everything the decoded pixels depend on: files (path, size, mtime) and settings."""
    h = hashlib.sha256()
    h.update(json.dumps([FORMAT, VERSION, with_labels, list(size) if size else None]).encode())
    for s in dataset.samples:
        files = [s.image] + ([s.label] if with_labels else [])
        for path in files:
            try:
                st = os.stat(path)
            except OSError as exc:
                raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
            h.update(f"{s.stem}\0{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class CacheIndex:
    fingerprint: str
    with_labels: bool
    stems: tuple[str, ...]
    shapes: tuple[tuple[int, int], ...]  # (h, w) of each decoded image
    offsets: tuple[int, ...]  # byte offset of each image in the data file
    data_bytes: int  # size of the data file
    data_file: str  # its name, in the index's folder

    @staticmethod
    def item_bytes(h: int, w: int, with_labels: bool) -> int:
        return h * w * (4 if with_labels else 3)

    def consistent(self) -> bool:
        """Offsets, shapes and the total agree (a hand-edited or damaged index is not)."""
        n = len(self.stems)
        if len(self.shapes) != n or len(self.offsets) != n:
            return False
        at = 0
        for (h, w), off in zip(self.shapes, self.offsets):
            if off != at or h < 1 or w < 1:
                return False
            at += self.item_bytes(h, w, self.with_labels)
        return at == self.data_bytes

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "fingerprint": self.fingerprint,
                "with_labels": self.with_labels, "stems": list(self.stems),
                "shapes": [list(s) for s in self.shapes], "offsets": list(self.offsets),
                "data_bytes": self.data_bytes, "data_file": self.data_file}

    @classmethod
    def read(cls, path: Path) -> CacheIndex | None:
        """The index at `path`, or None when it is missing, unreadable or of another format."""
        try:
            d = json.loads(path.read_bytes())
            if d.get("format") != FORMAT or d.get("version") != VERSION:
                return None
            return cls(str(d["fingerprint"]), bool(d["with_labels"]), tuple(map(str, d["stems"])),
                       tuple((int(h), int(w)) for h, w in d["shapes"]),
                       tuple(int(o) for o in d["offsets"]), int(d["data_bytes"]),
                       Path(str(d["data_file"])).name)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None


class _Decode(torch.utils.data.Dataset):
    """Item i: (image H×W×3, label H×W or None) decoded and resized; a UserError travels as text
    so that a worker's failure still reaches the user as one sentence."""

    def __init__(self, dataset: Dataset, with_labels: bool, size: tuple[int, int] | None):
        self.dataset, self.with_labels, self.size = dataset, with_labels, size

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray | None] | str:
        try:
            return decode_item(self.dataset, i, self.with_labels, self.size)
        except UserError as exc:
            return str(exc)


def _keep_numpy(item: Any) -> Any:
    return item  # DataLoader's default would turn the arrays into tensors


@contextlib.contextmanager
def _build_lock(folder: Path, name: str) -> Iterator[None]:
    """Only one process (e.g. one rank of several) builds a cache; the others wait, then reuse it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: builds may overlap, each one still atomic
        yield
        return
    with open(folder / f"{name}.lock", "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def free_bytes(folder: Path) -> int:
    """Free bytes on the disk of `folder` (or of its nearest existing parent)."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def _check_space(data_path: Path, needed: int) -> None:
    """Refuse, before hours of decoding, a cache that cannot fit (estimated from the first image)."""
    free = free_bytes(data_path.parent)
    if needed > free:
        gb = 1024 ** 3
        raise UserError(f"the decoded-image cache {data_path.parent} needs about {needed / gb:.1f} GB "
                        f"and its disk has {free / gb:.1f} GB free; free some space, set data.cache=off "
                        "(decode from the files at each read), or make the images smaller with "
                        "data.source_size / data.target_size")


class ImageCache:
    """One domain's decoded images (H×W×3 uint8) and labels (H×W uint8, train ids), memory-mapped:
    the ImageStore (domain_images.py) of `data.cache: disk`.

    Picklable: a DataLoader worker gets the paths and index, and maps the file itself.
    """

    def __init__(self, data_path: Path, index: CacheIndex):
        self.data_path = data_path
        self.index = index
        self._map: np.ndarray | None = None

    # ------------------------------------------------------------------ open or build
    @classmethod
    def built(cls, dataset: Dataset, folder: Path, name: str, with_labels: bool,
              size: tuple[int, int] | None = None) -> bool:
        """Whether `folder/name.*` already holds a valid cache of `dataset` (open would reuse it)."""
        index_path = Path(folder) / f"{name}.json"
        if not index_path.is_file():
            return False
        return cls._valid_index(index_path, fingerprint(dataset, with_labels, size)) is not None

    @staticmethod
    def reclaimable_bytes(folder: Path, name: str) -> int:
        """Bytes of the older data files of `name` that a new build deletes before it writes."""
        total = 0
        for old in Path(folder).glob(f"{name}-*.bin"):
            with contextlib.suppress(OSError):
                total += old.stat().st_size
        return total

    @classmethod
    def open(cls, dataset: Dataset, folder: Path, name: str, with_labels: bool,
             size: tuple[int, int] | None = None, workers: int = 0, desc: str = "decode") -> ImageCache:
        """The cache `folder/name.*` of `dataset`, built first when missing, stale or damaged."""
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the decoded-image cache folder {folder}: "
                            f"{exc.strerror or exc}") from None
        key = fingerprint(dataset, with_labels, size)
        index_path = folder / f"{name}.json"
        with _build_lock(folder, name):
            index = cls._valid_index(index_path, key)
            if index is None:
                index = cls._build(dataset, with_labels, size, workers, desc, key, folder, name)
            cache = cls(folder / index.data_file, index)
            cache._bytes()  # mapped now: a later rebuild by someone else cannot pull it away
        return cache

    @staticmethod
    def _valid_index(index_path: Path, key: str) -> CacheIndex | None:
        index = CacheIndex.read(index_path)
        if index is None or index.fingerprint != key or not index.consistent():
            return None
        try:
            if (index_path.parent / index.data_file).stat().st_size != index.data_bytes:
                return None  # truncated, or replaced by another build's file
        except OSError:
            return None
        return index

    @staticmethod
    def _build(dataset: Dataset, with_labels: bool, size: tuple[int, int] | None, workers: int,
               desc: str, key: str, folder: Path, name: str) -> CacheIndex:
        index_path = folder / f"{name}.json"
        data_path = folder / f"{name}-{uuid.uuid4().hex[:12]}.bin"
        # The old index goes first: a crash before the new one is written leaves no index that
        # could vouch for a data file it was not written with. Without it the older builds are
        # of no use to anyone who opens the cache, so they go too, before the new one takes
        # the disk space (a GTA5 cache is ~100 GB). A process that maps one keeps reading it.
        index_path.unlink(missing_ok=True)
        for old in folder.glob(f"{name}-*.bin"):
            with contextlib.suppress(OSError):  # mapped elsewhere on Windows: left for later
                old.unlink()
        try:
            index = ImageCache._write_data(dataset, with_labels, size, workers, desc, key, data_path)
            atomic_write_bytes(index_path, json.dumps(index.to_json()).encode("utf-8"))
        except OSError as exc:
            raise UserError(f"cannot write the decoded-image cache {data_path}: "
                            f"{exc.strerror or exc}") from None
        return index

    @staticmethod
    def _write_data(dataset: Dataset, with_labels: bool, size: tuple[int, int] | None,
                    workers: int, desc: str, key: str, data_path: Path) -> CacheIndex:
        # Spawned, not forked, workers: a fork of a process whose OpenCV or GUI threads hold a
        # lock can deadlock the child.
        loader = torch.utils.data.DataLoader(
            _Decode(dataset, with_labels, size), batch_size=None, num_workers=workers,
            collate_fn=_keep_numpy, multiprocessing_context="spawn" if workers else None)
        stems, shapes, offsets = [], [], []
        fd, tmp = tempfile.mkstemp(prefix=f".{data_path.name}.", suffix=".tmp", dir=data_path.parent)
        try:
            at = 0
            with os.fdopen(fd, "wb") as f:
                for i, item in enumerate(progress(loader, desc, len(dataset))):
                    if isinstance(item, str):
                        raise UserError(item)
                    image, label = item
                    stems.append(dataset.samples[i].stem)
                    shapes.append((int(image.shape[0]), int(image.shape[1])))
                    offsets.append(at)
                    if i == 0:
                        _check_space(data_path, CacheIndex.item_bytes(*shapes[0], with_labels) * len(dataset))
                    f.write(np.ascontiguousarray(image).data)
                    if label is not None:
                        f.write(np.ascontiguousarray(label, dtype=np.uint8).data)
                    at += CacheIndex.item_bytes(*shapes[-1], with_labels)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, data_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return CacheIndex(key, with_labels, tuple(stems), tuple(shapes), tuple(offsets), at,
                          data_path.name)

    # ------------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self.index.stems)

    @property
    def stems(self) -> list[str]:
        return list(self.index.stems)

    @property
    def has_labels(self) -> bool:
        return self.index.with_labels

    def _bytes(self) -> np.ndarray:
        if self._map is None:
            if self.index.data_bytes == 0:
                self._map = np.zeros(0, np.uint8)  # an empty file cannot be mapped
            else:
                self._map = np.memmap(self.data_path, dtype=np.uint8, mode="r",
                                      shape=(self.index.data_bytes,))
        return self._map

    def shape(self, i: int) -> tuple[int, int]:
        return self.index.shapes[i]

    def image(self, i: int) -> np.ndarray:
        """Image i as a read-only H×W×3 view of the mapped file (copy it to keep or modify it)."""
        h, w = self.index.shapes[i]
        off = self.index.offsets[i]
        return self._bytes()[off:off + h * w * 3].reshape(h, w, 3)

    def label(self, i: int) -> np.ndarray:
        """Label map i (train ids, 255 = ignore) as a read-only H×W view."""
        if not self.has_labels:
            raise ValueError("this cache holds no labels")
        h, w = self.index.shapes[i]
        off = self.index.offsets[i] + h * w * 3
        return self._bytes()[off:off + h * w].reshape(h, w)

    def __getstate__(self) -> dict[str, Any]:
        return {"data_path": self.data_path, "index": self.index, "_map": None}
