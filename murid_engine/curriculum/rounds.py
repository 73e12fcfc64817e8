"""One curriculum pseudo-label round on disk, and the training targets read back from it.

Layout of `round_dir` (every file written atomically; round.json last, so a folder without it
is an unfinished round):

    predictions/<stem>.png  uint8 grey: argmax train ids before thresholding
    confidence/<stem>.png   uint8 grey: confidence level q = round(conf * 255), conf = q / 255
    labels/<stem>.png       uint8 grey: train ids kept by the thresholds, 255 = ignored
    regions/                superpixels of every image and their review queue, worst first
                            (murid_engine.regions.scoring; written before round.json)
    round.json              the round's summary (round_summary.RoundSummary, written and read
                            there only): round index, portion, cap, thresholds (automatic and
                            final, by class name), overrides, per-class predicted / kept pixels,
                            overall kept fraction, the per-class histogram of confidence levels
                            (the GUI's histograms and live kept counts), and per image
                            (ImageSummary): pixels, mean_confidence, kept_fraction,
                            edited_pixels, disagreement

The summary's `images` lists the round's stems (files of other stems left in a reused folder are
not part of it). Labels are thresholded on the *quantised* levels with `rethreshold`, so the GUI re-thresholding
the saved PNGs reproduces the training labels exactly.

User edits (saved by the Review view through `Project.save_edit`, one file per image,
`edits/<stem>.png`): a uint8 grey PNG of the image's size where
    255 (EDIT_NONE)    not edited: the automatic label of the round is used;
    0..18              a painted train id: used instead of the automatic label;
    254 (EDIT_IGNORE)  painted "ignore": the pixel is not trained on, whatever the round says.
Erasing an edit writes 255 back, which restores the automatic label. Edits live outside the
round folder and take precedence over the labels of every round (DESIGN §2); the training
targets they make are built in one place, `murid_engine.training.round_labels.training_maps`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from murid_engine.errors import UserError
from murid_engine.imageio import read_index_png, write_grey_png
from murid_engine.labels import IGNORE, NUM_CLASSES

from .round_summary import (
    ROUND_FILE,
    ImageSummary,
    RoundSummary,
    class_names,
    read_round_summary,
    write_round_summary,
)

from .thresholds import (
    ConfidenceHistogram,
    apply_overrides,
    kept_counts,
    quantise_confidence,
    rethreshold,
)

LABELS_DIR, PREDICTIONS_DIR, CONFIDENCE_DIR = "labels", "predictions", "confidence"
EDIT_NONE = 255
EDIT_IGNORE = 254


def write_round(round_dir: Path, items: Iterable[tuple], portion: float, cap: float | None = None,
                overrides: Mapping[int, float] | None = None, edits_dir: Path | None = None, *,
                round_index: int = 0, num_classes: int = NUM_CLASSES) -> RoundSummary:
    """Write a round from `items` = (stem, pred, conf[, disagreement]) and return its summary.

    pred: (H, W) argmax train ids; conf: (H, W) float confidence of the argmax in [0, 1] (or
    uint8 levels). Streams in two passes: pass 1 saves prediction and confidence PNGs while
    accumulating the per-class histogram; pass 2 re-reads them to write the labels. Memory does
    not grow with the number of images (only a few numbers per stem are kept).
    `edits_dir` only feeds the per-image `edited_pixels` statistic; labels/ stays automatic.
    """
    round_dir = Path(round_dir)
    (round_dir / ROUND_FILE).unlink(missing_ok=True)  # an interrupted rewrite must not look complete
    hist = ConfidenceHistogram(num_classes, quantised=True)
    images: dict[str, ImageSummary] = {}
    for item in items:
        stem, pred, conf, *rest = item
        _check_stem(stem, images)
        pred, level = _check_image(stem, pred, conf, num_classes)
        write_grey_png(round_dir / PREDICTIONS_DIR / f"{stem}.png", pred)
        write_grey_png(round_dir / CONFIDENCE_DIR / f"{stem}.png", level)
        hist.add(pred, level)
        images[stem] = ImageSummary(int(pred.size), float(level.mean()) / 255,
                                    disagreement=float(rest[0]) if rest and rest[0] is not None else None)
        # Drop our references before the generator makes the next image: one image in memory.
        del item, pred, conf, level, rest
    if not images:
        raise UserError("there are no target images to pseudo-label")
    names = class_names(num_classes)
    unlabelled = RoundSummary(
        round=int(round_index), portion=float(portion), cap=None if cap is None else float(cap),
        num_classes=num_classes, automatic_thresholds=_by_name(hist.thresholds(portion, cap), num_classes),
        confidence_histogram={n: [int(v) for v in row] for n, row in zip(names, hist.counts)},
        images=images)
    return _label_pass(round_dir, unlabelled, overrides, edits_dir)


def relabel_round(round_dir: Path, overrides: Mapping[int, float] | None,
                  edits_dir: Path | None = None) -> RoundSummary:
    """Rewrite a round's labels with new overrides (pass 2 only; the teacher is not re-run)."""
    summary = read_round_summary(round_dir)
    (Path(round_dir) / ROUND_FILE).unlink(missing_ok=True)
    return _label_pass(Path(round_dir), summary, overrides, edits_dir)


