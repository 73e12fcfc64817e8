"""`murid bench correct`: the budget accounting of the simulated annotator, and a smoke run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from murid_engine.bench.correct import apply_ground_truth, select_regions
from murid_engine.curriculum.rounds import EDIT_IGNORE, EDIT_NONE
from murid_engine.data import open_dataset
from murid_engine.evaluation import resize_nearest
from murid_engine.project import Project
from murid_engine.regions import QUEUE_DTYPE, RoundRegions
from smoke_runs import copy_project, murid, shared_trained


def _queue(pixels: list[int]) -> np.ndarray:
    q = np.zeros(len(pixels), QUEUE_DTYPE)
    q["pixels"] = pixels
    q["region"] = np.arange(len(pixels))
    q["score"] = np.linspace(1, 0, len(pixels))
    return q


def test_selection_spends_the_budget_exactly_in_the_strategy_order():
    q = _queue([30, 20, 25, 10, 15])  # 100 pixels: 1% = 1 pixel, 50% = 50 pixels
    s = select_regions(q, "ranked", 50)
    assert s.budget_pixels == 50 and s.positions.tolist() == [0, 1] and s.pixels == 50
    s = select_regions(q, "ranked", 60)  # 30+20 fit, +25 would overspend: stop there
    assert s.positions.tolist() == [0, 1] and s.pixels == 50 and s.regions == 2
    assert select_regions(q, "ranked", 29).regions == 0  # the first region does not fit
    assert select_regions(q, "ranked", 100).pixels == 100
    for budget in (5, 20, 37, 64, 90):
        s = select_regions(q, "random", budget, seed=3)
        order = np.random.default_rng(3).permutation(5)
        assert s.positions.tolist() == order[: s.regions].tolist()
        assert s.pixels == q["pixels"][s.positions].sum() <= s.budget_pixels
        if s.regions < 5:  # the next region of the order would overspend
            assert s.pixels + q["pixels"][order[s.regions]] > s.budget_pixels


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return shared_trained(tmp_path_factory)


def test_the_annotator_writes_the_ground_truth_of_exactly_the_selected_regions(trained, tmp_path):
    project = Project.open(copy_project(trained[1], tmp_path / "project"))
    r = project.latest_round()
    regions = RoundRegions.open(project.round_dir(r))
    target = open_dataset(project.config.data.target, project.config.data.target_split)
    selection = select_regions(regions.queue, "ranked", 20)
    assert selection.regions > 0
    written = apply_ground_truth(project, regions, selection, target)
    assert written == selection.pixels
    chosen = {(regions.stems[i], g) for i, g in regions.queue[selection.positions][["image", "region"]].tolist()}
    edited = 0
    for k, sample in enumerate(target.samples):
        edit = project.load_edit(sample.stem)
        rmap = regions.region_map(sample.stem)
        mask = np.isin(rmap, [g for s, g in chosen if s == sample.stem])
        if edit is None:
            assert not mask.any()
            continue
        gt = resize_nearest(target.read_label(k), rmap.shape)
        np.testing.assert_array_equal(edit[mask], np.where(gt[mask] == 255, EDIT_IGNORE, gt[mask]))
        assert (edit[~mask] == EDIT_NONE).all()
        edited += int(mask.sum())
    assert edited == selection.pixels


def test_bench_correct_smoke_run_writes_the_json_of_the_issue(trained, tmp_path):
    out = tmp_path / "correct.json"
    result = murid("bench", "correct", "--project", trained[1], "--budgets", "5",
                   "--strategy", "ranked,random", "--workdir", tmp_path / "work", "--json", out)
    assert result.code == 0, result.err
    data = json.loads(out.read_text())
    assert set(data) >= {"runs", "uncorrected_miou", "oracle_miou"}
    assert [(r["strategy"], r["budget"]) for r in data["runs"]] == [("ranked", 5.0), ("random", 5.0)]
    for run in data["runs"]:
        assert set(run) == {"strategy", "budget", "pixels", "regions", "review_minutes",
                            "student_miou", "teacher_miou"}
        assert 0 < run["pixels"] <= 0.05 * data["total_pixels"]
        assert run["review_minutes"] == pytest.approx(run["regions"] * 3 / 60)
        assert 0 <= run["teacher_miou"] <= 1
    # The next round of each copy trained on the corrections: its round has the human-verified pixels.
    work = tmp_path / "work"
    ranked = Project.open(work / "ranked-5")
    assert ranked.rounds()[-1] == data["round"]
    assert sum(np.count_nonzero(ranked.load_edit(s) < 19) for s in ranked.edited_stems()) > 0
    assert "ranked" in result.out and "oracle" in result.out


def test_bench_correct_errors_are_one_line(trained, tmp_path):
    assert "--strategy takes" in murid("bench", "correct", "--project", trained[1],
                                       "--strategy", "best").error_line()
    assert "does not exist" in murid("bench", "correct", "--project", tmp_path / "nope").error_line()


def test_bench_correct_set_changes_the_copies_not_the_project(trained, tmp_path):
    before = Project.open(trained[1]).config
    result = murid("bench", "correct", "--project", trained[1], "--budgets", "5", "--strategy", "ranked",
                   "--workdir", tmp_path / "work", "--set", "regions.min_regions=64",
                   "--set", "regions.region_pixels=1000000000", "--set", "curriculum.edit_weight=3")
    assert result.code == 0, result.err
    base = Project.open(tmp_path / "work" / "base")
    assert base.config.regions.min_regions == 64 and base.config.curriculum.edit_weight == 3
    assert Project.open(tmp_path / "work" / "ranked-5").config.regions.min_regions == 64
    regions = RoundRegions.open(base.round_dir(base.latest_round()))
    assert len(regions.queue) / len(regions.stems) > 40  # the finer regions labelled the round
    assert Project.open(trained[1]).config == before
    bad = murid("bench", "correct", "--project", trained[1], "--workdir", tmp_path / "bad",
                "--set", "regions.min_regions=0")
    assert bad.code != 0 and bad.error_line().endswith("regions.min_regions must be 1 or more, not 0")
    assert not (tmp_path / "bad" / "base").exists()
