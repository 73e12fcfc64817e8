"""Training batches: a torch DataLoader over the domains' images, deterministic by position.

A batch is a pure function of (seed, rank, world size, stage, iteration): which images it holds
and how each is scaled, cropped and flipped. So a run resumed at iteration k draws exactly the
batches an uninterrupted run would have drawn, with no loader state in the checkpoint, and
`data.workers` changes the speed, never the batches.

Images: every domain's images are visited in a random order, a new order each pass ("epoch"),
and the ranks of a DistributedDataParallel run take turns through one shared order, so in each
pass every rank sees different images and together they see each image once (as torch's
DistributedSampler does). Augmentation draws from `default_rng([seed, rank, stage, iteration,
domain])`.

The images come from the decoded-image cache or, with `data.cache: off`, are decoded from their
files by whoever makes the batch (domain_images.py): the same pixels, so the same batches.

Workers (`data.workers` > 0) prepare the next batches while the network trains, in uint8
(crops.py) and, on a CPU, up to the float tensors the network takes; on a GPU they hand over
uint8 in pinned memory and the conversion runs on the device. A stream of prepared batches never
runs past a change of labels: the curriculum's rounds are separate streams (`stop`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from murid_engine.curriculum.rounds import LABELS_DIR
from murid_engine.errors import UserError
from murid_engine.project import Project
from murid_engine.run_config import STAGES, DataConfig

from .batches import AugmentConfig
from .content_partners import SourcePartners, class_histograms, nearest_sources
from .crops import crop_image, crop_label, draw_crop
from .domain_images import DomainImages
from .round_labels import NO_LOSS, split_human, training_maps

SOURCE, TARGET = 0, 1  # domain ids in the random streams
PARTNER_PICK = 2  # the stream of content-matched partner draws
# Random-stream ids of the stages: MURID's stages by their place in run_config.STAGES (the ids
# every earlier figure was drawn with), the baselines' (murid_engine.baselines) after them.
STREAMS = {**{name: i for i, name in enumerate(STAGES)}, "mixstyle": 10, "dacs": 11}
IGNORE_FILL = 255  # source padding: ignored by the cross-entropy


# ------------------------------------------------------------------------- round labels
@dataclass(frozen=True)
class RoundLabels:
    """The training maps of curriculum round `r` (round_labels.training_maps' rules: the round's
    labels, the user's edits on top), read one stem at a time, when a batch needs it."""
    project: Project
    round: int

    def label_path(self, stem: str) -> Path:
        return Path(self.project.round_dir(self.round)) / LABELS_DIR / f"{stem}.png"

    def check(self, stems: list[str]) -> None:
        """Raise now, not mid-round, when the round lacks a label of an image."""
        for stem in stems:
            if not self.label_path(stem).is_file():
                raise UserError(f"pseudo-label round {self.round} of {self.project.root} has no "
                                f"label for image '{stem}'")

    def read(self, stem: str, shape: tuple[int, int]) -> np.ndarray:
        labels = training_maps(self.project, self.round, [stem])[0].numpy()
        if labels.shape != tuple(shape):
            raise UserError(f"{self.label_path(stem)} is {labels.shape[1]}x{labels.shape[0]}, but its "
                            f"image is {shape[1]}x{shape[0]} (was data.target_size changed after the "
                            "round was made?)")
        return labels


# ------------------------------------------------------------------------ the streams
@functools.lru_cache(maxsize=8)
def _order(n: int, seed: int, stage: int, domain: int, epoch: int) -> np.ndarray:
    # Kept: every batch of a pass reads the same permutation (25k entries for GTA5).
    order = np.random.default_rng([seed, stage, domain, epoch]).permutation(n)
    order.flags.writeable = False
    return order


def sample_indices(n: int, count: int, seed: int, stage: int, domain: int, iteration: int,
                   rank: int = 0, world_size: int = 1) -> np.ndarray:
    """The `count` image indices of one rank's batch at `iteration`: positions in a shared
    stream of random permutations of range(n), one permutation per pass over the data."""
    first = (iteration * world_size + rank) * count
    positions = np.arange(first, first + count)
    out = np.empty(count, dtype=np.int64)
    for epoch in np.unique(positions // n):
        order = _order(n, seed, stage, domain, int(epoch))
        here = positions // n == epoch
        out[here] = order[positions[here] % n]
    return out


class Batch(NamedTuple):
    """A training batch: images B×3×h×w (float in [0, 1]; in a worker's hands uint8 for the
    device to convert), labels B×h×w (long, or uint8); target parts None when the stage has none.
    Curriculum target labels are a round's training maps: class ids, FILL or NO_LOSS."""
    source: torch.Tensor
    source_labels: torch.Tensor
    target: torch.Tensor | None = None
    target_labels: torch.Tensor | None = None


@dataclass(frozen=True)
class BatchRequest:
    """One batch to make: it travels to a worker, so it names everything that varies."""
    stage: int  # the stage's random-stream id (STREAMS)
    iteration: int
    with_target: bool
    target_labels: RoundLabels | None  # a curriculum round's maps; None: the target unlabelled


class BatchMaker(torch.utils.data.Dataset):
    """Makes the batch of a BatchRequest (one worker makes one whole batch)."""

    def __init__(self, source: DomainImages, target: DomainImages, aug: AugmentConfig,
                 batch_size: int, seed: int, rank: int, world_size: int, as_float: bool,
                 partner_candidates: int = 0, num_classes: int = 19):
        self.source, self.target, self.aug, self.batch_size = source, target, aug, batch_size
        self.seed, self.rank, self.world_size, self.as_float = seed, rank, world_size, as_float
        # > 0: curriculum batches pair target and source by content (content_partners.py)
        self.partner_candidates, self.num_classes = partner_candidates, num_classes
        self._source_histograms: np.ndarray | None = None
        self._partners: tuple[RoundLabels, SourcePartners] | None = None  # the latest round's

    def __len__(self) -> int:  # the streams are endless; the sampler says which batches to make
        return 2 ** 62

    def _indices(self, images: DomainImages, domain: int, stage: int, iteration: int) -> np.ndarray:
        return sample_indices(len(images), self.batch_size, self.seed, stage, domain, iteration,
                              self.rank, self.world_size)

    def partners(self, labels: RoundLabels) -> SourcePartners:
        """The round's content-matched candidates (computed at its first batch, kept for the round)."""
        if self._partners is None or self._partners[0] != labels:
            if self._source_histograms is None:
                self._source_histograms = class_histograms(
                    (self.source.label_map(i) for i in range(len(self.source))), self.num_classes)
            target = self.target.with_labels(labels)
            # The user's pixels (HUMAN + c) count as their class c.
            classes = (split_human(torch.from_numpy(target.label_map(i)))[0].numpy()
                       for i in range(len(target)))
            candidates = nearest_sources(class_histograms(classes, self.num_classes),
                                         self._source_histograms, self.partner_candidates)
            self._partners = (labels, SourcePartners(candidates))
        return self._partners[1]

    def _domain(self, images: DomainImages, domain: int, stage: int, iteration: int, fill: int,
                idx: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if idx is None:
            idx = self._indices(images, domain, stage, iteration)
        rng = np.random.default_rng([self.seed, self.rank, stage, iteration, domain])
        with_labels = images.has_labels
        cw, ch = self.aug.crop
        # NumPy, not torch, converts: one single-threaded pass per crop (layout, type and scale
        # at once) costs a fraction of a millisecond, where torch's multi-threaded element-wise
        # ops wait for a free core on a busy CPU (measured: 0.3 ms vs 16-25 ms for 8 crops).
        x = np.empty((len(idx), 3, ch, cw), np.float32 if self.as_float else np.uint8)
        y = np.empty((len(idx), ch, cw), np.uint8) if with_labels else None
        for j, i in enumerate(idx):
            image = images.store.image(int(i))
            crop = draw_crop(rng, image.shape[0], image.shape[1], self.aug)
            pixels = crop_image(image, crop, self.aug.crop).transpose(2, 0, 1)
            if self.as_float:
                np.multiply(pixels, np.float32(1 / 255), out=x[j])
            else:
                x[j] = pixels
            if y is not None:
                y[j] = crop_label(images.label_map(int(i)), crop, self.aug.crop, fill)
        if y is not None and self.as_float:
            y = y.astype(np.int64)
        return torch.from_numpy(x), None if y is None else torch.from_numpy(y)

    def __getitem__(self, req: BatchRequest) -> Batch | str:
        try:
            source_idx = None
            if req.with_target and req.target_labels is not None and self.partner_candidates:
                target_idx = self._indices(self.target, TARGET, req.stage, req.iteration)
                draw = np.random.default_rng([self.seed, self.rank, req.stage, req.iteration, PARTNER_PICK])
                source_idx = self.partners(req.target_labels).pick(target_idx, draw)
            xs, ys = self._domain(self.source, SOURCE, req.stage, req.iteration, IGNORE_FILL, source_idx)
            if not req.with_target:
                return Batch(xs, ys, None, None)
            target = self.target if req.target_labels is None else self.target.with_labels(req.target_labels)
            # Padding of target crops is NO_LOSS: never trained on, not even through the EMA
            # teacher's online labels, which fill the FILL (255) pixels of a round's maps.
            xt, yt = self._domain(target, TARGET, req.stage, req.iteration, NO_LOSS)
            return Batch(xs, ys, xt, yt)
        except UserError as exc:
            return str(exc)  # crosses the worker boundary as one sentence, not a traceback


class _Requests(torch.utils.data.Sampler):
    """The requests of the current stream; set before each `iter(loader)`."""

    def __init__(self) -> None:
        self.requests: list[BatchRequest] = []

    def __iter__(self):
        return iter(self.requests)

    def __len__(self) -> int:
        return len(self.requests)


def _worker_init(_: int) -> None:
    # A worker is one more process on the training machine's cores: one thread each. (Lowering
    # its priority, nice 10 or SCHED_IDLE, did not lower what it costs a 2-core CPU run: there
    # the training threads fill both cores, and workers=0 is the setting; see bench.training_speed.)
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def _as_is(item: Any) -> Any:
    return item


def to_device(batch: Batch, device: torch.device) -> Batch:
    """The batch on `device`, images float in [0, 1] and labels long."""
    def move(t: torch.Tensor | None, image: bool) -> torch.Tensor | None:
        if t is None:
            return None
        t = t.to(device, non_blocking=True)
        if t.dtype == torch.uint8:
            t = t.float().div_(255.0) if image else t.long()
        return t

    return Batch(move(batch.source, True), move(batch.source_labels, False),
                     move(batch.target, True), move(batch.target_labels, False))


class TrainingBatches:
    """The batches of a run's stages, on the run's device; `get` them in iteration order.

    `rank` and `world_size` are those of DistributedDataParallel (one process: 0 and 1). With
    workers, one set of worker processes serves every stage and round (started on first use,
    stopped by `close`); they are spawned, not forked: a fork of a process whose OpenCV or GUI
    threads hold a lock can deadlock the child.
    """

    def __init__(self, source: DomainImages, target: DomainImages, data: DataConfig, seed: int,
                 device: torch.device, rank: int = 0, world_size: int = 1,
                 partner_candidates: int = 0, num_classes: int = 19):
        if not source.has_labels:
            raise ValueError("the source images of a training run need their labels")
        for name, images in (("source", source), ("target", target)):
            if len(images) == 0:
                raise UserError(f"the {name} dataset of this run has no images to train on")
        self.device = torch.device(device)
        self.workers = data.workers
        # On a GPU the device converts uint8 faster than a worker, and pinned uint8 moves 4x fewer bytes.
        self.maker = BatchMaker(source, target, data.augment(), data.batch_size, seed, rank,
                                world_size, as_float=self.device.type != "cuda",
                                partner_candidates=partner_candidates, num_classes=num_classes)
        self._requests = _Requests()
        self._loader: torch.utils.data.DataLoader | None = None
        self._iterator = None
        self._key: tuple | None = None
        self._next = 0

    def request(self, stage: str, iteration: int, target: DomainImages | None) -> BatchRequest:
        if target is not None and target.store is not self.maker.target.store:
            raise ValueError("a batch's target images must be the run's target domain")
        return BatchRequest(STREAMS[stage], iteration, target is not None,
                            None if target is None else target.label_source)

    def get(self, stage: str, iteration: int, stop: int, target: DomainImages | None) -> Batch:
        """The batch of `iteration` of `stage`, with `target` images (None: source only).

        Workers prepare batches up to `stop` (exclusive): pass the end of the stage, or of the
        curriculum round, so that no batch is made with labels that are about to change.
        """
        req = self.request(stage, iteration, target)
        if self.workers == 0:
            return self._unwrap(self.maker[req])
        key = (req.stage, req.with_target, req.target_labels, stop)
        if key != self._key or iteration != self._next:
            self._requests.requests = [BatchRequest(req.stage, it, req.with_target, req.target_labels)
                                       for it in range(iteration, stop)]
            self._iterator, self._key = iter(self._data_loader()), key
        self._next = iteration + 1
        return self._unwrap(next(self._iterator))

    def _data_loader(self) -> torch.utils.data.DataLoader:
        if self._loader is None:
            self._loader = torch.utils.data.DataLoader(
                self.maker, sampler=self._requests, batch_size=None, num_workers=self.workers,
                collate_fn=_as_is, worker_init_fn=_worker_init, multiprocessing_context="spawn",
                persistent_workers=True, pin_memory=self.device.type == "cuda",
                # Its own generator: a DataLoader draws its workers' seed from the global torch
                # RNG otherwise, which would shift the training's random stream with `workers`.
                generator=torch.Generator().manual_seed(self.maker.seed))
        return self._loader

    def _unwrap(self, item: Batch | str) -> Batch:
        if isinstance(item, str):
            raise UserError(item)
        return to_device(item, self.device)

    def close(self) -> None:
        """Stop the worker processes (a later `get` starts them again)."""
        iterator, self._iterator, self._loader, self._key = self._iterator, None, None, None
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()  # persistent workers otherwise live until collected