def _label_pass(round_dir: Path, summary: RoundSummary, overrides: Mapping[int, float] | None,
                edits_dir: Path | None) -> RoundSummary:
    n = summary.num_classes
    names = summary.class_names()
    thresholds = apply_overrides(summary.automatic_values(), overrides)
    kept_total = pixels_total = verified_total = 0
    images = {}
    for stem, image in summary.images.items():
        pred, level = load_round_image(round_dir, stem)
        labels = rethreshold(pred, level, thresholds)
        write_grey_png(round_dir / LABELS_DIR / f"{stem}.png", labels)
        kept = int(np.count_nonzero(labels != IGNORE))
        edit = _read_edit(edits_dir, stem, labels.shape, n)
        images[stem] = replace(image, kept_fraction=kept / labels.size,
                               edited_pixels=0 if edit is None else int(np.count_nonzero(edit != EDIT_NONE)))
        # Human-verified: pixels the user gave a class (painted, relabelled or accepted regions).
        verified_total += 0 if edit is None else int(np.count_nonzero(edit < n))
        kept_total += kept
        pixels_total += labels.size
    counts = summary.histogram_counts()
    labelled = replace(
        summary, images=images, thresholds=_by_name(thresholds, n),
        overrides={names[int(c)]: float(v) for c, v in sorted((overrides or {}).items())},
        predicted_pixels={name: int(v) for name, v in zip(names, counts.sum(axis=1))},
        kept_pixels={name: int(v) for name, v in zip(names, kept_counts(counts, thresholds))},
        kept_fraction=kept_total / pixels_total, human_verified_pixels=verified_total)
    write_round_summary(round_dir, labelled)
    return labelled


def load_round_image(round_dir: Path, stem: str) -> tuple[np.ndarray, np.ndarray]:
    """(prediction uint8, confidence level uint8) of one image, for re-thresholding."""
    round_dir = Path(round_dir)
    pred = read_index_png(round_dir / PREDICTIONS_DIR / f"{stem}.png")
    level = read_index_png(round_dir / CONFIDENCE_DIR / f"{stem}.png")
    if pred.shape != level.shape:
        raise UserError(f"{round_dir}: prediction and confidence of {stem} differ in size")
    return pred, level


def _read_edit(edits_dir: Path | None, stem: str, shape: tuple[int, ...],
               num_classes: int) -> np.ndarray | None:
    if edits_dir is None:
        return None
    path = Path(edits_dir) / f"{stem}.png"
    if not path.is_file():
        return None
    edit = read_index_png(path)
    if edit.shape != shape:
        raise UserError(f"{path} is {edit.shape[1]}x{edit.shape[0]}, its pseudo-label is "
                        f"{shape[1]}x{shape[0]}")
    check_edit_values(edit, str(path), num_classes)
    return edit


def check_edit_values(edit: np.ndarray, what: str, num_classes: int) -> None:
    bad = (edit >= num_classes) & (edit != EDIT_IGNORE) & (edit != EDIT_NONE)
    if bad.any():
        raise UserError(f"{what} holds value {int(edit[bad][0])}; edits are train ids "
                        f"0..{num_classes - 1}, {EDIT_IGNORE} (ignore) or {EDIT_NONE} (not edited)")


def _check_stem(stem: str, seen: Mapping[str, Any]) -> None:
    if not isinstance(stem, str) or not stem or "/" in stem or "\\" in stem or stem.startswith("."):
        raise UserError(f"image stem {stem!r} cannot name a file in a pseudo-label round")
    if stem in seen:
        raise UserError(f"image stem '{stem}' appears twice in the target split")


def _check_image(stem: str, pred: Any, conf: Any, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred)
    if pred.ndim != 2 or np.shape(conf) != pred.shape:
        raise ValueError(f"{stem}: prediction {pred.shape} and confidence {np.shape(conf)} "
                         "must be the same (H, W)")
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f"{stem}: predictions must be train ids 0..{num_classes - 1}")
    return pred.astype(np.uint8, copy=False), quantise_confidence(conf)


def _by_name(values: np.ndarray, num_classes: int) -> dict[str, float]:
    return {n: float(v) for n, v in zip(class_names(num_classes), values)}
