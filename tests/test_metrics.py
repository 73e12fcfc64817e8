"""Metrics against values computed by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from murid_engine.labels import CLASS_NAMES, IGNORE, NUM_CLASSES
from murid_engine.metrics import ConfusionMatrix, SegmentationScores, confusion_matrix


def scores_of(gt, pred) -> SegmentationScores:
    acc = ConfusionMatrix()
    acc.add(np.array(gt, np.uint8), np.array(pred, np.uint8))
    return acc.scores()


def test_hand_computed_ious_and_ignore():
    # valid pairs (gt, pred): (0,0) (0,1) (1,1) (1,1) (2,0); the 255 pixel's prediction (9) is ignored
    gt = [[0, 0, 1], [1, 2, IGNORE]]
    pred = [[0, 1, 1], [1, 0, 9]]
    s = scores_of(gt, pred)
    assert s.iou[0] == pytest.approx(1 / 3)  # TP 1, FN 1, FP 1
    assert s.iou[1] == pytest.approx(2 / 3)  # TP 2, FP 1
    assert s.iou[2] == 0.0  # TP 0, FN 1
    assert s.iou[9] is None  # only predicted on an ignored pixel: not counted
    assert all(s.iou[c] is None for c in range(3, NUM_CLASSES))
    assert s.miou == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert s.pixel_acc == pytest.approx(3 / 5)
    assert int(s.confusion.sum()) == 5


def test_confusion_matrix_layout():
    m = confusion_matrix(np.array([[0, 0, 1], [1, 2, IGNORE]]), np.array([[0, 1, 1], [1, 0, 9]]))
    assert m.shape == (NUM_CLASSES, NUM_CLASSES + 1) and m.dtype == np.int64
    expected = np.zeros_like(m)
    expected[0, 0], expected[0, 1], expected[1, 1], expected[2, 0] = 1, 1, 2, 1
    np.testing.assert_array_equal(m, expected)


def test_class_only_predicted_scores_zero_and_counts():
    s = scores_of([[0, 0]], [[0, 5]])
    assert s.iou[0] == pytest.approx(1 / 2)
    assert s.iou[5] == 0.0  # false positive only: union 1, IoU 0
    assert s.miou == pytest.approx((1 / 2 + 0) / 2)


def test_prediction_outside_classes_is_wrong_but_no_false_positive():
    s = scores_of([[0, 0, 1]], [[0, IGNORE, 1]])
    assert s.iou[0] == pytest.approx(1 / 2)  # the 255 prediction is a false negative of class 0
    assert s.iou[1] == 1.0  # and a false positive of nobody
    assert s.pixel_acc == pytest.approx(2 / 3)
    data = s.to_json()
    assert data["invalid_predictions"][0] == 1
    assert sum(map(sum, data["confusion"])) == 2
    # signed predictions out of range count the same way
    m = confusion_matrix(np.array([[3, 3]]), np.array([[-1, 19]], np.int32))
    assert m[3, NUM_CLASSES] == 2 and m[:, :NUM_CLASSES].sum() == 0


def test_synthia_protocol_means():
    # terrain (9), truck (14), train (16) perfect; wall (3) predicted as fence (4)
    s = scores_of([[0, 9, 14, 16, 3]], [[0, 9, 14, 16, 4]])
    assert s.iou[3] == 0.0 and s.iou[4] == 0.0
    assert s.miou == pytest.approx(4 / 6)
    assert s.miou16 == pytest.approx(1 / 3)  # road 1, wall 0, fence 0
    assert s.miou13 == pytest.approx(1.0)  # wall, fence, pole are not in the 13 classes


def test_high_class_ids_do_not_overflow_uint8():
    s = scores_of([[18, 18, 17]], [[18, 17, 17]])
    assert s.iou[18] == pytest.approx(1 / 2) and s.iou[17] == pytest.approx(1 / 2)


def test_all_ignored_gives_no_scores():
    s = scores_of([[IGNORE, IGNORE]], [[0, 1]])
    assert s.miou is None and s.miou16 is None and s.pixel_acc is None
    assert json.loads(json.dumps(s.to_json()))["miou"] is None


def test_accumulator_merge_equals_one_pass():
    rng = np.random.default_rng(0)
    gts = [rng.integers(0, NUM_CLASSES, (4, 5)).astype(np.uint8) for _ in range(3)]
    preds = [rng.integers(0, NUM_CLASSES, (4, 5)).astype(np.uint8) for _ in range(3)]
    gts[1][0, :] = IGNORE
    a, b = ConfusionMatrix(), ConfusionMatrix()
    a.add(gts[0], preds[0])
    for g, p in zip(gts[1:], preds[1:]):
        b.add(g, p)
    merged = a.merge(b)
    whole = confusion_matrix(np.concatenate(gts), np.concatenate(preds))
    np.testing.assert_array_equal(merged.array(), whole)
    assert merged.n_images == 3
    assert merged.square().shape == (NUM_CLASSES, NUM_CLASSES)


def test_to_json_keys_and_round_trip():
    s = scores_of([[0, 0, 1], [1, 2, IGNORE]], [[0, 1, 1], [1, 0, 9]])
    data = json.loads(json.dumps(s.to_json()))
    assert {"miou", "miou16", "miou13", "per_class_iou", "pixel_acc", "n_images", "confusion"} <= set(data)
    assert list(data["per_class_iou"]) == list(CLASS_NAMES)
    assert data["per_class_iou"]["road"] == pytest.approx(1 / 3)
    assert data["per_class_iou"]["terrain"] is None
    assert data["n_images"] == 1
    assert np.array(data["confusion"]).shape == (NUM_CLASSES, NUM_CLASSES)
    again = SegmentationScores.from_json(data)
    assert again.iou == s.iou and again.miou == s.miou and again.pixel_acc == s.pixel_acc


def test_square_matrix_is_accepted():
    square = np.diag(np.arange(NUM_CLASSES))
    s = SegmentationScores.from_matrix(square)
    assert s.iou[0] is None and s.iou[1] == 1.0 and s.miou == 1.0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match="20"):
        confusion_matrix(np.array([[20]], np.uint8), np.array([[0]], np.uint8))
