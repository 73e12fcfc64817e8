"""Training speed: what the engine's training step costs over a bare loop of the same network.

The target (issue 7): on 2 CPU cores, the engine's training step costs at most 10% more than a
bare loop of the same network over preloaded tensors. Both sides run the teacher's adapt step
(MR active, source cross-entropy plus target entropy) at the same thread count:

engine  `TeacherTrainer.run` on a scratch project of the given datasets, its adapt stage alone:
        batches from the decoded-image cache through the DataLoader (`workers`), augmentation,
        the optimiser step, learning-rate schedule, events and metrics records, i.e. everything
        a real run does per iteration; timed from the Losses event of iteration `warmup_iters`
        to that of the last one (the stage's set-up, end-of-stage evaluation and checkpoint are
        outside the window). Previews and intermediate checkpoints are switched off: they are
        periodic costs of their own, set by `preview_every` and `checkpoint_every`.
bare    the same network (same config, same initial weights), optimiser and `adapt_step` over
        a few batches made once and kept in memory, looped `warmup_iters + iterations` times.

The bare loop runs `repeats + 1` times and the engine `repeats` times, alternating (bare, engine,
bare, ..., bare), and each engine run is compared with the mean of the bare runs on either side of
it: a load change on a shared machine then hits both sides of a comparison. The overhead is the
median of those ratios; ms figures are medians; every run's figure is kept.
"""

from __future__ import annotations

import copy
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from murid_engine.errors import UserError
from murid_engine.jobs import Event, Losses
from murid_engine.run_config import RunConfig

STAGE = "adapt"
BARE_BATCHES = 4  # distinct preloaded batches the bare loop cycles through


@dataclass(frozen=True)
class TrainingSpeed:
    engine_ms: float  # median ms per iteration of the engine's adapt stage
    bare_ms: float  # median ms per iteration of the bare loop
    overhead_ratio: float  # median over repeats of engine / bare - 1 (the target: at most 0.10)
    images_per_s: float  # source + target images per second through the engine
    engine_runs_ms: tuple[float, ...]  # each repeat's figure, engine
    bare_runs_ms: tuple[float, ...]  # each repeat's figure, bare loop
    iterations: int  # timed iterations per run
    warmup_iters: int  # untimed iterations before them
    workers: int  # DataLoader worker processes (data.workers)
    threads: int  # torch intra-op threads of the training process
    crop: tuple[int, int]  # (w, h) of a training crop
    batch: int  # images per domain per iteration
    device: str

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["crop"] = list(self.crop)
        d["engine_runs_ms"], d["bare_runs_ms"] = list(self.engine_runs_ms), list(self.bare_runs_ms)
        return d


@contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _IterationClock:
    """An event sink that notes when each iteration of the stage ended."""

    def __init__(self) -> None:
        self.ended: dict[int, float] = {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, Losses) and event.stage == STAGE:
            self.ended[event.iteration] = time.perf_counter()


def _bench_config(cfg: RunConfig, source_spec: str, target_spec: str, total: int,
                  workers: int) -> RunConfig:
    cfg = copy.deepcopy(cfg)
    cfg.data.source, cfg.data.target = source_spec, target_spec
    cfg.data.workers = workers
    cfg.stages = (STAGE,)
    cfg.adapt.iterations = total
    cfg.checkpoint_every = 0
    cfg.preview_every = 0
    cfg.model.pretrained = ""  # random weights time the same as trained ones
    return cfg.validate()


def _engine_ms(project, warmup_iters: int, iterations: int) -> float:
    from murid_engine.training.trainer import TeacherTrainer

    # A fresh run in the same project each time: its decoded-image cache is reused.
    for stale in project.checkpoints_dir.glob("*.pt"):
        stale.unlink()
    project.metrics_file.unlink(missing_ok=True)
    clock = _IterationClock()
    TeacherTrainer(project, sink=clock).run()
    first, last = warmup_iters, warmup_iters + iterations
    return 1000 * (clock.ended[last] - clock.ended[first]) / iterations


