"""One optimiser step of each teacher stage; each returns its named loss parts (timm style).

warmup      source cross-entropy on the plain network (no target, no MR);
adapt       the teacher on a source and a target batch together (MR active): source
            cross-entropy plus target entropy (ADVENT);
curriculum  DACS-style self-training on the round's pseudo-labels: the EMA teacher labels the
            target crop online where the round left a pixel below its class threshold, half of
            the source classes are pasted onto the target crop (ClassMix), the mixed image is
            colour-jittered and blurred, and below-threshold pixels are weighted by the share of
            confident pixels (DACS); pixels the round kept, and the user's painted labels, count
            fully.

With ``mr.match_weight`` > 0, adapt and curriculum add the correspondence loss of MR's attention
(training/correspondence.py): source pixels against another source image from the start; in the
curriculum also target pixels against their source partner and source pixels against their
target partner, whose labels are the ones the target loss trusts fully. The last direction makes
the source stream's refinement bring in target features of the pixel's own class, which the
source's true labels then supervise (CDTrans, Xu et al., ICLR 2022, likewise pairs source
queries with target keys and values).
"""

from __future__ import annotations

import torch

from murid_engine.labels import IGNORE
from murid_engine.models.teacher import CORRESPONDENCE_DIRECTIONS, MuridTeacher
from murid_engine.run_config import RunConfig

from .augment import classmix, photometric
from .correspondence import correspondence_nll, token_class_distribution
from .loader import Batch
from .losses import entropy, segmentation_ce, weighted_ce
from .round_labels import FILL, NO_LOSS, pixel_weights, split_human

DACS_CONFIDENCE = 0.968  # DACS's confidence threshold for its pseudo-label weight


def warmup_step(model: MuridTeacher, batch: Batch, cfg: RunConfig) -> dict[str, torch.Tensor]:
    out = model.forward_single(batch.source)["out"]
    return {"source_ce": segmentation_ce(out, batch.source_labels)}


def _directions(cfg: RunConfig, *directions: str) -> tuple[str, ...]:
    return directions if cfg.mr.enabled and cfg.mr.match_weight > 0 else ()


def match_loss(out: dict, cfg: RunConfig, labels: dict[str, torch.Tensor]) -> torch.Tensor:
    """The weighted correspondence loss over every MR point and returned direction.

    ``labels``: 'source' and 'target' label maps; 'source>source' pairs each source image with
    the one before it in the batch, as the teacher's forward does.
    """
    dist = {domain: token_class_distribution(maps, cfg.mr.tokens, cfg.model.num_classes)
            for domain, maps in labels.items()}  # every point pools its keys to the same grid
    partner_dist = {"source>source": dist["source"].roll(1, dims=0),
                    "target>source": dist["source"], "source>target": dist.get("target")}
    terms = []
    for point, maps in out["correspondence"].items():
        for direction, weights in maps.items():
            query = direction.split(">")[0]
            size = out[f"{query}_features"][point].shape[-2:]
            terms.append(correspondence_nll(weights, labels[query], partner_dist[direction], size))
    return cfg.mr.match_weight * torch.stack(terms).mean()


def adapt_step(model: MuridTeacher, batch: Batch, cfg: RunConfig) -> dict[str, torch.Tensor]:
    directions = _directions(cfg, "source>source")
    out = model(batch.source, batch.target, correspondence=directions)
    losses = {"source_ce": segmentation_ce(out["source"], batch.source_labels)}
    if cfg.adapt.entropy_weight > 0:
        losses["target_entropy"] = cfg.adapt.entropy_weight * entropy(out["target"])
    if out["correspondence"]:
        losses["mr_match"] = match_loss(out, cfg, {"source": batch.source_labels})
    return losses


@torch.no_grad()
def online_labels(ema: MuridTeacher, batch: Batch, edit_weight: float = 1.0,
                  confidence_weighted: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels, weights) of the target crop: the round's labels, filled in by the EMA teacher
    (weighted as DACS does, or 1 without `confidence_weighted`); the user's pixels weigh
    `edit_weight`."""
    ema.eval()
    probs = torch.softmax(ema(batch.source, batch.target)["target"].float(), dim=1)
    conf, pred = probs.max(dim=1)
    stored, human = split_human(batch.target_labels)
    fill = stored == FILL
    labels = torch.where(fill, pred, stored)
    labels = torch.where(stored == NO_LOSS, torch.full_like(labels, IGNORE), labels)
    # DACS: below-threshold pixels are weighted by the share of confident ones among them.
    confident = (conf > DACS_CONFIDENCE) & fill
    q = confident.sum().float() / fill.sum().clamp(min=1) if confidence_weighted else 1.0
    weights = torch.where(fill, q, pixel_weights(human, edit_weight))
    return labels, weights


def curriculum_step(model: MuridTeacher, ema: MuridTeacher, batch: Batch, cfg: RunConfig,
                    gen: torch.Generator) -> dict[str, torch.Tensor]:
    c = cfg.curriculum
    labels, weights = online_labels(ema, batch, c.edit_weight, c.confidence_weighted)
    source, target = batch.source, batch.target
    if c.classmix:
        target, labels, weights = classmix(source, batch.source_labels, target, labels, weights, gen)
    if c.photometric:
        source = photometric(source, gen)
        target = photometric(target, gen)
    model.train()
    out = model(source, target, correspondence=_directions(cfg, *CORRESPONDENCE_DIRECTIONS))
    losses = {"source_ce": segmentation_ce(out["source"], batch.source_labels),
              "target_ce": weighted_ce(out["target"], labels, weights)}
    if out["correspondence"]:
        trusted = torch.where(weights >= 1.0, labels, torch.full_like(labels, IGNORE))
        losses["mr_match"] = match_loss(out, cfg, {"source": batch.source_labels, "target": trusted})
    return losses
