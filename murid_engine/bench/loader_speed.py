"""Loader speed: the training images per second that the batches deliver under each `data.cache`.

`disk` reads every crop from the decoded-image cache (built first, its build time reported
apart); `off` decodes each crop's image from its PNG at each read (file_images.py). Both make
the same batches (the test suite compares them), so the difference is the cost of decoding.
Timed: `batches` adapt batches (source and target, the preset's crop, batch size and workers)
through TrainingBatches on the CPU, after one untimed batch (the workers' start).
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path
from typing import Any

from murid_engine.run_config import RunConfig

MODES = ("disk", "off")
STAGE = "adapt"


def _images_per_s(cfg: RunConfig, cache_dir: Path, batches: int) -> dict[str, Any]:
    import torch

    from murid_engine.training.domains import Domains
    from murid_engine.training.loader import TrainingBatches

    t0 = time.perf_counter()
    domains = Domains.load(cfg, cache_dir)
    prepared_s = time.perf_counter() - t0
    loader = TrainingBatches(domains.source, domains.target, cfg.data, cfg.seed, torch.device("cpu"))
    try:
        loader.get(STAGE, 0, batches + 1, domains.target)
        t0 = time.perf_counter()
        for it in range(1, batches + 1):
            loader.get(STAGE, it, batches + 1, domains.target)
        seconds = time.perf_counter() - t0
    finally:
        loader.close()
    images = 2 * cfg.data.batch_size * batches
    return {"images_per_s": round(images / seconds, 1), "ms_per_batch": round(1000 * seconds / batches, 1),
            "prepare_s": round(prepared_s, 2)}


def measure_loader_speed(cfg: RunConfig, size: tuple[int, int], images: int = 16,
                         batches: int = 20) -> dict[str, Any]:
    """Images/s of `cfg`'s batches from a SynthCity set of `images` per domain at `size` (w, h),
    made here, under each of MODES; the preset's crop, batch size and workers."""
    from murid_engine.synthcity import SynthConfig, generate

    w, h = size
    with tempfile.TemporaryDirectory(prefix="murid-loader-speed-") as tmp:
        data = Path(tmp) / "synthcity"
        generate(data, SynthConfig(n_source=images, n_target=images, n_val=1, width=w, height=h))
        result: dict[str, Any] = {"image_size": [w, h], "images_per_domain": images, "batches": batches,
                                  "batch": cfg.data.batch_size, "crop": list(cfg.data.crop),
                                  "workers": cfg.data.workers}
        for mode in MODES:
            run = copy.deepcopy(cfg)
            run.data.source = run.data.target = f"synthcity:{data}"
            run.data.cache = mode
            run.data.source_size = run.data.target_size = None
            result[mode] = _images_per_s(run.validate(), Path(tmp) / f"cache-{mode}", batches)
    return result
