"""The harder cases of `murid bench gui`: a large project opened, a competing CPU-bound process,
and a region outlined and relabelled at Cityscapes size on the GUI thread."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

BIG = (1024, 2048)  # rows, columns: a Cityscapes-sized image
ROWS, IMAGES = 50_000, 3_000  # a long GPU run's metrics.jsonl, Cityscapes train's 2,975 images


def grow_project(folder: Path, rows: int = ROWS, images: int = IMAGES) -> None:
    """A trained project grown to `rows` more metrics rows and an `images`-image latest round
    (extra stems are listed in round.json only, more confident than the real ones)."""
    from murid_engine.curriculum.round_summary import ImageSummary, read_round_summary, write_round_summary
    from murid_engine.project import Project
    from murid_engine.records import LossRecord

    project = Project.open(folder)
    lines = [json.dumps(LossRecord("curriculum", i, 1, 0.1 * i, {"total": 1.0 / (1 + i), "seg": 0.5}).to_json())
             for i in range(rows)]
    with open(project.metrics_file, "a") as f:
        f.write("\n".join(lines) + "\n")
    folder = project.round_dir(project.latest_round())
    summary = read_round_summary(folder)
    extra = {f"city_{i:06d}_000019": ImageSummary(2048, 0.99, 0.5, 0, 0.1)
             for i in range(max(images - len(summary.images), 0))}
    # The real images sort first (least confident).
    write_round_summary(folder, replace(summary, images={**summary.images, **extra}))


def opened(window) -> bool:
    """Every view has what it reads when a project opens."""
    review, train, results = window.review_view, window.train_view, window.results_view
    return (review.pred is not None and not train.history_pending and results.saved is not None
            and review.regions.regions is not None)


BUSY_LOOP = "import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"


@contextlib.contextmanager
def competing_processes(count: int, seconds: float = 600.0) -> Iterator[list[subprocess.Popen]]:
    """`count` CPU-bound processes (a busy loop each) while the block runs, ended after it."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP.format(seconds=seconds)])
             for _ in range(count)]
    try:
        time.sleep(0.2)  # running before the measurement starts
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def region_relabel_ms(window, repeats: int = 10) -> dict[str, float]:
    """Median ms, on the GUI thread, to outline a region and to relabel it at 2048x1024.

    The region map has superpixels of ~1,000 pixels at 512x256, scaled up as the rounds store
    them (murid_engine.regions): ~2,000 regions of ~16,000 pixels each at full size.
    """
    import cv2

    from murid_engine.regions.actions import Action, apply_action

    rv = window.review_view
    canvas, queue = rv.canvas, rv.regions
    rng = np.random.default_rng(2)
    pred = rng.integers(0, 19, BIG, dtype=np.uint8)
    conf = rng.integers(0, 256, BIG, dtype=np.uint8)
    small = (np.arange(256)[:, None] // 16) * 32 + (np.arange(512)[None, :] // 16)  # 16x16 cells
    rmap = cv2.resize(small.astype(np.int32).astype(np.float32), (BIG[1], BIG[0]),
                      interpolation=cv2.INTER_NEAREST).astype(np.int32)
    canvas.set_content(np.zeros((*BIG, 3), np.uint8), pred, conf, None, None)
    outline, relabel = [], []
    for k in range(repeats):
        region = int(rng.integers(0, int(rmap.max()) + 1))
        t0 = time.perf_counter()
        mask = rmap == region
        queue._outline(mask)
        t1 = time.perf_counter()
        canvas.history.push(canvas.edit)
        canvas.edit = apply_action(canvas.edit, mask, Action.ASSIGN, class_id=k % 19, pred=pred)
        canvas.redraw()
        t2 = time.perf_counter()
        outline.append((t1 - t0) * 1000)
        relabel.append((t2 - t1) * 1000)
    return {"outline_ms": round(float(np.median(outline)), 2),
            "relabel_ms": round(float(np.median(relabel)), 2),
            "total_ms": round(float(np.median(np.add(outline, relabel))), 2)}
