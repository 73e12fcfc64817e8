"""Fault injection (issue 17): kill -9 a smoke `murid train` at random moments, then --resume."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from murid_engine.bench.faults import FaultConfig, check_project, format_faults, run_faults
from murid_engine.project import Project
from murid_engine.run_config import RunConfig
from smoke_runs import SMOKE_STAGES, murid, synth_data

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")


def test_training_killed_at_random_moments_resumes_without_damage(tmp_path: Path) -> None:
    data = synth_data(tmp_path / "synth")
    # The clock starts at the first metric record (a smoke run trains ~2 s after it on this
    # machine, less on a quick one), so kills land inside training, not before or after it.
    cfg = FaultConfig(runs=2, seed=1, stages=SMOKE_STAGES, kill_window=(0.0, 0.5), timeout_s=300,
                      clock_from="training")
    lines: list[str] = []
    result = run_faults(cfg, data=data, work=tmp_path, log=lines.append)
    summary = result.to_json()
    assert summary["runs"] == 2 and len(lines) == 2
    assert summary["corrupted"] == 0 and summary["failed"] == 0, summary["outcomes"]
    assert summary["recovered"] + summary["finished_before_kill"] == 2
    assert summary["recovered"] >= 1, summary["outcomes"]  # at least one kill really hit a run
    assert format_faults(result).startswith("runs 2  recovered ")


def test_the_check_finds_a_duplicated_record_and_a_temporary_file(tmp_path: Path) -> None:
    cfg_project = Project.create(tmp_path / "p", RunConfig())
    assert check_project(cfg_project.root) is None
    row = {"kind": "losses", "stage": "warmup", "iteration": 10}
    with open(cfg_project.metrics_file, "a") as f:
        f.write(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    assert "appear more than once" in check_project(cfg_project.root)
    cfg_project.metrics_file.unlink()
    (cfg_project.checkpoints_dir / ".latest.pt.abc.tmp").write_bytes(b"x")
    assert "temporary file left" in check_project(cfg_project.root)


def test_bench_faults_refuses_a_bad_run_count(tmp_path: Path) -> None:
    assert "--runs must be 1 or more" in murid("bench", "faults", "--runs", "0").error_line()
    assert "not a SynthCity folder" in murid("bench", "faults", "--data", tmp_path).error_line()
