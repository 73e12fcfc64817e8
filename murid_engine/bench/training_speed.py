"""Training speed: what the engine's training step costs over a bare loop of the same network.

The target (issue 7): on 2 CPU cores, the engine's training step costs at most 10% more than a
bare loop of the same network over preloaded tensors. Both sides run the teacher's adapt step
(MR active, source cross-entropy plus target entropy) at the same thread count:

engine  `TeacherTrainer.run` on a scratch project of the given datasets, its adapt stage alone:
        batches from the decoded-image cache through
        the DataLoader (`workers`), augmentation, the optimiser step, the learning-rate
        schedule, events, metrics records and control checks: everything a real run does
        per iteration. Previews and intermediate checkpoints are off: they are periodic costs of
        their own, set by `preview_every` and `checkpoint_every`.
bare    the same network object and optimiser (the run's own teacher), `adapt_step`, zero_grad,
        backward and step, looped over a few batches made once and kept in memory.

The two alternate in blocks of `iterations`, in one thread: the run's event sink runs a bare
block when the run reports the last iteration of an engine block, and the run goes on when it
returns. A machine shared with other work then slows both sides of a comparison alike, and both
see the same process state (allocator, caches, imported modules) and the same weights in the
same memory: two networks of one config, built alike, differed by up to 5% in step time here,
and torch steps issued from a second thread ran ~12% slower than from the first.
Each engine block is compared with the mean of the bare blocks on either side of it; the
overhead is the median of those ratios, the ms figures are medians, and every block's figure is
kept. The first engine iteration after a bare block is not timed (its caches are the bare's).
"""

from __future__ import annotations

import copy
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from murid_engine.bench.speed import torch_threads
from murid_engine.errors import UserError
from murid_engine.jobs import Event, Losses
from murid_engine.run_config import RunConfig

STAGE = "adapt"
BARE_BATCHES = 4  # distinct preloaded batches the bare loop cycles through


@dataclass(frozen=True)
class TrainingSpeed:
    engine_ms: float  # median ms per iteration of the engine's adapt stage
    bare_ms: float  # median ms per iteration of the bare loop
    overhead_ratio: float  # median over blocks of engine / bare - 1 (the target: at most 0.10)
    images_per_s: float  # source + target images per second through the engine
    engine_runs_ms: tuple[float, ...]  # each engine block's figure
    bare_runs_ms: tuple[float, ...]  # each bare block's figure (one more than the engine's)
    iterations: int  # timed iterations per block
    warmup_iters: int  # untimed iterations before the first blocks
    workers: int  # DataLoader worker processes (data.workers)
    threads: int  # torch intra-op threads
    crop: tuple[int, int]  # (w, h) of a training crop
    batch: int  # images per domain per iteration
    device: str

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["crop"] = list(self.crop)
        d["engine_runs_ms"], d["bare_runs_ms"] = list(self.engine_runs_ms), list(self.bare_runs_ms)
        return d


class _Pacer:
    """The run's event sink: notes when each iteration ended, and runs a bare block after each
    iteration in `pauses` (the time it takes is not the run's: `ended` is noted after it)."""

    def __init__(self, bare_loop: _BareLoop, pauses: list[int], iterations: int):
        self.bare_loop, self.pauses, self.iterations = bare_loop, set(pauses), iterations
        self.ended: dict[int, float] = {}
        self.bare: list[float] = []

    def __call__(self, event: Event) -> None:
        if isinstance(event, Losses) and event.stage == STAGE:
            if event.iteration in self.pauses:
                self.ended[event.iteration] = time.perf_counter()  # the engine block's end
                self.bare.append(self.bare_loop.ms(self.iterations))
            self.ended.setdefault(event.iteration, time.perf_counter())


class _BareLoop:
    """Steps of the run's own network and optimiser (read when a block starts) on `batches`."""

    def __init__(self, cfg: RunConfig, batches: list):
        self.cfg, self.batches = cfg, batches
        self.trainer = None  # the TeacherTrainer, set before its run starts
        self.step_no = 0

    def ms(self, iterations: int) -> float:
        """Mean ms per iteration of `iterations` steps."""
        from murid_engine.training.steps import adapt_step

        model, optimizer = self.trainer.model, self.trainer.optimizer
        start = time.perf_counter()
        for _ in range(iterations):
            model.train()
            losses = adapt_step(model, self.batches[self.step_no % len(self.batches)], self.cfg)
            total = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            float(total.detach())  # the engine reads every loss back (a device sync on a GPU)
            self.step_no += 1
        return 1000 * (time.perf_counter() - start) / iterations


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


def _preloaded(project, cfg: RunConfig, device: torch.device) -> list:
    from murid_engine.training.domains import Domains
    from murid_engine.training.image_cache import project_cache_dir
    from murid_engine.training.loader import TrainingBatches

    # Also builds the project's decoded-image cache, which the run then finds ready.
    domains = Domains.load(cfg, project_cache_dir(project.root))
    batches = TrainingBatches(domains.source, domains.target, cfg.data, cfg.seed, device)
    out = []
    for it in range(BARE_BATCHES):
        b = batches.get(STAGE, it, BARE_BATCHES, domains.target)
        out.append(b)
    batches.close()
    return out


def _interleave(project, cfg: RunConfig, device: torch.device, iterations: int, warmup_iters: int,
                repeats: int) -> tuple[list[float], list[float]]:
    """(engine ms per block, bare ms per block): bare, engine, bare, ..., engine, bare."""
    from murid_engine.training.trainer import TeacherTrainer

    bare_loop = _BareLoop(cfg, _preloaded(project, cfg, device))
    # Engine block k = 1..repeats: one untimed iteration, then `iterations` timed ones.
    pauses = [warmup_iters + k * (iterations + 1) for k in range(repeats + 1)]
    pacer = _Pacer(bare_loop, pauses, iterations)
    trainer = TeacherTrainer(project, sink=pacer)
    bare_loop.trainer = trainer
    trainer.run()
    engine = [1000 * (pacer.ended[at] - pacer.ended[before + 1]) / iterations
              for before, at in zip(pauses, pauses[1:])]
    return engine, pacer.bare


def measure_training_speed(cfg: RunConfig, source_spec: str, target_spec: str, iterations: int = 30,
                           warmup_iters: int = 5, threads: int = 2, workers: int = 0,
                           repeats: int = 3) -> TrainingSpeed:
    """Time the engine's adapt step against a bare loop (see the module doc) on `cfg`'s network
    and data settings, training on `source_spec` and `target_spec` ('KIND:PATH')."""
    if iterations < 1 or warmup_iters < 1 or threads < 1 or workers < 0 or repeats < 1:
        raise UserError("iterations, warm-up iterations, threads and repeats must be 1 or more, "
                        f"workers 0 or more (got {iterations}, {warmup_iters}, {threads}, {repeats}, "
                        f"{workers})")
    from murid_engine.project import Project
    from murid_engine.devices import resolve_device

    total = warmup_iters + repeats * (iterations + 1)  # the last bare block runs at its end
    cfg = _bench_config(cfg, source_spec, target_spec, total, workers)
    device = resolve_device(cfg.device)
    root = Path(tempfile.mkdtemp(prefix="murid-training-speed-"))
    try:
        project = Project.create(root / "project", cfg)
        with torch_threads(threads):
            engine, bare = _interleave(project, cfg, device, iterations, warmup_iters, repeats)
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
