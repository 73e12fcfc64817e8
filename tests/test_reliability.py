"""A project survives a second writer, SIGTERM, a full disk, a damaged checkpoint (issue 17)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import murid_engine
from murid_engine import imageio
from murid_engine.checkpoint import load_checkpoint, previous_path, save_checkpoint
from murid_engine.cli import evaluate_cmd
from murid_engine.cli.predict_cmd import output_names
from murid_engine.data import open_dataset
from murid_engine.errors import UserError
from murid_engine.evaluation import evaluate_predictions
from murid_engine.interrupts import REPEAT_WINDOW_S, stop_exit_code, stop_on_interrupt
from murid_engine.jobs import Control
from murid_engine.project import Project
from murid_engine.project_lock import ProjectLocked, lock_holder, lock_project
from murid_engine.run_config import RunConfig
from layouts import rgb_image, write_cityscapes
from smoke_runs import SMOKE_STAGES, SUBPROCESS_ENV, hold_lock_elsewhere, murid, synth_data

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX locks and signals")

ENV = {**os.environ, **SUBPROCESS_ENV, "PYTHONPATH": str(Path(murid_engine.__file__).parents[1])}


def _config() -> RunConfig:
    cfg = RunConfig()
    cfg.model.backbone = "tiny"
    return cfg.validate()


def _wait_for(condition, seconds: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# ------------------------------------------------------------------------------------- the lock


def test_a_second_writer_is_refused_while_the_first_runs_and_not_after_a_kill_9(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "p", _config())
    holder = hold_lock_elsewhere(project.root)
    try:
        with pytest.raises(ProjectLocked, match=rf"in use by process {holder.pid} \(murid train --project"):
            lock_project(project.root)
        assert lock_holder(project.root).pid == holder.pid
        # the app's edits and every writing command are refused too, in one sentence, exit 2
        with pytest.raises(ProjectLocked, match=str(holder.pid)):
            project.save_edit("img", np.zeros((2, 2), np.uint8))
        for argv in (("pseudo", "--project", project.root), ("distill", "--project", project.root),
                     ("train", "--project", project.root, "--resume")):
            line = murid(*argv).error_line()
            assert f"in use by process {holder.pid}" in line and "since" in line, line
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lock_holder(project.root) is None  # the kernel freed it with the process
    with lock_project(project.root) as lock:
        assert lock_holder(project.root).pid == os.getpid()
        with pytest.raises(ProjectLocked):  # one job at a time within a process too
            lock_project(project.root)
        project.save_edit("img", np.zeros((2, 2), np.uint8))  # its own holder may save
    assert lock.holder.pid == os.getpid() and lock_holder(project.root) is None


# ------------------------------------------------------------------------------------- signals


def test_sigterm_and_sighup_stop_like_ctrl_c_and_set_the_exit_code() -> None:
    control = Control()
    with stop_on_interrupt(control):
        os.kill(os.getpid(), signal.SIGTERM)
        _wait_for(lambda: control.stopped, 5, "the stop")
        assert stop_exit_code() == 143
        with pytest.raises(KeyboardInterrupt):  # the second one aborts
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(1)
    assert stop_exit_code() == 129
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with stop_on_interrupt(Control()):
        assert stop_exit_code() == 130  # each job starts afresh


def test_one_stop_delivered_twice_is_one_stop() -> None:
    # Slurm or a terminal signals the whole job, and torchrun forwards the signal to its ranks
    # again: the echo must not abort the checkpoint that the first one asked for.
    control = Control()
    with stop_on_interrupt(control):
        os.kill(os.getpid(), signal.SIGTERM)
        _wait_for(lambda: control.stopped, 5, "the stop")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the handler has run: no KeyboardInterrupt
        assert stop_exit_code() == 143
        time.sleep(REPEAT_WINDOW_S)
        with pytest.raises(KeyboardInterrupt):  # a real second request, later on, still aborts
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)


def test_sigterm_saves_a_checkpoint_with_checkpoint_every_0(tmp_path: Path) -> None:
    data = synth_data(tmp_path / "synth")
    project = tmp_path / "p"
    cmd = [sys.executable, "-m", "murid_engine", "train", "--project", str(project),
           "--source", f"synthcity:{data}", "--target", f"synthcity:{data}", "--preset", "smoke",
           "--stages", "warmup", "--set", "warmup.iterations=100000"]  # checkpoint_every: 0
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    metrics = project / "metrics.jsonl"
    _wait_for(lambda: metrics.is_file() and metrics.stat().st_size > 0, 120, "the first loss record")
    assert not (project / "checkpoints" / "latest.pt").exists()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out
    assert "--resume" in out
    ckpt = load_checkpoint(project / "checkpoints" / "latest.pt")
    assert ckpt.stage == "warmup" and 10 <= ckpt.iteration < 100000


# ------------------------------------------------------------------------------ rolling checkpoints


def _save(path: Path, it: int) -> None:
    save_checkpoint(path, config=_config(), models={"teacher": {"w": torch.full((64,), float(it))}},
                    stage="warmup", iteration=it)


def test_a_damaged_latest_falls_back_to_the_previous_checkpoint(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "p", _config())
    latest = project.checkpoint_path()
    _save(latest, 10)
    assert not previous_path(latest).exists()
    _save(latest, 20)
    prev = previous_path(latest)
    assert prev.name == "latest.prev.pt" and load_checkpoint(prev).iteration == 10
    assert project.latest_checkpoint() == latest and project.checkpoints() == ["latest"]
    assert project.resume_checkpoint().note is None
    for i, it in enumerate((10, 20, 30, 40)):  # records of two iterations past the previous one
        project.append_metrics({"kind": "losses", "stage": "warmup", "iteration": it, "i": i})

    data = latest.read_bytes()
    latest.write_bytes(data[: len(data) // 2])  # the disk damaged latest.pt
    with pytest.raises(UserError, match=rf"corrupt or truncated .*continues from the previous one, {prev}"):
        load_checkpoint(latest)
    assert project.latest_checkpoint() == prev
    point = project.resume_checkpoint()
    assert point.path == prev and point.checkpoint.iteration == 10
    assert f"{latest} is unreadable" in point.note and "latest.prev.pt (warmup iteration 10)" in point.note
    assert "continuing from the previous checkpoint latest.prev.pt" in project.resume_note()
    # the trainers rewind to the checkpoint they load: the fallback's iteration, not latest.pt's
    it = point.checkpoint.iteration
    project.rewind_metrics(lambda r: r.get("iteration", 0) <= it)
    assert [r["iteration"] for r in project.read_metrics()] == [10]

    prev.unlink()  # nothing to fall back to: the advice names no file that does not exist
    with pytest.raises(UserError, match="corrupt or truncated .*no earlier resume point: delete it") as err:
        project.resume_checkpoint()
    assert "prev" not in str(err.value)


def test_a_re_evaluated_stage_replaces_its_record(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "p", _config())
    record = {"kind": "eval", "stage": "adapt", "model": "teacher", "iteration": 3, "round": None}
    project.append_metrics({**record, "miou": 0.1})
    project.append_metrics({"kind": "losses", "stage": "adapt", "iteration": 3})
    project.append_metrics({**record, "miou": 0.2})
    assert [(r["kind"], r.get("miou")) for r in project.read_metrics()] == [("losses", None), ("eval", 0.2)]


# ------------------------------------------------------------------------------------- full disk


def _disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    class HalfWriter(__import__("io").FileIO):
        def write(self, data: bytes) -> int:
            super().write(bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(imageio.os, "fdopen", lambda fd, mode: HalfWriter(fd, "wb"))


def test_a_full_disk_is_one_sentence_naming_the_file_and_leaves_nothing_half_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = synth_data(tmp_path / "synth")
    folder = tmp_path / "new"
    project = Project.create(tmp_path / "p", _config())
    _disk_full(monkeypatch)
    line = murid("train", "--project", folder, "--source", f"synthcity:{data}", "--target",
                 f"synthcity:{data}", "--preset", "smoke").error_line()
    assert line.startswith(f"murid train: error: cannot write {folder / 'project.json'}: the disk is full (")
    assert "needed" in line and "free" in line, line
    assert not folder.exists()  # no skeleton, no temporary file

    before = project.project_file.read_bytes()
    monkeypatch.setattr(evaluate_cmd, "_run_project",
                        lambda args: project.save_config(_config()))  # a command that writes
    line = murid("evaluate", "--project", project.root).error_line()
    assert f"cannot write {project.project_file}: the disk is full" in line
    assert project.project_file.read_bytes() == before
    assert not list(project.root.rglob("*.tmp"))


def test_the_free_space_said_is_the_one_at_the_failed_write(tmp_path: Path, monkeypatch) -> None:
    # synth removes what it wrote when a write fails; the sentence must not quote the space that
    # clean-up gave back ("40 KiB needed, 12 MiB free"), and only train and distill say --resume.
    _disk_full(monkeypatch)
    cleaned_up = []
    monkeypatch.setattr(imageio.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(
        10**9, 0, 10**9 if cleaned_up else 1000))
    target = tmp_path / "p" / "project.json"

    def write_then_clean_up(args) -> None:
        try:
            imageio.atomic_write_bytes(target, b"{}" * 2000)
        except OSError:
            cleaned_up.append(True)  # what synth does: its earlier files removed, space given back
            raise

    monkeypatch.setattr(evaluate_cmd, "_run_project", write_then_clean_up)
    line = murid("evaluate", "--project", tmp_path).error_line()
    assert line.endswith("the disk is full (3.9 KiB needed, 1000 bytes free); free some space and run "
                         "the command again"), line


@pytest.mark.parametrize("code, said", [(errno.EROFS, "the file system is read-only"),
                                         (errno.EACCES, "permission denied"),
                                         (errno.EDQUOT, "the disk quota is exhausted")])
def test_read_only_and_permission_errors_are_one_sentence(tmp_path: Path, monkeypatch, code, said) -> None:
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(imageio.tempfile, "mkstemp", refuse)
    target = tmp_path / "p" / "project.json"
    monkeypatch.setattr(evaluate_cmd, "_run_project",
                        lambda args: imageio.atomic_write_bytes(target, b"{}"))
    line = murid("evaluate", "--project", tmp_path).error_line()
    assert line.startswith(f"murid evaluate: error: cannot write {target}: {said}"), line


# ------------------------------------------------------------------------------------- messages


def test_another_format_under_a_png_name_says_so(tmp_path: Path) -> None:
    ok, jpeg = cv2.imencode(".jpg", np.zeros((4, 4, 3), np.uint8))
    path = tmp_path / "image.png"
    path.write_bytes(jpeg.tobytes())
    for read in (imageio.read_rgb, imageio.read_index_png):
        with pytest.raises(UserError, match=r"image\.png is a JPEG file under a \.png name"):
            read(path)


def test_a_failed_first_train_removes_the_skeleton_it_made(tmp_path: Path) -> None:
    data = synth_data(tmp_path / "synth")
    image = data / "source" / "images" / "00003.png"
    image.write_bytes(image.read_bytes()[:100])  # a dataset problem found once training starts
    for folder, kept in ((tmp_path / "new", False), (tmp_path / "made_by_user", True)):
        if kept:
            folder.mkdir()
        line = murid("train", "--project", folder, "--source", f"synthcity:{data}",
                     "--target", f"synthcity:{data}", "--preset", "smoke").error_line()
        assert "00003.png is not a readable image" in line
        assert folder.exists() == kept and (not kept or not any(folder.iterdir()))


def test_evaluate_warns_once_about_another_aspect_ratio(tmp_path: Path) -> None:
    ids = np.full((4, 8), 7, np.uint8)  # road
    gt = write_cityscapes(tmp_path / "cs", "val", [("ulm", f"ulm_00000{i}_000001", rgb_image(4, 8), ids)
                                                   for i in range(2)])
    pred = tmp_path / "pred"
    pred.mkdir()
    for i in range(2):
        cv2.imwrite(str(pred / f"ulm_00000{i}_000001.png"), np.zeros((4, 4), np.uint8))  # square
    warnings: list[str] = []
    evaluate_predictions(pred, open_dataset(f"cityscapes:{gt}", "val"), warn=warnings.append)
    assert len(warnings) == 1 and "ulm_000000_000001.png is 4x4 and its label 8x4" in warnings[0]
    for i in range(2):
        cv2.imwrite(str(pred / f"ulm_00000{i}_000001.png"), np.zeros((2, 4), np.uint8))  # half size
    warnings.clear()
    evaluate_predictions(pred, open_dataset(f"cityscapes:{gt}", "val"), warn=warnings.append)
    assert warnings == []
    result = murid("evaluate", "--pred", pred, "--gt", f"cityscapes:{gt}")
    assert result.code == 0 and result.err.count("warning") == 0


def test_predict_names_cityscapes_style_images_by_their_stem() -> None:
    assert output_names("aachen_000000_000019_leftImg8bit", True) == [
        "aachen_000000_000019.png", "aachen_000000_000019_color.png"]
    assert output_names("photo", False) == ["photo.png"]


def test_a_metrics_append_on_a_full_disk_leaves_no_torn_line(tmp_path: Path, monkeypatch) -> None:
    project = Project.create(tmp_path / "p", _config())
    project.append_metrics({"kind": "losses", "stage": "warmup", "iteration": 10})

    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as err:
        project.append_metrics({"kind": "losses", "stage": "warmup", "iteration": 20})
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert err.value.filename == str(project.metrics_file)
    assert project.metrics_file.read_bytes().count(b"\n") == 1
    assert [r["iteration"] for r in project.read_metrics()] == [10]


def test_the_distillation_resume_point_keeps_its_predecessor_too(tmp_path: Path) -> None:
    path = tmp_path / "latest_student.pt"
    _save(path, 1)
    _save(path, 2)
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(UserError, match="move latest_student.prev.pt over latest_student.pt"):
        load_checkpoint(path)
    teacher = tmp_path / "teacher.pt"  # a stage's final file keeps no predecessor
    _save(teacher, 1)
    _save(teacher, 2)
    assert not previous_path(teacher).exists()
