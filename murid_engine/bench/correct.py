"""`murid bench correct`: what a few minutes of region review are worth, measured.

A simulated annotator reads the target-train ground truth and relabels, exactly (every pixel
of a chosen region gets its true train id; void pixels become 'ignore'), the regions a strategy
picks, until a budget — a percentage of the round's target-train pixels — is spent:

    ranked  the round's region queue, worst RIPU score first (murid_engine.regions.scoring)
    random  the same regions in a random order (seeded)

Regions are taken in order while the spent pixels stay within the budget (the first region that
would overspend ends the selection), so `pixels <= budget` and adding the next region of the
order would exceed it. The corrections are written as the project's edits (region actions,
full weight), then the one-click path goes on: the next curriculum round (the teacher trains
one more round, labelled as `murid pseudo` labels it, edits on top) and the distillation, both
through the public trainers (TeacherTrainer.run(resume=True), StudentTrainer.run()), each run in
its own copy of the project. The student is scored on target val (the distillation's own
'eval' record). Beside the runs: the uncorrected student (budget 0, same compute) and the
oracle (every region relabelled: the whole target-train ground truth, same compute).

Active domain adaptation with region impurity × uncertainty: RIPU (Xie et al., CVPR 2022);
superpixel regions: D2ADA (Wu et al., ECCV 2022).
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from murid_engine.curriculum.rounds import EDIT_IGNORE, EDIT_NONE
from murid_engine.errors import UserError
from murid_engine.jobs import EventSink, Message, NullSink
from murid_engine.labels import IGNORE
from murid_engine.project import Project
from murid_engine.records import evaluations
from murid_engine.regions.scoring import RoundRegions

STRATEGIES = ("ranked", "random")


@dataclass(frozen=True)
class Selection:
    """The regions a strategy picks within a budget: queue positions, in the order picked."""
    strategy: str
    budget: float  # percent of the round's pixels
    budget_pixels: int
    positions: np.ndarray
    pixels: int

    @property
    def regions(self) -> int:
        return int(len(self.positions))


def region_order(queue: np.ndarray, strategy: str, seed: int = 0) -> np.ndarray:
    """Queue positions in the order `strategy` reviews them."""
    if strategy == "ranked":
        return np.arange(len(queue))
    if strategy == "random":
        return np.random.default_rng(seed).permutation(len(queue))
    raise UserError(f"unknown strategy '{strategy}' (strategies: {', '.join(STRATEGIES)})")


def select_regions(queue: np.ndarray, strategy: str, budget: float, seed: int = 0) -> Selection:
    """The longest prefix of the strategy's order whose pixels fit in `budget` percent."""
    total = int(queue["pixels"].sum())
    budget_pixels = int(np.floor(total * budget / 100))
    order = region_order(queue, strategy, seed)
    spent = np.cumsum(queue["pixels"][order].astype(np.int64))
    n = int(np.searchsorted(spent, budget_pixels, side="right"))
    return Selection(strategy, budget, budget_pixels, order[:n], int(spent[n - 1]) if n else 0)


def apply_ground_truth(project: Project, regions: RoundRegions, selection: Selection, target) -> int:
    """Relabel the selected regions with the target's ground truth as edits; pixels written."""
    from murid_engine.evaluation import resize_nearest

    index = {s.stem: i for i, s in enumerate(target.samples)}
    by_image: dict[int, list[int]] = defaultdict(list)
    rows = regions.queue[selection.positions]
    for image, region in zip(rows["image"].tolist(), rows["region"].tolist()):
        by_image[image].append(region)
    written = 0
    for image, ids in by_image.items():
        stem = regions.stems[image]
        if stem not in index:
            raise UserError(f"the round's image '{stem}' is not in the target dataset {target}")
        rmap = regions.region_map(stem)
        gt = resize_nearest(target.read_label(index[stem]), rmap.shape)
        mask = np.isin(rmap, np.asarray(ids))
        edit = project.load_edit(stem)
        if edit is None or edit.shape != rmap.shape:
            edit = np.full(rmap.shape, EDIT_NONE, np.uint8)
        edit[mask] = np.where(gt[mask] == IGNORE, EDIT_IGNORE, gt[mask])
        project.save_edit(stem, edit)
        written += int(mask.sum())
    return written


@dataclass
class CorrectConfig:
    project: Path  # a trained project (teacher, curriculum rounds) whose target-train split has labels
    workdir: Path  # one copy of the project per run is made here
    budgets: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0)
    strategies: tuple[str, ...] = STRATEGIES
    seconds_per_region: float = 3.0  # a glance and one key per region (the Review view's queue)
    seed: int = 0
    threads: int = 1
    uncorrected: bool = True
    oracle: bool = True
    # `--set key=value` on the copies' config before the round is labelled (regions.*, the
    # weights): what a setting would buy, measured without touching the project
    overrides: tuple[str, ...] = ()


@dataclass
class RunOutcome:
    strategy: str
    budget: float
    pixels: int
    regions: int
    review_minutes: float
    student_miou: float | None
    teacher_miou: float | None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "budget": self.budget, "pixels": self.pixels,
                "regions": self.regions, "review_minutes": self.review_minutes,
                "student_miou": self.student_miou, "teacher_miou": self.teacher_miou}


def _last_eval(project: Project, model: str) -> float | None:
    scored = [e.miou for e in evaluations(project.read_metrics()) if e.model == model]
    return scored[-1] if scored else None


