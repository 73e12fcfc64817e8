"""The baselines' job: a plain DeepLabV2 through the baseline stages, in a project of its own."""

from __future__ import annotations

import numpy as np
import torch

from murid_engine.distributed import DistContext
from murid_engine.jobs import Control, EventSink, NullSink
from murid_engine.models.deeplab import DeepLabV2
from murid_engine.project import Project
from murid_engine.training.domains import Domains
from murid_engine.training.image_cache import project_cache_dir
from murid_engine.training.loader import TrainingBatches
from murid_engine.training.runner import STAGE_TYPES, JobContext, StageRunner

from . import stages as _stages  # noqa: F401 - registers the baseline stages
from .config import BaselineConfig

BASELINE_STAGES = {"mixstyle": ("mixstyle",), "dacs": ("mixstyle", "dacs")}


def train_baseline(project: Project, which: str, settings: BaselineConfig, sink: EventSink | None = None,
                   control: Control | None = None, dist: DistContext | None = None) -> bool:
    """Train the `which` baseline ('mixstyle', or 'dacs' from a mixstyle network) in `project`,
    whose config gives the data, network, optimiser and seed; False when stopped."""
    cfg = project.config
    settings.mixstyle.validate()
    settings.dacs.validate()
    dist = (dist or DistContext()).on_device(cfg.device)
    np_rng = np.random.default_rng(cfg.seed)
    job = JobContext(project, cfg, sink or NullSink(), control or Control(), dist, np_rng)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    net = job.precision.model(DeepLabV2(cfg.model).to(job.device))
    domains = dist.main_first(lambda: Domains.load(cfg, project_cache_dir(project.root), job.sink))
    batches = TrainingBatches(domains.source, domains.target, cfg.data, cfg.seed, job.device,
                              rank=dist.rank, world_size=dist.world_size)
    parts = _stages.BaselineParts(net, gen, domains, batches, settings)
    runner = StageRunner(job)
    try:
        for name in BASELINE_STAGES[which]:
            if not runner.run(STAGE_TYPES[name](job, parts)):
                return False
        return True
    finally:
        batches.close()
