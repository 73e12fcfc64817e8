"""Mutual Refinement module and the MURID teacher: identity at init, exchange maths, BN, bank."""

from __future__ import annotations

import copy
import io

import pytest
import torch

from murid_engine.errors import UserError
from murid_engine.models import DeepLabV2, ModelConfig
from murid_engine.models.mutual_refinement import (
    MRConfig,
    MutualRefinement,
    channel_stats,
)
from murid_engine.models.teacher import MuridTeacher


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _feats(n: int, c: int = 16, h: int = 9, w: int = 7, scale: float = 1.0, shift: float = 0.0):
    return torch.randn(n, c, h, w) * scale + shift


def _teacher(**mr) -> MuridTeacher:
    return MuridTeacher(ModelConfig(backbone="tiny"), MRConfig(**mr))


def _set_gates(module: torch.nn.Module, value: float) -> None:
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, MutualRefinement):
                m.gamma_s.fill_(value)
                m.gamma_t.fill_(value)


# -- the module -------------------------------------------------------------------------------

def test_gates_start_at_zero_and_eval_is_exact_identity():
    mr = MutualRefinement(16, tokens=4, exchange_prob=1.0).eval()
    assert mr.gamma_s.item() == 0.0 and mr.gamma_t.item() == 0.0
    fs, ft = _feats(3), _feats(2, h=5, w=11, scale=3.0, shift=2.0)  # sizes and batches differ
    out_s, out_t = mr(fs, ft)
    assert torch.equal(out_s, fs) and torch.equal(out_t, ft)
    assert torch.equal(mr.refine_target(ft, mr.bank_tokens(fs)), ft)


