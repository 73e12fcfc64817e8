"""Running a segmentation model over a dataset, one image at a time (memory does not grow).

A model here is anything with ``forward(x in [0, 1]) -> {'out': logits}``: a DeepLabV2 student,
or the teacher with its source bank (``BankedTeacher``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from murid_engine.data.base import Dataset
from murid_engine.metrics import ConfusionMatrix, SegmentationScores
from murid_engine.progress import progress
from murid_engine.training.batches import resize_rgb


@torch.no_grad()
def predict_probs(model: torch.nn.Module, rgb: np.ndarray, size: tuple[int, int] | None = None,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Softmax probabilities C×H×W (float32, CPU) at the image's own size.

    ``size`` (w, h): the network sees the image resized to it (as in training, `data.target_size`);
    its logits are upsampled back to the image's size.
    """
    h, w = rgb.shape[:2]
    x = torch.from_numpy(resize_rgb(rgb, size)).permute(2, 0, 1)[None].float().div_(255.0)
    logits = model(x.to(device))["out"].float()
    if logits.shape[-2:] != (h, w):
        logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    return torch.softmax(logits, dim=1)[0].cpu()


def predict_image(model: torch.nn.Module, rgb: np.ndarray, size: tuple[int, int] | None = None,
                  device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(train ids uint8 H×W, confidence float32 H×W) for one RGB uint8 image, at its own size."""
    conf, pred = predict_probs(model, rgb, size, device).max(dim=0)
    return pred.to(torch.uint8).numpy(), conf.numpy()


def predict_dataset(model: torch.nn.Module, dataset: Dataset, size: tuple[int, int] | None = None,
                    desc: str = "predict", device: torch.device | str = "cpu"
                    ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(stem, prediction, confidence) per image, streaming (eval mode; the mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        for i in progress(range(len(dataset)), desc, len(dataset)):
            pred, conf = predict_image(model, dataset.read_image(i), size, device)
            yield dataset.samples[i].stem, pred, conf
    finally:
        model.train(was_training)


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, dataset: Dataset, desc: str = "evaluate",
                   size: tuple[int, int] | None = None,
                   device: torch.device | str = "cpu",
                   on_image: Callable[[int, int], None] | None = None) -> SegmentationScores:
    """Scores of `model` on a labelled dataset (eval mode; the model's mode is restored).

    `on_image(done, total)` follows every image (progress; it may raise to cancel the loop).
    """
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix()
    try:
        for i in progress(range(len(dataset)), desc, len(dataset)):
            image, label = dataset.read_pair(i)
            pred, _ = predict_image(model, image, size, device)
            cm.add(label, pred)
            if on_image is not None:
                on_image(i + 1, len(dataset))
    finally:
        model.train(was_training)
    return cm.scores()
