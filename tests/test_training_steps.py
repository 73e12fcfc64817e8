"""The teacher stages' parts: pseudo-label filling, ClassMix, losses, EMA, photometric jitter."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from murid_engine.labels import IGNORE
from murid_engine.training.augment import classmix_masks, mix, photometric
from murid_engine.training.ema import make_ema, update_ema
from murid_engine.training.losses import entropy, pixel_weighted_ce, segmentation_ce, weighted_ce
from murid_engine.training.round_labels import FILL, HUMAN, NO_LOSS
from murid_engine.training.steps import DACS_CONFIDENCE, Batch, online_labels


class FixedTeacher(torch.nn.Module):
    """Predicts class 3 everywhere, with a chosen confidence per pixel (left half confident)."""

    def forward(self, source, target):
        n, _, h, w = target.shape
        logits = torch.zeros(n, 19, h, w)
        logits[:, 3, :, : w // 2] = 10.0  # softmax ≈ 0.9996 > DACS's 0.968
        logits[:, 3, :, w // 2:] = 2.0  # softmax ≈ 0.28
        return {"target": logits, "source": torch.zeros(source.shape[0], 19, h, w)}


def test_online_labels_keep_the_round_fill_below_threshold_and_respect_no_loss():
    stored = torch.full((1, 4, 8), FILL, dtype=torch.long)
    stored[0, 0, :] = 7  # kept by the round (or painted by the user): stays 7
    stored[0, 1, :] = NO_LOSS  # painted 'ignore'
    batch = Batch(torch.rand(1, 3, 4, 8), torch.zeros(1, 4, 8, dtype=torch.long),
                  torch.rand(1, 3, 4, 8), stored)
    labels, weights = online_labels(FixedTeacher(), batch)
    assert (labels[0, 0] == 7).all() and (weights[0, 0] == 1).all()
    assert (labels[0, 1] == IGNORE).all()
    assert (labels[0, 2:] == 3).all()  # filled in by the EMA teacher's argmax
    # DACS weight: share of confident pixels among the filled ones (rows 2-3, half confident);
    # the NO_LOSS row is not filled, so it does not count.
    assert weights[0, 2:].unique().tolist() == [pytest.approx(0.5)]
    assert DACS_CONFIDENCE == 0.968


def test_the_users_pixels_are_their_class_and_weigh_edit_weight_with_or_without_dacs_weights():
    stored = torch.full((1, 4, 8), FILL, dtype=torch.long)
    stored[0, 0, :4] = 7  # kept by the round
    stored[0, 0, 4:] = HUMAN + 5  # the user gave class 5
    stored[0, 1, :] = NO_LOSS
    batch = Batch(torch.rand(1, 3, 4, 8), torch.zeros(1, 4, 8, dtype=torch.long),
                  torch.rand(1, 3, 4, 8), stored)
    labels, weights = online_labels(FixedTeacher(), batch, edit_weight=10.0)
    assert (labels[0, 0, :4] == 7).all() and (weights[0, 0, :4] == 1).all()
    assert (labels[0, 0, 4:] == 5).all() and (weights[0, 0, 4:] == 10).all()
    assert weights[0, 2:].unique().tolist() == [pytest.approx(0.5)]  # DACS's weight unchanged
    labels, weights = online_labels(FixedTeacher(), batch, edit_weight=10.0, confidence_weighted=False)
    assert (weights[0, 2:] == 1).all() and (weights[0, 0, 4:] == 10).all()
    same, _ = online_labels(FixedTeacher(), batch)  # weight 1: the user's pixels as kept ones
    assert torch.equal(same, labels)


def test_pixel_weighted_ce_is_segmentation_ce_at_weight_one_and_counts_weights():
    torch.manual_seed(0)
    logits, labels = torch.randn(2, 19, 5, 6), torch.randint(0, 19, (2, 5, 6))
    labels[0, 0] = IGNORE
    ones = torch.ones(2, 5, 6)
    assert torch.allclose(pixel_weighted_ce(logits, labels, ones), segmentation_ce(logits, labels))
    w = ones.clone()
    w[1] = 3.0
    per = F.cross_entropy(logits, torch.where(labels == IGNORE, 0, labels), reduction="none")
    valid = labels != IGNORE
    assert torch.allclose(pixel_weighted_ce(logits, labels, w), (per * w)[valid].sum() / valid.sum())
    assert pixel_weighted_ce(logits, torch.full_like(labels, IGNORE), w) == 0


def test_classmix_pastes_half_of_the_source_classes():
    labels = torch.tensor([[[0, 0, 1, 1], [2, 2, 3, IGNORE]]])
    masks = classmix_masks(labels, torch.Generator().manual_seed(0))
    chosen = labels[masks].unique().tolist()
    assert len(chosen) == 2 and set(chosen) <= {0, 1, 2, 3}
    # every pixel of a chosen class is pasted, no pixel of another class (nor ignore)
    assert torch.equal(masks, torch.isin(labels, torch.tensor(chosen)))
    src, tgt = torch.ones(1, 3, 2, 4), torch.zeros(1, 3, 2, 4)
    mixed = mix(masks, src, tgt)
    assert torch.equal(mixed[:, 0].bool(), masks)


def test_weighted_ce_matches_cross_entropy_and_scales_with_weights():
    torch.manual_seed(0)
    logits, labels = torch.randn(2, 19, 5, 6), torch.randint(0, 19, (2, 5, 6))
    ones = torch.ones(2, 5, 6)
    assert weighted_ce(logits, labels, ones).item() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)
    assert weighted_ce(logits, labels, ones * 0.25).item() == pytest.approx(
        0.25 * F.cross_entropy(logits, labels).item(), rel=1e-6)
    labels[0] = IGNORE  # ignored pixels add nothing but still count in the mean (DACS)
    expected = F.cross_entropy(logits[1:], labels[1:]).item() / 2
    assert weighted_ce(logits, labels, ones).item() == pytest.approx(expected, rel=1e-6)


def test_entropy_is_one_for_uniform_and_near_zero_for_confident_predictions():
    assert entropy(torch.zeros(1, 19, 3, 3)).item() == pytest.approx(1.0, abs=1e-6)
    sure = torch.full((1, 19, 3, 3), -20.0)
    sure[:, 4] = 20.0
    assert entropy(sure).item() < 1e-6


def test_ema_ramps_up_then_uses_its_decay():
    model = torch.nn.Linear(2, 1, bias=False)
    ema = make_ema(model)
    with torch.no_grad():
        model.weight.fill_(1.0)
        ema.weight.fill_(0.0)
    update_ema(ema, model, decay=0.99, step=0)  # d = min(0.99, 0) = 0: copies the model
    assert torch.allclose(ema.weight, torch.ones(1, 2))
    with torch.no_grad():
        ema.weight.fill_(0.0)
    update_ema(ema, model, decay=0.99, step=1000)
    assert torch.allclose(ema.weight, torch.full((1, 2), 0.01))
    assert not any(p.requires_grad for p in ema.parameters())


def test_photometric_stays_in_range_and_repeats_with_the_same_seed():
    x = torch.rand(4, 3, 16, 24)
    a = photometric(x, torch.Generator().manual_seed(5))
    b = photometric(x, torch.Generator().manual_seed(5))
    assert a.shape == x.shape and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1 and not torch.equal(a, x)
    assert math.isfinite(a.sum().item())


def test_augmentations_keep_the_batch_on_its_device():
    # The generator is a CPU one (its state is checkpointed); its draws must follow the batch
    # onto a GPU. The meta device stands in for CUDA here: mixing it with CPU tensors raises
    # the same "not on the expected device" error.
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 8, 16).to("meta")
    out = photometric(x, gen, blur_prob=0.0)
    assert out.device.type == "meta" and out.shape == x.shape
    blurred = photometric(x, gen, blur_prob=1.0)
    assert blurred.device.type == "meta" and blurred.shape == x.shape
