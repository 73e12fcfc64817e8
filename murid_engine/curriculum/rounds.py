"""One curriculum pseudo-label round on disk, and the training targets read back from it.

Layout of `round_dir` (every file written atomically; round.json last, so a folder without it
is an unfinished round):

    predictions/<stem>.png  uint8 grey: argmax train ids before thresholding
    confidence/<stem>.png   uint8 grey: confidence level q = round(conf * 255), conf = q / 255
    labels/<stem>.png       uint8 grey: train ids kept by the thresholds, 255 = ignored
    regions/                superpixels of every image and their review queue, worst first
                            (murid_engine.regions.scoring; written before round.json)
    round.json              round index, portion, cap, thresholds (automatic and final, by
                            class name), overrides, per-class predicted / kept pixels, overall
                            kept fraction, the per-class histogram of confidence levels (the
                            GUI's histograms and live kept counts), and per image:
                            pixels, mean_confidence, kept_fraction, edited_pixels, disagreement

round.json's `images` lists the round's stems (files of other stems left in a reused folder are
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

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from murid_engine.errors import UserError
from murid_engine.imageio import atomic_write_bytes, read_index_png, write_grey_png
from murid_engine.labels import CLASS_NAMES, IGNORE, NUM_CLASSES

from .thresholds import (
    ConfidenceHistogram,
    apply_overrides,
    kept_counts,
    quantise_confidence,
    rethreshold,
)

ROUND_FILE = "round.json"
LABELS_DIR, PREDICTIONS_DIR, CONFIDENCE_DIR = "labels", "predictions", "confidence"
EDIT_NONE = 255
EDIT_IGNORE = 254


def class_names(num_classes: int = NUM_CLASSES) -> tuple[str, ...]:
    return CLASS_NAMES if num_classes == len(CLASS_NAMES) else tuple(f"class{c}" for c in range(num_classes))


def write_round(round_dir: Path, items: Iterable[tuple], portion: float, cap: float | None = None,
                overrides: Mapping[int, float] | None = None, edits_dir: Path | None = None, *,
                round_index: int = 0, num_classes: int = NUM_CLASSES) -> dict[str, Any]:
    """Write a round from `items` = (stem, pred, conf[, disagreement]) and return its round.json.

    pred: (H, W) argmax train ids; conf: (H, W) float confidence of the argmax in [0, 1] (or
    uint8 levels). Streams in two passes: pass 1 saves prediction and confidence PNGs while
    accumulating the per-class histogram; pass 2 re-reads them to write the labels. Memory does
    not grow with the number of images (only a few numbers per stem are kept).
    `edits_dir` only feeds the per-image `edited_pixels` statistic; labels/ stays automatic.
    """
    round_dir = Path(round_dir)
    (round_dir / ROUND_FILE).unlink(missing_ok=True)  # an interrupted rewrite must not look complete
    hist = ConfidenceHistogram(num_classes, quantised=True)
    images: dict[str, dict[str, Any]] = {}
    for item in items:
        stem, pred, conf, *rest = item
        _check_stem(stem, images)
        pred, level = _check_image(stem, pred, conf, num_classes)
        write_grey_png(round_dir / PREDICTIONS_DIR / f"{stem}.png", pred)
        write_grey_png(round_dir / CONFIDENCE_DIR / f"{stem}.png", level)
        hist.add(pred, level)
        images[stem] = {"pixels": int(pred.size), "mean_confidence": float(level.mean()) / 255,
                        "kept_fraction": None, "edited_pixels": 0,
                        "disagreement": float(rest[0]) if rest and rest[0] is not None else None}
        # Drop our references before the generator makes the next image: one image in memory.
        del item, pred, conf, level, rest
    if not images:
        raise UserError("there are no target images to pseudo-label")
    auto = hist.thresholds(portion, cap)
    info = {"round": int(round_index), "portion": float(portion),
            "cap": None if cap is None else float(cap), "num_classes": num_classes,
            "confidence_quantisation": "level = round(conf * 255); conf = level / 255",
            "automatic_thresholds": _by_name(auto, num_classes),
            "confidence_histogram": {n: [int(v) for v in row]
                                     for n, row in zip(class_names(num_classes), hist.counts)},
            "images": images}
    return _label_pass(round_dir, info, overrides, edits_dir)


def relabel_round(round_dir: Path, overrides: Mapping[int, float] | None,
                  edits_dir: Path | None = None) -> dict[str, Any]:
    """Rewrite a round's labels with new overrides (pass 2 only; the teacher is not re-run)."""
    info = read_round(round_dir)
    (Path(round_dir) / ROUND_FILE).unlink(missing_ok=True)
    return _label_pass(Path(round_dir), info, overrides, edits_dir)


def _label_pass(round_dir: Path, info: dict[str, Any], overrides: Mapping[int, float] | None,
                edits_dir: Path | None) -> dict[str, Any]:
    n = info["num_classes"]
    names = class_names(n)
    auto = np.array([info["automatic_thresholds"][name] for name in names])
    thresholds = apply_overrides(auto, overrides)
    kept_total = pixels_total = verified_total = 0
    for stem, stats in info["images"].items():
        pred, level = load_round_image(round_dir, stem)
        labels = rethreshold(pred, level, thresholds)
        write_grey_png(round_dir / LABELS_DIR / f"{stem}.png", labels)
        kept = int(np.count_nonzero(labels != IGNORE))
        stats["kept_fraction"] = kept / labels.size
        edit = _read_edit(edits_dir, stem, labels.shape, n)
        stats["edited_pixels"] = 0 if edit is None else int(np.count_nonzero(edit != EDIT_NONE))
        # Human-verified: pixels the user gave a class (painted, relabelled or accepted regions).
        verified_total += 0 if edit is None else int(np.count_nonzero(edit < n))
        kept_total += kept
        pixels_total += labels.size
    counts = np.array([info["confidence_histogram"][name] for name in names], dtype=np.float64)
    info.update({
        "thresholds": _by_name(thresholds, n),
        "overrides": {names[int(c)]: float(v) for c, v in sorted((overrides or {}).items())},
        "predicted_pixels": {name: int(v) for name, v in zip(names, counts.sum(axis=1))},
        "kept_pixels": {name: int(v) for name, v in zip(names, kept_counts(counts, thresholds))},
        "kept_fraction": kept_total / pixels_total,
        "human_verified_pixels": verified_total,
    })
    # Keep the big per-image table and the histogram at the end, so the head reads well.
    info["confidence_histogram"] = info.pop("confidence_histogram")
    info["images"] = info.pop("images")
    atomic_write_bytes(Path(round_dir) / ROUND_FILE, json.dumps(info, indent=1).encode())
    return info


def read_round(round_dir: Path) -> dict[str, Any]:
    """round.json of a finished round (UserError if missing or unreadable)."""
    path = Path(round_dir) / ROUND_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{round_dir} is not a finished pseudo-label round (no {ROUND_FILE})") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not readable: {exc}") from None


def round_thresholds(info: Mapping[str, Any]) -> np.ndarray:
    """The final per-class thresholds of a round, in class order, from its round.json."""
    return np.array([info["thresholds"][n] for n in class_names(info["num_classes"])])


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
