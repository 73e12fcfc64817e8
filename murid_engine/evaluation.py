"""Evaluating a folder of predicted train-id PNGs against a labelled dataset.

Streams one image at a time: only the running confusion matrix is kept in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from murid_engine.data.base import Dataset, Sample
from murid_engine.errors import UserError
from murid_engine.imageio import read_index_png
from murid_engine.labels import IGNORE, NUM_CLASSES
from murid_engine.metrics import ConfusionMatrix, SegmentationScores
from murid_engine.progress import progress


def prediction_path(pred_dir: Path, sample: Sample) -> Path:
    """Where `murid predict` writes the prediction of `sample`: `<pred_dir>/<stem>.png`."""
    return pred_dir / f"{sample.stem}.png"


def resize_nearest(pred: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A label map resized to (H, W) by nearest neighbour: no interpolated (invented) class ids."""
    if pred.shape[:2] == tuple(shape):
        return pred
    h, w = shape
    return cv2.resize(pred, (w, h), interpolation=cv2.INTER_NEAREST)


def _check_train_ids(path: Path, pred: np.ndarray) -> None:
    # 0..18 are classes and 255 is "no prediction" (scored as wrong). Anything else means the
    # file is not a train-id map at all (most often Cityscapes label ids, 7..33): scoring it
    # would print a silently meaningless mIoU, so the user is told instead.
    bad = (pred >= NUM_CLASSES) & (pred != IGNORE)
    if bad.any():
        values = np.unique(pred[bad])[:5].tolist()
        raise UserError(
            f"{path} holds values {values} that are not train ids (0..{NUM_CLASSES - 1}, "
            f"{IGNORE} for none); predictions in label ids must be converted to train ids"
        )


def _check_all_present(pred_dir: Path, samples: list[Sample]) -> None:
    # Checked before the first image is decoded so that a user does not wait through most of a
    # long evaluation only to learn that one file is missing.
    missing = [s for s in samples if not prediction_path(pred_dir, s).is_file()]
    if missing:
        first = missing[0]
        more = f" ({len(missing) - 1} more predictions are missing)" if len(missing) > 1 else ""
        raise UserError(
            f"missing prediction {prediction_path(pred_dir, first)} for image {first.image}{more}"
        )


def _other_aspect(pred_shape: tuple[int, ...], label_shape: tuple[int, ...]) -> bool:
    """True when a prediction is not a rescaled copy of its label's frame (more than 1% off)."""
    (ph, pw), (lh, lw) = pred_shape[:2], label_shape[:2]
    return abs(ph * lw - pw * lh) > 0.01 * lh * pw


def evaluate_predictions(pred_dir: Path, gt: Dataset,
                         warn: Callable[[str], None] | None = None) -> SegmentationScores:
    """Score `<pred_dir>/<stem>.png` (train ids, grey or palette PNG) against `gt`'s labels.

    A prediction of another size than its label is resized to the label with nearest neighbour.
    255 in a prediction means "no prediction" and is scored as wrong; other values above 18
    are refused (the file is not a train-id map). `warn` is told once, naming the first file,
    when predictions have another aspect ratio than their labels (stretched to fit, they score
    badly for a reason the mIoU does not show).
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.exists():
        raise UserError(f"{pred_dir} does not exist (the folder of predictions)")
    if not pred_dir.is_dir():
        raise UserError(f"{pred_dir} is not a folder (the folder of predictions)")
    if not gt.samples:
        raise UserError(f"{gt.root} has no images to evaluate against")
    gt.require_labels()
    _check_all_present(pred_dir, gt.samples)

    acc = ConfusionMatrix()
    for index, sample in enumerate(progress(gt.samples, desc="evaluate", total=len(gt.samples))):
        label = gt.read_label(index)
        path = prediction_path(pred_dir, sample)
        pred = read_index_png(path)
        _check_train_ids(path, pred)
        if warn is not None and _other_aspect(pred.shape, label.shape):
            warn(f"{path} is {pred.shape[1]}x{pred.shape[0]} and its label {label.shape[1]}x{label.shape[0]}: "
                 "another aspect ratio, stretched to the label's size (were the predictions made from "
                 "other images, or cropped?)")
            warn = None  # once
        pred = resize_nearest(pred, label.shape)
        acc.add(label, pred)
    return acc.scores()
