"""The source bank's keys and values, cached per model version and per bank entry: the cached
teacher predicts what the uncached one does, and a change of weights is never missed."""

from __future__ import annotations

import copy

import pytest
import torch

from murid_engine.models import ModelConfig
from murid_engine.models.bank_cache import bank_caching, clear_bank_caches
from murid_engine.models.banked import BankedTeacher
from murid_engine.models.mutual_refinement import MRConfig, MutualRefinement
from murid_engine.models.teacher import MuridTeacher
from test_mutual_refinement import _set_gates as _gates  # opened: at 0 the bank would not matter

LOGIT_TOLERANCE = 1e-4  # the largest logit difference a cached prediction may show


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _banked(seed: int = 0) -> BankedTeacher:
    torch.manual_seed(seed)
    teacher = MuridTeacher(ModelConfig(backbone="tiny"), MRConfig(tokens=8, bank_size=3))
    _gates(teacher, 1.0)
    teacher.eval()
    bank = teacher.build_source_bank(torch.rand(3, 3, 32, 64, generator=torch.Generator().manual_seed(1)))
    return BankedTeacher(teacher, bank).eval()


def _images(n: int = 4, seed: int = 2) -> torch.Tensor:
    return torch.rand(n, 3, 32, 64, generator=torch.Generator().manual_seed(seed))


def _logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)["out"]


def _fills(model: torch.nn.Module) -> list[int]:
    return [m.bank_cache.computed for m in model.modules() if isinstance(m, MutualRefinement)]


def legacy_refine_target(self, ft, bank_fs, entries=None, chunk_elems=0):
    """What refine_target computed before the cache: per image and per entry, the training-time
    attention (keys and values projected again every time), averaged over the bank."""
    refined = torch.stack([self.attend(ft, bank_fs[k:k + 1]) for k in range(bank_fs.shape[0])])
    return ft + self.gamma_t * refined.mean(dim=0)


def assert_same_prediction(got: torch.Tensor, want: torch.Tensor) -> None:
    assert (got - want).abs().max().item() < LOGIT_TOLERANCE
    assert torch.equal(got.argmax(dim=1), want.argmax(dim=1))  # 100% argmax agreement


def test_cached_uncached_and_legacy_refinement_predict_the_same(monkeypatch):
    model, x = _banked(), _images()
    cached = _logits(model, x)
    again = _logits(model, x[:2])
    assert _fills(model) == [1, 1]  # one projection per MR point, reused by the second call
    with bank_caching(model, enabled=False):
        uncached = _logits(model, x)
    monkeypatch.setattr(MutualRefinement, "refine_target", legacy_refine_target)
    legacy = _logits(model, x)
    assert_same_prediction(cached, uncached)
    assert_same_prediction(cached, legacy)
    assert_same_prediction(again, legacy[:2])
    # The refinement matters here, so equal outputs say something about the bank's keys.
    _gates(model, 0.0)
    assert (_logits(model, x) - legacy).abs().max().item() > 100 * LOGIT_TOLERANCE


