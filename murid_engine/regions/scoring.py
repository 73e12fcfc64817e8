"""Regions of a pseudo-label round and their RIPU scores.

Every target-train image of a round is split into superpixels that follow image edges (SLIC,
Achanta et al., TPAMI 2012, as implemented by scikit-image), and each region is scored as in
RIPU (Xie et al., CVPR 2022, "Towards Fewer Annotations: Active Learning via Region Impurity and
Prediction Uncertainty for Domain Adaptive Semantic Segmentation"):

    score = impurity × uncertainty
    impurity    = entropy (natural log) of the histogram of predicted classes inside the region
    uncertainty = mean over the region of 1 - confidence (the round stores the max softmax
                  probability, quantised: conf = level / 255)

RIPU uses square pixel neighbourhoods and the prediction entropy; superpixels (as D2ADA, ECCV
2022, selects) give regions a person can relabel with one key. Both statistics are per-region
sums made with one np.bincount over region ids; there is no Python loop over pixels or regions.

Layout inside the round folder, `regions/`:

    <stem>.png   uint16 grey: region id 0..R-1 of every pixel (the round's label size)
    queue.npy    every region of the round, worst (highest score) first: a structured array
                 of QUEUE_DTYPE, `image` indexing `stems` of index.json
    index.json   the stems in order, the superpixel settings, the number of regions

The queue is written once every image is done (temp file + rename, like every round file);
while the round is written a few images are in memory (superpixels run on worker threads beside
the teacher's forward, at most 2 × workers images waiting) and the per-region rows stream to a
scratch file, so memory does not grow with the number of images (the final sort holds 28 bytes
per region).
"""

from __future__ import annotations

import io
import json
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from murid_engine.errors import UserError
from murid_engine.imageio import atomic_write_bytes, read_unchanged, write_grey_png

REGIONS_DIR = "regions"
QUEUE_FILE = "queue.npy"
INDEX_FILE = "index.json"

QUEUE_DTYPE = np.dtype([("image", "<i4"), ("region", "<i4"), ("pixels", "<i4"), ("score", "<f4"),
                        ("impurity", "<f4"), ("uncertainty", "<f4"), ("majority", "<i4")])


