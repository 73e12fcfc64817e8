"""Pseudo-label pass time per round with and without the regions (issue 15 item 1).

    python docs/bench/pseudo_pass_regions.py PROJECT DATA REPEATS [THREADS]

copies PROJECT's teacher into a scratch project whose target is DATA (a SynthCity folder) and
times label_round over its target-train images, alternating the pass as shipped (superpixels
+ RIPU scores made on worker threads beside the teacher's forward), the same regions made on
the pass's own thread one image at a time (as first shipped), and the pass with the region
stream replaced by the identity (the pass before issue 15).
"""
import json, shutil, statistics, sys, tempfile, time
from pathlib import Path

import torch

import murid_engine.regions.scoring as scoring
import murid_engine.training.round_labels as rl
from murid_engine.data import open_dataset
from murid_engine.model_store import project_model
from murid_engine.project import Project

src, data, repeats = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 2)
work = Path(tempfile.mkdtemp(prefix="pltime-"))
shutil.copytree(src / "checkpoints", work / "p" / "checkpoints", ignore=shutil.ignore_patterns("latest*"))
shutil.copy(src / "project.json", work / "p" / "project.json")
project = Project.open(work / "p")
teacher = project_model(project, "teacher").model.eval()
target = open_dataset(f"synthcity:{data}", "train")
with_regions = rl.round_region_stream
workers = scoring.region_workers
times = {"with regions (worker threads)": [], "with regions (inline)": [], "without regions": []}
for i in range(repeats):
    for name in times:
        identity = lambda folder, stream, *a, **k: stream  # noqa: E731 - the pass without regions
        rl.round_region_stream = identity if name == "without regions" else with_regions
        scoring.region_workers = (lambda: 0) if name == "with regions (inline)" else workers
        shutil.rmtree(project.round_dir(1), ignore_errors=True)
        t0 = time.perf_counter()
        rl.label_round(project, 1, 0.5, teacher, torch.device("cpu"), target=target)
        times[name].append(time.perf_counter() - t0)
        print(name, f"{times[name][-1]:.2f} s", flush=True)
img = target.read_image(0)
print(json.dumps({"images": len(target), "size": [img.shape[1], img.shape[0]],
                  "threads": torch.get_num_threads(), "region_workers": workers(),
                  **{k: {"median_s": statistics.median(v), "runs_s": v} for k, v in times.items()}}, indent=1))
shutil.rmtree(work)
