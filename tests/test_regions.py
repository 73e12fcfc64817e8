"""Regions of a round: RIPU scores, the stored queue, region actions as edits (full weight)."""

from __future__ import annotations

import math

import numpy as np
import torch
import pytest

from murid_engine.curriculum.rounds import EDIT_IGNORE, EDIT_NONE, PREDICTIONS_DIR
from murid_engine.imageio import read_index_png
from murid_engine.project import Overrides, Project
from murid_engine.errors import UserError
from murid_engine.regions import RegionConfig, RegionWriter, RoundRegions, score_regions
from murid_engine.regions.scoring import with_regions
from murid_engine.regions.actions import Action, apply_action, region_action
from murid_engine.training.round_labels import FILL, HUMAN, NO_LOSS, split_human, training_maps
from smoke_runs import copy_project, murid, shared_trained


def test_one_class_region_is_pure_and_an_even_split_has_impurity_ln2():
    regions = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    pred = np.array([[3, 3, 4, 5], [3, 3, 5, 4]])
    level = np.array([[255, 255, 51, 102], [255, 255, 153, 204]], np.uint8)
    s = score_regions(regions, pred, level, num_classes=19)
    assert s.pixels.tolist() == [4, 4]
    assert s.impurity[0] == 0.0
    assert s.impurity[1] == pytest.approx(math.log(2))
    assert s.uncertainty[0] == pytest.approx(0.0)
    assert s.uncertainty[1] == pytest.approx(1 - (51 + 102 + 153 + 204) / 4 / 255)
    assert s.score[1] == pytest.approx(math.log(2) * s.uncertainty[1])
    assert s.majority[0] == 3


def test_three_even_classes_have_impurity_ln3_and_float_confidence_works():
    regions = np.zeros((1, 6), int)
    pred = np.array([[0, 1, 2, 0, 1, 2]])
    s = score_regions(regions, pred, np.full((1, 6), 0.25), num_classes=3)
    assert s.impurity[0] == pytest.approx(math.log(3))
    assert s.uncertainty[0] == pytest.approx(0.75)