@dataclass
class RegionConfig:
    """Superpixel settings of every round (the project config's `regions`): about one region
    per `region_pixels` pixels (SLIC's n_segments), at least `min_regions` per image (64x64 px:
    128 regions on a 1024x512 image, 512 on 2048x1024, so a 3,000-image round queues about
    1.5 M regions, 42 MB). Smaller regions spend a review budget more precisely on the wrong
    pixels at more regions (keys) per percent (docs/BENCHMARKS.md, issue 15)."""
    region_pixels: int = 4096
    min_regions: int = 16
    compactness: float = 10.0  # SLIC's colour against space balance: higher = squarer regions
    # SLIC runs on the image shrunk to at most this many pixels (512x256), its ids scaled back
    # by nearest neighbour: at 2048x1024 full-resolution SLIC costs ~25x more for boundaries
    # that differ by a few pixels on 64x64-pixel regions.
    work_pixels: int = 512 * 256

    def segments(self, shape: tuple[int, int]) -> int:
        return max(self.min_regions, (shape[0] * shape[1]) // self.region_pixels)

    def validate(self) -> None:
        for key in ("region_pixels", "min_regions", "work_pixels"):
            value = getattr(self, key)
            if value < 1:
                raise UserError(f"regions.{key} must be 1 or more, not {value}")
        if not (self.compactness > 0 and np.isfinite(self.compactness)):
            raise UserError(f"regions.compactness must be positive, not {self.compactness}")


def superpixels(image: np.ndarray, config: RegionConfig | None = None) -> np.ndarray:
    """Region ids 0..R-1 (int32, consecutive) of an H×W×3 uint8 image, by SLIC."""
    import cv2
    from skimage.segmentation import slic  # scikit-image loads only when a round is made

    config = config or RegionConfig()
    h, w = image.shape[:2]
    scale = min(1.0, float(np.sqrt(config.work_pixels / max(h * w, 1))))
    work = image if scale >= 1.0 else cv2.resize(
        image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ids = slic(work, n_segments=config.segments((h, w)), compactness=config.compactness,
               start_label=0, channel_axis=-1)
    # SLIC may skip ids when it merges small segments: renumber so that ids are 0..R-1.
    _, ids = np.unique(ids, return_inverse=True)
    ids = ids.reshape(work.shape[:2]).astype(np.int32)
    if work is not image:  # nearest neighbour keeps every id
        ids = cv2.resize(ids, (w, h), interpolation=cv2.INTER_NEAREST)
    return ids


@dataclass(frozen=True)
class RegionScores:
    """Per-region statistics of one image, indexed by region id."""
    pixels: np.ndarray       # (R,) int
    impurity: np.ndarray     # (R,) float, in [0, ln C]
    uncertainty: np.ndarray  # (R,) float, in [0, 1]
    majority: np.ndarray     # (R,) int, the most predicted class

    @property
    def score(self) -> np.ndarray:
        return self.impurity * self.uncertainty


def score_regions(regions: np.ndarray, pred: np.ndarray, level: np.ndarray,
                  num_classes: int) -> RegionScores:
    """RIPU statistics of every region: `regions` ids 0..R-1, `pred` train ids, `level` the
    confidence levels (uint8, conf = level / 255) or float confidences in [0, 1]."""
    if regions.shape != pred.shape or level.shape != pred.shape:
        raise ValueError(f"regions {regions.shape}, prediction {pred.shape} and confidence "
                         f"{level.shape} must be the same (H, W)")
    r = regions.ravel().astype(np.int64)
    n = int(r.max()) + 1 if r.size else 0
    conf = level.ravel() / 255.0 if level.dtype == np.uint8 else level.ravel().astype(np.float64)
    joint = np.bincount(r * num_classes + pred.ravel().astype(np.int64),
                        minlength=n * num_classes).reshape(n, num_classes).astype(np.float64)
    pixels = joint.sum(axis=1)
    p = joint / np.maximum(pixels, 1)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        impurity = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    uncertainty = np.bincount(r, weights=1.0 - conf, minlength=n) / np.maximum(pixels, 1)
    return RegionScores(pixels.astype(np.int64), np.maximum(impurity, 0.0), uncertainty,
                        joint.argmax(axis=1))


class RegionWriter:
    """Writes the regions of a round image by image; `finish` sorts and writes the queue."""

    def __init__(self, round_dir: Path, num_classes: int, config: RegionConfig | None = None):
        self.dir = Path(round_dir) / REGIONS_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / QUEUE_FILE).unlink(missing_ok=True)  # a half-rewritten round has no stale queue
        self.num_classes, self.config = num_classes, config or RegionConfig()
        self.stems: list[str] = []
        self._rows_path = self.dir / ".rows.tmp"
        self._rows = open(self._rows_path, "wb")

    def add(self, stem: str, image: np.ndarray, pred: np.ndarray, level: np.ndarray) -> None:
        self.append(stem, self.compute(stem, image, pred, level))

    def compute(self, stem: str, image: np.ndarray, pred: np.ndarray, level: np.ndarray) -> RegionScores:
        """One image's superpixels (their map written) and scores; safe on any thread."""
        if image.shape[:2] != pred.shape:
            raise UserError(f"image '{stem}' is {image.shape[1]}x{image.shape[0]}, its prediction "
                            f"{pred.shape[1]}x{pred.shape[0]}")
        regions = superpixels(image, self.config)
        if int(regions.max()) > np.iinfo(np.uint16).max:
            raise UserError(f"image '{stem}' has more than 65535 regions; raise region_pixels")
        write_grey_png(self.dir / f"{stem}.png", regions.astype(np.uint16))
        return score_regions(regions, pred, level, self.num_classes)

    def append(self, stem: str, s: RegionScores) -> None:
        """The image's rows of the queue, in the order the images are appended."""
        rows = np.empty(len(s.pixels), QUEUE_DTYPE)
        rows["image"], rows["region"] = len(self.stems), np.arange(len(s.pixels))
        rows["pixels"], rows["score"] = s.pixels, s.score
        rows["impurity"], rows["uncertainty"], rows["majority"] = s.impurity, s.uncertainty, s.majority
        self._rows.write(rows.tobytes())
        self.stems.append(stem)

    def finish(self) -> dict[str, Any]:
        self._rows.close()
        rows = np.fromfile(self._rows_path, dtype=QUEUE_DTYPE)
        # Worst first; ties keep image and region order (a stable sort on the negated score).
        queue = rows[np.argsort(-rows["score"], kind="stable")]
        buf = io.BytesIO()
        np.save(buf, queue)
        atomic_write_bytes(self.dir / QUEUE_FILE, buf.getvalue())
        index = {"stems": self.stems, "regions": int(len(queue)), "method": "slic",
                 "config": asdict(self.config), "score": "impurity x mean(1 - confidence) (RIPU)"}
        atomic_write_bytes(self.dir / INDEX_FILE, json.dumps(index).encode())
        os.unlink(self._rows_path)
        return index

    def abort(self) -> None:
        self._rows.close()
        Path(self._rows_path).unlink(missing_ok=True)


def region_workers() -> int:
    """Threads for the superpixels of a round: half the cores this process may use (the
    teacher's forward has the rest), at least 1, at most 8. SLIC releases the GIL."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores // 2))


def with_regions(items: Iterable[tuple], read_image: Callable[[str], np.ndarray],
                 writer: RegionWriter, workers: int | None = None) -> Iterator[tuple]:
    """Pass the round's (stem, pred, conf, ...) items on, writing each image's regions; the
    queue is written when the items run out (before the round's labels and round.json).

    Each image's superpixels are made on `workers` threads (default `region_workers()`) while
    the next images are predicted; at most 2 × workers images wait, so memory stays bounded,
    and the queue's rows keep the order of the items. 0 workers: on this thread, one by one."""
    workers = region_workers() if workers is None else workers
    pool = ThreadPoolExecutor(workers, thread_name_prefix="regions") if workers > 0 else _Inline()
    pending: deque = deque()

    def compute(stem: str, pred: np.ndarray, level: np.ndarray) -> RegionScores:
        return writer.compute(stem, read_image(stem), pred, level)

    def append_done(wait_for: int) -> None:  # the oldest first, so the rows stay in order
        while pending and (len(pending) > wait_for or pending[0][1].done()):
            stem, future = pending.popleft()
            writer.append(stem, future.result())  # a worker's error is raised here

    try:
        for item in items:
            stem, pred, level = item[0], np.asarray(item[1]), np.asarray(item[2])
            pending.append((stem, pool.submit(compute, stem, pred, level)))
            append_done(2 * workers)
            yield item
        append_done(0)
    except BaseException:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True)  # no thread writes into the round once it is removed
        writer.abort()
        raise
    pool.shutdown(wait=True)
    writer.finish()


class _Inline:
    """An executor that runs each task at once on the calling thread (0 workers)."""

    def submit(self, fn: Callable, *args: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:
            future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True) -> None:
        pass


# ------------------------------------------------------------------------------ reading
@dataclass(frozen=True)
class RoundRegions:
    """A round's stored regions: the queue (memory-mapped, read lazily) and each image's map."""
    round_dir: Path
    stems: list[str]
    queue: np.ndarray

    @classmethod
    def open(cls, round_dir: Path) -> "RoundRegions":
        d = Path(round_dir) / REGIONS_DIR
        if not (d / QUEUE_FILE).is_file() or not (d / INDEX_FILE).is_file():
            raise UserError(f"{round_dir} has no regions (written with each pseudo-label round; "
                            "run `murid pseudo` to make a round with them)")
        try:
            index = json.loads((d / INDEX_FILE).read_text())
            queue = np.load(d / QUEUE_FILE, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise UserError(f"the regions of {round_dir} are not readable: {exc}") from None
        if queue.dtype != QUEUE_DTYPE:
            raise UserError(f"{d / QUEUE_FILE} is not a region queue")
        return cls(Path(round_dir), list(index["stems"]), queue)

    def region_map(self, stem: str) -> np.ndarray:
        return read_unchanged(Path(self.round_dir) / REGIONS_DIR / f"{stem}.png").astype(np.int32)

    def entry(self, k: int) -> tuple[str, int]:
        """(stem, region id) of the k-th region of the queue."""
        row = self.queue[k]
        return self.stems[int(row["image"])], int(row["region"])


def round_region_stream(round_dir: Path, items: Iterable[tuple], target: Any,
                        size: tuple[int, int] | None, num_classes: int,
                        config: RegionConfig | None = None) -> Iterator[tuple]:
    """`with_regions` for a round of the dataset `target`: each image is read again (one at a
    time) and resized as the pseudo-label pass resized it, so regions and labels align."""
    from murid_engine.training.batches import resize_rgb

    index = {s.stem: i for i, s in enumerate(target.samples)}
    writer = RegionWriter(round_dir, num_classes, config or RegionConfig())
    return with_regions(items, lambda stem: resize_rgb(target.read_image(index[stem]), size), writer)
