"""The project folder and checkpoints: layout, atomic writes, resume state and clear errors."""

from __future__ import annotations

import ast
import io
import json
import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import murid_engine
from murid_engine import imageio
from murid_engine.checkpoint import FORMAT, capture_rng, load_checkpoint, restore_rng, save_checkpoint
from murid_engine.config import to_dict
from murid_engine.curriculum.round_summary import RoundSummary, write_round_summary
from murid_engine.errors import UserError
from murid_engine.models import DeepLabV2, ModelConfig
from murid_engine.project import EDIT_IGNORE, EDIT_NONE, Overrides, Project
from murid_engine.run_config import RunConfig


def _config(seed: int = 7) -> RunConfig:
    cfg = RunConfig(seed=seed, checkpoint_every=5)
    cfg.data.target = "synthcity:/data/synth"
    cfg.curriculum.portions = (0.25, 0.5)
    return cfg


def test_create_then_open_restores_the_configuration(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    created = Project.create(root, _config())
    for name in ("checkpoints", "rounds", "edits", "exports", "reports"):
        assert (root / name).is_dir()
    stored = json.loads((root / "project.json").read_text())
    assert stored["format"] == "murid-project" and stored["config"]["seed"] == 7
    opened = Project.open(root)
    assert opened.config == created.config == _config()
    opened.save_config(_config(seed=11))
    assert Project.open(root).config.seed == 11
    assert Project.is_project(root) and not Project.is_project(tmp_path)


def test_create_accepts_an_empty_folder_and_refuses_a_used_one(tmp_path: Path) -> None:
    (empty := tmp_path / "empty").mkdir()
    (empty / ".DS_Store").write_bytes(b"x")  # dropped by a file browser: the folder is still unused
    Project.create(empty, _config())
    with pytest.raises(UserError, match="already a MURID project"):
        Project.create(empty, _config())

    (used := tmp_path / "photos").mkdir()
    (used / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty and is not a MURID project") as err:
        Project.create(used, _config())
    assert str(used) in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.name for p in used.iterdir()) == ["notes.txt"]
    assert (used / "notes.txt").read_text() == "mine"


def test_open_names_the_path_of_what_is_not_a_project(tmp_path: Path) -> None:
    data = {"format": "murid-project", "version": 1, "config": {**to_dict(_config()), "sede": 1}}
    cases = [(None, "missing does not exist"), (None, r"not a MURID project \(it has no project.json\)"),
             ("{ not json", "project.json is not valid JSON"), (json.dumps(data), "unknown config key 'sede'"),
             (json.dumps({**data, "version": 9}), "format version 9")]
    for i, (text, pattern) in enumerate(cases):
        if text is not None:
            (tmp_path / "project.json").write_text(text)
        with pytest.raises(UserError, match=pattern) as err:
            Project.open(tmp_path / "missing" if i == 0 else tmp_path)
        assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)


def test_metrics_survive_a_torn_last_line(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "p", _config())
    assert project.read_metrics() == []
    for it in range(3):
        project.append_metrics({"stage": "warmup", "iteration": it, "loss": np.float32(1.5) / (it + 1)})
    with open(project.metrics_file, "ab") as f:  # what a kill -9 in the middle of a write leaves
        f.write(b'{"stage": "warmup", "itera')
    records = project.read_metrics()
    assert [r["iteration"] for r in records] == [0, 1, 2]
    assert records[0]["loss"] == 1.5
    project.append_metrics({"stage": "warmup", "iteration": 3})  # the torn tail is cut, not glued to
    assert [r["iteration"] for r in project.read_metrics()] == [0, 1, 2, 3]
    assert project.rewind_metrics(lambda r: r["iteration"] <= 1) == 2
    assert [r["iteration"] for r in project.read_metrics()] == [0, 1]
    with open(project.metrics_file, "ab") as f:
        f.write(b"garbage\n{}\n")
    with pytest.raises(UserError, match="metrics.jsonl line 3 is not a JSON object"):
        project.read_metrics()


def _round_summary(r: int, portion: float) -> RoundSummary:
    return RoundSummary(round=r, portion=portion, cap=None, num_classes=19, automatic_thresholds={},
                        confidence_histogram={}, images={})


def test_rounds_are_listed_once_complete(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "p", _config())
    assert project.rounds() == [] and project.latest_round() is None
    assert project.round_dir(3).name == "round_03"
    write_round_summary(project.round_dir(1, create=True), _round_summary(1, 0.25))
    project.round_dir(2, create=True)  # being written: not listed until its round.json exists
    assert project.rounds() == [1] and project.rounds(complete_only=False) == [1, 2]
    write_round_summary(project.round_dir(2), _round_summary(2, 0.5))
    assert project.latest_round() == 2
    assert project.read_round_info(2).portion == 0.5
    with pytest.raises(UserError, match="round 4 .* is not complete"):
        project.read_round_info(4)
    with pytest.raises(ValueError):
        project.round_dir(0)


