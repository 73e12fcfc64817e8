"""The `adabn` row of `murid bench quality`: the source-only network, its BatchNorm statistics
re-estimated on the target-train images (training/adabn.py), scored on the target val split."""

from __future__ import annotations

from pathlib import Path

import torch

from murid_engine.checkpoint import load_checkpoint
from murid_engine.devices import resolve_device
from murid_engine.inference import evaluate_model
from murid_engine.models.deeplab import DeepLabV2
from murid_engine.records import EvaluationRecord
from murid_engine.run_config import RunConfig
from murid_engine.training.adabn import reestimate_batchnorm
from murid_engine.training.domains import Domains
from murid_engine.training.image_cache import project_cache_dir


def adabn_scores(source_only: Path, cfg: RunConfig, seed: int) -> EvaluationRecord:
    """`source_only` (checkpoints/source_only.pt of a project) adapted by AdaBN to `cfg`'s target."""
    device = resolve_device(cfg.device)
    saved = load_checkpoint(source_only)
    net = DeepLabV2(saved.config.model).to(device)
    net.load_state_dict(saved.model_state("net"))
    domains = Domains.load(cfg, project_cache_dir(source_only.parent.parent))  # that project's cache
    images = [domains.target.images[i] for i in range(len(domains.target))]
    reestimate_batchnorm(net, images, batch_size=cfg.data.batch_size, device=device)
    scores = evaluate_model(net, domains.val, desc="evaluate adabn", size=cfg.data.target_size, device=device)
    return EvaluationRecord.of(scores, "adabn", "adabn", len(images), None, 0.0)