def test_exchange_lambda_one_is_identity_and_zero_takes_partner_stats():
    mr = MutualRefinement(16, tokens=4).train()
    fs, ft = _feats(3), _feats(2, scale=3.0, shift=2.0)
    out_s, out_t = mr(fs, ft, lam=1.0)
    assert torch.equal(out_s, fs) and torch.equal(out_t, ft)

    out_s, out_t = mr(fs, ft, lam=0.0)
    mu_s, sig_s = channel_stats(fs)
    mu_t, sig_t = channel_stats(ft)
    got_mu_s, got_sig_s = channel_stats(out_s)
    got_mu_t, got_sig_t = channel_stats(out_t)
    partner_of_s = torch.arange(3) % 2  # source i is paired with target i % 2
    torch.testing.assert_close(got_mu_s, mu_t[partner_of_s], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got_sig_s, sig_t[partner_of_s], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(got_mu_t, mu_s[:2], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got_sig_t, sig_s[:2], atol=1e-3, rtol=1e-3)

    # λ = 0.5: halfway, in mean and in std.
    out_s, _ = mr(fs, ft, lam=0.5)
    mu, sig = channel_stats(out_s)
    torch.testing.assert_close(mu, 0.5 * (mu_s + mu_t[partner_of_s]), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(sig, 0.5 * (sig_s + sig_t[partner_of_s]), atol=1e-3, rtol=1e-3)


def test_random_exchange_respects_probability_and_detaches_partner():
    fs, ft = _feats(4), _feats(4, scale=3.0, shift=2.0)
    never = MutualRefinement(16, tokens=4, exchange_prob=0.0).train()
    out_s, out_t = never(fs, ft)
    assert torch.equal(out_s, fs) and torch.equal(out_t, ft)
    always = MutualRefinement(16, tokens=4, exchange_prob=1.0, alpha=0.3).train()
    out_s, _ = always(fs, ft)
    assert not torch.allclose(out_s, fs)

    # Gates at 0 (the attention path carries a zero gradient): the source output depends on
    # the target only through its statistics, which are detached.
    fs, ft = fs.clone().requires_grad_(), ft.clone().requires_grad_()
    out_s, _ = always(fs, ft, lam=0.0)
    out_s.square().sum().backward()
    assert fs.grad is not None and fs.grad.abs().sum() > 0
    assert ft.grad is None or not ft.grad.any()


def test_nonzero_gate_changes_output_and_trains_projections():
    mr = MutualRefinement(16, tokens=4, exchange_prob=0.0).train()
    fs, ft = _feats(2), _feats(3, h=6, w=6)
    with torch.no_grad():
        mr.gamma_s.fill_(0.5)
        mr.gamma_t.fill_(-0.5)
    out_s, out_t = mr(fs, ft)
    assert not torch.allclose(out_s, fs) and not torch.allclose(out_t, ft)
    (out_s.square().mean() + out_t.square().mean()).backward()
    for name in ("gamma_s", "gamma_t", "q_proj.weight", "k_proj.weight", "v_proj.weight",
                 "o_proj.weight"):
        grad = mr.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_refine_target_ensemble_averages_partners():
    mr = MutualRefinement(16, tokens=4).eval()
    with torch.no_grad():
        mr.gamma_t.fill_(1.0)
    ft, bank_src = _feats(2), _feats(5, h=12, w=10)
    bank = mr.bank_tokens(bank_src)
    assert bank.shape == (5, 16, 4, 4)
    # The mean of per-partner refinements, also when the bank is split into many chunks.
    expected = torch.stack([mr.refine_target(ft, bank[k:k + 1]) for k in range(5)]).mean(0)
    torch.testing.assert_close(mr.refine_target(ft, bank, chunk_elems=1), expected)
    # Raw (unpooled) bank features are pooled on the fly.
    torch.testing.assert_close(mr.refine_target(ft, bank_src), expected)
    # In training, a single partner gives the same attention as a bank of that one entry.
    _, train_t = mr(bank_src[:1], ft[:1])
    torch.testing.assert_close(train_t, mr.refine_target(ft[:1], bank[:1]))
    mr.bank_mode = "mean"
    assert mr.refine_target(ft, bank).shape == ft.shape
    with pytest.raises(ValueError):
        mr.refine_target(ft, torch.zeros(2, 8, 4, 4))


# -- the teacher ------------------------------------------------------------------------------

def test_teacher_with_mr_disabled_matches_inner_net():
    teacher = _teacher(enabled=False).eval()
    source, target = torch.rand(2, 3, 64, 32), torch.rand(2, 3, 64, 32)
    with torch.no_grad():
        out = teacher(source, target)
        ref = teacher.net(target)["out"]
        single = teacher.forward_single(target)["out"]
        tgt = teacher.forward_target(target)["out"]
    assert torch.equal(out["target"], ref) and torch.equal(single, ref) and torch.equal(tgt, ref)
    assert set(out["target_features"]) == {1, 2}


def test_teacher_eval_is_identity_at_init_and_checkpoint_keys():
    teacher = _teacher().eval()
    source, target = torch.rand(2, 3, 64, 32), torch.rand(2, 3, 64, 32)
    with torch.no_grad():
        out = teacher(source, target)
        bank = teacher.build_source_bank(source)
        tgt = teacher.forward_target(target, bank)["out"]
        ref = teacher.net(target)["out"]
    assert torch.equal(out["target"], ref) and torch.equal(tgt, ref)
    keys = teacher.state_dict().keys()
    assert "net.backbone.layer1.0.conv1.weight" in keys and "mr.1.gamma_s" in keys
    student = DeepLabV2(ModelConfig(backbone="tiny"))
    student.load_state_dict(teacher.net.state_dict())  # strict: same layout


def test_per_domain_batchnorm_in_training():
    teacher = _teacher(exchange_prob=0.0).train()
    plain = copy.deepcopy(teacher)
    target = torch.rand(2, 3, 64, 32)
    source_a = torch.rand(2, 3, 64, 32) * 0.3 + 0.7  # a very different source "style"
    source_b = torch.rand(3, 3, 48, 40)
    with torch.no_grad():
        out_a = teacher(source_a, target)["target"]
        out_b = teacher(source_b, target)["target"]
        ref = plain.net(target)["out"]
    # Target logits use the target batch's statistics only, whatever the source batch is.
    torch.testing.assert_close(out_a, ref)
    torch.testing.assert_close(out_b, ref)
    # Running statistics track the target only (source passes never touch them).
    with torch.no_grad():
        plain.net(target)  # plain saw the target twice, as the teacher did
    for (name, a), (_, b) in zip(teacher.net.named_buffers(), plain.net.named_buffers()):
        torch.testing.assert_close(a, b, msg=name)


def test_shared_batchnorm_normalises_the_two_crops_as_one_batch_and_evaluates_with_the_mixture():
    teacher = _teacher(exchange_prob=0.0, norm="shared").train()
    plain = copy.deepcopy(teacher)
    source = torch.rand(2, 3, 64, 32) * 0.3 + 0.7  # another "style" than the target's
    target = torch.rand(2, 3, 64, 32)
    with torch.no_grad():
        out = teacher(source, target)
        ref = plain.net(torch.cat([source, target]))["out"]  # one batch: the mixture's statistics
    torch.testing.assert_close(out["source"], ref[:2])
    torch.testing.assert_close(out["target"], ref[2:])
    # The running statistics are the mixture's: the same buffers as the plain net's on the cat.
    for (name, a), (_, b) in zip(teacher.net.named_buffers(), plain.net.named_buffers()):
        torch.testing.assert_close(a, b, msg=name)
    bn = teacher.net.backbone.bn1
    assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
    # Evaluation and the bank use those running statistics, whatever the batch holds.
    teacher.eval()
    with torch.no_grad():
        alone = teacher.forward_target(target[:1], teacher.build_source_bank(source))["out"]
        evaluated = plain.eval().net(target[:1])["out"]
    torch.testing.assert_close(alone, evaluated)
    with pytest.raises(ValueError, match="one size"):
        teacher.train()(torch.rand(2, 3, 48, 32), target)


def test_shared_target_normalises_as_one_batch_but_keeps_the_targets_running_statistics():
    teacher = _teacher(exchange_prob=0.0, norm="shared-target").train()
    mixture, target_only = copy.deepcopy(teacher), copy.deepcopy(teacher)
    source = torch.rand(2, 3, 64, 32) * 0.3 + 0.7
    target = torch.rand(3, 3, 64, 32)
    with torch.no_grad():
        out = teacher(source, target)
        ref = mixture.net(torch.cat([source, target]))["out"]
        target_only.net(target)
    # Trained with the mixture's batch statistics, as 'shared' is ...
    torch.testing.assert_close(out["source"], ref[:2])
    torch.testing.assert_close(out["target"], ref[2:])
    # ... but the running statistics are the target crops': the stem's BatchNorm sees the same
    # input either way, so its statistics are those of the target alone, not the mixture's.
    bn, bn_mix, bn_target = (m.net.backbone.bn1 for m in (teacher, mixture, target_only))
    torch.testing.assert_close(bn.running_mean, bn_target.running_mean)
    torch.testing.assert_close(bn.running_var, bn_target.running_var)
    assert not torch.allclose(bn.running_mean, bn_mix.running_mean, atol=1e-3)
    assert int(bn.num_batches_tracked) == 1 and bn.track_running_stats
    # Evaluated with those running statistics, whatever the batch holds.
    teacher.eval()
    evaluated = copy.deepcopy(mixture)
    evaluated.load_state_dict(teacher.state_dict())
    with torch.no_grad():
        alone = teacher.forward_target(target[:1], teacher.build_source_bank(source))["out"]
        torch.testing.assert_close(alone, evaluated.eval().net(target[:1])["out"])


def test_exchange_at_the_output_leaves_the_mr_points_and_eval_untouched():
    source = torch.rand(2, 3, 64, 32) * 0.3 + 0.7
    target = torch.rand(2, 3, 64, 32)
    at_output = _teacher(exchange_prob=1.0, exchange_at="output").train()
    at_points = copy.deepcopy(at_output)
    at_points.mr_cfg.exchange_at = "points"
    for m in at_points.mr.values():
        m.exchanges = True
    without = copy.deepcopy(at_output)
    without.output_exchange = None
    assert not any(m.exchanges for m in at_output.mr.values())
    with torch.no_grad():
        outs = [m(source, target) for m in (at_output, at_points, without)]
    # The MR points' features are those of a teacher with no exchange at all ...
    for point in (1, 2):
        torch.testing.assert_close(outs[0]["target_features"][point], outs[2]["target_features"][point])
        assert not torch.allclose(outs[1]["target_features"][point], outs[2]["target_features"][point])
    # ... and the exchange moves what the classifier reads: the logits differ.
    assert not torch.allclose(outs[0]["target"], outs[2]["target"], atol=1e-4)
    # In eval mode it is the identity, like the exchange at the points.
    at_output.eval(), without.eval()
    with torch.no_grad():
        torch.testing.assert_close(at_output(source, target)["target"], without(source, target)["target"])
    with pytest.raises(UserError, match="exchange_at"):
        MRConfig(exchange_at="stem").validate()


def test_teacher_shapes_odd_sizes_and_bank():
    teacher = _teacher(tokens=8, bank_size=3)
    _set_gates(teacher, 0.3)
    teacher.train()
    source, target = torch.rand(3, 3, 70, 50), torch.rand(2, 3, 66, 46)
    out = teacher(source, target)
    assert out["source"].shape == (3, 19, 70, 50) and out["target"].shape == (2, 19, 66, 46)
    assert out["source_features"][1].shape[:2] == (3, 32)
    assert out["target_features"][2].shape[:2] == (2, 48)
    (out["source"].mean() + out["target"].mean()).backward()
    assert teacher.mr["1"].gamma_t.grad is not None

    teacher.eval()
    bank = teacher.build_source_bank([torch.rand(2, 3, 70, 50), torch.rand(2, 3, 64, 32)])
    assert bank[1].shape == (3, 32, 8, 8) and bank[2].shape == (3, 48, 8, 8)  # capped at 3
    buffer = io.BytesIO()
    torch.save(bank, buffer)  # plain tensors: storable in a checkpoint
    buffer.seek(0)
    bank = torch.load(buffer)
    with torch.no_grad():
        res = teacher.forward_target(torch.rand(2, 3, 70, 50), bank)
    assert res["out"].shape == (2, 19, 70, 50) and set(res["features"]) == {1, 2}
    with pytest.raises(ValueError):
        teacher.forward_target(target, {1: bank[1]})


def test_mr_config_validation():
    with pytest.raises(UserError):
        MRConfig(points=(4,)).validate()
    with pytest.raises(UserError):
        MRConfig(exchange_prob=1.5).validate()
    with pytest.raises(UserError):
        MRConfig(bank_mode="nearest").validate()
    assert MRConfig().validate().points == (1, 2)
