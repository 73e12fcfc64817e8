"""Curriculum pseudo-labels: CBST class-balanced thresholds and the round folder on disk."""

from __future__ import annotations

import inspect
import json
import math
import weakref

import numpy as np
import pytest

from murid_engine.curriculum import (
    EDIT_IGNORE,
    EDIT_NONE,
    ConfidenceHistogram,
    apply_overrides,
    apply_thresholds,
    class_thresholds,
    quantise_confidence,
    read_round_summary,
    relabel_round,
    rethreshold,
    write_round,
)
from murid_engine.errors import UserError
from murid_engine.imageio import read_index_png, write_grey_png
from murid_engine.labels import CLASS_NAMES, IGNORE, NUM_CLASSES
from murid_engine.project import Project
from murid_engine.run_config import RunConfig
from murid_engine.training.round_labels import FILL, HUMAN, NO_LOSS, training_maps

ABSENT = 7  # a class the synthetic teacher never predicts


def synthetic(n_images: int = 4, size: tuple[int, int] = (96, 128), seed: int = 0):
    """(pred, conf) images: class frequencies and confidence distributions differ per class."""
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.2, 3.0, NUM_CLASSES)
    freq[ABSENT] = 0
    freq /= freq.sum()
    a = rng.uniform(1.0, 8.0, NUM_CLASSES)  # Beta(a, b): some classes confident, some not
    b = rng.uniform(1.0, 4.0, NUM_CLASSES)
    for _ in range(n_images):
        pred = rng.choice(NUM_CLASSES, size=size, p=freq).astype(np.uint8)
        conf = rng.beta(a[pred], b[pred])
        yield pred, conf


def kept_fraction_per_class(pairs, thresholds):
    kept = np.zeros(NUM_CLASSES)
    total = np.zeros(NUM_CLASSES)
    for pred, conf in pairs:
        labels = apply_thresholds(pred, conf, thresholds)
        total += np.bincount(pred.ravel(), minlength=NUM_CLASSES)
        kept += np.bincount(labels[labels != IGNORE], minlength=NUM_CLASSES)
    return kept, total


def cbst_reference(pred_list, level_list, portion, cap):
    """CBST by sorting (what the histogram avoids): the ceil(p*N)-th most confident level."""
    pred = np.concatenate([p.ravel() for p in pred_list])
    level = np.concatenate([q.ravel() for q in level_list])
    tau = np.ones(NUM_CLASSES)
    for c in range(NUM_CLASSES):
        s = np.sort(level[pred == c])[::-1]
        if s.size:
            tau[c] = s[math.ceil(portion * s.size - 1e-9) - 1] / 255
            tau[c] = min(tau[c], cap) if cap is not None else tau[c]
    return tau


# ------------------------------------------------------------------------------- thresholds


@pytest.mark.parametrize("portion", [0.1, 0.2, 0.5, 0.8])
def test_thresholds_keep_the_portion_of_every_class(portion):
    tau = class_thresholds(synthetic(), portion, cap=None)  # a generator: streamed
    kept, total = kept_fraction_per_class(synthetic(), tau)
    present = total > 0
    assert present.sum() == NUM_CLASSES - 1
    np.testing.assert_allclose(kept[present] / total[present], portion, atol=0.01)
    # The same thresholds from a histogram filled by hand.
    hist = ConfidenceHistogram()
    for pred, conf in synthetic():
        hist.add(pred, conf)
    np.testing.assert_allclose(class_thresholds(hist, portion), tau)
    np.testing.assert_array_equal(hist.predicted, total)


def test_quantised_thresholds_follow_cbst_sort_rule():
    pairs = [(p, quantise_confidence(c)) for p, c in synthetic(3, (40, 50), seed=3)]
    for portion in (0.2, 0.5, 1.0):
        tau = class_thresholds(iter(pairs), portion)
        ref = cbst_reference([p for p, _ in pairs], [q for _, q in pairs], portion, None)
        np.testing.assert_allclose(tau, ref)
        kept, total = kept_fraction_per_class(pairs, tau)
        present = total > 0
        assert np.all(kept[present] >= portion * total[present] - 1e-9)  # ties kept, as in CBST
    assert np.all(kept[present] == total[present])  # portion 1.0 keeps everything


def test_cap_lowers_only_thresholds_above_it():
    free = class_thresholds(synthetic(), 0.3, cap=None)
    cap = float(np.median(free[np.arange(NUM_CLASSES) != ABSENT]))
    capped = class_thresholds(synthetic(), 0.3, cap=cap)
    above = (free > cap) & (np.arange(NUM_CLASSES) != ABSENT)
    assert above.sum() >= 5 and capped[ABSENT] == 1.0
    np.testing.assert_allclose(capped[above], cap)
    np.testing.assert_allclose(capped[~above], free[~above])
    kept, total = kept_fraction_per_class(synthetic(), capped)
    confident = above & (total > 0)
    assert np.all(kept[confident] / total[confident] > 0.3 + 0.01)  # not starved: keeps more


