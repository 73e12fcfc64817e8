"""Our evaluation against the official `cityscapesscripts` evaluation, on the same files."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from layouts import rgb_image, write_cityscapes
from murid_engine.data import open_dataset
from murid_engine.evaluation import evaluate_predictions
from murid_engine.labels import CLASS_NAMES, IGNORE, NUM_CLASSES, TRAIN_ID_TO_LABEL_ID

official = pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
from cityscapesscripts.helpers.labels import labels as cs_labels  # noqa: E402

H, W = 12, 20
CITIES = ("aachen", "bochum", "zurich")
# Label ids that Cityscapes has but does not evaluate (unlabeled, static, parking, ...).
IGNORED_IDS = [l.id for l in cs_labels if l.id >= 0 and l.ignoreInEval]
# Classes that have instances in Cityscapes: their instanceIds pixels are id * 1000 + n.
INSTANCE_IDS = {l.id for l in cs_labels if l.hasInstances}


def _official_args(tmp_path: Path):
    """The script's settings, quiet and writing nothing (its defaults point into site-packages)."""
    args = official.CArgs()
    args.evalInstLevelScore = True  # the default; it is what calls np.in1d
    args.evalPixelAccuracy = False  # its per-image accuracy is not what we compare (see below)
    args.evalLabels = []
    args.printRow = 5
    args.normalized = True
    args.colorized = False
    args.bold = args.nocol = ""
    args.JSONOutput = False
    args.exportFile = str(tmp_path / "official" / "result.json")
    args.quiet = True
    args.avgClassSize = dict(official.args.avgClassSize)
    args.predictionPath = args.predictionWalk = None
    return args


def _save(path: Path, values: np.ndarray, mode: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values, mode=mode).save(path)
    return str(path)


def _scenario(tmp_path: Path, seed: int, drop: tuple[int, ...]):
    """Random label ids (ignored ones included) and predictions right about 60% of the time.

    `drop`: train ids removed from the ground truth; the first of them is still predicted a
    few times (IoU 0, counted), the others never (absent from both: left out of the mean).
    """
    rng = np.random.default_rng(seed)
    eval_ids = [int(TRAIN_ID_TO_LABEL_ID[c]) for c in range(NUM_CLASSES) if c not in drop]
    pool = np.array(eval_ids + IGNORED_IDS)
    items, gt_files, official_preds = [], [], []
    pred_dir = tmp_path / "pred"
    for i, city in enumerate(CITIES):
        stem = f"{city}_{i:06d}_000019"
        label_ids = pool[rng.integers(0, len(pool), (H, W))].astype(np.uint8)
        items.append((city, stem, rgb_image(H, W, i), label_ids))
        train_ids = np.full((H, W), IGNORE, np.uint8)
        from_gt = np.isin(label_ids, eval_ids)
        for c in range(NUM_CLASSES):
            train_ids[label_ids == TRAIN_ID_TO_LABEL_ID[c]] = c
        guess = rng.integers(0, NUM_CLASSES, (H, W)).astype(np.uint8)
        for c in drop[1:]:
            guess[guess == c] = 0  # never predicted
        pred = np.where(from_gt & (rng.random((H, W)) < 0.6), train_ids, guess)
        pred[rng.random((H, W)) < 0.05] = IGNORE  # "no prediction": wrong for both evaluations
        _save(pred_dir / f"{stem}.png", pred, "L")
        # The official script wants label ids; a non-class prediction becomes 'unlabeled' (0).
        pred_ids = np.where(pred == IGNORE, 0, TRAIN_ID_TO_LABEL_ID[pred]).astype(np.uint8)
        official_preds.append(_save(tmp_path / "official_pred" / f"{stem}_pred.png", pred_ids, "L"))
        gt_files.append(str(tmp_path / "cs" / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png"))
        # instanceIds beside the labels (16-bit grey, as in the download): the script reads them.
        inst = label_ids.astype(np.uint16)
        things = np.isin(label_ids, list(INSTANCE_IDS))
        inst[things] = inst[things] * 1000 + rng.integers(0, 3, int(things.sum()))
        inst_path = Path(gt_files[-1].replace("labelIds", "instanceIds"))
        inst_path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(inst_path), inst)
    write_cityscapes(tmp_path / "cs", "val", items)
    return pred_dir, gt_files, official_preds


@pytest.mark.parametrize("seed, drop", [(0, ()), (1, (14, 16, 9))], ids=["all-classes", "absent-classes"])
def test_agrees_with_official_cityscapes_evaluation(tmp_path, monkeypatch, capsys, seed, drop):
    # cityscapesscripts 2.3.0 calls np.in1d, removed in NumPy 2.4: alias it for this test only.
    monkeypatch.setattr(np, "in1d", lambda a, b, *args, **kw: np.isin(a, b, *args, **kw), raising=False)
    pred_dir, gt_files, official_preds = _scenario(tmp_path, seed, drop)

    ours = evaluate_predictions(pred_dir, open_dataset(f"cityscapes:{tmp_path / 'cs'}", "val"))
    theirs = official.evaluateImgLists(official_preds, gt_files, _official_args(tmp_path))
    capsys.readouterr()  # whatever it printed stays out of the test log

    assert not (tmp_path / "official").exists()
    for c, name in enumerate(CLASS_NAMES):
        value = theirs["classScores"][name]
        if math.isnan(value):
            assert ours.iou[c] is None, name
        else:
            assert ours.iou[c] == pytest.approx(value, abs=1e-4), name
    assert ours.miou == pytest.approx(theirs["averageScoreClasses"], abs=1e-4)
    if drop:
        assert ours.iou[drop[0]] == 0.0 and all(ours.iou[c] is None for c in drop[1:])

    # The same confusion matrix, in train-id order; pixel accuracy from it (the script's own
    # evalPixelAccuracy counts ignored pixels as "not ignored" and errors as "correct").
    conf = np.asarray(theirs["confMatrix"], dtype=np.int64)
    ids = [int(TRAIN_ID_TO_LABEL_ID[c]) for c in range(NUM_CLASSES)]
    np.testing.assert_array_equal(ours.confusion[:, :NUM_CLASSES], conf[np.ix_(ids, ids)])
    their_acc = np.trace(conf[np.ix_(ids, ids)]) / conf[ids, :].sum()
    assert ours.pixel_acc == pytest.approx(their_acc, abs=1e-4)
