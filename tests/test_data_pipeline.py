"""The training data pipeline: the decoded-image cache and the deterministic DataLoader batches."""

from __future__ import annotations

import json
import os
import shutil

import cv2
import numpy as np
import pytest
import torch

import murid_engine.data.base as data_base
from murid_engine.config import load_preset
from murid_engine.curriculum.rounds import LABELS_DIR
from murid_engine.data import open_dataset
from murid_engine.errors import UserError
from murid_engine.imageio import read_rgb, write_grey_png, write_rgb
from murid_engine.project import Project
from murid_engine.training.crops import Crop, crop_image, crop_label
from murid_engine.training.domains import Domains
from murid_engine.training.image_cache import ImageCache, project_cache_dir
from murid_engine.training.loader import RoundLabels, TrainingBatches, sample_indices
from murid_engine.training.round_labels import NO_LOSS

from smoke_runs import one_thread, synth_data


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synth_data(tmp_path_factory.mktemp("pipeline") / "synth")


@pytest.fixture
def reads(monkeypatch):
    """Paths of every image decoded by a dataset reader while the test runs."""
    seen: list[str] = []

    def counting(path):
        seen.append(str(path))
        return read_rgb(path)

    monkeypatch.setattr(data_base, "read_rgb", counting)
    return seen


def config(data, workers=0, **data_fields):
    cfg = load_preset("smoke")
    cfg.data.source = cfg.data.target = f"synthcity:{data}"
    cfg.data.workers = workers
    for k, v in data_fields.items():
        setattr(cfg.data, k, v)
    cfg.device = "cpu"
    return cfg.validate()


def batches_of(domains, cfg, rank=0, world_size=1, seed=0):
    return TrainingBatches(domains.source, domains.target, cfg.data, seed, torch.device("cpu"),
                           rank=rank, world_size=world_size)


def same(a, b) -> bool:
    return all((x is None and y is None) or torch.equal(x, y) for x, y in zip(a, b))


def source_dataset(data):
    return open_dataset(f"synthcity:{data}", "source")


# ------------------------------------------------------------------------------ the cache
def test_each_image_is_decoded_once_and_the_cache_is_reused(data, tmp_path, reads):
    ds = source_dataset(data)
    cache = ImageCache.open(ds, tmp_path, "source", with_labels=True)
    assert sorted(reads) == sorted(str(s.image) for s in ds.samples)
    image, label = ds.read_pair(3)
    assert np.array_equal(cache.image(3), image) and np.array_equal(cache.label(3), label)
    reads.clear()
    again = ImageCache.open(ds, tmp_path, "source", with_labels=True)
    assert reads == [] and again.data_path == cache.data_path
    assert np.array_equal(again.image(5), ds.read_image(5))


def test_a_changed_dataset_or_size_rebuilds_the_cache(data, tmp_path, reads):
    copy = shutil.copytree(data, tmp_path / "synth")
    ds = source_dataset(copy)
    ImageCache.open(ds, tmp_path / "cache", "source", with_labels=True)
    changed = ds.samples[2].image
    write_rgb(changed, 255 - read_rgb(changed))  # same name and size, other pixels
    reads.clear()
    cache = ImageCache.open(source_dataset(copy), tmp_path / "cache", "source", with_labels=True)
    assert len(reads) == len(ds)
    assert np.array_equal(cache.image(2), read_rgb(changed))
    reads.clear()
    small = ImageCache.open(source_dataset(copy), tmp_path / "cache", "source", with_labels=True,
                            size=(32, 16))
    assert len(reads) == len(ds) and small.image(0).shape == (16, 32, 3)
    assert len(list((tmp_path / "cache").glob("source-*.bin"))) == 1  # older builds are removed


