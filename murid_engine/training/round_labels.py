"""A curriculum round for training: label the target split with the teacher, read the labels back.

The pseudo-label pass writes a round folder (murid_engine.curriculum.rounds) from the teacher's
predictions on every target-train image. For training, a round becomes one uint8 map per image:

    0..C-1      the round kept this pixel (confidence >= its class threshold), or the user
                painted this class: trained on with full weight;
    FILL (255)  below the round's threshold: labelled online by the EMA teacher (DACS), with
                DACS's confidence weight;
    NO_LOSS     the user painted 'ignore', or padding: never trained on.

User edits and per-class threshold overrides therefore take precedence over the automatic
labels (DESIGN.md §2): overrides change which pixels the round keeps, edits replace labels.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from murid_engine.curriculum.rounds import (
    EDIT_IGNORE,
    EDIT_NONE,
    LABELS_DIR,
    check_edit_values,
    write_round,
)
from murid_engine.errors import UserError
from murid_engine.imageio import read_index_png
from murid_engine.labels import CLASS_NAMES, IGNORE
from murid_engine.progress import progress
from murid_engine.project import Overrides, Project

from .batches import DecodedImages

FILL = IGNORE  # below threshold: the EMA teacher fills these pixels in online
NO_LOSS = 254  # painted 'ignore' or padding: no loss


def override_ids(overrides: Overrides) -> dict[int, float]:
    """Class-name thresholds (as stored by the Review view) keyed by train id."""
    return {CLASS_NAMES.index(name): float(v) for name, v in overrides.thresholds.items()}


@torch.no_grad()
def _predictions(model: torch.nn.Module, images: DecodedImages, device: torch.device,
                 other: torch.nn.Module | None, batch: int = 8
                 ) -> Iterator[tuple[str, np.ndarray, np.ndarray, float | None]]:
    """(stem, argmax, confidence, disagreement with `other`) per in-memory image."""
    models = [m for m in (model, other) if m is not None]
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        # Images of one size are batched; a ragged dataset falls back to one at a time.
        for start in progress(range(0, len(images), batch), "pseudo-label", -(-len(images) // batch)):
            chunk = images.images[start:start + batch]
            groups = [chunk] if len({t.shape for t in chunk}) == 1 else [[t] for t in chunk]
            offset = start
            for group in groups:
                x = torch.stack(group).float().div_(255.0).to(device)
                probs = torch.softmax(model(x)["out"].float(), dim=1)
                conf, pred = probs.max(dim=1)
                other_pred = other(x)["out"].argmax(dim=1) if other is not None else None
                for j in range(x.shape[0]):
                    dis = None if other_pred is None else float((other_pred[j] != pred[j]).float().mean())
                    yield (images.stems[offset + j], pred[j].to(torch.uint8).cpu().numpy(),
                           conf[j].cpu().numpy(), dis)
                offset += x.shape[0]
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)


def label_round(project: Project, r: int, portion: float, model: torch.nn.Module,
                target: DecodedImages, device: torch.device,
                other: torch.nn.Module | None = None) -> dict[str, Any]:
    """Write round `r` of the project: the teacher's labels of every target-train image.

    `model` maps x in [0, 1] to {'out': logits} (the teacher with its source bank); `other`
    (the model being trained), when given, feeds each image's teacher/student disagreement.
    """
    overrides = project.load_overrides()
    cfg = project.config.curriculum
    return write_round(project.round_dir(r, create=True), _predictions(model, target, device, other),
                       portion, cfg.threshold_cap, override_ids(overrides), project.edits_dir,
                       round_index=r, num_classes=project.config.model.num_classes)


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
            labels = np.where(edit == EDIT_NONE, labels, edit).astype(np.uint8)
            labels[edit == EDIT_IGNORE] = NO_LOSS
        maps.append(torch.from_numpy(np.ascontiguousarray(labels)))
    return maps
