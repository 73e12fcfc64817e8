"""Would the classes of the reviewed regions, spread to similar regions, label those better than
the teacher does? (issue 15; a feasibility check, nothing of it is built)

    python docs/bench/correct_propagation.py BASE [BUDGET]

BASE is the `base` copy `murid bench correct` leaves in its workdir. Each region of its last
round is described by the mean of the teacher's deepest features (the classifier's input,
unit length) over its pixels; the regions a BUDGET percent ranked review relabels (default 2)
keep their true majority class; every other region takes the class of its most similar reviewed
region where the cosine passes a threshold. For each threshold: how many regions that would
change, and how many of their pixels would then be right, against the teacher's prediction.
"""
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from murid_engine.bench.correct import select_regions
from murid_engine.curriculum.rounds import PREDICTIONS_DIR
from murid_engine.data import open_dataset
from murid_engine.evaluation import resize_nearest
from murid_engine.imageio import read_index_png
from murid_engine.labels import IGNORE
from murid_engine.model_store import project_model
from murid_engine.project import Project
from murid_engine.regions.scoring import RoundRegions
from murid_engine.training.batches import resize_rgb

torch.set_num_threads(1)
base = Project.open(Path(sys.argv[1]))
budget = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
r = base.latest_round()
regions = RoundRegions.open(base.round_dir(r))
c = base.config
classes = c.model.num_classes
target = open_dataset(c.data.target, c.data.target_split)
index = {s.stem: i for i, s in enumerate(target.samples)}
model = project_model(base, "teacher").model.eval()
deepest: dict[str, torch.Tensor] = {}
model.teacher.net.classifier.register_forward_hook(lambda m, i, o: deepest.__setitem__("f", i[0]))
features, truth, predicted, right, sizes = [], [], [], [], []  # per region of every image
with torch.no_grad():
    for stem in regions.stems:
        image = resize_rgb(target.read_image(index[stem]), c.data.target_size)
        model(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
        f = F.interpolate(deepest["f"], size=image.shape[:2], mode="bilinear", align_corners=False)[0]
        f = F.normalize(f, dim=0).reshape(f.shape[0], -1).T.numpy()
        rmap = regions.region_map(stem).ravel().astype(np.int64)
        n = int(rmap.max()) + 1
        pred = read_index_png(base.round_dir(r) / PREDICTIONS_DIR / f"{stem}.png").ravel()
        gt = resize_nearest(target.read_label(index[stem]), image.shape[:2]).ravel()
        valid = gt != IGNORE
        count = np.bincount(rmap, minlength=n)
        mean = np.zeros((n, f.shape[1]))
        np.add.at(mean, rmap, f)
        features.append(mean / count[:, None])
        truth.append(np.bincount(rmap[valid] * classes + gt[valid], minlength=n * classes).reshape(n, classes))
        predicted.append(np.bincount(rmap * classes + pred, minlength=n * classes).reshape(n, classes).argmax(1))
        right.append(np.bincount(rmap[valid], weights=pred[valid] == gt[valid], minlength=n))
        sizes.append(count)
offsets = np.cumsum([0] + [len(m) for m in features])
D = np.concatenate(features)
D /= np.linalg.norm(D, axis=1, keepdims=True)
truth, predicted = np.concatenate(truth), np.concatenate(predicted)
right, sizes = np.concatenate(right), np.concatenate(sizes)
picked = regions.queue[select_regions(regions.queue, "ranked", budget).positions]
reviewed = offsets[picked["image"]] + picked["region"]
rest = np.setdiff1d(np.arange(len(D)), reviewed)
similarity = D[rest] @ D[reviewed].T
spread = truth[reviewed].argmax(1)[similarity.argmax(1)]
best = similarity.max(1)
for threshold in (0.8, 0.9, 0.95, 0.98):
    change = (best >= threshold) & (spread != predicted[rest])
    u = rest[change]
    print(f"cosine >= {threshold}: {change.sum()} regions ({sizes[u].sum()} px) would change; right: "
          f"{truth[u, spread[change]].sum()} px spread, {right[u].sum():.0f} px the teacher's")