def test_edits_and_overrides_round_trip(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "p", _config())
    edit = np.full((4, 6), EDIT_NONE, np.uint8)
    edit[0, :2] = 13  # painted 'car'
    edit[1, 0] = EDIT_IGNORE  # painted 'ignore'
    project.save_edit("aachen_000000_000019", edit)
    loaded = project.load_edit("aachen_000000_000019")
    assert loaded is not None and np.array_equal(loaded, edit)
    assert project.edited_stems() == ["aachen_000000_000019"] and project.load_edit("other") is None
    project.save_edit("aachen_000000_000019", np.full((4, 6), EDIT_NONE, np.uint8))  # all erased
    assert project.edited_stems() == []
    with pytest.raises(ValueError):
        project.save_edit("x", np.full((2, 2), 19, np.uint8))
    with pytest.raises(UserError, match="not a valid image name"):
        project.edit_path("../escape")

    assert project.load_overrides() == Overrides()
    project.save_overrides(Overrides({"car": 0.8, "road": 0.95}, portion=0.4))
    assert Project.open(project.root).load_overrides() == Overrides({"car": 0.8, "road": 0.95}, 0.4)
    with pytest.raises(UserError, match="unknown class 'cars'"):
        project.save_overrides(Overrides({"cars": 0.5}))


