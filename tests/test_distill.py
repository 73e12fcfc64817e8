"""Information Distillation: the loss parts, the adapters, the student's job and its CLI."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from smoke_runs import copy_project, murid, one_thread, smoke_project
from murid_engine.checkpoint import load_checkpoint
from murid_engine.data import open_dataset
from murid_engine.distill import (
    FeatureAdapters,
    StudentTrainer,
    build_student,
    distill_losses,
    feature_hint,
    kd_kl,
    student_forward,
)
from murid_engine.distill.losses import StudentOutputs
from murid_engine.inference import evaluate_model
from murid_engine.jobs import CollectingSink, Control, EvaluationResult, Losses, StageFinished, StageStarted
from murid_engine.model_store import load_model
from murid_engine.models.deeplab import DeepLabV2, ModelConfig
from murid_engine.models.teacher import MuridTeacher
from murid_engine.project import Project
from murid_engine.run_config import DistillConfig

TINY = ModelConfig(backbone="tiny", aspp_rates=(1, 2))


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():  # small tensors: a second spinning thread only costs time
        yield


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(SynthCity data, a smoke project trained through every stage, distill included)."""
    return smoke_project(tmp_path_factory.mktemp("distill"))


# ------------------------------------------------------------------------------ loss parts

def test_kl_is_zero_when_student_equals_teacher():
    logits = torch.randn(2, 19, 8, 16, generator=torch.Generator().manual_seed(0)) * 5
    for t in (0.5, 1.0, 2.0, 4.0):
        assert kd_kl(logits, logits.clone(), t).item() == 0.0


def test_kl_is_t_squared_times_the_kl_of_the_softened_distributions():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(1, 3, 2, 2, generator=g), torch.randn(1, 3, 2, 2, generator=g)
    temperature = 2.0
    p = torch.softmax(t / temperature, 1)
    q = torch.softmax(s / temperature, 1)
    by_hand = (p * (p.log() - q.log())).sum(1).mean() * temperature ** 2
    assert kd_kl(s, t, temperature).item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert by_hand.item() > 0.01
    # Only the masked pixels count: keep one pixel, get that pixel's KL.
    mask = torch.zeros(1, 2, 2, dtype=torch.bool)
    mask[0, 1, 0] = True
    one = (p * (p.log() - q.log())).sum(1)[0, 1, 0] * temperature ** 2
    assert kd_kl(s, t, temperature, mask).item() == pytest.approx(one.item(), rel=1e-5)


def test_adapters_map_student_channels_to_teacher_channels_at_each_mr_point():
    teacher = MuridTeacher(TINY).eval()  # tiny: 32 and 48 channels after stages 1 and 2
    student = DeepLabV2(ModelConfig(backbone="resnet18", aspp_rates=(1, 2))).eval()  # 64, 128
    adapters = FeatureAdapters(student.backbone.stage_channels, teacher.net.backbone.stage_channels,
                               teacher.points)
    x = torch.rand(2, 3, 32, 64)
    bank = teacher.build_source_bank(torch.rand(2, 3, 32, 64))
    with torch.no_grad():
        t = teacher.forward_target(x, bank)
        logits, feats = student_forward(student, x, teacher.points)
        assert torch.equal(logits, student(x)["out"])  # the same network, stage by stage
    assert adapters.points == (1, 2)
    expected = {1: (2, 32, 8, 16), 2: (2, 48, 4, 8)}  # stride 4 after stage 1, 8 after stage 2
    for point in (1, 2):
        assert feats[point].shape[1] == (64, 128)[point - 1]
        mapped = adapters(point, feats[point])
        assert tuple(mapped.shape) == expected[point] == tuple(t["features"][point].shape)
    assert feature_hint(adapters, feats, t["features"]).item() > 0


def test_feature_hint_is_zero_when_the_adapted_features_equal_the_teachers():
    adapters = FeatureAdapters((4, 6, 8, 8), (4, 6, 8, 8), (1, 2))
    with torch.no_grad():
        for conv in adapters.maps.values():  # identity 1x1 convolutions
            conv.weight.copy_(torch.eye(conv.weight.shape[0])[:, :, None, None])
            conv.bias.zero_()
    feats = {1: torch.rand(1, 4, 5, 5), 2: torch.rand(1, 6, 3, 3)}
    assert feature_hint(adapters, feats, {p: f.clone() for p, f in feats.items()}).item() == 0.0


