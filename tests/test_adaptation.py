"""Adaptation works: on a tiny SynthCity, the adapted teacher beats source-only on the target.

Only the public API is used (run_pipeline and the 'eval' records of metrics.jsonl), so the test
holds whatever the training loops look like underneath. Two baselines: the source-only network
that the run itself warms up, and one trained on the source alone for as many iterations as the
whole adapted run (warm-up + adapt + curriculum), so that the margin is not just "trained longer".

Margins measured with these settings (`optim.lr` 0.03, 60 + 30 + 2x30 iterations, 24/16/8 images
at 128x64), teacher minus source-only / minus equal-budget source-only, in mIoU points, one
thread: seed 0 5.2/3.6, seed 1 6.7/5.4, seed 2 5.8/3.8; two threads (another reduction order):
seed 0 4.6/4.6 (teacher 11.1..14.0 mIoU; pixel accuracy follows, +4.5..+11.3 points).
With adapt and curriculum made inert (their lr 1e-9; seed 0, one thread) the
same run gives 1.5/-0.1, which fails. At 64x32 with 40 + 20 + 2x20 iterations the margins were
2..4 points on one CPU and 1.2/1.7 on another (kernel dispatch): too close to the noise.
This test uses seed 0.
"""

from __future__ import annotations

from pathlib import Path

from murid_engine.config import apply_overrides, load_preset
from murid_engine.pipeline import run_pipeline
from murid_engine.project import Project
from murid_engine.synthcity import SynthConfig, generate
from smoke_runs import one_thread

SEED = 0
WIDTH, HEIGHT = 128, 64  # at 64x32 the margin (~1 point) drowned in the noise of a CPU's numerics
WARMUP, ADAPT, ROUND, ROUNDS = 60, 30, 30, 2  # ROUNDS: the smoke preset's two curriculum portions
SETTINGS = ["optim.lr=0.03", f"warmup.iterations={WARMUP}", f"adapt.iterations={ADAPT}",
            f"curriculum.iterations_per_round={ROUND}", f"seed={SEED}",
            f"data.crop=[{WIDTH},{HEIGHT}]"]
# mIoU fractions; the smallest measured margins were 0.046 and 0.036, the inert run's 0.015 and -0.001.
MARGIN = 0.03
EQUAL_BUDGET_MARGIN = 0.02


def _target_val_miou(data: Path, root: Path, stages: list[str], *extra: str) -> dict[tuple[str, str], float]:
    """Train a new project on `data` and return its last 'eval' mIoU per (stage, model)."""
    cfg = apply_overrides(load_preset("smoke"), [f"data.source=synthcity:{data}", f"data.target=synthcity:{data}",
                                                 *SETTINGS, *extra])
    cfg.stages = stages
    project = Project.create(root, cfg)
    assert run_pipeline(project) is True
    return {(r["stage"], r["model"]): r["miou"] for r in Project.open(root).read_metrics() if r["kind"] == "eval"}


def test_the_adapted_teacher_beats_source_only_on_the_target(tmp_path):
    data = tmp_path / "synth"
    generate(data, SynthConfig(n_source=24, n_target=16, n_val=8, width=WIDTH, height=HEIGHT, seed=SEED), workers=1)
    with one_thread():
        adapted = _target_val_miou(data, tmp_path / "adapted", ["warmup", "adapt", "curriculum"])
        longer = _target_val_miou(data, tmp_path / "source-only", ["warmup"],
                                  f"warmup.iterations={WARMUP + ADAPT + ROUNDS * ROUND}")
    source_only, teacher = adapted[("warmup", "source_only")], adapted[("curriculum", "teacher")]
    equal_budget = longer[("warmup", "source_only")]
    assert teacher > source_only + MARGIN, (teacher, source_only)
    assert teacher > equal_budget + EQUAL_BUDGET_MARGIN, (teacher, equal_budget)
