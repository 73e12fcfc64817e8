"""A 2 % review of the first pseudo-label round instead of the last (issue 15).

    python docs/bench/correct_early_review.py LIKE OUT [BUDGET [ROUND [MIN_REGIONS]]]

trains a new project OUT with the configuration of the trained project LIKE (its data, seed,
preset) through the whole pipeline; as soon as curriculum round ROUND (default 1) is labelled, a
simulated annotator relabels the top BUDGET percent (default 2) of that round's ranked region
queue from the target-train ground truth, as `murid bench correct` does, and the edits then hold
through every later round and the distillation: what a user gets who stops the run when round 1
appears, reviews, and resumes. MIN_REGIONS sets `regions.min_regions` (default: LIKE's).
Writes OUT/early.json: the regions and pixels relabelled, the final student and teacher mIoU.
"""
import json, sys
from pathlib import Path

import torch

import murid_engine.training.teacher_stages as stages
from murid_engine.bench.correct import _last_eval, apply_ground_truth, select_regions
from murid_engine.data import open_dataset
from murid_engine.pipeline import run_pipeline
from murid_engine.project import Project
from murid_engine.regions.scoring import RoundRegions

like, out = Path(sys.argv[1]), Path(sys.argv[2])
budget = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
review = int(sys.argv[4]) if len(sys.argv) > 4 else 1
torch.set_num_threads(1)
config = Project.open(like).config
if len(sys.argv) > 5:
    config.regions.min_regions = int(sys.argv[5])
project = Project.create(out, config.validate())
target = open_dataset(config.data.target, config.data.target_split)
reviewed: dict[str, int] = {}
label_round = stages.label_round


def label_then_review(project, r, *args, **kwargs):
    summary = label_round(project, r, *args, **kwargs)
    if r == review:
        regions = RoundRegions.open(project.round_dir(r))
        selection = select_regions(regions.queue, "ranked", budget)
        reviewed.update(regions=selection.regions,
                        pixels=apply_ground_truth(project, regions, selection, target))
    return summary


stages.label_round = label_then_review  # the curriculum stage labels its rounds through this name
run_pipeline(project)
result = dict(like=str(like), budget=budget, review_round=review,
              min_regions=config.regions.min_regions, **reviewed,
              student_miou=_last_eval(project, "student"), teacher_miou=_last_eval(project, "teacher"))
(out / "early.json").write_text(json.dumps(result, indent=1) + "\n")
print(json.dumps(result))
