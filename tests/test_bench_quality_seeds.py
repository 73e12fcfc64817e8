"""`murid bench quality` with baselines and seeds: the table's figures, and the same seed twice."""

from __future__ import annotations

import json
import statistics

from murid_engine.project import Project
from smoke_runs import murid, one_thread, synth_data

RUNS = "source-only,adabn,mixstyle,dacs,oracle"


def _bench(data, workdir, out, *extra):
    with one_thread():
        result = murid("bench", "quality", "--data", data, "--workdir", workdir, "--preset", "smoke",
                       "--runs", RUNS, "--seeds", "0,1", "--oracle-iterations", "3", "--threads", "1",
                       "--json", out, *extra)
    assert result.code == 0, result.err
    return result, json.loads(out.read_text())


def _metrics(workdir, seed, run):
    rows = Project.open(workdir / f"seed-{seed}" / run).read_metrics()
    return [{k: v for k, v in r.items() if k != "time_s"} for r in rows]


def test_baselines_and_seeds_side_by_side_and_the_same_seed_gives_the_same_figures(tmp_path):
    data = synth_data(tmp_path / "synth")
    result, report = _bench(data, tmp_path / "a", tmp_path / "a.json", "--placement", "shared")
    assert [(r["run"], r["seed"]) for r in report["runs"]] == [
        (run, seed) for seed in (0, 1) for run in RUNS.split(",")]
    for row in report["summary"]:
        figures = [r["final_miou"] for r in report["runs"] if r["run"] == row["run"]]
        assert row["miou"] == figures and row["seeds"] == [0, 1]
        assert row["mean"] == statistics.fmean(figures) and row["std"] == statistics.stdev(figures)
        line = f"| {row['run']} | **{100 * row['mean']:.1f}** ± {100 * row['std']:.1f} |"
        assert line in result.out
    assert "wall times not given" in result.out  # shared placement: no wall times in the table
    by = {(r["run"], r["seed"]): r for r in report["runs"]}
    # mixstyle is the dacs run's first stage; dacs's final figure is its own stage's
    assert [e["stage"] for e in by[("dacs", 0)]["evaluations"]] == ["mixstyle", "dacs"]
    assert by[("mixstyle", 0)]["final_miou"] == by[("dacs", 0)]["evaluations"][0]["miou"]
    assert by[("oracle", 0)]["evaluations"][0]["model"] == "oracle"
    # adabn changes the source-only network's statistics only, so the figure moves
    assert by[("adabn", 0)]["final_miou"] != by[("source-only", 0)]["final_miou"]

    _, again = _bench(data, tmp_path / "b", tmp_path / "b.json")
    assert [r["final_miou"] for r in again["runs"]] == [r["final_miou"] for r in report["runs"]]
    for seed in (0, 1):
        for run in ("source-only", "dacs", "oracle"):
            assert _metrics(tmp_path / "b", seed, run) == _metrics(tmp_path / "a", seed, run)


def test_bench_quality_refuses_bad_seeds_and_a_missing_dataset(tmp_path):
    line = murid("bench", "quality", "--workdir", tmp_path / "r").error_line()
    assert "--data" in line and "--source" in line
    data = synth_data(tmp_path / "synth")
    line = murid("bench", "quality", "--data", data, "--workdir", tmp_path / "r", "--seeds", "0,x").error_line()
    assert "--seeds" in line


def test_the_same_command_again_resumes_and_a_later_one_adds_seeds(tmp_path):
    data = synth_data(tmp_path / "synth")
    work = tmp_path / "w"

    def bench(seeds, *extra):
        with one_thread():
            return murid("bench", "quality", "--data", data, "--workdir", work, "--preset", "smoke",
                         "--runs", "source-only,adabn", "--seeds", seeds, "--threads", "1", *extra)

    assert bench("0").code == 0
    kept = work / "seed-0" / "results" / "source-only.json"
    first = kept.read_text()
    before = kept.stat().st_mtime_ns
    # An interrupted run: a project folder without a result is trained again from its start.
    (work / "seed-1" / "source-only" / "checkpoints").mkdir(parents=True)
    (work / "seed-1" / "source-only" / "left-by-a-kill").write_text("x")
    result = bench("0,1", "--json", tmp_path / "both.json")
    assert result.code == 0, result.err
    assert kept.stat().st_mtime_ns == before and kept.read_text() == first  # seed 0 was not run again
    assert not (work / "seed-1" / "source-only" / "left-by-a-kill").exists()
    report = json.loads((tmp_path / "both.json").read_text())
    assert [(r["run"], r["seed"]) for r in report["runs"]] == [
        ("source-only", 0), ("adabn", 0), ("source-only", 1), ("adabn", 1)]
    assert report["runs"][0]["final_miou"] == json.loads(first)["evaluations"][-1]["miou"]

    line = bench("0", "--set", "warmup.iterations=2").error_line()
    assert "holds runs of another configuration (overrides differ)" in line
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    line = murid("bench", "quality", "--data", data, "--workdir", tmp_path / "other").error_line()
    assert "is not empty and holds no benchmark" in line


def test_dacs_iterations_set_the_dacs_budget_and_are_part_of_the_workdirs_configuration(tmp_path):
    data = synth_data(tmp_path / "synth")

    def bench(work, *extra):
        with one_thread():
            return murid("bench", "quality", "--data", data, "--workdir", work, "--preset", "smoke",
                         "--runs", "dacs", "--threads", "1", "--json", tmp_path / "d.json", *extra)

    assert bench(tmp_path / "w", "--dacs-iterations", "5").code == 0
    rows = json.loads((tmp_path / "d.json").read_text())["runs"][0]["evaluations"]
    assert [(e["stage"], e["iteration"]) for e in rows][-1] == ("dacs", 5)
    line = bench(tmp_path / "w", "--dacs-iterations", "6").error_line()
    assert "holds runs of another configuration (dacs_iterations differ)" in line
    assert "--dacs-iterations" in bench(tmp_path / "x", "--dacs-iterations", "0").error_line()
