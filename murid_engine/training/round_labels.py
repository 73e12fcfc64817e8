"""A curriculum round for training: label the target split with the teacher, read the labels back.

The pseudo-label pass writes a round folder (murid_engine.curriculum.rounds) from the teacher's
predictions on every target-train image. For training, a round becomes one uint8 map per image:

    0..C-1      the round kept this pixel (confidence >= its class threshold): trained on
                with full weight;
    HUMAN + c   the user gave this pixel class c (a painted edit, a region action): trained
                on as c with `curriculum.edit_weight` (and `distill.edit_weight`), 1 = as kept;
    FILL (255)  below the round's threshold: labelled online by the EMA teacher (DACS), with
                DACS's confidence weight;
    NO_LOSS     the user painted 'ignore', or padding: never trained on.

The user's pixels are marked rather than merged into the kept ones because a few minutes of
review correct ~2% of a round's pixels: averaged in with the rest they barely move the loss,
while active domain adaptation (RIPU) trains on its labelled regions as a loss of their own.
`split_human` turns a map back into class ids and the mask of the user's pixels.

User edits and per-class threshold overrides therefore take precedence over the automatic
labels (DESIGN.md §2): overrides change which pixels the round keeps, edits replace labels.

The teacher's pass streams: each image is read from disk, resized as in training
(`data.target_size`), predicted in small same-size batches and handed to `write_round`, so memory
does not grow with the number of images. Under torchrun each rank predicts its shard (indices
rank::world_size) and the ranks meet after every chunk, when rank 0 gathers the chunk's
predictions and writes them: only rank 0 writes, and it holds one chunk at a time.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from murid_engine.curriculum.round_summary import RoundSummary
from murid_engine.curriculum.rounds import (
    EDIT_IGNORE,
    EDIT_NONE,
    LABELS_DIR,
    check_edit_values,
    write_round,
)
from murid_engine.curriculum.thresholds import quantise_confidence
from murid_engine.data.base import Dataset
from murid_engine.errors import UserError
from murid_engine.imageio import read_index_png
from murid_engine.jobs import StopRequested
from murid_engine.labels import CLASS_NAMES, IGNORE
from murid_engine.progress import progress
from murid_engine.regions.scoring import round_region_stream
from murid_engine.project import Overrides, Project

from .batches import resize_rgb

if TYPE_CHECKING:
    from murid_engine.distributed import DistContext

FILL = IGNORE  # below threshold: the EMA teacher fills these pixels in online
NO_LOSS = 254  # painted 'ignore' or padding: no loss
HUMAN = 128  # the user gave class c: stored as HUMAN + c (so at most NO_LOSS - HUMAN classes)


def split_human(stored: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(class ids, FILL and NO_LOSS as they were; the mask of the user's pixels) of training maps."""
    human = (stored >= HUMAN) & (stored < NO_LOSS)
    return torch.where(human, stored - HUMAN, stored), human


def pixel_weights(human: torch.Tensor, edit_weight: float) -> torch.Tensor:
    """Per-pixel loss weight: `edit_weight` on the user's pixels, 1 elsewhere (float)."""
    return 1.0 + (edit_weight - 1.0) * human.float()


def override_ids(overrides: Overrides) -> dict[int, float]:
    """Class-name thresholds (as stored by the Review view) keyed by train id."""
    return {CLASS_NAMES.index(name): float(v) for name, v in overrides.thresholds.items()}


# (index in the dataset, stem, argmax train ids, confidence levels, disagreement or None)
Prediction = tuple[int, str, np.ndarray, np.ndarray, "float | None"]