def _prepare_base(cfg: CorrectConfig, sink: EventSink) -> tuple[Project, int]:
    """A copy of the project with the next round labelled by its final teacher (regions too)."""
    from murid_engine.data import open_dataset
    from murid_engine.devices import resolve_device
    from murid_engine.model_store import project_model
    from murid_engine.training.round_labels import label_round, round_portion

    source = Project.open(cfg.project)
    if cfg.overrides:  # a bad --set fails before anything is copied
        from murid_engine.config import apply_overrides
        apply_overrides(source.config, list(cfg.overrides)).validate()
    if source.latest_checkpoint() is None or not source.checkpoint_path("teacher").is_file():
        raise UserError(f"{cfg.project} has no trained teacher to correct the labels of")
    c = source.config
    target = open_dataset(c.data.target, c.data.target_split)
    if not target.has_labels:
        raise UserError(f"the target-train split of {cfg.project} ({target}) has no labels: the "
                        "simulated annotator needs them")
    root = cfg.workdir / "base"
    if root.exists():
        raise UserError(f"{root} exists already; give another --workdir or remove it")
    shutil.copytree(cfg.project, root)
    base = Project.open(root)
    if cfg.overrides:
        from murid_engine.config import apply_overrides
        base.save_config(apply_overrides(base.config, list(cfg.overrides)).validate())
        base = Project.open(root)
    for stem in base.edited_stems():  # the runs start from the uncorrected labels
        base.edit_path(stem).unlink()
    r = (base.latest_round() or 0) + 1
    sink(Message(f"labelling round {r} of the base copy with the project's teacher"))
    teacher = project_model(base, "teacher")
    device = resolve_device(c.device)
    label_round(base, r, round_portion(base, r), teacher.model.to(device), device, target=target)
    return base, r


def _continue(project: Project, sink: EventSink) -> None:
    """The one-click path after a review: one more curriculum round, then a new distillation."""
    from murid_engine.distill import StudentTrainer, distill_wanted
    from murid_engine.training.trainer import TeacherTrainer

    cfg = project.config
    portions = tuple(cfg.curriculum.portions)
    cfg.curriculum.portions = portions + (portions[-1],)  # one round more, at the last portion
    project.save_config(cfg.validate())
    project = Project.open(project.root)
    teacher = TeacherTrainer(project, sink, dist=None)
    try:
        if not teacher.run(resume=True):
            raise UserError("the teacher's round was stopped")
    finally:
        if teacher.batches is not None:
            teacher.batches.close()
    if distill_wanted(project.config):
        for name in ("student", "latest_student"):
            project.checkpoint_path(name).unlink(missing_ok=True)
        student = StudentTrainer(project, sink, domains=teacher.domains, dist=None)
        try:
            student.run(resume=False)
        finally:
            if student.batches is not None:
                student.batches.close()


def run_correct(cfg: CorrectConfig, sink: EventSink | None = None) -> dict[str, Any]:
    import torch

    from murid_engine.data import open_dataset

    sink = sink or NullSink()
    for s in cfg.strategies:
        region_order(np.zeros(0, [("pixels", "i4")]), s)  # an unknown strategy fails first
    if any(not 0 < b <= 100 for b in cfg.budgets):
        raise UserError(f"budgets are percentages in (0, 100], not {list(cfg.budgets)}")
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        base, r = _prepare_base(cfg, sink)
        regions = RoundRegions.open(base.round_dir(r))
        c = base.config
        target = open_dataset(c.data.target, c.data.target_split)
        plan = [(s, b) for s in cfg.strategies for b in cfg.budgets]
        if cfg.uncorrected:
            plan.append(("uncorrected", 0.0))
        if cfg.oracle:
            plan.append(("oracle", 100.0))
        outcomes: list[RunOutcome] = []
        for strategy, budget in plan:
            root = cfg.workdir / f"{strategy}-{budget:g}"
            if root.exists():
                raise UserError(f"{root} exists already; give another --workdir or remove it")
            shutil.copytree(base.root, root)
            project = Project.open(root)
            kind = "ranked" if strategy in ("uncorrected", "oracle") else strategy
            selection = select_regions(regions.queue, kind, budget, cfg.seed)
            if selection.regions:
                apply_ground_truth(project, RoundRegions.open(project.round_dir(r)), selection, target)
            sink(Message(f"{strategy} {budget:g}%: {selection.regions} regions, {selection.pixels} "
                         "pixels relabelled; training the next round and the student"))
            _continue(project, sink)
            outcomes.append(RunOutcome(strategy, budget, selection.pixels, selection.regions,
                                       selection.regions * cfg.seconds_per_region / 60,
                                       _last_eval(project, "student"), _last_eval(project, "teacher")))
    finally:
        torch.set_num_threads(threads)
    runs = [o for o in outcomes if o.strategy in STRATEGIES]
    by = {o.strategy: o for o in outcomes}
    return {"runs": [o.to_json() for o in runs],
            "uncorrected_miou": by["uncorrected"].student_miou if "uncorrected" in by else None,
            "oracle_miou": by["oracle"].student_miou if "oracle" in by else None,
            "round": r, "total_pixels": int(regions.queue["pixels"].sum()),
            "regions_in_round": int(len(regions.queue)), "seconds_per_region": cfg.seconds_per_region}


def format_correct(result: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}"

    lines = [f"{'strategy':<9} {'budget%':>7} {'regions':>8} {'pixels':>10} {'review min':>10} "
             f"{'student':>8} {'teacher':>8}"]
    for run in result["runs"]:
        lines.append(f"{run['strategy']:<9} {run['budget']:>7g} {run['regions']:>8} {run['pixels']:>10} "
                     f"{run['review_minutes']:>10.1f} {pct(run['student_miou']):>8} "
                     f"{pct(run['teacher_miou']):>8}")
    lines.append(f"uncorrected student {pct(result['uncorrected_miou'])}, oracle (every region "
                 f"relabelled) {pct(result['oracle_miou'])}; {result['seconds_per_region']:g} s per region")
    return "\n".join(lines)
