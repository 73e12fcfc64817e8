"""How large SynthCity's domain gap is: the same small network, trained with the same budget on
the source (source-only, the lower bound) and on the target's own labels (oracle, the upper
bound), both scored on the target validation split. `adabn` is the source-only network with its
BatchNorm statistics re-estimated on the target-train images: how much of the gap is one that
per-channel statistics remove."""

from __future__ import annotations

import json
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from murid_engine.data import open_dataset
from murid_engine.inspection import inspect_dataset
from murid_engine.models import DeepLabV2, ModelConfig
from murid_engine.run_config import RunConfig


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


def gap_config(root: Path, cfg: GapConfig) -> RunConfig:
    """The reference runs' config: `cfg`'s network and budget, the engine's warm-up recipe."""
    run = RunConfig(model=cfg.model, student_model=cfg.model, seed=cfg.seed, device="cpu",
                    checkpoint_every=0, preview_every=0)
    run.data.source = run.data.target = f"synthcity:{root.resolve()}"
    run.data.batch_size = cfg.batch_size
    run.warmup.iterations = cfg.iterations
    return run.validate()


def run_gap(root: Path, cfg: GapConfig) -> dict:
    """Source-only and oracle as the warm-up stage of the one training loop (training/reference.py,
    on the source and on the target's labels), AdaBN from the source-only network."""
    from murid_engine.bench.adabn_run import adabn_scores
    from murid_engine.training.reference import train_reference

    torch.set_num_threads(cfg.threads)
    run_cfg = gap_config(root, cfg)
    runs = []
    with tempfile.TemporaryDirectory(prefix="murid-gap-") as tmp:
        for name, which, trained_on in (("source-only", "source_only", "synthcity source"),
                                        ("oracle", "oracle", "synthcity train")):
            if name not in cfg.runs and not (name == "source-only" and "adabn" in cfg.runs):
                continue
            start = time.perf_counter()
            record = train_reference(run_cfg, Path(tmp) / name, which)
            runs.append(GapRun(name, trained_on, record.miou or 0.0, record.per_class_iou,
                               time.perf_counter() - start))
            if name == "source-only" and "adabn" in cfg.runs:
                start = time.perf_counter()
                adapted = adabn_scores(Path(tmp) / name / "checkpoints" / "source_only.pt", run_cfg, cfg.seed)
                runs.append(GapRun("adabn", "synthcity source, BatchNorm statistics of target train",
                                   adapted.miou or 0.0, adapted.per_class_iou, time.perf_counter() - start))
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