@torch.no_grad()
def _predict(model: torch.nn.Module, other: torch.nn.Module | None, images: list[np.ndarray],
             device: torch.device) -> list[tuple[np.ndarray, np.ndarray, float | None]]:
    """(argmax, confidence levels, disagreement with `other`) of same-size H×W×3 uint8 images."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0).to(device)
    conf, pred = torch.softmax(model(x)["out"].float(), dim=1).max(dim=1)
    other_pred = other(x)["out"].argmax(dim=1) if other is not None else None
    out = []
    for j in range(x.shape[0]):
        dis = None if other_pred is None else float((other_pred[j] != pred[j]).float().mean())
        # Quantised here, as write_round would (level = round(conf * 255)): a quarter of the
        # bytes to gather, the same round.
        out.append((pred[j].to(torch.uint8).cpu().numpy(), quantise_confidence(conf[j].cpu().numpy()),
                    dis))
    return out


def _chunk(model: torch.nn.Module, other: torch.nn.Module | None, target: Dataset,
           indices: range, size: tuple[int, int] | None, device: torch.device) -> list[Prediction]:
    """Predictions of the images `indices`, read now; runs of one size share a batch."""
    out: list[Prediction] = []
    run: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        preds = _predict(model, other, [image for _, image in run], device)
        out.extend((i, target.samples[i].stem, *p) for (i, _), p in zip(run, preds))
        run.clear()

    for i in indices:
        image = resize_rgb(target.read_image(i), size)
        if run and run[0][1].shape != image.shape:
            flush()
        run.append((i, image))
    if run:
        flush()
    return out


def _predictions(model: torch.nn.Module, target: Dataset, size: tuple[int, int] | None,
                 device: torch.device, other: torch.nn.Module | None, dist: "DistContext",
                 batch: int = 8, stop: Callable[[], bool] | None = None,
                 ) -> Iterator[tuple[str, np.ndarray, np.ndarray, float | None]]:
    """(stem, argmax, confidence levels, disagreement with `other`) per image, in dataset order,
    on rank 0; nothing on the other ranks, which predict their shares and hand them over.

    Every rank runs the same number of chunks (it depends on the dataset's length only), so
    the gathers meet; `stop()` is asked before each chunk and, True on any rank, raises
    StopRequested on every rank at the same chunk. Eval mode while predicting; the models'
    modes are restored.
    """
    models = [m for m in (model, other) if m is not None]
    modes = [m.training for m in models]
    for m in models:
        m.eval()
        dist.sync_buffers(m)  # rank 0's BatchNorm statistics on every rank
    try:
        step = batch * dist.world_size
        starts = range(0, len(target), step)
        if dist.is_main:
            starts = progress(starts, "pseudo-label", len(starts))
        for start in starts:
            if stop is not None and dist.any(stop()):
                raise StopRequested
            mine = range(start + dist.rank, min(start + step, len(target)), dist.world_size)
            parts = dist.gather_to_main(_chunk(model, other, target, mine, size, device))
            if parts is None:
                continue
            for _, *item in sorted((p for part in parts for p in part), key=lambda p: p[0]):
                yield tuple(item)
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)


def label_round(project: Project, r: int, portion: float, model: torch.nn.Module,
                device: torch.device, other: torch.nn.Module | None = None, *,
                dist: "DistContext | None" = None, target: Dataset | None = None,
                on_image: Callable[[int, int], None] | None = None,
                stop: Callable[[], bool] | None = None) -> RoundSummary:
    """Write round `r` of the project: the teacher's labels of every target-train image.

    `model` maps x in [0, 1] to {'out': logits} (the teacher with its source bank); `other`
    (the model being trained), when given, feeds each image's teacher/student disagreement.
    `target` defaults to the project's target-train split (data.target, data.target_split),
    read image by image at `data.target_size`. With `dist`, every rank must call this
    together; rank 0 writes the round and every rank gets its summary (once round.json is written).

    `on_image(done, total)` follows every image on rank 0 (progress; it may raise StopRequested);
    `stop()` is asked between chunks of images on every rank. A stopped or failed pass removes
    the round's folder: no half-written round is left beside the complete ones.
    """
    from murid_engine.distributed import DistContext

    dist = dist or DistContext()
    cfg = project.config
    if target is None:
        from murid_engine.data import open_dataset
        target = open_dataset(cfg.data.target, cfg.data.target_split)
    stream = _predictions(model, target, cfg.data.target_size, device, other, dist, stop=stop)
    summary = None
    if dist.is_main:
        folder = project.round_dir(r, create=True)
        if on_image is not None:
            stream = _reporting(stream, len(target), on_image)
        # Superpixels and their RIPU scores, image by image, before round.json marks the round done.
        stream = round_region_stream(folder, stream, target, cfg.data.target_size, cfg.model.num_classes,
                                     cfg.regions)
        try:
            summary = write_round(folder, stream, portion, cfg.curriculum.threshold_cap,
                                  override_ids(project.load_overrides()), project.edits_dir,
                                  round_index=r, num_classes=cfg.model.num_classes)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)  # never complete: it had no round.json
            raise
    else:
        for _ in stream:  # this rank's predictions go to rank 0 chunk by chunk
            pass
    return dist.broadcast_object(summary)


def _reporting(stream: Iterator, total: int, on_image: Callable[[int, int], None]) -> Iterator:
    """`stream` with on_image(done, total) called after each item has been consumed (written)."""
    for done, item in enumerate(stream, start=1):
        yield item
        del item  # one image in memory, as write_round keeps it
        on_image(done, total)


def round_portion(project: Project, r: int) -> float:
    """The portion of round r: the user's portion override, else the schedule's."""
    portions = project.config.curriculum.portions
    override = project.load_overrides().portion
    return float(override) if override is not None else float(portions[min(r, len(portions)) - 1])


def training_maps(project: Project, r: int, stems: list[str]) -> list[torch.Tensor]:
    """One uint8 map per stem (see the module doc) from round r and the user's edits."""
    round_dir = project.round_dir(r)
    maps = []
    for stem in stems:
        path = Path(round_dir) / LABELS_DIR / f"{stem}.png"
        if not path.is_file():
            raise UserError(f"pseudo-label round {r} of {project.root} has no label for image '{stem}'")
        labels = read_index_png(path)  # kept train ids, IGNORE elsewhere (= FILL)
        edit = project.load_edit(stem)
        if edit is not None:
            if edit.shape != labels.shape:
                raise UserError(f"the edit of '{stem}' is {edit.shape[1]}x{edit.shape[0]}, its "
                                f"pseudo-label {labels.shape[1]}x{labels.shape[0]}")
            check_edit_values(edit, str(project.edit_path(stem)), project.config.model.num_classes)
            labels = np.where(edit == EDIT_NONE, labels, edit.astype(np.int16) + HUMAN)
            labels[edit == EDIT_IGNORE] = NO_LOSS
            labels = labels.astype(np.uint8)
        maps.append(torch.from_numpy(np.ascontiguousarray(labels)))
    return maps