def _outputs(from_teacher: bool) -> StudentOutputs:
    g = torch.Generator().manual_seed(2)
    labels = torch.randint(0, 19, (1, 8, 8), generator=g)
    labels[0, 0] = 255  # below threshold
    labels[0, 1] = 254  # painted ignore / padding
    return StudentOutputs(
        target_logits=torch.randn(1, 19, 8, 8, generator=g), target_features={1: torch.rand(1, 4, 2, 2)},
        pseudo_labels=labels, source_logits=torch.randn(1, 19, 8, 8, generator=g),
        source_labels=torch.randint(0, 19, (1, 8, 8), generator=g),
        teacher_logits=torch.randn(1, 19, 8, 8, generator=g) if from_teacher else None,
        teacher_features={1: torch.rand(1, 4, 2, 2)} if from_teacher else None)


def test_loss_parts_are_named_and_weighted():
    adapters = FeatureAdapters((4, 4, 4, 4), (4, 4, 4, 4), (1,))
    cfg = DistillConfig(kl_weight=2.0, feature_weight=0.5, source_ce_weight=1.0, pseudo_ce_weight=3.0)
    out = _outputs(from_teacher=True)
    parts = distill_losses(out, cfg, adapters)
    assert set(parts) == {"kl", "feature", "source_ce", "pseudo_ce"}
    kept = (out.pseudo_labels != 254)
    assert parts["kl"].item() == pytest.approx(2.0 * kd_kl(out.target_logits, out.teacher_logits, 2.0, kept).item())
    valid = out.pseudo_labels < 19
    ce = F.cross_entropy(out.target_logits.permute(0, 2, 3, 1)[valid], out.pseudo_labels[valid])
    assert parts["pseudo_ce"].item() == pytest.approx(3.0 * ce.item(), rel=1e-5)
    cfg.feature_weight = 0.0  # a zero weight leaves its part out
    assert "feature" not in distill_losses(out, cfg, adapters)


def test_the_users_pixels_are_their_class_in_pseudo_ce_and_weigh_edit_weight():
    out = _outputs(from_teacher=False)
    classes = out.pseudo_labels.clone()
    out.pseudo_labels[0, 2:4] += 128  # rows 2-3: the user's labels (round_labels.HUMAN + class)
    as_kept = distill_losses(out, DistillConfig(from_teacher=False), None)["pseudo_ce"]
    valid = classes < 19
    per = F.cross_entropy(out.target_logits, torch.where(valid, classes, 0), reduction="none")[0]
    assert as_kept.item() == pytest.approx(per[valid[0]].mean().item(), rel=1e-5)  # weight 1: as kept
    weighted = distill_losses(out, DistillConfig(from_teacher=False, edit_weight=4.0), None)["pseudo_ce"]
    w = torch.ones(8, 8)
    w[2:4] = 4.0
    assert weighted.item() == pytest.approx((per * w)[valid[0]].sum().item() / valid.sum().item(), rel=1e-5)


def test_a_weighted_kl_ignores_pixels_of_weight_zero_and_gives_the_teacher_no_gradient():
    g = torch.Generator().manual_seed(3)
    s = torch.randn(1, 5, 4, 4, generator=g, requires_grad=True)
    t = torch.randn(1, 5, 4, 4, generator=g, requires_grad=True)
    weight = torch.rand(1, 4, 4, generator=g)
    weight[0, :2] = 0.0
    loss = kd_kl(s, t, 2.0, weight)
    changed = s.detach().clone()
    changed[..., :2, :] = 100.0 * torch.randn(1, 5, 2, 4, generator=g)  # only weight-0 pixels
    assert kd_kl(changed, t, 2.0, weight).item() == pytest.approx(loss.item(), rel=1e-6)
    assert kd_kl(s, t, 2.0, torch.zeros(1, 4, 4)).item() == 0.0
    loss.backward()
    assert t.grad is None  # the teacher's prediction is a target, not trained
    assert s.grad[..., :2, :].abs().max().item() == 0.0 and s.grad[..., 2:, :].abs().max().item() > 0