@pytest.mark.parametrize("damage", ["truncate", "garbage index", "no index"])
def test_a_damaged_cache_is_rebuilt(data, tmp_path, reads, damage):
    ds = source_dataset(data)
    first = ImageCache.open(ds, tmp_path, "source", with_labels=True)
    index = tmp_path / "source.json"
    if damage == "truncate":
        with open(first.data_path, "r+b") as f:
            f.truncate(os.path.getsize(first.data_path) // 2)
    elif damage == "garbage index":
        index.write_bytes(b'{"format": "murid-decoded-cache", "version": 1, "stems": [')
    else:
        index.unlink()
    reads.clear()
    cache = ImageCache.open(ds, tmp_path, "source", with_labels=True)
    assert len(reads) == len(ds)
    assert np.array_equal(cache.image(len(ds) - 1), ds.read_image(len(ds) - 1))
    assert json.loads(index.read_text())["data_file"] == cache.data_path.name


def test_a_corrupt_image_is_named_in_one_sentence(data, tmp_path):
    copy = shutil.copytree(data, tmp_path / "synth")
    bad = source_dataset(copy).samples[4].image
    bad.write_bytes(bad.read_bytes()[:40])
    for workers in (0, 1):
        with pytest.raises(UserError, match=str(bad)) as err:
            ImageCache.open(source_dataset(copy), tmp_path / f"cache{workers}", "source",
                            with_labels=True, workers=workers)
        assert "\n" not in str(err.value)


def test_a_cache_that_cannot_fit_on_its_disk_is_refused_up_front(data, tmp_path, monkeypatch, reads):
    import murid_engine.training.image_cache as image_cache

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(image_cache.shutil, "disk_usage", lambda _: usage._replace(free=1000))
    with pytest.raises(UserError, match=r"needs about .* GB and its disk has 0\.0 GB free"):
        ImageCache.open(source_dataset(data), tmp_path, "source", with_labels=True)
    assert len(reads) == 1  # refused after the first image, not after decoding them all
    assert list(tmp_path.iterdir()) == [tmp_path / "source.lock"]  # no partial file left


# ---------------------------------------------------------------------------- the batches
def test_batches_are_a_function_of_seed_rank_stage_and_iteration(data, tmp_path):
    cfg = config(data)
    domains = Domains.load(cfg, tmp_path)
    with one_thread():
        a = batches_of(domains, cfg).get("adapt", 7, 10, domains.target)
        b = batches_of(domains, cfg).get("adapt", 7, 10, domains.target)
        assert same(a, b)
        assert a.source.shape == (2, 3, 32, 64) and a.source.dtype == torch.float32
        assert a.source_labels.dtype == torch.long and a.target_labels is None
        for other in (batches_of(domains, cfg, rank=1, world_size=2).get("adapt", 7, 10, domains.target),
                      batches_of(domains, cfg).get("adapt", 8, 10, domains.target),
                      batches_of(domains, cfg).get("curriculum", 7, 10, domains.target),
                      batches_of(domains, cfg, seed=1).get("adapt", 7, 10, domains.target)):
            assert not torch.equal(a.source, other.source)


def test_ranks_share_each_pass_over_the_images_without_overlap():
    n, batch, world = 10, 2, 2
    drawn = {(it, rank): sample_indices(n, batch, 0, 1, 0, it, rank, world)
             for it in range(3) for rank in range(world)}
    # positions (it * world + rank) * batch + j: the first pass is the first n of them
    first_pass = np.concatenate([drawn[it, r] for it in range(3) for r in range(world)])[:n]
    assert sorted(first_pass.tolist()) == list(range(n))
    assert not np.array_equal(first_pass, np.arange(n))  # a shuffled order, not 0, 1, 2, ...
    for it in range(2):
        assert set(drawn[it, 0].tolist()).isdisjoint(drawn[it, 1].tolist())
    second = np.concatenate([sample_indices(n, batch, 0, 1, 0, it, r, world)
                             for it in range(5, 8) for r in range(world)])[:n]
    assert not np.array_equal(np.sort(second), second)  # later passes: other orders


def test_resuming_mid_stage_and_workers_give_the_same_batches(data, tmp_path):
    cfg0, cfg1 = config(data, workers=0), config(data, workers=1)
    domains = Domains.load(cfg0, tmp_path)
    with one_thread():
        straight = batches_of(domains, cfg0)
        run = [straight.get("adapt", it, 6, domains.target) for it in range(6)]
        resumed = batches_of(domains, cfg0)  # a new process resumed at iteration 4
        assert same(resumed.get("adapt", 4, 6, domains.target), run[4])
        workers = batches_of(domains, cfg1)
        for it in range(6):
            assert same(workers.get("adapt", it, 6, domains.target), run[it])
        assert same(batches_of(domains, cfg1).get("adapt", 3, 6, domains.target), run[3])


def write_round(project: Project, r: int, stems: list[str], shape, value: int) -> None:
    for stem in stems:
        write_grey_png(project.round_dir(r, create=True) / LABELS_DIR / f"{stem}.png",
                       np.full(shape, value, np.uint8))


@pytest.mark.parametrize("workers", [0, 1])
def test_the_labels_of_a_new_round_are_picked_up(data, tmp_path, workers):
    # No rescale, no flip, a crop the size of the image: a batch's labels are whole label maps.
    cfg = config(data, workers=workers, scale=(1.0, 1.0), flip=False)
    project = Project.create(tmp_path / "project", cfg)
    domains = Domains.load(cfg, project_cache_dir(project.root))
    stems, shape = domains.target.stems, domains.target.store.shape(0)
    assert shape == (32, 64) and tuple(cfg.data.crop) == (64, 32)
    write_round(project, 1, stems, shape, 3)
    write_round(project, 2, stems, shape, 5)
    edit = np.full(shape, 255, np.uint8)
    edit[:, :10] = 254  # the user painted 'ignore' on the left of every image
    for stem in stems:
        project.save_edit(stem, edit)
    batches = batches_of(domains, cfg)
    with one_thread():
        round1 = domains.target.with_labels(RoundLabels(project, 1))
        first = [batches.get("curriculum", it, 2, round1) for it in range(2)]
        round2 = domains.target.with_labels(RoundLabels(project, 2))
        second = batches.get("curriculum", 2, 4, round2)
    for batch, value in ((first[0], 3), (first[1], 3), (second, 5)):
        assert (batch.target_labels[:, :, :10] == NO_LOSS).all()
        assert (batch.target_labels[:, :, 10:] == value).all()


def test_a_round_without_a_label_of_an_image_is_refused_before_training(data, tmp_path):
    cfg = config(data)
    project = Project.create(tmp_path / "project", cfg)
    domains = Domains.load(cfg, project_cache_dir(project.root))
    stems, shape = domains.target.stems, domains.target.store.shape(0)
    write_round(project, 1, stems[1:], shape, 3)
    with pytest.raises(UserError, match=f"no label for image '{stems[0]}'"):
        RoundLabels(project, 1).check(stems)


# ----------------------------------------------------------------------------- the crops
def _nearest_source(n_out: int, offset: int, factor: float, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """Nearest source index of each output pixel (pixel centres aligned), and where that is a tie."""
    centre = (np.arange(n_out) + offset + 0.5) * factor
    frac = centre - np.floor(centre)
    return np.minimum(np.floor(centre).astype(int), n_in - 1), np.minimum(frac, 1 - frac) < 1e-6


@pytest.mark.parametrize("scale", [0.75, 1.0, 1.3])
def test_a_crop_is_the_crop_of_the_rescaled_image(scale):
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8), (5, 5), 2)
    # every pixel its own label: (row, column) -> row * 60 + column, split over two maps
    rows, cols = np.mgrid[0:40, 0:60]
    sh, sw = (40, 60) if scale == 1.0 else (round(40 * scale), round(60 * scale))
    crop = Crop(scale, y0=3, x0=5, flip=True)
    size = (48, 36)
    got = crop_image(image, crop, size)
    got_rows = crop_label(rows.astype(np.uint8), crop, size, fill=NO_LOSS)[:, ::-1]
    got_cols = crop_label(cols.astype(np.uint8), crop, size, fill=NO_LOSS)[:, ::-1]
    h, w = min(36, sh - crop.y0), min(48, sw - crop.x0)
    big = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_LINEAR)
    want = np.zeros((36, 48, 3), np.uint8)
    want[:h, :w] = big[crop.y0:crop.y0 + h, crop.x0:crop.x0 + w]
    assert np.abs(got.astype(int) - want[:, ::-1]).max() <= 2  # resize-then-crop, then flip
    want_rows, row_ties = _nearest_source(h, crop.y0, 40 / sh, 40)
    want_cols, col_ties = _nearest_source(w, crop.x0, 60 / sw, 60)
    assert ((got_rows[:h, :w] == want_rows[:, None]) | row_ties[:, None]).all()
    assert ((got_cols[:h, :w] == want_cols[None, :]) | col_ties[None, :]).all()
    assert (got_rows[h:] == NO_LOSS).all() and (got_cols[:, w:] == NO_LOSS).all()  # padding