def _trained_model() -> tuple[DeepLabV2, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = DeepLabV2(ModelConfig(backbone="tiny"))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model(torch.rand(2, 3, 32, 32))["out"].mean().backward()
    opt.step()  # momentum buffers and BN running statistics now differ from a fresh model
    return model, opt


def test_checkpoint_round_trip_restores_weights_optimizer_iteration_and_rng(tmp_path: Path) -> None:
    model, opt = _trained_model()
    np_rng = np.random.default_rng(3)
    np_rng.random(5)
    rng = capture_rng(np_rng)
    expected = (torch.rand(4), np_rng.random(4), random.random(), np.random.rand(2))
    path = tmp_path / "latest.pt"
    save_checkpoint(path, config=_config(), models={"teacher": model}, optimizer=opt,
                    stage="adapt", iteration=42, rng=rng, extra={"round": 1, "best": [0.5, None]})

    ckpt = load_checkpoint(path)
    assert (ckpt.stage, ckpt.iteration, ckpt.extra) == ("adapt", 42, {"round": 1, "best": [0.5, None]})
    assert ckpt.config == _config()
    fresh = DeepLabV2(ckpt.config.model)  # the checkpoint rebuilds its model alone
    fresh.load_state_dict(ckpt.model_state("teacher"))
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    fresh_opt = torch.optim.SGD(fresh.parameters(), lr=0.5)
    fresh_opt.load_state_dict(ckpt.optimizer)
    assert fresh_opt.param_groups[0]["lr"] == 0.01
    for p_old, p_new in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(opt.state[p_old]["momentum_buffer"], fresh_opt.state[p_new]["momentum_buffer"])
    with pytest.raises(UserError, match="holds no 'student' weights"):
        ckpt.model_state("student")

    other = np.random.default_rng(99)  # a different generator, restored in place
    torch.rand(7), random.random(), np.random.rand(3)
    restore_rng(ckpt.rng, other)
    again = (torch.rand(4), other.random(4), random.random(), np.random.rand(2))
    assert torch.equal(again[0], expected[0]) and np.array_equal(again[1], expected[1])
    assert again[2] == expected[2] and np.array_equal(again[3], expected[3])
    with pytest.raises(ValueError, match="PCG64"):
        restore_rng(ckpt.rng, np.random.Generator(np.random.MT19937(0)))


def _expect_error(path: Path, pattern: str) -> None:
    with pytest.raises(UserError, match=pattern) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_damaged_and_foreign_checkpoints_give_one_clear_sentence(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    with pytest.raises(TypeError, match=r"checkpoint.extra.array is a ndarray"):  # refused when saved
        save_checkpoint(bad, config=_config(), models={}, stage="warmup", iteration=0, extra={"array": np.zeros(3)})
    assert not bad.exists()
    save_checkpoint(bad, config=_config(), models={"student": {"w": torch.zeros(2)}}, stage="distill",
                    iteration=1, extra={"probe": torch.full((256,), 3.0)})
    data = bad.read_bytes()
    _expect_error(tmp_path / "nope.pt", "does not exist")
    bad.write_bytes(b"")
    _expect_error(bad, "empty file")
    bad.write_bytes(b"\x00garbage" * 100)
    _expect_error(bad, "not a MURID checkpoint")
    bad.write_bytes(data[: len(data) // 2])
    _expect_error(bad, "corrupt or truncated")
    flipped = bytearray(data)  # one bit flipped inside a tensor's bytes: caught by the CRC
    at = flipped.index(struct.pack("<f", 3.0) * 64) + 100
    flipped[at] ^= 0x01
    bad.write_bytes(bytes(flipped))
    _expect_error(bad, "corrupt or truncated .*checksum")

    torch.save(DeepLabV2(ModelConfig(backbone="tiny")).state_dict(), bad)
    _expect_error(bad, "not a MURID checkpoint .*plain state dict")
    torch.save({"model": {"w": torch.zeros(1)}, "epoch": 3}, bad)
    _expect_error(bad, "not a MURID checkpoint .*no MURID format marker")
    torch.save({"format": FORMAT, "version": 1, "array": np.zeros(2)}, bad)
    _expect_error(bad, "refused for safety: it holds Python objects")

    payload = torch.load(io.BytesIO(data), weights_only=True)
    torch.save({**payload, "version": 2}, bad)
    _expect_error(bad, "format version 2, newer")
    torch.save({**payload, "config": {**payload["config"], "seed": -1}}, bad)
    _expect_error(bad, "seed must be 0 or more")
    torch.save({**payload, "models": {"student": [1, 2]}}, bad)
    _expect_error(bad, "corrupt or truncated .*'student'")


def _fail_midway(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make atomic_write_bytes's write put half the bytes on disk, then fail (a full disk)."""

    class HalfWriter(io.FileIO):
        def write(self, data: bytes) -> int:
            super().write(bytes(data[: len(data) // 2]))
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(imageio.os, "fdopen", lambda fd, mode: HalfWriter(fd, "wb"))


def test_an_interrupted_write_leaves_the_old_files_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = Project.create(tmp_path / "p", _config(seed=1))
    model, _ = _trained_model()
    path = project.checkpoint_path()
    save_checkpoint(path, config=project.config, models={"teacher": model}, stage="warmup", iteration=5)
    with monkeypatch.context() as m:
        _fail_midway(m)
        with pytest.raises(OSError):
            project.save_config(_config(seed=2))
        with pytest.raises(OSError):
            save_checkpoint(path, config=project.config, models={"teacher": model}, stage="warmup", iteration=10)
    assert Project.open(project.root).config.seed == 1
    assert load_checkpoint(path).iteration == 5
    assert not list(project.root.rglob("*.tmp"))
    assert project.checkpoints() == ["latest"] and project.latest_checkpoint() == path


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_kill_9_while_saving_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    Project.create(tmp_path / "p", _config())
    script = textwrap.dedent(f"""
        import itertools, torch
        from murid_engine.checkpoint import capture_rng, save_checkpoint
        from murid_engine.project import Project
        project = Project.open({str(tmp_path / "p")!r})
        torch.manual_seed(0)
        weights = {{"w": torch.randn(256, 1024)}}  # 1 MiB: a save takes long enough to be hit
        for it in itertools.count(1):
            weights["w"] += 1
            save_checkpoint(project.checkpoint_path(), config=project.config, models={{"teacher": weights}},
                            stage="warmup", iteration=it, rng=capture_rng())
            project.append_metrics({{"iteration": it, "loss": float(it)}})
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(murid_engine.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    project = Project.open(tmp_path / "p")
    deadline = time.monotonic() + 60
    while len(project.read_metrics()) < 5 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.123)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    ckpt = load_checkpoint(project.checkpoint_path())
    logged = [r["iteration"] for r in project.read_metrics()]
    assert logged == list(range(1, len(logged) + 1)) and len(logged) >= 5
    # At most the iteration being saved or logged when killed is lost.
    assert ckpt.iteration in (logged[-1], logged[-1] + 1)
    torch.manual_seed(0)  # the weights are those of the saved iteration, whole
    assert torch.allclose(ckpt.models["teacher"]["w"], torch.randn(256, 1024) + ckpt.iteration, atol=1e-3)
    # Whatever the kill left, plus one planted stale temp file, goes; files not of that pattern stay.
    killed_left = len(list(project.root.rglob(".*.tmp")))
    (project.root / "rounds" / ".labels.abc123.tmp").write_bytes(b"torn")
    keep = [project.root / "reports" / "notes.tmp", project.root / "reports" / ".hidden"]
    for path in keep:
        path.write_bytes(b"keep")
    assert project.clean_temp_files() == killed_left + 1
    assert not list(project.root.rglob(".*.tmp")) and all(p.is_file() for p in keep)


def _unsafe_torch_loads(source: str) -> list[int]:
    """Lines of `torch.load(...)` calls that lack weights_only=True."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        func = getattr(node, "func", None)
        if isinstance(func, ast.Attribute) and func.attr == "load" and getattr(func.value, "id", "") == "torch":
            flag = next((k.value for k in node.keywords if k.arg == "weights_only"), None)
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                bad.append(node.lineno)
    return bad


def test_the_engine_never_calls_torch_load_without_weights_only() -> None:
    assert _unsafe_torch_loads("import torch\ntorch.load(p)\ntorch.load(\n  p, weights_only=False)\n") == [2, 3]
    assert _unsafe_torch_loads("torch.load(p, map_location='cpu', weights_only=True)") == []
    engine = Path(murid_engine.__file__).parent
    offenders = []
    for file in sorted(engine.rglob("*.py")):
        text = file.read_text(encoding="utf-8")
        offenders += [f"{file.relative_to(engine)}:{n}" for n in _unsafe_torch_loads(text)]
        # An alias (`from torch import load`, `load = torch.load`) would slip past the AST check.
        assert "from torch import load" not in text and "= torch.load\n" not in text, file
    assert offenders == [], f"torch.load without weights_only=True: {offenders}"
