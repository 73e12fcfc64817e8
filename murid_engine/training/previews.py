"""Live previews: the current model's prediction on a fixed strip of target images."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from murid_engine.jobs import EventSink, Preview

from .batches import resize_rgb
from .domains import Domains

STRIP_SIZE = 4
PREVIEW_WIDTH = 256  # previews are drawn small; larger images are scaled down to this width


@dataclass
class PreviewStrip:
    stems: tuple[str, ...]
    images: np.ndarray  # uint8 N×H×W×3
    device: torch.device

    @classmethod
    def choose(cls, domains: Domains, device: torch.device) -> "PreviewStrip":
        """The first images of the target-val split (else target-train), all at one size."""
        if domains.val is not None and len(domains.val):
            n = min(STRIP_SIZE, len(domains.val))
            raw = [domains.val.read_image(i) for i in range(n)]
            stems = [domains.val.samples[i].stem for i in range(n)]
        else:
            n = min(STRIP_SIZE, len(domains.target))
            raw = [domains.target.images[i].permute(1, 2, 0).numpy() for i in range(n)]
            stems = domains.target.stems[:n]
        h, w = raw[0].shape[:2]
        size = (PREVIEW_WIDTH, max(1, round(h * PREVIEW_WIDTH / w))) if w > PREVIEW_WIDTH else (w, h)
        return cls(tuple(stems), np.stack([resize_rgb(im, size) for im in raw]), device)

    @torch.no_grad()
    def emit(self, sink: EventSink, stage: str, iteration: int, model: torch.nn.Module) -> None:
        was = model.training
        model.eval()
        try:
            x = torch.from_numpy(self.images).permute(0, 3, 1, 2).float().div(255.0).to(self.device)
            probs = torch.softmax(model(x)["out"].float(), dim=1)
            conf, pred = probs.max(dim=1)
        finally:
            model.train(was)
        sink(Preview(stage, iteration, self.stems, self.images.copy(),
                     pred.to(torch.uint8).cpu().numpy(), conf.cpu().numpy().astype(np.float32)))
