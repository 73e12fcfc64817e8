"""The use cases both front ends call: the checks live once, and the app gets them too."""

from __future__ import annotations

import pytest

from murid_engine import usecases
from murid_engine.errors import UserError
from murid_engine.project import Project
from murid_gui import tasks


def test_create_project_checks_the_dataset_kind_for_the_app_too(tmp_path):
    # The app's copy used to accept any `word:path`; it now goes through the same check.
    with pytest.raises(UserError, match="unknown dataset kind 'nonsense'"):
        tasks.create_project(tmp_path / "p", "nonsense:/data", "synthcity:/data", "smoke")
    assert not Project.is_project(tmp_path / "p")
    with pytest.raises(UserError, match="source dataset and a target dataset"):
        tasks.create_project(tmp_path / "q", "", "synthcity:/data", "smoke")


def test_create_project_stores_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    project = usecases.create_project(tmp_path / "p", "synthcity:data", "synthcity:./other", "smoke",
                                      overrides=["seed=3"])
    cfg = Project.open(tmp_path / "p").config
    assert cfg.data.source == f"synthcity:{tmp_path / 'data'}"
    assert cfg.data.target == f"synthcity:{tmp_path / 'other'}"
    assert cfg.seed == 3 and project.root == tmp_path / "p"


def test_a_project_holds_one_training_run(tmp_path):
    project = usecases.create_project(tmp_path / "p", "synthcity:/d", "synthcity:/d", "smoke")
    usecases.check_can_train(project, resume=False)  # nothing trained yet: a fresh start is fine
    project.checkpoints_dir.mkdir(exist_ok=True)
    (project.checkpoints_dir / "latest.pt").write_bytes(b"stand-in")
    assert project.latest_checkpoint() is not None
    usecases.check_can_train(project, resume=True)
    with pytest.raises(UserError, match="already holds a training run; continue it with --resume"):
        usecases.check_can_train(project, resume=False)


@pytest.mark.parametrize("portion", [0.0, 1.5, float("nan")])
def test_portion_outside_zero_one_is_refused_before_any_model_loads(tmp_path, portion):
    project = usecases.create_project(tmp_path / "p", "synthcity:/d", "synthcity:/d", "smoke")
    with pytest.raises(UserError, match=r"the portion must be a number in \(0, 1\]"):
        usecases.write_next_round(project, portion)


def test_jobs_need_a_trained_teacher(tmp_path):
    project = usecases.create_project(tmp_path / "p", "synthcity:/d", "synthcity:/d", "smoke")
    with pytest.raises(UserError, match="no trained teacher yet"):
        usecases.write_next_round(project)
    with pytest.raises(UserError, match="no trained teacher yet"):
        usecases.distil(project, sink=lambda e: None)
    with pytest.raises(UserError, match="no trained model to evaluate"):
        usecases.evaluate_project(project)


def test_evaluation_reports_each_image_and_stops_within_one(tmp_path, tmp_path_factory):
    from gui_helpers import copy_of, trained

    from murid_engine.jobs import Control, Progress

    project = Project.open(copy_of(trained(tmp_path_factory.getbasetemp()), tmp_path / "p"))
    events = []
    full = usecases.evaluate_project(project, ["teacher"], sink=events.append)
    steps = [e for e in events if isinstance(e, Progress)]
    assert [e.iteration for e in steps] == list(range(1, steps[-1].total + 1)) and steps[-1].total > 1
    report = project.reports_dir / "evaluation.json"
    before = report.read_bytes()
    control, seen = Control(), []

    def sink(event):
        seen.append(event)
        if isinstance(event, Progress):
            control.stop()  # the user presses Cancel after the first image
    assert usecases.evaluate_project(project, sink=sink, control=control) is None
    assert len([e for e in seen if isinstance(e, Progress)]) == 1  # no second image was evaluated
    assert report.read_bytes() == before and full.report.is_file()  # the last report stays as it was


def test_pseudo_labelling_stops_within_one_image_and_leaves_the_rounds_as_they_were(tmp_path, tmp_path_factory):
    from gui_helpers import copy_of, trained

    from murid_engine.jobs import Control, Progress, RoundReady

    project = Project.open(copy_of(trained(tmp_path_factory.getbasetemp()), tmp_path / "p"))
    rounds = project.rounds()
    last = project.round_dir(rounds[-1])
    before = {p.relative_to(last): p.read_bytes() for p in sorted(last.rglob("*")) if p.is_file()}
    control, seen = Control(), []

    def sink(event):
        seen.append(event)
        if isinstance(event, Progress):
            control.stop()  # the user presses Cancel after the first image
    assert usecases.write_next_round(project, sink=sink, control=control) is None
    steps = [e for e in seen if isinstance(e, Progress)]
    assert len(steps) == 1 and steps[0].iteration == 1 and steps[0].total > 1  # no second image
    assert not any(isinstance(e, RoundReady) for e in seen)
    assert project.rounds() == rounds  # no new round, and no half-written folder beside them
    assert not project.round_dir(rounds[-1] + 1).exists()
    assert {p.relative_to(last): p.read_bytes() for p in sorted(last.rglob("*")) if p.is_file()} == before
    events = []  # without a stop it goes through, one Progress per image
    written = usecases.write_next_round(project, sink=events.append)
    assert written.round == rounds[-1] + 1 and project.rounds() == rounds + [written.round]
    steps = [e.iteration for e in events if isinstance(e, Progress)]
    assert steps == list(range(1, len(written.summary.images) + 1))