def test_unpredicted_class_keeps_nothing():
    tau = class_thresholds(synthetic(), 0.5)
    assert tau[ABSENT] == 1.0
    kept, _ = kept_fraction_per_class(synthetic(), tau)
    assert kept[ABSENT] == 0
    np.testing.assert_array_equal(class_thresholds(iter(()), 0.5), np.ones(NUM_CLASSES))


def test_single_pair_source_and_bad_arguments():
    pred, conf = next(synthetic(1))
    assert class_thresholds((pred, conf), 0.4).shape == (NUM_CLASSES,)
    for portion, cap in ((0.0, None), (1.5, None), (0.5, 0.0), (0.5, 1.2)):
        with pytest.raises(UserError):
            class_thresholds((pred, conf), portion, cap)


def test_overrides_replace_exactly_the_overridden_classes():
    tau = class_thresholds(synthetic(), 0.4, cap=0.9)
    out = apply_overrides(tau, {3: 0.05, 11: 0.99, ABSENT: 0.0})
    changed = np.flatnonzero(out != tau)
    assert set(changed) <= {3, 11, ABSENT}
    assert (out[3], out[11], out[ABSENT]) == (0.05, 0.99, 0.0)
    assert np.all(tau == class_thresholds(synthetic(), 0.4, cap=0.9))  # input untouched
    with pytest.raises(UserError):
        apply_overrides(tau, {NUM_CLASSES: 0.5})
    with pytest.raises(UserError):
        apply_overrides(tau, {2: 1.5})


def test_rethreshold_on_levels_matches_the_float_rule():
    pred, conf = next(synthetic(1, (64, 80), seed=5))
    level = quantise_confidence(conf)
    assert level.dtype == np.uint8 and abs(int(level.max()) - round(conf.max() * 255)) == 0
    tau = class_thresholds((pred, conf), 0.35, cap=0.9)
    expected = np.where(level / 255 >= tau[pred] - 1e-9, pred, IGNORE)
    np.testing.assert_array_equal(rethreshold(pred, level, tau), expected)
    np.testing.assert_array_equal(apply_thresholds(pred, level, tau), expected)
    # A threshold that is exactly a level keeps that level.
    exact = np.full(NUM_CLASSES, 100 / 255)
    np.testing.assert_array_equal(rethreshold(pred, level, exact) != IGNORE, level >= 100)


# ------------------------------------------------------------------------------ round folder


def round_items(seed: int = 1):
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate([(20, 30), (24, 16), (18, 22)]):
        pred = rng.choice([0, 1, 2, 8, 10, 13], size=(h, w), p=[.3, .1, .2, .2, .1, .1]).astype(np.uint8)
        conf = rng.uniform(0.05, 1.0, (h, w)).astype(np.float32)
        yield f"img_{i}", pred, conf


def test_round_folder_files_and_stats(tmp_path):
    rd = tmp_path / "round_1"
    overrides = {8: 0.3}
    info = write_round(rd, round_items(), 0.4, cap=0.8, overrides=overrides, round_index=1)
    items = list(round_items())
    preds = [p for _, p, _ in items]
    levels = [np.rint(np.clip(c, 0, 1) * 255).astype(np.uint8) for _, _, c in items]
    tau = cbst_reference(preds, levels, 0.4, 0.8)
    tau[8] = 0.3
    kept = np.zeros(NUM_CLASSES, int)
    for (stem, pred, _), level in zip(items, levels):
        for sub in ("labels", "predictions", "confidence"):
            assert (rd / sub / f"{stem}.png").is_file()
        np.testing.assert_array_equal(read_index_png(rd / "predictions" / f"{stem}.png"), pred)
        np.testing.assert_array_equal(read_index_png(rd / "confidence" / f"{stem}.png"), level)
        labels = read_index_png(rd / "labels" / f"{stem}.png")
        hand = np.where(level.astype(int) >= np.ceil(tau[pred] * 255 - 1e-6), pred, IGNORE)
        np.testing.assert_array_equal(labels, hand)
        kept += np.bincount(hand[hand != IGNORE], minlength=NUM_CLASSES)
        per_image = info.images[stem]
        assert per_image.kept_fraction == pytest.approx((hand != IGNORE).mean())
        assert per_image.mean_confidence == pytest.approx(level.mean() / 255)
        assert per_image.disagreement is None
    on_disk = read_round_summary(rd)
    assert on_disk == info  # what write_round returns is what the reader reads back
    assert json.loads((rd / "round.json").read_text()) == json.loads(json.dumps(info.to_json()))
    assert (on_disk.round, on_disk.portion, on_disk.cap) == (1, 0.4, 0.8)
    assert on_disk.overrides == {"vegetation": 0.3}
    np.testing.assert_allclose(on_disk.threshold_values(), tau)
    predicted = np.bincount(np.concatenate([p.ravel() for p in preds]), minlength=NUM_CLASSES)
    assert on_disk.predicted_pixels == dict(zip(CLASS_NAMES, predicted.tolist()))
    assert on_disk.kept_pixels == dict(zip(CLASS_NAMES, kept.tolist()))
    assert on_disk.kept_fraction == pytest.approx(kept.sum() / predicted.sum())
    assert on_disk.thresholds["person"] == 1.0  # never predicted: the cap leaves it at 1.0
    assert not list(rd.rglob("*.tmp"))  # atomic writes leave no temporary files


