"""The two reference runs of every benchmark (DESIGN.md §2), as warm-up stages of the one loop.

source-only  the warm-up stage on the source labels: the lower bound;
oracle       the same stage, same recipe (optimiser, learning-rate multipliers, crops, image
             size, device), on the target's own labelled train split: the upper bound.

Both are ordinary projects trained by `TeacherTrainer` with `stages = (warmup,)`, so they train
exactly as MURID's own warm-up does and write the same records.
"""

from __future__ import annotations

import copy
from pathlib import Path

from murid_engine.errors import UserError
from murid_engine.jobs import EventSink, NullSink
from murid_engine.project import Project
from murid_engine.records import EvaluationRecord, evaluations
from murid_engine.run_config import RunConfig

REFERENCES = ("source_only", "oracle")


def reference_config(cfg: RunConfig, which: str, iterations: int | None = None) -> RunConfig:
    """`cfg` as the `which` reference run: warm-up only, on the source or on the target's labels."""
    if which not in REFERENCES:
        raise UserError(f"unknown reference run '{which}' (runs: {', '.join(REFERENCES)})")
    out = copy.deepcopy(cfg)
    out.stages = ("warmup",)
    if iterations is not None:
        out.warmup.iterations = iterations
    if which == "oracle":
        d = out.data
        d.source, d.source_split, d.source_size = d.target, d.target_split, d.target_size
    return out.validate()


def train_reference(cfg: RunConfig, root: Path, which: str, sink: EventSink | None = None,
                    iterations: int | None = None) -> EvaluationRecord | None:
    """Train the `which` reference in a new project at `root`; its score on the target val split
    (None when the target has no labelled val split). checkpoints/<which>.pt holds the network."""
    from murid_engine.training.trainer import TeacherTrainer

    project = Project.create(root, reference_config(cfg, which, iterations))
    TeacherTrainer(project, sink or NullSink(), reference_name=which).run()
    scored = evaluations(project.read_metrics())
    return scored[-1] if scored else None