def test_per_image_banks_are_assembled_from_the_cached_pool():
    mr = MutualRefinement(16, tokens=4).eval()
    _gates(mr, 1.0)
    ft, pool = torch.randn(2, 16, 9, 7), mr.bank_tokens(torch.randn(5, 16, 12, 10))
    picks = torch.tensor([[4, 0, 2], [1, 1, 3]])
    with torch.no_grad():
        per_image = mr.refine_target(ft, pool, picks)
        shared = mr.refine_target(ft, pool, torch.tensor([3, 1]))
        assert mr.bank_cache.computed == 1  # the pool was projected once, whatever was picked
        with bank_caching(mr, enabled=False):
            for i in range(2):
                alone = mr.refine_target(ft[i:i + 1], pool[picks[i]].contiguous())
                torch.testing.assert_close(per_image[i:i + 1], alone, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(shared, mr.refine_target(ft, pool[[3, 1]].contiguous()),
                                       atol=1e-6, rtol=1e-5)
        mr.bank_mode = "mean"  # the mean of the entries' keys is the mean tokens' keys
        torch.testing.assert_close(mr.refine_target(ft, pool, picks[:, :2]),
                                   torch.cat([legacy_refine_target(mr, ft[i:i + 1], pool[picks[i, :2]].mean(0, keepdim=True))
                                              for i in range(2)]), atol=1e-6, rtol=1e-5)
        for bad in (torch.tensor([[0, 1]]), torch.tensor([5]), torch.zeros(2, 0, dtype=torch.long)):
            with pytest.raises(ValueError, match="bank entries"):
                mr.refine_target(ft, pool, bad)


def _step(model: BankedTeacher, lr: float = 0.5) -> None:
    """One SGD step on a loss that reaches the MR projections, in whatever mode `model` is in."""
    teacher = model.teacher
    opt = torch.optim.SGD(teacher.parameters(), lr=lr)
    out = teacher(_images(2, seed=5), _images(2, seed=6))
    (out["target"].square().mean() + out["source"].square().mean()).backward()
    opt.step()


@pytest.mark.parametrize("mode_switch", [True, False], ids=["train-then-eval", "stays-in-eval"])
def test_an_optimiser_step_invalidates_the_cache(mode_switch):
    model, x = _banked(), _images()
    before = _logits(model, x)
    k_before = model.teacher.mr["1"].k_proj.weight.detach().clone()
    if mode_switch:  # how training runs: train(), step, eval()
        model.train()
        _step(model)
        model.eval()
    else:  # only the weights' version counters can tell
        _step(model)
    assert not torch.equal(model.teacher.mr["1"].k_proj.weight, k_before)
    after = _logits(model, x)
    with bank_caching(model, enabled=False):
        fresh = _logits(model, x)
    assert_same_prediction(after, fresh)
    assert _fills(model) == [2, 2]  # projected again once, then reused
    assert (after - before).abs().max().item() > 100 * LOGIT_TOLERANCE


def test_load_state_dict_and_casts_invalidate_the_cache():
    model, other, x = _banked(seed=0), _banked(seed=3), _images()
    _logits(model, x)
    model.teacher.load_state_dict(other.teacher.state_dict())  # in eval mode: counters only
    model.bank_1.copy_(other.bank_1)
    model.bank_2.copy_(other.bank_2)
    assert_same_prediction(_logits(model, x), _logits(other, x))
    model.double()  # new storage for every weight and the bank
    want = _logits(other.double(), x.double())
    torch.testing.assert_close(_logits(model, x.double()), want)


def test_a_write_no_counter_sees_is_why_clear_exists():
    """The control that shows the comparisons above can fail: a write through `.data` leaves
    the cache stale, and the prediction wrong, until the cache is cleared."""
    model, x = _banked(), _images()
    _logits(model, x)
    with torch.no_grad():
        for point in ("1", "2"):
            model.teacher.mr[point].v_proj.weight.data.mul_(-3.0)
    stale = _logits(model, x)
    with bank_caching(model, enabled=False):
        fresh = _logits(model, x)
    assert (stale - fresh).abs().max().item() > 100 * LOGIT_TOLERANCE
    clear_bank_caches(model)
    assert_same_prediction(_logits(model, x), fresh)


def test_grad_mode_projects_afresh_and_trains_the_projections():
    model, x = _banked(), _images(2)
    _logits(model, x)  # fills the cache
    mr = model.teacher.mr["1"]
    out = model(x)["out"]  # grad mode: the cache is not used
    assert _fills(model) == [1, 1]
    out.square().mean().backward()
    for proj in (mr.k_proj, mr.v_proj):
        assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0


def test_a_copy_starts_empty_and_an_inference_tensor_bank_is_not_cached():
    model, x = _banked(), _images()
    want = _logits(model, x)
    twin = copy.deepcopy(model)
    assert _fills(twin) == [0, 0]
    with torch.inference_mode():
        bank = {p: t.clone() for p, t in model.bank.items()}  # inference tensors: no counter
        got = model.teacher.forward_target(x, bank)["out"]
    assert_same_prediction(got, want)
    assert_same_prediction(_logits(twin, x), want)