def test_relabel_round_applies_new_overrides(tmp_path):
    rd = tmp_path / "r"
    first = write_round(rd, round_items(), 0.3, cap=None, overrides={0: 0.0})
    assert first.kept_pixels["road"] == first.predicted_pixels["road"]
    again = relabel_round(rd, {0: 1.0, 2: 0.0})
    assert again.overrides == {"road": 1.0, "building": 0.0}
    assert again.kept_pixels["building"] == again.predicted_pixels["building"]
    assert again.automatic_thresholds == first.automatic_thresholds
    kept = np.zeros(NUM_CLASSES, int)
    for stem in again.images:
        labels = read_index_png(rd / "labels" / f"{stem}.png")
        kept += np.bincount(labels[labels != IGNORE], minlength=NUM_CLASSES)
    assert again.kept_pixels == dict(zip(CLASS_NAMES, kept.tolist()))
    assert read_round_summary(rd) == again


def test_write_round_streams_a_generator_once(tmp_path):
    alive: list[weakref.ref] = []
    yielded = 0

    def gen():
        nonlocal yielded
        for stem, pred, conf in round_items():
            # When image k is made, every earlier image must be gone: one image in memory.
            assert all(r() is None for r in alive)
            alive.append(weakref.ref(conf))
            yielded += 1
            yield stem, pred, conf
            del pred, conf

    g = gen()
    assert inspect.isgenerator(g)
    info = write_round(tmp_path / "r", g, 0.5)
    assert yielded == 3 and len(info.images) == 3
    assert inspect.getgeneratorstate(g) == inspect.GEN_CLOSED
    assert next(g, None) is None


def test_bad_rounds_are_refused(tmp_path):
    with pytest.raises(UserError, match="no target images"):
        write_round(tmp_path / "a", iter(()), 0.5)
    with pytest.raises(UserError, match="not a finished"):
        read_round_summary(tmp_path / "a")
    twice = [("x", np.zeros((2, 2), np.uint8), np.ones((2, 2)))] * 2
    with pytest.raises(UserError, match="twice"):
        write_round(tmp_path / "b", twice, 0.5)


# -------------------------------------------------------------------------------- user edits


def _project_round(tmp_path):
    project = Project.create(tmp_path / "project", RunConfig())
    rd = project.round_dir(1, create=True)
    write_round(rd, round_items(), 0.3, cap=0.9)
    return project, rd


def test_training_labels_take_the_edit_where_painted(tmp_path):
    project, rd = _project_round(tmp_path)
    auto = read_index_png(rd / "labels" / "img_0.png")  # kept ids, IGNORE (= FILL) elsewhere
    np.testing.assert_array_equal(training_maps(project, 1, ["img_0"])[0].numpy(), auto)

    edit = np.full(auto.shape, EDIT_NONE, np.uint8)
    ignored = np.argwhere(auto[1:] == IGNORE)[0] + (1, 0)  # below the stroke on row 0
    labelled = np.argwhere(auto[1:] != IGNORE)[0] + (1, 0)
    edit[tuple(ignored)] = 11  # paint a class onto an ignored pixel
    edit[tuple(labelled)] = EDIT_IGNORE  # paint 'ignore' over an automatic label
    edit[0, :] = 5  # a painted stroke
    project.save_edit("img_0", edit)
    target = training_maps(project, 1, ["img_0"])[0].numpy()
    # painted 'ignore' is never trained on (NO_LOSS), unlike a pixel the round left below its
    # threshold, which the EMA teacher fills in online (FILL)
    assert target[tuple(ignored)] == HUMAN + 11 and target[tuple(labelled)] == NO_LOSS != FILL
    assert np.all(target[0] == HUMAN + 5)  # the user's class, marked as theirs
    untouched = edit == EDIT_NONE
    np.testing.assert_array_equal(target[untouched], auto[untouched])
    rewritten = write_round(rd, round_items(), 0.3, cap=0.9, edits_dir=project.edits_dir)
    assert rewritten.images["img_0"].edited_pixels == int((~untouched).sum())

    project.save_edit("img_0", np.full(auto.shape, EDIT_NONE, np.uint8))  # erase everything
    assert not project.edit_path("img_0").exists()
    np.testing.assert_array_equal(training_maps(project, 1, ["img_0"])[0].numpy(), auto)


def test_bad_edits_are_refused(tmp_path):
    project, _ = _project_round(tmp_path)
    write_grey_png(project.edit_path("img_1"), np.full((24, 16), 40, np.uint8))
    with pytest.raises(UserError, match="holds value 40"):
        training_maps(project, 1, ["img_1"])
    write_grey_png(project.edit_path("img_1"), np.full((5, 5), EDIT_NONE, np.uint8))
    with pytest.raises(UserError, match="5x5"):
        training_maps(project, 1, ["img_1"])
    with pytest.raises(UserError, match="no label"):
        training_maps(project, 1, ["nope"])
