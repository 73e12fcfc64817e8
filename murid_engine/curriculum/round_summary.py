"""A pseudo-label round's summary, typed: what `round.json` holds, its one writer and one reader.

`write_round_summary` writes it (atomically; the curriculum writes it last, so its presence
marks a round complete) and `read_round_summary` reads it back. The command line (`murid
pseudo`), the GUI (Review view, the round preview) and the benchmarks use these dataclasses,
never the JSON keys, so a key is spelled in this file only.

The reader accepts the round.json of earlier versions: a key they did not write yet
(`human_verified_pixels`, say) takes its default; the keys every version wrote are required.
Keys this version does not know are passed over.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from murid_engine.errors import UserError
from murid_engine.imageio import atomic_write_bytes
from murid_engine.json_record import read_json_record
from murid_engine.labels import CLASS_NAMES, NUM_CLASSES

ROUND_FILE = "round.json"
QUANTISATION = "level = round(conf * 255); conf = level / 255"


def class_names(num_classes: int = NUM_CLASSES) -> tuple[str, ...]:
    return CLASS_NAMES if num_classes == len(CLASS_NAMES) else tuple(f"class{c}" for c in range(num_classes))


@dataclass(frozen=True)
class ImageSummary:
    """One image of a round."""

    pixels: int
    mean_confidence: float  # mean of the quantised confidence, in [0, 1]
    kept_fraction: float | None = None  # share of its pixels the thresholds keep; None before labelling
    edited_pixels: int = 0  # pixels of the user's edit when the round was (re)labelled
    disagreement: float | None = None  # teacher/student disagreement; None without a student

    def to_json(self) -> dict[str, Any]:
        return {"pixels": self.pixels, "mean_confidence": self.mean_confidence,
                "kept_fraction": self.kept_fraction, "edited_pixels": self.edited_pixels,
                "disagreement": self.disagreement}

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> "ImageSummary":
        return cls(int(row["pixels"]), float(row["mean_confidence"]), _maybe_float(row.get("kept_fraction")),
                   int(row.get("edited_pixels") or 0), _maybe_float(row.get("disagreement")))


@dataclass(frozen=True)
class RoundSummary:
    """A round: its portion and thresholds, per-class pixel counts, and its images by stem."""

    round: int  # numbered from 1 in a project (0: a round written outside one)
    portion: float
    cap: float | None  # the ceiling on every automatic threshold; None: none
    num_classes: int
    automatic_thresholds: dict[str, float]  # by class name, before the user's overrides
    confidence_histogram: dict[str, list[int]]  # by class name: pixels per confidence level 0..255
    images: dict[str, ImageSummary]  # by stem, in the order they were labelled
    thresholds: dict[str, float] = field(default_factory=dict)  # final, by class name
    overrides: dict[str, float] = field(default_factory=dict)  # the user's, by class name
    predicted_pixels: dict[str, int] = field(default_factory=dict)
    kept_pixels: dict[str, int] = field(default_factory=dict)
    kept_fraction: float = 0.0  # over every pixel of the round
    human_verified_pixels: int = 0  # pixels the user gave a class (edits, region actions)
    confidence_quantisation: str = QUANTISATION

    @property
    def stems(self) -> list[str]:
        return list(self.images)

    def class_names(self) -> tuple[str, ...]:
        return class_names(self.num_classes)

    def threshold_values(self) -> np.ndarray:
        """The final per-class thresholds, in class order."""
        return np.array([self.thresholds[n] for n in self.class_names()])

    def automatic_values(self) -> np.ndarray:
        return np.array([self.automatic_thresholds[n] for n in self.class_names()])

    def histogram_counts(self) -> np.ndarray:
        """(num_classes, 256) pixel counts per confidence level, in class order."""
        return np.array([self.confidence_histogram[n] for n in self.class_names()], dtype=np.float64)

    def to_json(self) -> dict[str, Any]:
        # The big per-image table and the histogram at the end, so that the file's head reads well.
        head = {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("images", "confidence_histogram")}
        return {**head, "confidence_histogram": self.confidence_histogram,
                "images": {stem: image.to_json() for stem, image in self.images.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RoundSummary":
        """KeyError/TypeError/ValueError when a key every version wrote is missing or malformed."""
        histogram = {str(k): [int(v) for v in row] for k, row in data["confidence_histogram"].items()}
        automatic = _floats(data["automatic_thresholds"])
        counts = {name: sum(row) for name, row in histogram.items()}
        return cls(
            round=int(data.get("round", 0)), portion=float(data["portion"]),
            cap=_maybe_float(data.get("cap")),
            num_classes=int(data.get("num_classes", len(histogram))),
            automatic_thresholds=automatic, confidence_histogram=histogram,
            images={str(stem): ImageSummary.from_json(row) for stem, row in data["images"].items()},
            thresholds=_floats(data.get("thresholds", automatic)),
            overrides=_floats(data.get("overrides", {})),
            predicted_pixels={k: int(v) for k, v in data.get("predicted_pixels", counts).items()},
            kept_pixels={k: int(v) for k, v in data.get("kept_pixels", {}).items()},
            kept_fraction=float(data.get("kept_fraction", 0.0)),
            human_verified_pixels=int(data.get("human_verified_pixels", 0)),
            confidence_quantisation=str(data.get("confidence_quantisation", QUANTISATION)))


def write_round_summary(round_dir: Path, summary: RoundSummary) -> None:
    """round.json, written whole and renamed into place (its presence marks the round complete)."""
    atomic_write_bytes(Path(round_dir) / ROUND_FILE, json.dumps(summary.to_json(), indent=1).encode())


def read_round_summary(round_dir: Path) -> RoundSummary:
    """The summary of a finished round (UserError if missing, unreadable or not a round summary)."""
    try:
        return read_json_record(Path(round_dir) / ROUND_FILE, "a round summary", RoundSummary.from_json)
    except FileNotFoundError:
        raise UserError(f"{round_dir} is not a finished pseudo-label round (no {ROUND_FILE})") from None


def _maybe_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _floats(by_name: dict[str, Any]) -> dict[str, float]:
    return {str(k): float(v) for k, v in by_name.items()}
