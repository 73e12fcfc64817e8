"""The model comparison as a typed record: reports/evaluation.json written and read in one place."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from murid_engine.bench.speed import Speed
from murid_engine.comparison import COMPARISON_FILE, Comparison, ModelResult, read_comparison, write_comparison
from murid_engine.errors import UserError
from murid_engine.metrics import SegmentationScores


def _model(name: str, seed: int, ms: float) -> ModelResult:
    rng = np.random.default_rng(seed)
    confusion = rng.integers(0, 50, (19, 20))
    confusion[3] = 0  # a class absent from the labels: its IoU may be None
    return ModelResult(name, SegmentationScores.from_matrix(confusion, n_images=7),
                       Speed(ms, (64, 32), 2, 5, "cpu"), "resnet18", Path(f"/p/checkpoints/{name}.pt"))


def _comparison() -> Comparison:
    return Comparison(Path("/p"), "synthcity:/data, split=val (7 images)", "val", (64, 32), (64, 32), 2, "cpu",
                      [_model("source_only", 1, 4.0), _model("teacher", 2, 9.0), _model("student", 3, 3.0)])


def test_a_comparison_reads_back_as_it_was_written(tmp_path):
    comparison = _comparison()
    path = write_comparison(tmp_path, comparison)
    assert path == tmp_path / COMPARISON_FILE and not list(tmp_path.glob("*.tmp*"))
    again = read_comparison(tmp_path)
    assert again.to_json() == comparison.to_json()
    assert [m.name for m in again.models] == ["source_only", "teacher", "student"]
    student = again.model("student")
    assert student.speed == Speed(3.0, (64, 32), 2, 5, "cpu") and student.checkpoint == Path("/p/checkpoints/student.pt")
    np.testing.assert_array_equal(student.scores.confusion, comparison.model("student").scores.confusion)
    assert student.scores.iou == comparison.model("student").scores.iou
    assert again.eval_size == (64, 32) and again.speed_size == (64, 32)
    assert again.speedup("student") == 3.0


def test_an_older_evaluation_json_reads_with_defaults(tmp_path):
    # Earlier versions wrote no eval_size; a file without a model's `speed` falls back to `ms`
    # and the comparison's own settings.
    data = _comparison().to_json()
    del data["eval_size"], data["models"]["teacher"]["speed"], data["models"]["student"]["backbone"]
    (tmp_path / COMPARISON_FILE).write_text(json.dumps(data))
    c = read_comparison(tmp_path)
    assert c.eval_size is None
    assert c.model("teacher").speed == Speed(9.0, (64, 32), 2, 0, "cpu")
    assert c.model("student").backbone == "" and c.speedup("student") == 3.0


def test_no_comparison_yet_is_none(tmp_path):
    assert read_comparison(tmp_path) is None


@pytest.mark.parametrize("text, message", [
    ("{oops", "is not readable"),
    ('{"models": {}}', "is not a model comparison: it has no 'input_size'"),
    ('{"input_size": [64], "threads": 1, "device": "cpu", "models": {}}', "is not a model comparison"),
    ("[]", "is not a model comparison: it is not a JSON object"),
])
def test_a_broken_evaluation_json_is_one_clear_error(tmp_path, text, message):
    (tmp_path / COMPARISON_FILE).write_text(text)
    with pytest.raises(UserError, match=message):
        read_comparison(tmp_path)