def test_kl_pixels_choose_where_the_kl_counts():
    from murid_engine.distill.losses import kl_weights

    out = _outputs(from_teacher=True)
    labels, logits = out.pseudo_labels, out.teacher_logits
    everywhere = kl_weights(labels, logits, "all")
    assert torch.equal(everywhere, (labels != 254).float())  # only painted-ignore / padding are out
    kept = kl_weights(labels, logits, "kept")
    assert torch.equal(kept, (labels < 19).float())  # below-threshold pixels are out too
    confidence = torch.softmax(logits, 1).amax(1)
    weighted = kl_weights(labels, logits, "weighted")
    assert torch.allclose(weighted, confidence * (labels != 254).float())
    pasted = torch.zeros_like(labels, dtype=torch.bool)
    pasted[0, 4:] = True  # pixels ClassMix pasted from a source image take no KL
    assert kl_weights(labels, logits, "all", pasted)[0, 4:].abs().sum().item() == 0.0
    assert torch.equal(kl_weights(labels, logits, "all", pasted)[0, :4], everywhere[0, :4])


def test_a_hint_with_a_keep_mask_counts_only_the_kept_cells():
    adapters = FeatureAdapters((4, 4, 4, 4), (4, 4, 4, 4), (1,))
    with torch.no_grad():
        conv = adapters.maps["1"]
        conv.weight.copy_(torch.eye(4)[:, :, None, None])
        conv.bias.zero_()
    student = {1: torch.zeros(1, 4, 2, 2)}
    teacher = {1: torch.zeros(1, 4, 2, 2)}
    teacher[1][..., 1] = 3.0  # the right column of cells differs
    keep = torch.zeros(1, 8, 8, dtype=torch.bool)
    keep[..., :4] = True  # the left half of the input: the left column of cells
    assert feature_hint(adapters, student, teacher, keep).item() == 0.0
    assert feature_hint(adapters, student, teacher, ~keep).item() == pytest.approx(9.0)


def test_no_distill_has_no_kl_or_feature_parts():
    cfg = DistillConfig(from_teacher=False)
    parts = distill_losses(_outputs(from_teacher=False), cfg, FeatureAdapters((4,) * 4, (4,) * 4, (1,)))
    assert set(parts) == {"source_ce", "pseudo_ce"}


def test_student_starts_from_the_teachers_network_when_the_backbones_match():
    teacher = MuridTeacher(TINY)
    same = build_student(TINY, teacher.state_dict(), TINY)
    assert same.copied == same.total == len(teacher.net.state_dict())
    for key, value in teacher.net.state_dict().items():
        assert torch.equal(same.net.state_dict()[key], value), key
    other = build_student(ModelConfig(backbone="resnet18", aspp_rates=(1, 2)), teacher.state_dict(), TINY)
    assert other.copied == 0 and "random" in other.note


# ------------------------------------------------------------------------------- the job

def test_smoke_pipeline_writes_the_student_and_its_evaluation(trained):
    data, project_dir = trained
    path = project_dir / "checkpoints" / "student.pt"
    ckpt = load_checkpoint(path)
    assert set(ckpt.models) == {"student"} and ckpt.stage == "distill" and ckpt.iteration == 3
    records = Project.open(project_dir).read_metrics()
    evals = [r for r in records if r["kind"] == "eval" and r["model"] == "student"]
    assert len(evals) == 1 and evals[0]["stage"] == "distill"
    losses = [r for r in records if r["kind"] == "losses" and r["stage"] == "distill"]
    assert losses and {"kl", "feature", "source_ce", "pseudo_ce", "total"} <= set(losses[-1])
    # The lone checkpoint rebuilds the student, and it scores what training recorded.
    loaded = load_model(path)
    assert loaded.name == "student" and isinstance(loaded.model, DeepLabV2)
    scores = evaluate_model(loaded.model, open_dataset(f"synthcity:{data}", "val"))
    assert 0 < evals[0]["miou"] <= 1
    assert scores.miou == pytest.approx(evals[0]["miou"], abs=1e-12)


def _prepared(trained_dir: Path, dest: Path, iterations: int, from_teacher: bool = True,
              augment: bool = False) -> Project:
    project = Project.open(copy_project(trained_dir, dest))
    for name in ("student", "latest_student"):
        project.checkpoint_path(name).unlink()
    cfg = copy.deepcopy(project.config)
    cfg.distill.iterations = iterations
    cfg.distill.from_teacher = from_teacher
    cfg.distill.augment = augment
    project.save_config(cfg)
    return project


