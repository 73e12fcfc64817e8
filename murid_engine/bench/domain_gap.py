"""How large SynthCity's domain gap is: the same small network, trained with the same budget on
the source (source-only, the lower bound) and on the target's own labels (oracle, the upper
bound), both scored on the target validation split. `adabn` is the source-only network with its
BatchNorm statistics re-estimated on the target-train images: how much of the gap is one that
per-channel statistics remove."""

from __future__ import annotations

import copy
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from murid_engine.data import open_dataset
from murid_engine.inference import evaluate_model
from murid_engine.inspection import inspect_dataset
from murid_engine.labels import CLASS_NAMES
from murid_engine.models import DeepLabV2, ModelConfig
from murid_engine.training.adabn import reestimate_batchnorm
from murid_engine.training.batches import DecodedImages
from murid_engine.training.supervised import SupervisedConfig, train_supervised


@dataclass
class GapConfig:
    iterations: int = 2000
    batch_size: int = 8
    threads: int = 2
    seed: int = 0
    runs: tuple[str, ...] = ("source-only", "adabn", "oracle")  # adabn trains source-only too
    model: ModelConfig = field(default_factory=lambda: ModelConfig(backbone="tiny", aspp_rates=(1, 2, 3, 4)))


@dataclass
class GapRun:
    name: str
    trained_on: str
    miou: float
    per_class_iou: dict[str, float | None]
    seconds: float


def class_presence(root: Path) -> dict[str, dict[str, float]]:
    """Per domain, the fraction of labelled pixels of each class (0 means the class is absent)."""
    out = {}
    for name, split in (("source", "source"), ("target_train", "train"), ("target_val", "val")):
        report = inspect_dataset(open_dataset(f"synthcity:{root}", split), progress=False)
        out[name] = report.class_pixel_fraction
    return out


def run_gap(root: Path, cfg: GapConfig) -> dict:
    torch.set_num_threads(cfg.threads)
    val = open_dataset(f"synthcity:{root}", "val")
    runs = []
    for name, split in (("source-only", "source"), ("oracle", "train")):
        if name not in cfg.runs and not (name == "source-only" and "adabn" in cfg.runs):
            continue
        data = DecodedImages(open_dataset(f"synthcity:{root}", split), with_labels=True)
        torch.manual_seed(cfg.seed)
        model = DeepLabV2(cfg.model.validate())
        start = time.perf_counter()
        train_supervised(model, data, SupervisedConfig(iterations=cfg.iterations,
                                                       batch_size=cfg.batch_size, seed=cfg.seed),
                         desc=name)
        scores = evaluate_model(model, val, desc=f"{name} eval")
        runs.append(GapRun(name, f"synthcity {split}", scores.miou or 0.0,
                           dict(zip(CLASS_NAMES, scores.iou)), time.perf_counter() - start))
        if name == "source-only" and "adabn" in cfg.runs:
            start = time.perf_counter()
            adapted = copy.deepcopy(model)
            target = DecodedImages(open_dataset(f"synthcity:{root}", "train"), with_labels=False)
            reestimate_batchnorm(adapted, target.images, batch_size=cfg.batch_size)
            scores = evaluate_model(adapted, val, desc="adabn eval")
            runs.append(GapRun("adabn", "synthcity source, BatchNorm statistics of target train",
                               scores.miou or 0.0, dict(zip(CLASS_NAMES, scores.iou)),
                               time.perf_counter() - start))
    presence = class_presence(root)
    return {
        "config": asdict(cfg),
        "data": str(root),
        "shift": json.loads((root / "synthcity.json").read_text()).get("shift", "standard"),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": cfg.threads,
                    "torch": torch.__version__},
        "params": sum(p.numel() for p in DeepLabV2(cfg.model).parameters()),
        "runs": [asdict(r) for r in runs],
        "classes_absent": {d: [c for c, f in fr.items() if f == 0.0] for d, fr in presence.items()},
    }
