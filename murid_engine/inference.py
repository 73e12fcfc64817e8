"""Running a segmentation model over a dataset, one image at a time (memory does not grow)."""

from __future__ import annotations

import numpy as np
import torch

from murid_engine.data.base import Dataset
from murid_engine.metrics import ConfusionMatrix, SegmentationScores
from murid_engine.progress import progress


@torch.no_grad()
def predict_image(model: torch.nn.Module, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(train ids uint8 H×W, confidence float32 H×W) for one RGB uint8 image, at its own size."""
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div_(255.0)
    probs = torch.softmax(model(x)["out"], dim=1)[0]
    conf, pred = probs.max(dim=0)
    return pred.to(torch.uint8).numpy(), conf.numpy()


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, dataset: Dataset, desc: str = "evaluate") -> SegmentationScores:
    """Scores of `model` on a labelled dataset (eval mode; the model's mode is restored)."""
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix()
    try:
        for i in progress(range(len(dataset)), desc, len(dataset)):
            image, label = dataset.read_pair(i)
            pred, _ = predict_image(model, image)
            cm.add(label, pred)
    finally:
        model.train(was_training)
    return cm.scores()
