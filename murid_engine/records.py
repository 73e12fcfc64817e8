"""The records of a run's metrics.jsonl, typed: one writer (`to_json`) and one reader (`read_record`).

metrics.jsonl holds one JSON object a line; its `kind` tells the record apart:

- `losses`  LossRecord: the loss parts averaged over the last `LOG_EVERY` iterations of a stage;
- `eval`    EvaluationRecord: one model scored on the target's labelled val split;
- `round`   RoundRecord: a curriculum round's pseudo-labels were written.

The stage runner writes them, the command line, the GUI and the benchmarks read them back through
`read_records`, so a key is spelled in one place. The JSON keys are those earlier versions wrote:
old projects read unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from murid_engine.metrics import SegmentationScores


@dataclass(frozen=True)
class LossRecord:
    stage: str
    iteration: int  # optimiser steps done in the stage when the record was written
    round: int | None  # curriculum round, else None
    time_s: float  # seconds since the job began, continuous across a resume
    values: dict[str, float] = field(default_factory=dict)  # named loss parts and 'total'
    kind: str = "losses"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "stage": self.stage, "iteration": self.iteration,
                "round": self.round, "time_s": self.time_s, **self.values}

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> "LossRecord":
        own = {"kind", "stage", "iteration", "round", "time_s"}
        return cls(row["stage"], int(row.get("iteration", 0)), row.get("round"),
                   float(row.get("time_s") or 0.0),
                   {k: float(v) for k, v in row.items() if k not in own and isinstance(v, (int, float))})


@dataclass(frozen=True)
class EvaluationRecord:
    stage: str  # the stage whose end (or round end) this scores
    model: str  # 'source_only', 'teacher', 'student', 'oracle'
    iteration: int
    round: int | None
    time_s: float
    miou: float | None  # a fraction in [0, 1], as `evaluate --json` writes it
    per_class_iou: dict[str, float | None]
    pixel_acc: float | None
    kind: str = "eval"

    @classmethod
    def of(cls, scores: SegmentationScores, stage: str, model: str, iteration: int,
           round: int | None, time_s: float) -> "EvaluationRecord":
        j = scores.to_json()
        return cls(stage, model, iteration, round, time_s, j["miou"], j["per_class_iou"], j["pixel_acc"])

    def scores_json(self) -> dict[str, Any]:
        """The scores alone, in `SegmentationScores.to_json`'s keys (what the events carry)."""
        return {"miou": self.miou, "per_class_iou": self.per_class_iou, "pixel_acc": self.pixel_acc}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> "EvaluationRecord":
        return cls(row["stage"], row["model"], int(row.get("iteration", 0)), row.get("round"),
                   float(row.get("time_s") or 0.0), row.get("miou"), dict(row.get("per_class_iou") or {}),
                   row.get("pixel_acc"))


@dataclass(frozen=True)
class RoundRecord:
    round: int
    iteration: int  # where in the curriculum stage the round's training begins
    time_s: float
    portion: float
    kept_fraction: float
    thresholds: dict[str, Any] = field(default_factory=dict)
    stage: str = "curriculum"
    kind: str = "round"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "stage": self.stage, "round": self.round,
                "iteration": self.iteration, "time_s": self.time_s, "portion": self.portion,
                "kept_fraction": self.kept_fraction, "thresholds": self.thresholds}

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> "RoundRecord":
        return cls(int(row["round"]), int(row.get("iteration", 0)), float(row.get("time_s", 0.0)),
                   float(row["portion"]), float(row["kept_fraction"]), dict(row.get("thresholds") or {}),
                   row.get("stage", "curriculum"))


Record = LossRecord | EvaluationRecord | RoundRecord
_READERS = {"losses": LossRecord.from_json, "eval": EvaluationRecord.from_json, "round": RoundRecord.from_json}


def read_record(row: dict[str, Any]) -> Record | None:
    """The typed record of one metrics.jsonl line; None for a kind this version does not know."""
    reader = _READERS.get(row.get("kind", ""))
    return None if reader is None else reader(row)


def read_records(rows: Iterable[dict[str, Any]]) -> list[Record]:
    return [r for r in map(read_record, rows) if r is not None]


def evaluations(rows: Iterable[dict[str, Any]]) -> list[EvaluationRecord]:
    """The evaluation records among `rows` (e.g. `project.read_metrics()`), in order."""
    return [r for r in read_records(rows) if isinstance(r, EvaluationRecord)]
