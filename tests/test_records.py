"""metrics.jsonl's typed records: each reads back as written, old rows read, readers share them."""

from __future__ import annotations

import json

import pytest

from murid_engine.project import Project
from murid_engine.records import EvaluationRecord, LossRecord, RoundRecord, evaluations, read_record, read_records
from murid_engine.run_config import RunConfig

RECORDS = [
    LossRecord("adapt", 20, None, 12.5, {"seg": 0.75, "total": 1.25}),
    EvaluationRecord("curriculum", "teacher", 40, 2, 30.0, 0.4125, {"road": 0.9, "wall": None}, 0.8),
    RoundRecord(2, 20, 21.0, 0.5, 0.375, {"road": 0.9, "car": 0.25}),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.kind)
def test_each_record_reads_back_equal_through_a_json_line(record):
    line = json.dumps(record.to_json())
    assert read_record(json.loads(line)) == record


def test_rows_of_earlier_versions_and_unknown_kinds(tmp_path):
    rows = [{"kind": "losses", "stage": "warmup", "iteration": 10, "time_s": None, "total": 2.0},
            {"kind": "eval", "stage": "adapt", "model": "teacher", "miou": 0.25},  # no iteration, no time
            {"kind": "something-later", "stage": "adapt"}]
    loss, evaluation = read_records(rows)
    assert loss == LossRecord("warmup", 10, None, 0.0, {"total": 2.0})
    assert evaluation == EvaluationRecord("adapt", "teacher", 0, None, 0.0, 0.25, {}, None)
    assert evaluations(rows) == [evaluation]


def test_the_train_view_history_is_built_from_typed_records(tmp_path):
    from murid_gui.train_view import read_history

    project = Project.create(tmp_path / "p", RunConfig())
    for record in (*RECORDS, EvaluationRecord("warmup", "source_only", 5, None, 1.0, None, {}, None)):
        project.append_metrics(record.to_json())
    history = read_history(project)
    assert history.evals == [RECORDS[1]]  # only the scored evaluations, typed
    assert history.losses.series["seg"].raw == [0.75] and history.losses.series["total"].step == [20]
    assert history.losses.last_time() == 12.5
