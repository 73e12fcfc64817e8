"""`murid train` end to end on SynthCity: what a run leaves in its project, its one-line errors,
resuming after a kill -9, and the user's edits and threshold overrides winning over the rounds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest

from murid_engine.checkpoint import load_checkpoint
from murid_engine.curriculum.rounds import EDIT_IGNORE, EDIT_NONE
from murid_engine.imageio import read_index_png
from murid_engine.labels import CLASS_NAMES
from murid_engine.project import Overrides, Project
from murid_engine.training.round_labels import HUMAN, NO_LOSS, training_maps
from smoke_runs import SUBPROCESS_ENV, copy_project, murid, shared_trained, synth_data

ROAD = CLASS_NAMES.index("road")
SMOKE_PORTIONS = [0.2, 0.5]  # resources/presets/smoke.json: curriculum.portions
SMOKE_CURRICULUM_ITERATIONS = 2 * 3  # rounds x iterations_per_round


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return shared_trained(tmp_path_factory)


def loss_keys(project: Project) -> list[tuple[str, int]]:
    return [(r["stage"], r["iteration"]) for r in project.read_metrics() if r["kind"] == "losses"]


def test_smoke_run_leaves_a_complete_project(trained, tmp_path):
    data, root, result = trained
    project = Project.open(root)
    # data.cache: auto (the preset's) said once where it put the images and why
    assert result.out.count(f"data.cache auto ({root / 'cache'}): the source images in the disk cache") == 1
    assert {"teacher", "source_only", "latest"} <= set(project.checkpoints())
    teacher = load_checkpoint(project.checkpoint_path("teacher"))
    assert (teacher.stage, teacher.iteration) == ("curriculum", SMOKE_CURRICULUM_ITERATIONS)
    assert {"teacher", "bank"} <= set(teacher.models)
    assert load_checkpoint(project.checkpoint_path("source_only")).stage == "warmup"

    assert project.rounds() == [1, 2]
    for r, portion in zip((1, 2), SMOKE_PORTIONS):
        info = project.read_round_info(r)
        assert info.round == r and info.portion == pytest.approx(portion)
        assert len(info.images) == 10  # every target-train image is labelled
        assert len(list((project.round_dir(r) / "labels").glob("*.png"))) == 10

    evals = [r for r in project.read_metrics() if r["kind"] == "eval"]
    # Each stage is scored when it ends (the curriculum may also score its rounds on the way).
    stage_ends = {(e["stage"], e["model"], e["iteration"]) for e in evals}
    assert {("warmup", "source_only", 3), ("adapt", "teacher", 3),
            ("curriculum", "teacher", SMOKE_CURRICULUM_ITERATIONS)} <= stage_ends
    assert {(e["stage"], e["model"]) for e in evals} == {
        ("warmup", "source_only"), ("adapt", "teacher"), ("curriculum", "teacher")}
    for e in evals:
        assert set(e["per_class_iou"]) == set(CLASS_NAMES)
        present = [v for v in e["per_class_iou"].values() if v is not None]  # absent classes: None
        assert e["miou"] == pytest.approx(sum(present) / len(present), abs=1e-12)
        assert f"{e['stage']:<11} {e['model']:<12} target-val mIoU {100 * e['miou']:.2f}" in result.out
    # The recorded scores are those of the saved checkpoints: `murid evaluate` of each gives the same.
    again = murid("evaluate", "--project", copy_project(root, tmp_path / "copy"), "--threads", "1", "--json", "-")
    assert again.code == 0, again.err
    scores = {m: e["miou"] for m, e in json.loads(again.out)["models"].items()}
    last = {e["model"]: e["miou"] for e in evals}  # the teacher's last record: the curriculum's end
    assert scores == pytest.approx(last, abs=1e-12) and set(scores) == {"source_only", "teacher"}
    keys = loss_keys(project)
    assert len(keys) == len(set(keys)) and ("curriculum", SMOKE_CURRICULUM_ITERATIONS) in keys


@pytest.mark.parametrize("args, expected", [
    (["--preset", "no-such-preset"], "no-such-preset"),
    (["--set", "model.no_such_key=1"], "model.no_such_key"),
    (["--set", "adapt.iterations=many"], "many"),
    (["--set", "data.cache=ram"], "data.cache must be one of auto, disk, off, not 'ram'"),
])
def test_train_configuration_errors(tmp_path, args, expected):
    project = tmp_path / "p"
    result = murid("train", "--project", project, "--source", "synthcity:/nowhere",
                   "--target", "synthcity:/nowhere", *args)
    assert expected in result.error_line()
    assert not project.exists()  # a refused configuration creates no project


def test_missing_dataset_folder_is_reported_once(tmp_path):
    line = murid("train", "--project", tmp_path / "p", "--source", f"synthcity:{tmp_path / 'nowhere'}",
                 "--target", f"synthcity:{tmp_path / 'nowhere'}", "--preset", "smoke").error_line()
    assert "nowhere does not exist" in line


def test_a_diverging_loss_stops_with_the_setting_to_lower(tmp_path):
    data = synth_data(tmp_path / "data")
    line = murid("train", "--project", tmp_path / "p", "--source", f"synthcity:{data}",
                 "--target", f"synthcity:{data}", "--preset", "smoke", "--set", "optim.lr=1e30").error_line()
    assert "the warmup loss became nan" in line and "--set optim.lr=" in line


def test_resume_on_a_folder_that_is_not_a_project(tmp_path):
    assert "is not a MURID project" in murid("train", "--project", tmp_path, "--resume").error_line()


def test_second_train_on_a_project_with_a_run_is_refused(trained):
    data, root, _ = trained
    before = (root / "metrics.jsonl").read_bytes()
    line = murid("train", "--project", root, "--source", f"synthcity:{data}",
                 "--target", f"synthcity:{data}", "--preset", "smoke").error_line()
    assert "already holds a training run" in line and "--resume" in line
    line = murid("train", "--project", root, "--resume", "--set", "seed=3").error_line()
    assert "--resume continues a run with its own settings" in line
    assert (root / "metrics.jsonl").read_bytes() == before


CHECKPOINT_EVERY = 25  # > LOG_EVERY (10): a loss record can be written after the last checkpoint
ADAPT_ITERATIONS = 150


def test_kill_minus_9_then_resume_continues_from_the_last_checkpoint(trained, tmp_path):
    data, _, _ = trained
    root = tmp_path / "killed"
    log = open(tmp_path / "train.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "murid_engine", "train", "--project", str(root),
         "--source", f"synthcity:{data}", "--target", f"synthcity:{data}", "--preset", "smoke",
         "--stages", "warmup,adapt", "--set", f"checkpoint_every={CHECKPOINT_EVERY}",
         "--set", f"adapt.iterations={ADAPT_ITERATIONS}", "--set", "preview_every=0"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **SUBPROCESS_ENV})
    metrics = root / "metrics.jsonl"
    try:
        # Kill once adapt has logged past its first checkpoint (iteration 25): a record at 30 or
        # later then usually lies beyond the saved iteration, which the resume must rewind.
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "train.log").read_text()
            assert time.monotonic() < deadline, "training did not reach adapt iteration 30 in 60 s"
            lines = metrics.read_bytes().split(b"\n")[:-1] if metrics.exists() else []  # whole lines only
            logged = [json.loads(line) for line in lines if line.strip()]
            if any(r["kind"] == "losses" and r["stage"] == "adapt" and r["iteration"] > CHECKPOINT_EVERY
                   for r in logged):
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert proc.returncode == -signal.SIGKILL

    project = Project.open(root)
    saved = load_checkpoint(project.checkpoint_path())
    assert saved.stage == "adapt" and saved.iteration % CHECKPOINT_EVERY == 0
    assert CHECKPOINT_EVERY <= saved.iteration < ADAPT_ITERATIONS
    logged_before = max(it for stage, it in loss_keys(project) if stage == "adapt")
    assert logged_before - saved.iteration < CHECKPOINT_EVERY  # at most one interval is lost
    assert "teacher" not in project.checkpoints()  # adapt did not finish before the kill

    result = murid("train", "--project", root, "--resume")
    assert result.code == 0, result.err
    assert f"resumed from {project.checkpoint_path()} at adapt iteration {saved.iteration}" in result.out
    keys = loss_keys(project)
    assert len(keys) == len(set(keys)), Counter(keys).most_common(3)
    assert [it for stage, it in keys if stage == "adapt"] == list(range(10, ADAPT_ITERATIONS + 1, 10))
    assert load_checkpoint(project.checkpoint_path("teacher")).iteration == ADAPT_ITERATIONS
    evals = [(r["stage"], r["model"], r["iteration"]) for r in project.read_metrics() if r["kind"] == "eval"]
    assert evals == [("warmup", "source_only", 3), ("adapt", "teacher", ADAPT_ITERATIONS)]


def test_an_edit_wins_over_the_round_label(trained, tmp_path):
    _, root, _ = trained
    project = Project.open(copy_project(root, tmp_path / "edited"))
    r = project.latest_round()
    stems = sorted(project.read_round_info(r).images)
    edited, untouched = stems[0], stems[1]
    labels = read_index_png(project.round_dir(r) / "labels" / f"{edited}.png")
    painted_class = CLASS_NAMES.index("person")
    edit = np.full(labels.shape, EDIT_NONE, np.uint8)
    edit[2:10, 5:20] = painted_class
    edit[20:30, 40:60] = EDIT_IGNORE
    project.save_edit(edited, edit)

    maps = dict(zip([edited, untouched], training_maps(project, r, [edited, untouched])))
    got = maps[edited].numpy()
    assert (got[2:10, 5:20] == HUMAN + painted_class).all()  # the user's class, marked as theirs
    assert (got[20:30, 40:60] == NO_LOSS).all()
    rest = edit == EDIT_NONE
    assert np.array_equal(got[rest], labels[rest])  # unpainted pixels keep the round's label
    untouched_labels = read_index_png(project.round_dir(r) / "labels" / f"{untouched}.png")
    assert np.array_equal(maps[untouched].numpy(), untouched_labels)


def test_a_threshold_override_keeps_every_road_pixel_in_the_next_round(trained, tmp_path):
    _, root, _ = trained
    project = Project.open(copy_project(root, tmp_path / "override"))
    automatic = project.read_round_info(2)
    assert automatic.kept_pixels["road"] < automatic.predicted_pixels["road"]
    project.save_overrides(Overrides(thresholds={"road": 0.0}))

    result = murid("pseudo", "--project", project.root, "--portion", "0.2")
    assert result.code == 0, result.err
    info = project.read_round_info(3)
    assert info.thresholds["road"] == 0.0 and info.overrides == {"road": 0.0}
    assert info.predicted_pixels["road"] > 0
    assert info.kept_pixels["road"] == info.predicted_pixels["road"]
    for stem in info.images:
        pred = read_index_png(project.round_dir(3) / "predictions" / f"{stem}.png")
        labels = read_index_png(project.round_dir(3) / "labels" / f"{stem}.png")
        assert (labels[pred == ROAD] == ROAD).all()