# ------------------------------------------------------------------------- the benchmark
def test_the_training_speed_benchmark_compares_the_engine_with_a_bare_loop(data):
    from murid_engine.bench.training_speed import measure_training_speed

    spec = f"synthcity:{data}"
    cfg = load_preset("smoke")
    cfg.device = "cpu"
    with one_thread():
        speed = measure_training_speed(cfg, spec, spec, iterations=2,
                                       warmup_iters=1, threads=1, workers=0, repeats=2)
    assert len(speed.engine_runs_ms) == 2 and len(speed.bare_runs_ms) == 3
    assert min(speed.engine_runs_ms + speed.bare_runs_ms) > 0
    b = speed.bare_runs_ms
    ratios = sorted(e / ((b0 + b1) / 2) - 1 for e, b0, b1 in zip(speed.engine_runs_ms, b, b[1:]))
    assert speed.overhead_ratio == pytest.approx(sum(ratios) / 2, abs=1e-3)  # median of two
    engine = sorted(speed.engine_runs_ms)
    assert speed.images_per_s == pytest.approx(2 * 2 * 1000 / (sum(engine) / 2), rel=1e-2)  # 2 + 2 images
    record = speed.to_json()
    assert record["crop"] == [64, 32] and record["threads"] == 1 and record["device"] == "cpu"
    with pytest.raises(UserError, match="iterations"):
        measure_training_speed(load_preset("smoke"), spec, spec, iterations=0)


