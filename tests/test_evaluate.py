"""`murid evaluate --pred --gt` on datasets written in the official formats (tests/layouts.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from murid_engine.cli import main
from murid_engine.data import open_dataset
from murid_engine.evaluation import evaluate_predictions
from layouts import CITYSCAPES_COLORS, rgb_image, write_cityscapes

# Cityscapes label ids written by the "official" ground truth, and the train ids they mean.
UNLABELED, ROAD, SIDEWALK, BUILDING = 0, 7, 8, 11  # train ids: 255, 0, 1, 2


def _grey(path: Path, values) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.array(values, np.uint8), mode="L").save(path)


def _palette(path: Path, values) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.array(values, np.uint8), mode="P")
    img.putpalette([c for rgb in CITYSCAPES_COLORS for c in rgb])
    img.save(path)


@pytest.fixture
def known(tmp_path: Path) -> tuple[Path, Path]:
    """Two 2x4 images and their predictions; expected scores worked out by hand below."""
    a = np.array([[ROAD, ROAD, SIDEWALK, SIDEWALK], [ROAD, ROAD, SIDEWALK, UNLABELED]])
    b = np.array([[BUILDING] * 4, [ROAD] * 4])
    gt = write_cityscapes(tmp_path / "cs", "val", [
        ("aachen", "aachen_000000_000019", rgb_image(2, 4, 1), a.astype(np.uint8)),
        ("bremen", "bremen_000001_000019", rgb_image(2, 4, 2), b.astype(np.uint8)),
    ])
    pred = tmp_path / "pred"
    # a: road TP 3 FN 1 (-> sidewalk), sidewalk TP 3 FP 1; the ignored pixel's 5 is not counted
    _grey(pred / "aachen_000000_000019.png", [[0, 1, 1, 1], [0, 0, 1, 5]])
    # b (a palette PNG: its indices are the train ids): building TP 3 FN 1 (-> road), road TP 4 FP 1
    _palette(pred / "bremen_000001_000019.png", [[2, 2, 2, 0], [0, 0, 0, 0]])
    return gt, pred


# road 7/(7+1+1), sidewalk 3/4, building 3/4; 13 of 15 valid pixels right
EXPECTED_IOU = {"road": 7 / 9, "sidewalk": 3 / 4, "building": 3 / 4}
EXPECTED_MIOU = (7 / 9 + 3 / 4 + 3 / 4) / 3
EXPECTED_ACC = 13 / 15


def test_known_prediction_exact_scores(known):
    gt, pred = known
    s = evaluate_predictions(pred, open_dataset(f"cityscapes:{gt}", "val"))
    assert s.miou == pytest.approx(EXPECTED_MIOU, abs=1e-12)
    assert s.pixel_acc == pytest.approx(EXPECTED_ACC, abs=1e-12)
    assert s.n_images == 2
    per_class = s.to_json()["per_class_iou"]
    for name, value in EXPECTED_IOU.items():
        assert per_class[name] == pytest.approx(value, abs=1e-12)
    assert per_class["terrain"] is None  # not in labels nor predictions: out of the mean


def test_half_size_prediction_is_resized_nearest(tmp_path: Path):
    gt_ids = np.array([[ROAD, ROAD, SIDEWALK, SIDEWALK], [ROAD, ROAD, SIDEWALK, SIDEWALK],
                       [BUILDING] * 4, [BUILDING, BUILDING, ROAD, ROAD]], np.uint8)
    gt = write_cityscapes(tmp_path / "cs", "val", [("ulm", "ulm_000000_000001", rgb_image(4, 4), gt_ids)])
    # each predicted pixel covers a 2x2 block: [[road, sidewalk], [building, building]]
    _grey(tmp_path / "pred" / "ulm_000000_000001.png", [[0, 1], [2, 2]])
    s = evaluate_predictions(tmp_path / "pred", open_dataset(f"cityscapes:{gt}", "val"))
    assert s.iou[0] == pytest.approx(4 / 6)  # road: 4 right, 2 predicted as building
    assert s.iou[1] == pytest.approx(1.0)
    assert s.iou[2] == pytest.approx(6 / 8)  # building: 6 right, 2 false positives
    assert s.miou == pytest.approx((4 / 6 + 1 + 6 / 8) / 3)
    assert s.pixel_acc == pytest.approx(14 / 16)


def test_cli_text_output(known, capsys):
    gt, pred = known
    assert main(["evaluate", "--pred", str(pred), "--gt", f"cityscapes:{gt}"]) == 0  # split val
    out = capsys.readouterr().out
    assert f"{100 * EXPECTED_MIOU:.2f}" in out and "mIoU16" in out and "mIoU13" in out
    assert f"{100 * EXPECTED_ACC:.2f}" in out and "road" in out


def test_cli_json_file(known, tmp_path: Path, capsys):
    gt, pred = known
    out_file = tmp_path / "out" / "scores.json"
    assert main(["evaluate", "--pred", str(pred), "--gt", f"cityscapes:{gt}", "--split", "val",
                 "--json", str(out_file)]) == 0
    data = json.loads(out_file.read_text())
    assert set(data) >= {"miou", "miou16", "miou13", "per_class_iou", "pixel_acc", "n_images", "confusion"}
    assert data["miou"] == pytest.approx(EXPECTED_MIOU)  # a fraction, not a percent
    assert data["pixel_acc"] == pytest.approx(EXPECTED_ACC)
    assert data["n_images"] == 2
    assert data["per_class_iou"]["sidewalk"] == pytest.approx(3 / 4)
    assert data["confusion"][0][0] == 7 and data["confusion"][0][1] == 1
    assert len(data["confusion"]) == 19 and all(len(row) == 19 for row in data["confusion"])
    assert not [p for p in out_file.parent.iterdir() if p.name != "scores.json"]  # no temp left


def test_cli_json_stdout(known, capsys):
    gt, pred = known
    assert main(["evaluate", "--pred", str(pred), "--gt", f"cityscapes:{gt}", "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)  # stdout holds only the JSON
    assert data["miou"] == pytest.approx(EXPECTED_MIOU)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_missing_prediction_is_one_line(known, capsys):
    gt, pred = known
    (pred / "bremen_000001_000019.png").unlink()
    assert main(["evaluate", "--pred", str(pred), "--gt", f"cityscapes:{gt}"]) == 2
    err = _one_line_error(capsys)
    assert str(pred / "bremen_000001_000019.png") in err
    assert "bremen_000001_000019_leftImg8bit.png" in err  # the image it belongs to


def test_missing_pred_folder_is_one_line(known, tmp_path: Path, capsys):
    gt, _ = known
    assert main(["evaluate", "--pred", str(tmp_path / "nope"), "--gt", f"cityscapes:{gt}"]) == 2
    assert str(tmp_path / "nope") in _one_line_error(capsys)


def test_unlabelled_gt_is_refused(tmp_path: Path, capsys):
    gt = write_cityscapes(tmp_path / "cs", "val", [("ulm", "ulm_000000_000001", rgb_image(2, 2), None)])
    _grey(tmp_path / "pred" / "ulm_000000_000001.png", [[0, 0], [0, 0]])
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--gt", f"cityscapes:{gt}"]) == 2
    assert "label" in _one_line_error(capsys)


@pytest.mark.parametrize("argv", [
    ["evaluate"],
    ["evaluate", "--pred", "p"],
    ["evaluate", "--pred", "p", "--gt", "cityscapes:x", "--project", "q"],
])
def test_wrong_option_combinations(argv, capsys):
    assert main(argv) == 2
    _one_line_error(capsys)


def test_project_without_checkpoint(tmp_path: Path, capsys):
    (tmp_path / "proj" / "checkpoints").mkdir(parents=True)
    assert main(["evaluate", "--project", str(tmp_path / "proj"), "--model", "student"]) == 2
    err = _one_line_error(capsys)
    assert "murid train" in err and "no checkpoint" in err


def test_no_prediction_value_counts_as_wrong(known):
    gt, pred = known
    _grey(pred / "aachen_000000_000019.png", [[0, 1, 1, 1], [0, 255, 1, 5]])  # one road pixel: 255
    s = evaluate_predictions(pred, open_dataset(f"cityscapes:{gt}", "val"))
    assert s.iou[0] == pytest.approx(6 / 9)  # TP 6, FN 2, FP 1: a miss, no false positive
    assert s.pixel_acc == pytest.approx(12 / 15)


def test_label_id_predictions_are_refused(known, capsys):
    gt, pred = known
    _grey(pred / "bremen_000001_000019.png", [[23, 23, 23, 26], [26, 26, 7, 7]])  # label ids: sky, car, road
    assert main(["evaluate", "--pred", str(pred), "--gt", f"cityscapes:{gt}"]) == 2
    err = _one_line_error(capsys)
    assert "bremen_000001_000019.png" in err and "train ids" in err


def test_json_to_a_folder_is_refused_before_evaluating(known, tmp_path: Path, capsys):
    gt, pred = known
    assert main(["evaluate", "--pred", str(pred), "--gt", f"cityscapes:{gt}", "--json", str(tmp_path)]) == 2
    assert "folder" in _one_line_error(capsys)
    assert capsys.readouterr().out == ""
