"""MR's correspondence loss: attention that finds the partner's same-class regions scores well."""

from __future__ import annotations

import math

import pytest
import torch

from murid_engine.config import load_preset
from murid_engine.labels import IGNORE
from murid_engine.models import ModelConfig
from murid_engine.models.mutual_refinement import MRConfig, MutualRefinement
from murid_engine.models.teacher import MuridTeacher
from murid_engine.training.correspondence import correspondence_nll, token_class_distribution
from murid_engine.training.steps import Batch, adapt_step


def _halves(b: int, h: int, w: int, left: int, right: int) -> torch.Tensor:
    labels = torch.full((b, h, w), left, dtype=torch.long)
    labels[..., w // 2:] = right
    return labels


def test_token_distribution_counts_classes_per_token_and_skips_ignored_pixels():
    labels = _halves(1, 4, 8, left=2, right=5)
    labels[0, :, 0] = IGNORE
    dist = token_class_distribution(labels, tokens=2, num_classes=6)  # tokens: 2×2 of 2×4 pixels
    assert dist.shape == (1, 4, 6)
    assert dist[0, 0, 2] == pytest.approx(0.75)  # top-left: one of its four columns ignored
    assert dist[0, 0].sum() == pytest.approx(0.75)
    assert dist[0, 1, 5] == pytest.approx(1.0) and dist[0, 1].sum() == pytest.approx(1.0)


def test_attention_to_the_same_class_scores_better_than_uniform_or_the_wrong_class():
    tokens, h, w = 2, 4, 4
    query = _halves(1, 8, 8, left=1, right=3)  # image labels; features are 4×4
    partner = _halves(1, 8, 8, left=1, right=3)
    col = torch.arange(w).repeat(h)  # column of each of the 16 feature pixels
    token_col = torch.tensor([0, 1, 0, 1])  # tokens in row-major order on a 2×2 grid
    same = (col[:, None] // 2 == token_col[None, :]).float()
    same = (same / same.sum(1, keepdim=True)).unsqueeze(0)
    wrong = (col[:, None] // 2 != token_col[None, :]).float()
    wrong = (wrong / wrong.sum(1, keepdim=True)).unsqueeze(0)
    uniform = torch.full((1, h * w, tokens * tokens), 0.25)
    partner_dist = token_class_distribution(partner, tokens, num_classes=4)
    nll = {name: correspondence_nll(a, query, partner_dist, (h, w)).item()
           for name, a in {"same": same, "uniform": uniform, "wrong": wrong}.items()}
    assert nll["same"] == pytest.approx(0.0, abs=1e-5)
    assert nll["uniform"] == pytest.approx(math.log(2), abs=1e-5)
    assert nll["wrong"] > 9.0  # floored at MIN_PROBABILITY
    nothing = torch.full_like(query, IGNORE)
    assert correspondence_nll(uniform, nothing, partner_dist, (h, w)).item() == 0.0


def test_attention_weights_are_the_ones_attend_applies():
    torch.manual_seed(0)
    mr = MutualRefinement(16, tokens=3)
    x, partner = torch.randn(2, 16, 5, 6), torch.randn(2, 16, 7, 4)
    a = mr.attention_weights(x, partner)
    assert a.shape == (2, 30, 9)
    assert torch.allclose(a.sum(-1), torch.ones(2, 30))
    v = mr.v_proj(mr.pool_tokens(partner)).flatten(2).transpose(1, 2)  # B×T×d
    expected = mr.o_proj((a @ v).transpose(1, 2).reshape(2, -1, 5, 6))
    assert torch.allclose(mr.attend(x, partner), expected, atol=1e-5)


def test_match_loss_trains_the_attention_even_with_the_gates_at_zero():
    cfg = load_preset("smoke")
    cfg.mr = MRConfig(match_weight=0.5, tokens=4)
    torch.manual_seed(0)
    teacher = MuridTeacher(ModelConfig(backbone="tiny", num_classes=cfg.model.num_classes), cfg.mr)
    teacher.train()
    source, target = torch.rand(2, 3, 32, 48), torch.rand(2, 3, 32, 48)
    labels = torch.randint(0, cfg.model.num_classes, (2, 32, 48))
    losses = adapt_step(teacher, Batch(source, labels, target), cfg)
    assert losses["mr_match"].item() > 0
    sum(losses.values()).backward()
    for point in teacher.points:
        mr = teacher.mr[str(point)]
        assert mr.gamma_t.item() == 0.0
        assert mr.q_proj.weight.grad.abs().sum() > 0 and mr.k_proj.weight.grad.abs().sum() > 0
    cfg.mr.enabled = False
    teacher.mr_enabled = False
    assert "mr_match" not in adapt_step(teacher, Batch(source, labels, target), cfg)


def test_unknown_correspondence_direction_is_refused():
    teacher = MuridTeacher(ModelConfig(backbone="tiny"), MRConfig())
    with pytest.raises(ValueError, match="sideways"):
        teacher(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), correspondence=("sideways",))
