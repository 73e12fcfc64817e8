"""Training on two CPU processes (gloo), as `torchrun --nproc_per_node 2 -m murid_engine train`:
the project holds what one process writes, written once by rank 0; the ranks keep equal weights
while drawing different data; a stop asked of rank 0 stops both at one iteration and the run
resumes; sharded pseudo-labelling matches one process's. And the device / precision decisions
that the CUDA path takes, checked on the CPU."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from murid_engine.checkpoint import load_checkpoint
from murid_engine.devices import Precision, resolve_device
from murid_engine.distributed import DistContext, RanksAgree
from murid_engine.errors import UserError
from murid_engine.imageio import read_index_png
from murid_engine.project import Project
from smoke_runs import SUBPROCESS_ENV, shared_trained, synth_data

REPO = Path(__file__).resolve().parents[1]
SMOKE_TARGET_IMAGES = 10  # smoke_runs.SYNTH_ARGS: --n-target 10
DIST_ENV = {**SUBPROCESS_ENV, "MURID_DIST_TIMEOUT_S": "120", "PYTHONPATH": str(REPO)}


def torchrun(*args: object, nproc: int = 2) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
         "-m", "murid_engine", *map(str, args)],
        cwd=REPO, env={**os.environ, **DIST_ENV}, capture_output=True, text=True, timeout=300)


# ------------------------------------------------------------------ devices and precision
def test_precision_follows_the_device():
    cpu = Precision.choose("cpu", amp=True)
    assert (cpu.autocast, cpu.dtype, cpu.loss_scaling, cpu.channels_last) == \
           (False, torch.float32, False, False)
    bf16 = Precision.choose("cuda", amp=True, bf16_supported=True)
    assert (bf16.autocast, bf16.dtype, bf16.loss_scaling, bf16.channels_last) == \
           (True, torch.bfloat16, False, True)
    fp16 = Precision.choose("cuda", amp=True, bf16_supported=False)
    assert (fp16.autocast, fp16.dtype, fp16.loss_scaling) == (True, torch.float16, True)
    full = Precision.choose("cuda", amp=False)
    assert (full.autocast, full.loss_scaling, full.channels_last) == (False, False, True)

    assert not cpu.scaler(torch.device("cpu")).is_enabled()  # CPU: the step is the plain one
    x = torch.rand(2, 3, 8, 8)
    assert cpu.inputs(x) is x
    assert bf16.inputs(x).is_contiguous(memory_format=torch.channels_last)
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    assert bf16.inputs(labels) is labels and bf16.inputs(None) is None
    conv = bf16.model(torch.nn.Conv2d(3, 4, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError):
        resolve_device("cuda:0" if not torch.cuda.is_available() else "nonsense")


def test_one_process_without_torchrun_variables():
    assert DistContext.from_env({}) == DistContext()
    assert DistContext.from_env({"WORLD_SIZE": "1", "RANK": "0"}) == DistContext()
    ctx = DistContext.from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.is_main, ctx.distributed) == (1, 2, 1, False, True)
    with pytest.raises(UserError, match="RANK"):
        DistContext.from_env({"WORLD_SIZE": "2", "RANK": "two"})
    one = DistContext()
    assert one.any(True) and not one.any(False)
    assert one.gather_to_main("x") == ["x"] and one.broadcast_object(3) == 3
    assert one.mean_values({"a": torch.tensor(2.0)}) == {"a": 2.0}
    with pytest.raises(UserError, match="plain"):  # one process: the error itself, not RanksAgree
        one.agree(lambda: (_ for _ in ()).throw(UserError("plain")))
    assert not issubclass(UserError, RanksAgree)


# --------------------------------------------------------------- torchrun, end to end
@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    base = tmp_path_factory.mktemp("ddp")
    data = synth_data(base / "synth")
    root = base / "project"
    result = torchrun("train", "--project", root, "--source", f"synthcity:{data}",
                      "--target", f"synthcity:{data}", "--preset", "smoke")
    assert result.returncode == 0, result.stdout + result.stderr
    return data, root, result


def test_torchrun_writes_one_project_as_one_process_does(two_ranks, tmp_path_factory):
    _, root, result = two_ranks
    project = Project.open(root)
    assert {"latest", "source_only", "teacher", "latest_student", "student"} <= set(project.checkpoints())
    assert result.stdout.count("target-val mIoU") == 5  # rank 0 alone prints the summary

    # latest.pt has exactly the layout of a one-process run's (the unwrapped modules' weights).
    _, single_root, _ = shared_trained(tmp_path_factory)
    ours = load_checkpoint(project.checkpoint_path())
    ref = load_checkpoint(Project.open(single_root).checkpoint_path())
    assert (ours.stage, ours.iteration) == (ref.stage, ref.iteration) == ("curriculum", 6)
    assert set(ours.models) == set(ref.models) == {"teacher", "ema"}
    for name in ours.models:
        assert {k: v.shape for k, v in ours.models[name].items()} == \
               {k: v.shape for k, v in ref.models[name].items()}
    assert set(ours.extra) == set(ref.extra) and set(ours.rng) == set(ref.rng)
    assert ours.optimizer is not None
    assert len(ours.optimizer["param_groups"]) == len(ref.optimizer["param_groups"])

    # One metrics.jsonl, each record once (rank 0 writes; the other rank writes nothing).
    records = project.read_metrics()
    keys = [(r["kind"], r["stage"], r.get("model"), r.get("round"), r["iteration"]) for r in records]
    assert len(keys) == len(set(keys)), Counter(keys).most_common(3)
    assert ("eval", "distill", "student", None, 3) in keys
    scored = [r for r in records if r["kind"] == "eval"]
    assert all(0 < r["miou"] <= 1 for r in scored)

    # The rounds are complete: a label for every target image, written once.
    assert project.rounds() == [1, 2]
    for r in (1, 2):
        info = project.read_round_info(r)
        assert len(info.images) == SMOKE_TARGET_IMAGES
        assert len(list((project.round_dir(r) / "labels").glob("*.png"))) == SMOKE_TARGET_IMAGES
    assert not list(Path(root).rglob("*.tmp*"))  # no rank left a half-written file


def test_torchrun_resume_of_a_finished_run_changes_nothing(two_ranks):
    _, root, _ = two_ranks
    project = Project.open(root)
    before = (project.root / "metrics.jsonl").read_bytes()
    result = torchrun("train", "--project", root, "--resume")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("the student is already distilled") == 1  # said by rank 0 alone
    assert (project.root / "metrics.jsonl").read_bytes() == before


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_to_a_torchrun_job_saves_one_checkpoint_and_the_run_resumes(tmp_path):
    """SIGTERM to the whole job, as Slurm, Docker and a terminal send it: the launcher and both
    ranks get it, and the launcher forwards it to the ranks again. Every rank stops at one
    iteration, rank 0 saves latest.pt (checkpoint_every: 0), and `--resume` finishes the run."""
    data = synth_data(tmp_path / "synth")
    root = tmp_path / "project"
    job = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "murid_engine", "train", "--project", str(root), "--source", f"synthcity:{data}",
         "--target", f"synthcity:{data}", "--preset", "smoke", "--stages", "warmup",
         "--set", "warmup.iterations=40", "--set", "preview_every=0"],
        cwd=REPO, env={**os.environ, **DIST_ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True)  # its own process group, signalled as one job
    try:
        metrics = root / "metrics.jsonl"
        deadline = time.monotonic() + 120
        while not (metrics.is_file() and metrics.stat().st_size > 0):  # the iteration-10 record
            assert job.poll() is None and time.monotonic() < deadline, job.communicate()
            time.sleep(0.05)
        os.killpg(job.pid, signal.SIGTERM)
        out, err = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    # torchrun itself ends in its own SignalException (exit 1); the ranks exit 143 (not visible
    # through it), and neither aborted: no KeyboardInterrupt, no traceback of a rank.
    assert job.returncode != 0
    assert "KeyboardInterrupt" not in err and "[rank" not in err, err
    [stopped] = re.findall(r"stopped at warmup iteration (\d+); checkpoint saved", out)
    assert "murid train --project" in out and "--resume" in out
    ckpt = load_checkpoint(root / "checkpoints" / "latest.pt")
    assert (ckpt.stage, ckpt.iteration) == ("warmup", int(stopped)) and 10 <= ckpt.iteration < 40
    assert not list(root.rglob("*.tmp*"))

    resumed = subprocess.run([sys.executable, "-m", "murid_engine", "train", "--project", str(root),
                              "--resume"], cwd=REPO, env={**os.environ, **DIST_ENV},
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"at warmup iteration {stopped}" in resumed.stdout
    records = Project.open(root).read_metrics()
    keys = [(r["kind"], r["stage"], r.get("model"), r["iteration"]) for r in records]
    assert len(keys) == len(set(keys)), Counter(keys).most_common(3)
    assert ("eval", "warmup", "source_only", 40) in keys


def test_torchrun_reports_a_mistake_once(tmp_path):
    result = torchrun("train", "--project", tmp_path / "p", "--source", "synthcity:/nowhere",
                      "--target", "synthcity:/nowhere", "--preset", "smoke", "--set", "adapt.iterations=many")
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("murid train: error:")]
    assert len(ours) == 1 and "many" in ours[0], result.stderr
    assert "[rank" not in result.stderr  # no rank died with a traceback of its own
    assert not (tmp_path / "p").exists()


# -------------------------------------------- two ranks in-process: stop, resume, labels
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _digest(tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _two_rank_worker(rank: int, port: int, root: str, out: str) -> None:
    """Rank `rank` of 2: train until rank 0 alone is asked to stop, resume, label a round."""
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                       "MURID_DIST_TIMEOUT_S": "120"})
    torch.set_num_threads(1)
    from murid_engine.distributed import distributed_session
    from murid_engine.jobs import Control, Losses, NullSink
    from murid_engine.training.round_labels import label_round
    from murid_engine.training.trainer import TeacherTrainer

    report: dict = {}
    with distributed_session() as dist:
        project = Project.open(root)
        control = Control()

        def stop_at_adapt_2(event) -> None:  # the user presses Stop on rank 0 only
            if isinstance(event, Losses) and event.stage == "adapt" and event.iteration == 2:
                control.stop()

        trainer = TeacherTrainer(project, stop_at_adapt_2 if rank == 0 else NullSink(), control, dist=dist)
        report["first_run"] = trainer.run()
        report["params"] = _digest(trainer.model.parameters())
        report["bn_stats"] = _digest(b for n, b in trainer.model.named_buffers() if "running" in n)
        dist.barrier()  # rank 0's stop checkpoint is on disk
        saved = load_checkpoint(project.checkpoint_path())
        report["stopped_at"] = [saved.stage, saved.iteration]

        resumed = TeacherTrainer(project, NullSink(), Control(), dist=dist)
        report["resumed_run"] = resumed.run(resume=True)
        report["resumed_params"] = _digest(resumed.model.parameters())

        # Sharded pseudo-labelling (round 8) against one process labelling alone (round 9).
        teacher = resumed.banked(resumed.ema)
        label_round(project, 8, 0.5, teacher, resumed.device, dist=dist)
        if dist.is_main:
            label_round(project, 9, 0.5, teacher, resumed.device)
        dist.barrier()
    Path(out, f"rank{rank}.json").write_text(json.dumps(report))


def test_two_ranks_keep_equal_weights_stop_together_and_resume(tmp_path):
    from murid_engine.config import apply_overrides, load_preset

    data = synth_data(tmp_path / "synth")
    # MR's correspondence loss on: its attention maps come out of the DDP forward as well, and
    # the equal weights below then cover the gradients that loss gives the attention.
    cfg = apply_overrides(load_preset("smoke"), [
        f"data.source=synthcity:{data}", f"data.target=synthcity:{data}",
        "stages=warmup,adapt,curriculum", "adapt.iterations=4", "preview_every=0",
        "mr.match_weight=0.1"])
    root = tmp_path / "project"
    Project.create(root, cfg.validate())
    out = tmp_path / "out"
    out.mkdir()
    torch.multiprocessing.spawn(_two_rank_worker, args=(_free_port(), str(root), str(out)), nprocs=2)
    r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))

    # Only rank 0 was asked to stop; both stopped, at the same iteration (one checkpoint).
    assert r0["first_run"] is False and r1["first_run"] is False
    assert r0["stopped_at"] == ["adapt", 2]
    project = Project.open(root)
    records = project.read_metrics()
    # After two adapt steps the gradients were averaged: equal weights on both ranks. Their
    # BatchNorm statistics, updated by each rank's own batches, differ: the ranks drew
    # different data.
    assert r0["params"] == r1["params"]
    assert r0["bn_stats"] != r1["bn_stats"]

    assert r0["resumed_run"] is True and r1["resumed_run"] is True
    assert r0["resumed_params"] == r1["resumed_params"]
    keys = [(r["kind"], r["stage"], r.get("model"), r["iteration"]) for r in records]
    assert len(keys) == len(set(keys)), Counter(keys).most_common(3)
    assert ("eval", "curriculum", "teacher", 6) in keys and ("eval", "adapt", "teacher", 4) in keys
    assert project.rounds() == [1, 2, 8, 9]

    # Each rank labelled its half; rank 0 wrote the gathered round: the same as one process.
    sharded, alone = project.read_round_info(8), project.read_round_info(9)
    assert list(sharded.images) == list(alone.images) and len(sharded.images) == SMOKE_TARGET_IMAGES
    for stem in alone.images:
        a = read_index_png(project.round_dir(8) / "predictions" / f"{stem}.png")
        b = read_index_png(project.round_dir(9) / "predictions" / f"{stem}.png")
        assert (a == b).mean() > 0.999  # batches of other sizes may move a float's last bit
        ca = read_index_png(project.round_dir(8) / "confidence" / f"{stem}.png").astype(int)
        cb = read_index_png(project.round_dir(9) / "confidence" / f"{stem}.png").astype(int)
        assert np.abs(ca - cb).max() <= 1
