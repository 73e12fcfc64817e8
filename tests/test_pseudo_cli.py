"""`murid pseudo`: the next round, its class-balanced portion, and its one-line errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from murid_engine.project import Overrides, Project
from smoke_runs import copy_project, murid, shared_trained

LEVELS = 255  # round.json's confidence histogram: one bin per uint8 level q = conf * 255


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return shared_trained(tmp_path_factory)


@pytest.fixture
def project(trained, tmp_path) -> Project:
    """A copy of the trained smoke project (two complete rounds) that a test may change."""
    return Project.open(copy_project(trained[1], tmp_path / "project"))


def test_pseudo_writes_the_next_round_with_the_requested_portion(project):
    result = murid("pseudo", "--project", project.root, "--portion", "0.3")
    assert result.code == 0, result.err
    assert project.rounds() == [1, 2, 3]
    info = project.read_round_info(3)
    assert info.round == 3 and info.portion == pytest.approx(0.3)
    assert len(info.images) == 10
    cap = info.cap
    predicted_classes = [c for c, n in info.predicted_pixels.items() if n > 0]
    assert predicted_classes
    for name in predicted_classes:
        kept, predicted = info.kept_pixels[name], info.predicted_pixels[name]
        # CBST keeps at least the portion of each class's predicted pixels (ties at the threshold
        # level included); the cap can only lower a threshold, so it keeps more, never fewer.
        assert 0.3 * predicted <= kept <= predicted, name
        threshold = info.thresholds[name]
        if threshold < cap:
            # ... and no more than needed: without the threshold's own level it would be short.
            level = round(threshold * LEVELS)
            above = sum(info.confidence_histogram[name][level + 1:])
            assert above < 0.3 * predicted, name
    kept_total = sum(info.kept_pixels.values())
    pixels = sum(i.pixels for i in info.images.values())
    assert info.kept_fraction == pytest.approx(kept_total / pixels)

    out = result.out
    assert str(project.round_dir(3)) in out
    assert "portion 0.3" in out and f"kept fraction {info.kept_fraction:.4f}" in out
    for name in predicted_classes:
        row = next(line.split() for line in out.splitlines() if line.split()[:1] == [name])
        assert row[2:4] == [str(info.kept_pixels[name]), str(info.predicted_pixels[name])]


def test_pseudo_portion_defaults_to_the_override_then_the_schedule(project):
    # Round 3 is past the smoke schedule [0.2, 0.5]: its last portion carries on.
    assert murid("pseudo", "--project", project.root).code == 0
    assert project.read_round_info(3).portion == pytest.approx(0.5)
    project.save_overrides(Overrides(portion=0.7))
    assert murid("pseudo", "--project", project.root).code == 0
    assert project.read_round_info(4).portion == pytest.approx(0.7)


def test_pseudo_replaces_an_unfinished_round(project):
    unfinished = project.round_dir(3, create=True)
    (unfinished / "labels").mkdir()
    (unfinished / "labels" / "stale.png").write_bytes(b"left by a killed run")
    assert murid("pseudo", "--project", project.root, "--portion", "1").code == 0
    assert project.rounds() == [1, 2, 3]
    info = project.read_round_info(3)
    assert "stale" not in info.images
    # portion 1 keeps every predicted pixel of every class
    assert info.kept_pixels == info.predicted_pixels
    assert info.kept_fraction == pytest.approx(1.0)


def test_pseudo_labels_match_thresholded_predictions(project):
    from murid_engine.imageio import read_index_png

    assert murid("pseudo", "--project", project.root, "--portion", "0.4").code == 0
    info = project.read_round_info(3)
    names = list(info.thresholds)
    levels = np.array([math.ceil(info.thresholds[n] * LEVELS - 1e-6) for n in names])
    for stem in info.images:
        d = project.round_dir(3)
        pred = read_index_png(d / "predictions" / f"{stem}.png")
        conf = read_index_png(d / "confidence" / f"{stem}.png")
        labels = read_index_png(d / "labels" / f"{stem}.png")
        keep = conf >= levels[pred]
        assert np.array_equal(labels[keep], pred[keep]) and (labels[~keep] == 255).all()


@pytest.mark.parametrize("portion", ["0", "1.5", "-0.2", "nan"])
def test_pseudo_refuses_a_portion_outside_0_1(project, portion):
    line = murid("pseudo", "--project", project.root, "--portion", portion).error_line()
    assert "--portion must be a number in (0, 1]" in line and portion.lstrip("-") in line
    assert project.rounds() == [1, 2]


def test_pseudo_refuses_a_portion_that_is_not_a_number(project):
    assert "invalid float value: 'half'" in murid("pseudo", "--project", project.root,
                                                  "--portion", "half").error_line()


def test_pseudo_refuses_an_unknown_device(project):
    line = murid("pseudo", "--project", project.root, "--device", "gpu0").error_line()
    assert "'gpu0' is not a device (auto, cpu, cuda or cuda:N)" in line


def test_pseudo_needs_a_project(tmp_path):
    assert "is not a MURID project" in murid("pseudo", "--project", tmp_path).error_line()
    missing = tmp_path / "missing"
    assert f"{missing} does not exist" in murid("pseudo", "--project", missing).error_line()


def test_pseudo_needs_a_trained_teacher(project):
    project.checkpoint_path("teacher").unlink()
    line = murid("pseudo", "--project", project.root).error_line()
    assert "has no trained teacher yet (checkpoints/teacher.pt)" in line and "murid train" in line
    assert project.rounds() == [1, 2]