# ------------------------------------------------------------------ data.cache: where images live
def _stores_batches(domains, cfg, iterations=4):
    batches = batches_of(domains, cfg)
    try:
        return [batches.get(stage, it, iterations, domains.target if stage == "adapt" else None)
                for stage in ("warmup", "adapt") for it in range(iterations)]
    finally:
        batches.close()


@pytest.mark.parametrize("size", [None, (48, 24)])
def test_disk_cache_and_decoding_from_the_files_give_the_same_batches(data, tmp_path, size):
    from murid_engine.training.file_images import FileImages
    from murid_engine.training.image_cache import ImageCache

    disk_cfg = config(data, cache="disk", source_size=size, target_size=size)
    off_cfg = config(data, cache="off", source_size=size, target_size=size)
    disk = Domains.load(disk_cfg, tmp_path / "disk")
    off = Domains.load(off_cfg, tmp_path / "off")
    assert isinstance(disk.source.store, ImageCache) and isinstance(off.target.store, FileImages)
    assert not (tmp_path / "off").exists()  # nothing decoded to disk
    with one_thread():
        a, b = _stores_batches(disk, disk_cfg), _stores_batches(off, off_cfg)
        for x, y in zip(a, b):
            assert torch.equal(x.source, y.source) and torch.equal(x.source_labels, y.source_labels)
            assert (x.target is None) == (y.target is None)
            assert x.target is None or torch.equal(x.target, y.target)
        # Workers decode in their own processes: still the same batches.
        workers = _stores_batches(off, config(data, workers=1, cache="off", source_size=size,
                                              target_size=size), iterations=2)
    assert same(workers[2], a[4]) and same(workers[0], a[0])  # adapt 0, warmup 0
    assert off.target.stems == disk.target.stems
    assert torch.equal(off.source.images[3], disk.source.images[3])


