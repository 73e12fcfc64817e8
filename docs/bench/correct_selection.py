"""How well the region queue picks the wrong pixels, and a review that knows them (issue 15).

    python docs/bench/correct_selection.py report BASE [BUDGET]
    python docs/bench/correct_selection.py train PROJECT WORKDIR [BUDGET]

`report`: BASE is the `base` copy `murid bench correct` leaves in its workdir (its last round
labelled, with regions). For the queue's order (RIPU) and a few others, prints the share of
wrong pixels (the round's prediction against the target-train ground truth) among the pixels a
BUDGET percent review picks (default 2), and the share of all the round's wrong pixels they hold.
`train`: `murid bench correct --strategy ranked --budgets BUDGET` on PROJECT, with the regions
ordered by their true share of wrong pixels instead of the RIPU score: the review no reviewer
can do, an upper bound on choosing regions.
"""
import json, sys
from pathlib import Path

import numpy as np

import murid_engine.bench.correct as correct
from murid_engine.curriculum.rounds import PREDICTIONS_DIR
from murid_engine.data import open_dataset
from murid_engine.evaluation import resize_nearest
from murid_engine.imageio import read_index_png
from murid_engine.labels import IGNORE
from murid_engine.project import Project
from murid_engine.regions.scoring import RoundRegions


def wrong_pixels(base_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The wrong pixels of every queue row of the base's last round, and that queue."""
    base = Project.open(base_root)
    r = base.latest_round()
    regions = RoundRegions.open(base.round_dir(r))
    target = open_dataset(base.config.data.target, base.config.data.target_split)
    index = {s.stem: i for i, s in enumerate(target.samples)}
    queue = np.asarray(regions.queue)
    per_image: dict[int, list[int]] = {}
    for row, image in enumerate(queue["image"].tolist()):
        per_image.setdefault(image, []).append(row)
    wrong = np.zeros(len(queue))
    for image, stem in enumerate(regions.stems):
        pred = read_index_png(base.round_dir(r) / PREDICTIONS_DIR / f"{stem}.png")
        gt = resize_nearest(target.read_label(index[stem]), pred.shape)
        rmap = regions.region_map(stem).astype(np.int64)
        counts = np.bincount(rmap.ravel(), weights=((pred != gt) & (gt != IGNORE)).ravel(),
                             minlength=int(rmap.max()) + 1)
        rows = per_image.get(image, [])
        wrong[rows] = counts[queue["region"][rows]]
    return wrong, queue


def report(base_root: Path, budget: float) -> None:
    wrong, q = wrong_pixels(base_root)
    orders = {"RIPU (the queue)": np.arange(len(q)),
              "uncertainty alone": np.argsort(-q["uncertainty"], kind="stable"),
              "RIPU x pixels": np.argsort(-(q["score"] * q["pixels"]), kind="stable"),
              "true wrong share": np.argsort(-wrong / np.maximum(q["pixels"], 1), kind="stable")}
    limit = q["pixels"].sum() * budget / 100
    for name, order in orders.items():
        n = int(np.searchsorted(np.cumsum(q["pixels"][order]), limit, side="right"))
        picked = order[:n]
        print(f"{name:18s} {n:5d} regions: {wrong[picked].sum() / q['pixels'][picked].sum():.3f} of "
              f"their pixels wrong, {wrong[picked].sum() / wrong.sum():.3f} of the round's wrong pixels")


def train(project: Path, workdir: Path, budget: float) -> None:
    ranked = correct.region_order

    def true_order(queue, strategy, seed=0):
        if strategy != "ranked" or len(queue) == 0:
            return ranked(queue, strategy, seed)
        wrong, _ = wrong_pixels(workdir / "base")
        return np.argsort(-wrong / np.maximum(queue["pixels"], 1), kind="stable")

    correct.region_order = true_order
    result = correct.run_correct(correct.CorrectConfig(
        project=project, workdir=workdir, budgets=(budget,), strategies=("ranked",),
        uncorrected=False, oracle=False, threads=1))
    (workdir / "true-order.json").write_text(json.dumps(result, indent=1) + "\n")
    print(correct.format_correct(result))


if sys.argv[1] == "report":
    report(Path(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 2.0)
else:
    train(Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4]) if len(sys.argv) > 4 else 2.0)