def test_no_distill_run_trains_on_labels_only(trained, tmp_path):
    project = _prepared(trained[1], tmp_path / "p", iterations=2, from_teacher=False)
    sink = CollectingSink()
    assert StudentTrainer(project, sink).run()
    keys = {k for e in sink.of_type(Losses) for k in e.values}
    assert keys == {"source_ce", "pseudo_ce", "total"}
    assert load_checkpoint(project.checkpoint_path("student")).config.distill.from_teacher is False


@pytest.mark.parametrize("augment", [False, True], ids=["clean", "augmented"])
def test_stop_saves_and_resume_continues_to_the_same_student(trained, tmp_path, augment):
    # augmented: the ClassMix / photometric draws continue where they stopped, too
    project = _prepared(trained[1], tmp_path / "stopped", iterations=5, augment=augment)
    control = Control()
    sink = CollectingSink()

    def stop_after_two(event):
        sink(event)
        if isinstance(event, Losses) and event.iteration == 2:
            control.stop()

    assert StudentTrainer(project, stop_after_two, control).run() is False
    saved = load_checkpoint(project.checkpoint_path("latest_student"))
    assert saved.iteration == 2 and set(saved.models) == {"student", "adapters"}
    assert not project.checkpoint_path("student").exists()
    assert not sink.of_type(StageFinished) and sink.of_type(StageStarted)[0].stage == "distill"
    assert not any(r["kind"] == "eval" and r.get("model") == "student" for r in project.read_metrics())

    resumed = CollectingSink()
    assert StudentTrainer(project, resumed).run(resume=True) is True
    assert [e.iteration for e in resumed.of_type(Losses)] == [3, 4, 5]
    assert [e.model for e in resumed.of_type(EvaluationResult)] == ["student"]

    straight = _prepared(trained[1], tmp_path / "straight", iterations=5, augment=augment)
    assert StudentTrainer(straight).run() is True
    a = load_checkpoint(project.checkpoint_path("student")).models["student"]
    b = load_checkpoint(straight.checkpoint_path("student")).models["student"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    evals = [r for r in project.read_metrics() if r["kind"] == "eval" and r.get("model") == "student"]
    assert len(evals) == 1 and math.isfinite(evals[0]["miou"])


def test_resumed_pipeline_goes_straight_back_to_a_stopped_distillation(trained, tmp_path):
    from murid_engine.pipeline import run_pipeline

    project = _prepared(trained[1], tmp_path / "p", iterations=3)
    control = Control()

    def stop_at_once(event):
        if isinstance(event, StageStarted):
            control.stop()

    assert StudentTrainer(project, stop_at_once, control).run() is False
    teacher_before = project.checkpoint_path("teacher").stat().st_mtime_ns
    sink = CollectingSink()
    assert run_pipeline(project, sink, resume=True) is True
    assert [e.stage for e in sink.of_type(StageStarted)] == ["distill"]  # the teacher is not rerun
    assert project.checkpoint_path("teacher").stat().st_mtime_ns == teacher_before
    assert load_checkpoint(project.checkpoint_path("student")).iteration == 3


def test_a_project_without_rounds_gets_round_one_from_the_teacher(trained, tmp_path):
    import shutil

    from murid_engine.jobs import RoundReady

    project = _prepared(trained[1], tmp_path / "p", iterations=1, from_teacher=False)
    shutil.rmtree(project.rounds_dir)
    sink = CollectingSink()
    assert StudentTrainer(project, sink).run()
    ready = sink.of_type(RoundReady)
    assert [e.round for e in ready] == [1] and ready[0].portion == project.config.curriculum.portions[0]
    assert project.rounds() == [1]


def test_relabel_has_the_final_teacher_label_one_round_more_once_when_the_user_edited(trained, tmp_path):
    import os

    import numpy as np

    from murid_engine.curriculum.rounds import EDIT_NONE, LABELS_DIR
    from murid_engine.imageio import read_index_png
    from murid_engine.jobs import RoundReady

    project = _prepared(trained[1], tmp_path / "p", iterations=1, from_teacher=False)
    cfg = copy.deepcopy(project.config)
    cfg.distill.relabel = True
    project.save_config(cfg)
    last = project.latest_round()
    teacher = project.checkpoint_path("teacher")
    os.utime(teacher)  # the teacher trained after its last round was labelled, as it does
    # No edits in the project: nothing for a relabelling to carry, so no round more.
    assert project.edited_stems() == []
    sink = CollectingSink()
    assert StudentTrainer(project, sink).run()
    assert sink.of_type(RoundReady) == [] and project.latest_round() == last
    project.checkpoint_path("student").unlink()
    project.checkpoint_path("latest_student").unlink()
    # With the user's edits, the final teacher labels one round more.
    stem = next(iter(project.read_round_info(last).images))
    edit = np.full(read_index_png(project.round_dir(last) / LABELS_DIR / f"{stem}.png").shape,
                   EDIT_NONE, np.uint8)
    edit[:4, :10] = 13  # car
    project.save_edit(stem, edit)
    sink = CollectingSink()
    assert StudentTrainer(project, sink).run()
    assert [e.round for e in sink.of_type(RoundReady)] == [last + 1] and project.latest_round() == last + 1
    # Distilled again: that round is newer than teacher.pt, made by it already: no round more.
    project.checkpoint_path("student").unlink()
    project.checkpoint_path("latest_student").unlink()
    sink = CollectingSink()
    assert StudentTrainer(project, sink).run()
    assert sink.of_type(RoundReady) == [] and project.latest_round() == last + 1


def test_a_student_of_another_backbone_distils_from_its_imagenet_file(trained, tmp_path):
    from murid_engine.jobs import Message
    from murid_engine.models.resnet import resnet18

    weights = resnet18().state_dict()
    weights["fc.weight"] = torch.zeros(1000, 512)  # an ImageNet file has its classifier too
    torch.save(weights, tmp_path / "resnet18.pth")
    project = _prepared(trained[1], tmp_path / "p", iterations=1)
    cfg = copy.deepcopy(project.config)
    cfg.student_model = ModelConfig(backbone="resnet18", aspp_rates=(1, 2),
                                    pretrained=str(tmp_path / "resnet18.pth"))
    project.save_config(cfg)
    sink = CollectingSink()
    assert StudentTrainer(project, sink).run()
    texts = [e.text for e in sink.of_type(Message)]
    assert any("initialised at random" in t for t in texts)
    assert any(t.startswith("ImageNet weights") and f"{len(resnet18().state_dict())} tensors loaded" in t
               for t in texts), texts
    parts = {k for e in sink.of_type(Losses) for k in e.values}
    assert {"kl", "feature"} <= parts  # 64/128 student channels mapped onto the teacher's 32/48
    loaded = load_model(project.checkpoint_path("student"))
    assert loaded.model.backbone.stage_channels == (64, 128, 256, 512)


# -------------------------------------------------------------------------------- the CLI

def test_distill_command_retrains_the_student(trained, tmp_path):
    project = copy_project(trained[1], tmp_path / "p")
    before = load_checkpoint(project / "checkpoints" / "student.pt").models["student"]
    result = murid("distill", "--project", project, "--set", "distill.iterations=2",
                   "--set", "distill.temperature=3")
    assert result.code == 0, result.err
    assert "student" in result.out and "target-val mIoU" in result.out
    ckpt = load_checkpoint(project / "checkpoints" / "student.pt")
    assert ckpt.iteration == 2 and ckpt.config.distill.temperature == 3.0
    assert any(not torch.equal(before[k], ckpt.models["student"][k]) for k in before)


def test_distill_command_needs_a_teacher(trained, tmp_path):
    project = copy_project(trained[1], tmp_path / "p")
    (project / "checkpoints" / "teacher.pt").unlink()
    line = murid("distill", "--project", project).error_line()
    assert "no trained teacher" in line and "murid train" in line


@pytest.mark.parametrize("args, words", [
    (["--set", "model.backbone=resnet18"], "only distill.* and student_model.*"),
    (["--set", "distill.temperature=-1"], "distill.temperature must be positive"),
    (["--resume", "--no-distill"], "--resume continues"),
])
def test_distill_command_refuses_wrong_settings(trained, tmp_path, args, words):
    project = copy_project(trained[1], tmp_path / "p")
    assert words in murid("distill", "--project", project, *args).error_line()


def test_distill_command_on_a_folder_that_is_no_project(tmp_path):
    assert "not a MURID project" in murid("distill", "--project", tmp_path).error_line()