def test_the_labels_of_a_round_are_read_the_same_without_a_cache(data, tmp_path):
    cfg = config(data, cache="off")
    project = Project.create(tmp_path / "project", cfg)
    domains = Domains.load(cfg, project_cache_dir(project.root))
    stems, shape = domains.target.stems, domains.target.store.shape(0)
    assert shape == (32, 64)
    write_round(project, 1, stems, shape, 4)
    with one_thread():
        batch = batches_of(domains, cfg).get("curriculum", 0, 1,
                                             domains.target.with_labels(RoundLabels(project, 1)))
    assert (batch.target_labels == 4).any() and batch.target.shape == (2, 3, 32, 64)


def test_auto_uses_the_disk_cache_when_it_fits_and_says_so(data, tmp_path):
    from murid_engine.jobs import CollectingSink

    sink = CollectingSink()
    domains = Domains.load(config(data), tmp_path / "cache", sink)
    [note] = [e.text for e in sink.events]
    assert note.startswith(f"data.cache auto ({tmp_path / 'cache'}): the source images in the disk cache (")
    assert "MB to write" in note
    assert "the target images in the disk cache" in note and "\n" not in note
    assert sorted(p.suffix for p in (tmp_path / "cache").glob("*.bin")) == [".bin", ".bin"]
    assert len(domains.source) == 12
    again = CollectingSink()
    Domains.load(config(data), tmp_path / "cache", again)
    assert "built already" in again.events[0].text  # a built cache is reused, whatever the space


def test_auto_decodes_from_the_files_when_the_disk_is_too_small(data, tmp_path, monkeypatch):
    import murid_engine.training.image_stores as image_stores
    from murid_engine.jobs import CollectingSink
    from murid_engine.training.file_images import FileImages

    monkeypatch.setattr(image_stores, "free_bytes", lambda folder: 1000)
    sink = CollectingSink()
    domains = Domains.load(config(data), tmp_path / "cache", sink)
    [note] = [e.text for e in sink.events]
    assert "the source images decoded from their files at each read" in note
    assert "the disk has 0.0 MB free" in note and "the target images decoded" in note
    assert isinstance(domains.source.store, FileImages) and isinstance(domains.target.store, FileImages)
    assert not list((tmp_path / "cache").glob("*.bin"))


def test_auto_keeps_a_margin_beyond_the_cache_size(data, tmp_path, monkeypatch):
    import murid_engine.training.image_stores as image_stores

    ds = source_dataset(data)
    needed = image_stores.decoded_bytes(ds, True, None)
    assert needed == 12 * 64 * 32 * 4
    # Room for the cache itself, but not for the margin of 1 GiB after it: off.
    monkeypatch.setattr(image_stores, "free_bytes", lambda folder: needed + image_stores.GIB - 1)
    plan = image_stores.StorePlan("auto", tmp_path)
    assert not isinstance(plan.open(ds, "source", True, None, "decode"), ImageCache)
    monkeypatch.setattr(image_stores, "free_bytes", lambda folder: needed + image_stores.GIB)
    plan = image_stores.StorePlan("auto", tmp_path)
    assert isinstance(plan.open(ds, "source", True, None, "decode"), ImageCache)
