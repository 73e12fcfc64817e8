"""`murid bench quality` on a smoke-sized SynthCity: every run, its ablation, and its figures."""

from __future__ import annotations

import json

import pytest
import torch

from murid_engine.checkpoint import load_checkpoint
from murid_engine.project import Project
from smoke_runs import murid, one_thread, synth_data


def test_quality_bench_runs_each_ablation_and_reports_each_stage(tmp_path):
    data = synth_data(tmp_path / "synth")
    out = tmp_path / "quality.json"
    with one_thread():
        result = murid("bench", "quality", "--data", data, "--workdir", tmp_path / "runs", "--preset", "smoke",
                       "--runs", "full,no-distill,kd,no-mr,no-curriculum,oracle", "--oracle-iterations", "3",
                       "--threads", "1", "--json", out)
    assert result.code == 0, result.err
    report = json.loads(out.read_text())
    runs = {r["run"]: r for r in report["runs"]}
    assert list(runs) == ["full", "no-distill", "kd", "no-mr", "no-curriculum", "oracle"]
    stages = [(e["stage"], e["round"]) for e in runs["full"]["evaluations"]]
    assert stages == [("warmup", None), ("adapt", None), ("curriculum", 1), ("curriculum", 2), ("distill", None)]
    assert [e["stage"] for e in runs["no-curriculum"]["evaluations"]] == ["warmup", "adapt", "distill"]
    for run in runs.values():
        assert run["final_miou"] == run["evaluations"][-1]["miou"]
        for e in run["evaluations"]:  # mIoU: the mean over the classes present (IoU not None)
            present = [v for v in e["per_class_iou"].values() if v is not None]
            assert e["miou"] == pytest.approx(sum(present) / len(present), abs=1e-12)
        assert f"| {run['run']} | **{100 * run['final_miou']:.1f}** ± 0.0 | {100 * run['final_miou']:.1f} |" in result.out

    configs = {name: Project.open(tmp_path / "runs" / "seed-0" / name).config
               for name in ("full", "no-distill", "kd", "no-mr")}
    assert configs["full"].mr.enabled and not configs["no-mr"].mr.enabled
    assert configs["full"].distill.from_teacher and not configs["no-distill"].distill.from_teacher
    assert configs["kd"].distill.from_teacher
    # the no-distill student learns from the full run's teacher, not from a teacher of its own
    teachers = [load_checkpoint(tmp_path / "runs" / "seed-0" / n / "checkpoints" / "teacher.pt").models["teacher"]
                for n in ("full", "no-distill", "kd")]
    assert all(torch.equal(teachers[0][k], t[k]) for t in teachers[1:] for k in teachers[0])
    assert [e["model"] for e in runs["no-distill"]["evaluations"]] == ["student"]

    # The figures are the scores of the models the runs saved: evaluating them again gives the same.
    for name, last_teacher in (("full", ("curriculum", 2)), ("no-curriculum", ("adapt", None))):
        again = murid("evaluate", "--project", tmp_path / "runs" / "seed-0" / name, "--model", "both",
                      "--threads", "1", "--json", "-")
        assert again.code == 0, again.err
        scores = {m: e["miou"] for m, e in json.loads(again.out)["models"].items()}
        by_stage = {(e["stage"], e["round"]): e["miou"] for e in runs[name]["evaluations"]}
        assert scores["source_only"] == pytest.approx(by_stage[("warmup", None)], abs=1e-12)
        assert scores["teacher"] == pytest.approx(by_stage[last_teacher], abs=1e-12)
        assert scores["student"] == pytest.approx(runs[name]["final_miou"], abs=1e-12)


def test_quality_bench_refuses_a_folder_that_is_not_synthcity(tmp_path):
    line = murid("bench", "quality", "--data", tmp_path, "--workdir", tmp_path / "runs").error_line()
    assert "is not a SynthCity folder" in line
    data = synth_data(tmp_path / "synth")
    line = murid("bench", "quality", "--data", data, "--workdir", tmp_path / "r", "--runs", "full,best").error_line()
    assert "unknown benchmark run 'best'" in line