def _scene(rng, h=48, w=96):
    image = np.zeros((h, w, 3), np.uint8)
    image[:, : w // 3] = (200, 30, 30)
    image[:, w // 3: 2 * w // 3] = (30, 200, 30)
    image[:, 2 * w // 3:] = (30, 30, 200)
    image = np.clip(image + rng.integers(0, 20, image.shape), 0, 255).astype(np.uint8)
    pred = rng.integers(0, 3, (h, w)).astype(np.uint8)
    pred[:, : w // 3] = 0  # the first stripe is pure: its regions score 0
    level = rng.integers(60, 255, (h, w)).astype(np.uint8)
    return image, pred, level


def test_stored_queue_is_sorted_worst_first_and_matches_each_region_map(tmp_path):
    rng = np.random.default_rng(0)
    writer = RegionWriter(tmp_path, num_classes=3, config=RegionConfig(region_pixels=256))
    scenes = {}
    for stem in ("a", "b", "c"):
        scenes[stem] = _scene(rng)
        writer.add(stem, *scenes[stem])
    index = writer.finish()
    assert not list((tmp_path / "regions").glob(".*"))  # no scratch file left
    stored = RoundRegions.open(tmp_path)
    q = stored.queue
    assert stored.stems == ["a", "b", "c"] and index["regions"] == len(q)
    assert np.all(np.diff(q["score"]) <= 0)  # worst first
    assert q["score"][0] > 0 and q["score"][-1] == 0
    for i, stem in enumerate(stored.stems):
        rmap = stored.region_map(stem)
        assert rmap.shape == (48, 96) and rmap.min() == 0
        s = score_regions(rmap, scenes[stem][1], scenes[stem][2], 3)
        rows = q[q["image"] == i]
        assert sorted(rows["region"].tolist()) == list(range(int(rmap.max()) + 1))
        np.testing.assert_allclose(rows["score"], s.score[rows["region"]], rtol=1e-5, atol=1e-7)
        assert rows["pixels"].sum() == rmap.size


def _stream_regions(round_dir, scenes, workers, consume=None):
    items = [(stem, pred, level) for stem, (_, pred, level) in scenes.items()]
    writer = RegionWriter(round_dir, num_classes=3, config=RegionConfig(region_pixels=256))
    stream = with_regions(items, lambda stem: scenes[stem][0], writer, workers=workers)
    passed = [item[0] for item in (stream if consume is None else consume(stream))]
    return passed


def test_regions_made_on_worker_threads_are_the_ones_made_inline_in_the_same_order(tmp_path):
    rng = np.random.default_rng(1)
    scenes = {f"img{i:02d}": _scene(rng) for i in range(9)}
    assert _stream_regions(tmp_path / "inline", scenes, workers=0) == list(scenes)
    assert _stream_regions(tmp_path / "pool", scenes, workers=3) == list(scenes)
    inline, pool = RoundRegions.open(tmp_path / "inline"), RoundRegions.open(tmp_path / "pool")
    assert pool.stems == inline.stems == list(scenes)
    assert pool.queue.tobytes() == inline.queue.tobytes()  # rows, scores and order identical
    for stem in scenes:
        assert np.array_equal(pool.region_map(stem), inline.region_map(stem))


def test_a_worker_error_or_a_stopped_round_leaves_no_queue_and_no_scratch_file(tmp_path):
    rng = np.random.default_rng(2)
    scenes = {f"img{i}": _scene(rng) for i in range(6)}
    image, pred, level = scenes["img3"]
    scenes["img3"] = (image[:, :-1], pred, level)  # its prediction is one pixel wider
    with pytest.raises(UserError, match="image 'img3' is 95x48, its prediction 96x48"):
        _stream_regions(tmp_path / "bad", scenes, workers=2)
    assert not (tmp_path / "bad" / "regions" / "queue.npy").exists()
    assert not list((tmp_path / "bad" / "regions").glob(".*"))

    def stop_after_two(stream):
        for n, item in enumerate(stream):
            if n == 2:
                stream.close()  # what a stop request does to the round's stream
                return
            yield item
    scenes["img3"] = (image, pred, level)
    assert _stream_regions(tmp_path / "stopped", scenes, workers=2, consume=stop_after_two) == ["img0", "img1"]
    assert not (tmp_path / "stopped" / "regions" / "queue.npy").exists()
    assert not list((tmp_path / "stopped" / "regions").glob(".*"))


def test_apply_action_assign_accept_ignore():
    edit = np.array([[EDIT_NONE, 7, EDIT_NONE, EDIT_NONE]], np.uint8)
    mask = np.array([[True, True, True, False]])
    pred = np.array([[1, 2, 3, 4]], np.uint8)
    assert apply_action(edit, mask, Action.ASSIGN, class_id=5).tolist() == [[5, 5, 5, EDIT_NONE]]
    # accept keeps what the person painted and takes the prediction elsewhere in the region
    assert apply_action(edit, mask, Action.ACCEPT, pred=pred).tolist() == [[1, 7, 3, EDIT_NONE]]
    assert apply_action(edit, mask, Action.IGNORE).tolist() == [[EDIT_IGNORE] * 3 + [EDIT_NONE]]
    assert edit[0, 0] == EDIT_NONE  # the input is not changed


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return shared_trained(tmp_path_factory)


@pytest.fixture
def project(trained, tmp_path) -> Project:
    return Project.open(copy_project(trained[1], tmp_path / "project"))


def test_pseudo_writes_regions_and_an_accepted_region_is_trained_on_at_full_weight(project):
    # Thresholds of 1.0 keep (almost) nothing automatically: every pixel is FILL unless edited.
    project.save_overrides(Overrides(thresholds={"road": 1.0, "sidewalk": 1.0, "building": 1.0}))
    result = murid("pseudo", "--project", project.root, "--portion", "0.01")
    assert result.code == 0, result.err
    assert "0 human-verified pixels" in result.out
    r = project.latest_round()
    info = project.read_round_info(r)
    regions = RoundRegions.open(project.round_dir(r))
    assert regions.stems == list(info.images)
    assert np.all(np.diff(regions.queue["score"]) <= 0)

    stem, region = regions.entry(0)  # the worst region of the round
    rmap = regions.region_map(stem)
    mask = rmap == region
    pred = read_index_png(project.round_dir(r) / PREDICTIONS_DIR / f"{stem}.png")
    before = training_maps(project, r, [stem])[0].numpy()
    assert rmap.shape == before.shape
    change = region_action(project, r, stem, region, "accept", regions=regions)
    assert change.pixels == int(mask.sum())
    after = training_maps(project, r, [stem])[0].numpy()
    np.testing.assert_array_equal(after[mask], pred[mask] + HUMAN)  # the class, marked as the user's
    assert not np.isin(after[mask], [FILL, NO_LOSS]).any()
    classes, human = split_human(torch.from_numpy(after))
    assert human.numpy()[mask].all() and not human.numpy()[~mask].any()
    np.testing.assert_array_equal(classes.numpy()[mask], pred[mask])
    np.testing.assert_array_equal(after[~mask], before[~mask])

    # Another region assigned a class, a third ignored.
    stem2, region2 = regions.entry(1)
    region_action(project, r, stem2, region2, "assign", class_id=11, regions=regions)
    m2 = regions.region_map(stem2) == region2
    assert (training_maps(project, r, [stem2])[0].numpy()[m2] == HUMAN + 11).all()
    stem3, region3 = regions.entry(2)
    region_action(project, r, stem3, region3, Action.IGNORE, regions=regions)
    m3 = regions.region_map(stem3) == region3
    assert (training_maps(project, r, [stem3])[0].numpy()[m3] == NO_LOSS).all()

    # The next round reports the human-verified pixels: accepted + assigned, not ignored (three
    # different regions of the queue, so their masks do not overlap).
    expected = int(mask.sum()) + int(m2.sum())
    result = murid("pseudo", "--project", project.root)
    assert result.code == 0, result.err
    assert project.read_round_info(r + 1).human_verified_pixels == expected
    assert f"{expected} human-verified pixels" in result.out


def test_region_action_errors_are_one_sentence(project):
    r = project.latest_round()
    with pytest.raises(Exception, match="no region 99999"):
        stem = RoundRegions.open(project.round_dir(r)).stems[0]
        region_action(project, r, stem, 99999, "ignore")
    with pytest.raises(Exception, match="not a train id"):
        region_action(project, r, stem, 0, "assign", class_id=40)


def test_superpixels_of_a_large_image_are_made_small_and_scaled_back_with_consecutive_ids():
    from murid_engine.regions import superpixels

    image = np.zeros((600, 1200, 3), np.uint8)
    image[:, 600:] = 255  # one strong edge: no region crosses it (up to the working scale)
    cfg = RegionConfig(region_pixels=4096, work_pixels=300 * 150)
    ids = superpixels(image, cfg)
    assert ids.shape == (600, 1200) and ids.dtype == np.int32
    assert np.array_equal(np.unique(ids), np.arange(ids.max() + 1))
    left, right = set(np.unique(ids[:, :590]).tolist()), set(np.unique(ids[:, 610:]).tolist())
    assert not left & right


def test_a_round_splits_its_images_as_the_project_config_says(project):
    """`regions` in the project config reaches the pseudo-label pass: four times the minimum
    number of regions, about four times the regions per image; a bad value is one sentence."""
    def regions_per_image() -> float:
        regions = RoundRegions.open(project.round_dir(project.latest_round()))
        return len(regions.queue) / len(regions.stems)

    assert murid("pseudo", "--project", project.root).code == 0
    default = regions_per_image()
    cfg = project.config
    cfg.regions.min_regions = 4 * cfg.regions.min_regions
    cfg.regions.region_pixels = 10 ** 9  # the minimum decides
    project.save_config(cfg.validate())
    assert murid("pseudo", "--project", project.root).code == 0
    assert regions_per_image() > 2.5 * default

    cfg.regions.min_regions = 0
    with pytest.raises(Exception, match=r"^regions\.min_regions must be 1 or more, not 0$"):
        cfg.validate()