def _bare_ms(cfg: RunConfig, device: torch.device, batches: list, warmup_iters: int,
             iterations: int) -> float:
    from murid_engine.models.teacher import MuridTeacher
    from murid_engine.training.optim import build_sgd
    from murid_engine.training.steps import adapt_step

    torch.manual_seed(cfg.seed)  # the engine's initial weights
    model = MuridTeacher(cfg.model, cfg.mr).to(device)
    optimizer = build_sgd(model, cfg.optim, cfg.lr_of(STAGE), head=model.net.classifier, mr=model.mr)
    start = 0.0
    for i in range(warmup_iters + iterations):
        if i == warmup_iters:
            start = time.perf_counter()
        model.train()
        losses = adapt_step(model, batches[i % len(batches)], cfg)
        total = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        float(total.detach())  # the engine reads every loss back (a device sync on a GPU)
    return 1000 * (time.perf_counter() - start) / iterations


def _preloaded(project, cfg: RunConfig, device: torch.device) -> list:
    from murid_engine.training.domains import Domains
    from murid_engine.training.image_cache import project_cache_dir
    from murid_engine.training.loader import TrainingBatches
    from murid_engine.training.steps import Batch

    domains = Domains.load(cfg, project_cache_dir(project.root))
    batches = TrainingBatches(domains.source, domains.target, cfg.data, cfg.seed, device)
    out = []
    for it in range(BARE_BATCHES):
        b = batches.get(STAGE, it, BARE_BATCHES, domains.target)
        out.append(Batch(b.source, b.source_labels, b.target, b.target_labels))
    batches.close()
    return out


def measure_training_speed(cfg: RunConfig, source_spec: str, target_spec: str, iterations: int = 30,
                           warmup_iters: int = 5, threads: int = 2, workers: int = 0,
                           repeats: int = 1) -> TrainingSpeed:
    """Time the engine's adapt step against a bare loop (see the module doc) on `cfg`'s network
    and data settings, training on `source_spec` and `target_spec` ('KIND:PATH')."""
    if iterations < 1 or warmup_iters < 1 or threads < 1 or workers < 0 or repeats < 1:
        raise UserError("iterations, warm-up iterations, threads and repeats must be 1 or more, "
                        f"workers 0 or more (got {iterations}, {warmup_iters}, {threads}, {repeats}, "
                        f"{workers})")
    from murid_engine.project import Project
    from murid_engine.training.trainer import resolve_device

    cfg = _bench_config(cfg, source_spec, target_spec, warmup_iters + iterations, workers)
    device = resolve_device(cfg.device)
    root = Path(tempfile.mkdtemp(prefix="murid-training-speed-"))
    try:
        project = Project.create(root / "project", cfg)
        engine, bare = [], []
        with _threads(threads):
            preloaded = _preloaded(project, cfg, device)
            # Untimed: the process's first training steps pay one-time costs (lazy imports,
            # allocator growth) that would otherwise fall on the first comparison.
            _bare_ms(cfg, device, preloaded, warmup_iters, 1)
            bare.append(_bare_ms(cfg, device, preloaded, warmup_iters, iterations))
            for _ in range(repeats):
                engine.append(_engine_ms(project, warmup_iters, iterations))
                bare.append(_bare_ms(cfg, device, preloaded, warmup_iters, iterations))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ratios = [e / ((b0 + b1) / 2) - 1 for e, b0, b1 in zip(engine, bare, bare[1:])]
    engine_ms = statistics.median(engine)
    return TrainingSpeed(
        engine_ms=round(engine_ms, 2), bare_ms=round(statistics.median(bare), 2),
        overhead_ratio=round(statistics.median(ratios), 4),
        images_per_s=round(2 * cfg.data.batch_size * 1000 / engine_ms, 2),
        engine_runs_ms=tuple(round(x, 2) for x in engine), bare_runs_ms=tuple(round(x, 2) for x in bare),
        iterations=iterations, warmup_iters=warmup_iters, workers=workers, threads=threads,
        crop=tuple(cfg.data.crop), batch=cfg.data.batch_size, device=str(device))
