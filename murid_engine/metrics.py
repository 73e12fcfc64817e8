"""Segmentation metrics: confusion matrix, per-class IoU, mIoU (19 / 16 / 13 classes), accuracy.

Pure NumPy. Conventions, the same as the official Cityscapes evaluation (cityscapesscripts):

- Rows are ground truth, columns prediction. Pixels whose ground truth is IGNORE (255) are not
  counted at all.
- A prediction that is not a class (255 "no prediction", or any value outside 0..K-1) is wrong:
  it is a false negative of the pixel's ground-truth class and a false positive of no class.
  It is kept in an extra last column, so a confusion matrix has shape (K, K + 1) and
  `ConfusionMatrix.square()` gives the (K, K) part. The official script counts a predicted
  ignored label id the same way, and so does mmsegmentation.
- IoU = TP / (TP + FP + FN). A class absent from both ground truth and prediction (union 0)
  has IoU None and is left out of every mean; a class only predicted has IoU 0 and counts.
- mIoU averages the classes with a union > 0, as the UDA literature and the official script do;
  mIoU16 / mIoU13 apply the same rule to the SYNTHIA protocols' classes (CLASSES_16 / 13).
- All scores are fractions in 0..1 (JSON included); human output formats them as percents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from murid_engine.labels import CLASS_NAMES, CLASSES_13, CLASSES_16, IGNORE, NUM_CLASSES


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """(K, K + 1) int64 counts of (gt class, predicted class); last column: prediction not a class.

    `gt` holds train ids 0..K-1 or IGNORE; any other value is a bug upstream and raises
    ValueError (dataset readers validate their labels).
    """
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape")
    gt = gt.reshape(-1).astype(np.int64)
    pred = pred.reshape(-1).astype(np.int64)
    keep = gt != IGNORE
    gt, pred = gt[keep], pred[keep]
    if gt.size and (gt.min() < 0 or gt.max() >= num_classes):
        bad = np.unique(gt[(gt < 0) | (gt >= num_classes)])[:5].tolist()
        raise ValueError(f"ground truth holds values {bad}, not train ids 0..{num_classes - 1}")
    # Every non-class prediction goes to the extra column K, so it cannot collide with a class.
    pred = np.where((pred >= 0) & (pred < num_classes), pred, num_classes)
    width = num_classes + 1
    counts = np.bincount(gt * width + pred, minlength=num_classes * width)
    return counts.reshape(num_classes, width).astype(np.int64, copy=False)


def _as_full(matrix: np.ndarray) -> np.ndarray:
    """Accept (K, K) or (K, K + 1) and return (K, K + 1) int64."""
    m = np.asarray(matrix, dtype=np.int64)
    if m.ndim != 2 or m.shape[1] not in (m.shape[0], m.shape[0] + 1):
        raise ValueError(f"a confusion matrix is (K, K) or (K, K + 1), not {m.shape}")
    if m.shape[1] == m.shape[0]:
        m = np.concatenate([m, np.zeros((m.shape[0], 1), np.int64)], axis=1)
    return m


class ConfusionMatrix:
    """Accumulates a confusion matrix over images, one at a time (nothing else is kept)."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
        self.n_images = 0

    def add(self, gt: np.ndarray, pred: np.ndarray) -> None:
        self.matrix += confusion_matrix(gt, pred, self.num_classes)
        self.n_images += 1

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add another accumulator's counts (e.g. from another worker) into this one."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes} classes into {self.num_classes}")
        self.matrix += other.matrix
        self.n_images += other.n_images
        return self

    def array(self) -> np.ndarray:
        """A copy of the (K, K + 1) counts."""
        return self.matrix.copy()

    def square(self) -> np.ndarray:
        """The (K, K) class-by-class part (what a confusion-matrix view shows)."""
        return self.matrix[:, : self.num_classes].copy()

    def scores(self) -> "SegmentationScores":
        return SegmentationScores.from_matrix(self.matrix, self.n_images)


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


@dataclass(frozen=True, eq=False)  # eq=False: an ndarray field has no plain ==
class SegmentationScores:
    """Scores from one confusion matrix; fractions in 0..1, None where undefined."""

    iou: tuple[float | None, ...]  # per class; None where the class's union is 0
    miou: float | None
    miou16: float | None  # None unless the 19 Cityscapes classes are evaluated
    miou13: float | None
    pixel_acc: float | None  # correct / valid (non-ignored) pixels
    n_images: int
    confusion: np.ndarray  # (K, K + 1) int64; the last column counts non-class predictions

    @classmethod
    def from_matrix(cls, matrix: np.ndarray, n_images: int = 0) -> "SegmentationScores":
        m = _as_full(matrix)
        k = m.shape[0]
        tp = np.diag(m[:, :k]).astype(np.float64)
        gt_total = m.sum(axis=1)  # TP + FN, non-class predictions included
        pred_total = m[:, :k].sum(axis=0)  # TP + FP
        union = gt_total + pred_total - tp
        iou = tuple(float(tp[c] / union[c]) if union[c] > 0 else None for c in range(k))
        protocols = k == NUM_CLASSES  # the 16/13 subsets are defined on the 19 classes only
        valid = int(m.sum())
        return cls(
            iou=iou,
            miou=_mean(iou),
            miou16=_mean([iou[c] for c in CLASSES_16]) if protocols else None,
            miou13=_mean([iou[c] for c in CLASSES_13]) if protocols else None,
            pixel_acc=float(tp.sum() / valid) if valid else None,
            n_images=int(n_images),
            confusion=m,
        )

    @property
    def num_classes(self) -> int:
        return len(self.iou)

    def class_names(self) -> tuple[str, ...]:
        if self.num_classes == NUM_CLASSES:
            return CLASS_NAMES
        return tuple(f"class {c}" for c in range(self.num_classes))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; `confusion` is the (K, K) class part, `invalid_predictions` the rest."""
        k = self.num_classes
        return {
            "miou": self.miou,
            "miou16": self.miou16,
            "miou13": self.miou13,
            "per_class_iou": dict(zip(self.class_names(), self.iou)),
            "pixel_acc": self.pixel_acc,
            "n_images": self.n_images,
            "confusion": self.confusion[:, :k].tolist(),
            # Per ground-truth class: pixels whose prediction was no class (e.g. 255).
            "invalid_predictions": self.confusion[:, k].tolist(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SegmentationScores":
        """Rebuild from `to_json()` output (e.g. a project's stored metrics)."""
        square = np.asarray(data["confusion"], dtype=np.int64)
        extra = np.asarray(data.get("invalid_predictions", [0] * len(square)), dtype=np.int64)
        return cls.from_matrix(np.concatenate([square, extra[:, None]], axis=1), data["n_images"])
