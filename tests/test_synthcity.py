"""SynthCity: written in the real layouts, deterministic by seed, all classes in both domains."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from murid_engine.cli import main
from murid_engine.data import open_dataset
from murid_engine.labels import LABEL_ID_TO_TRAIN_ID, NUM_CLASSES
from murid_engine.synthcity import SynthConfig, generate, render_image


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.png"))}


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sc") / "synthcity"
    assert main(["synth", str(out), "--n-source", "6", "--n-target", "4", "--n-val", "3",
                 "--size", "96x48", "--seed", "3", "--workers", "1"]) == 0
    return out


def test_real_layouts(synth: Path) -> None:
    assert sorted(p.name for p in (synth / "source" / "images").iterdir())[:2] == ["00000.png", "00001.png"]
    train = sorted((synth / "target" / "leftImg8bit" / "train").rglob("*_leftImg8bit.png"))
    val = sorted((synth / "target" / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))
    assert len(train) == 4 and len(val) == 3
    # GTA5-style labels: palette PNGs whose indices are Cityscapes label ids.
    label = Image.open(synth / "source" / "labels" / "00000.png")
    assert label.mode == "P" and label.size == (96, 48)
    ids = np.array(label)
    assert set(np.unique(ids)) <= {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33}
    # Cityscapes-style labels: grey label ids.
    grey = Image.open(val[0])
    assert grey.mode == "L"
    meta = json.loads((synth / "synthcity.json").read_text())
    assert (meta["seed"], meta["n_source"], meta["width"], meta["height"]) == (3, 6, 96, 48)


def test_readers_give_back_what_was_rendered(synth: Path) -> None:
    cfg = SynthConfig(n_source=6, n_target=4, n_val=3, width=96, height=48, seed=3)
    source = open_dataset(f"gta5:{synth / 'source'}")
    rgb, train_ids = render_image("source", "source", 2, cfg)
    image, label = source.read_pair(2)
    assert np.array_equal(image, rgb) and np.array_equal(label, train_ids)
    val = open_dataset(f"cityscapes:{synth / 'target'}", "val")
    rgb, train_ids = render_image("target", "val", 0, cfg)
    index = [s.stem for s in val.samples].index("eastfield_000000_000019")
    image, label = val.read_pair(index)
    assert np.array_equal(image, rgb) and np.array_equal(label, train_ids)


def test_deterministic_by_seed(tmp_path: Path, synth: Path) -> None:
    again = tmp_path / "again"
    generate(again, SynthConfig(n_source=6, n_target=4, n_val=3, width=96, height=48, seed=3), workers=2)
    assert _digest(again) == _digest(synth)
    a, _ = render_image("target", "train", 0, SynthConfig(seed=3, width=96, height=48))
    b, _ = render_image("target", "train", 0, SynthConfig(seed=4, width=96, height=48))
    assert not np.array_equal(a, b)


def test_every_class_in_both_domains() -> None:
    cfg = SynthConfig(width=256, height=128, seed=0)
    for domain, split in (("source", "source"), ("target", "val")):
        counts = np.zeros(256, dtype=np.int64)
        for i in range(40):
            counts += np.bincount(render_image(domain, split, i, cfg)[1].ravel(), minlength=256)
        assert (counts[:NUM_CLASSES] > 0).all(), (domain, np.flatnonzero(counts[:NUM_CLASSES] == 0))
        assert counts[NUM_CLASSES:].sum() == 0  # every pixel has a class


def test_domains_differ_in_look() -> None:
    """The target is darker, less saturated and noisier than the source, on average."""
    cfg = SynthConfig(width=128, height=64, seed=0)
    stats = {}
    for domain, split in (("source", "source"), ("target", "train")):
        imgs = np.stack([render_image(domain, split, i, cfg)[0] for i in range(12)]).astype(np.float32)
        sat = (imgs.max(-1) - imgs.min(-1)).mean()
        rough = np.abs(np.diff(imgs, axis=2)).mean()
        stats[domain] = (imgs.mean(), sat, rough)
    assert stats["target"][0] < stats["source"][0]
    assert stats["target"][1] < 0.8 * stats["source"][1]


def test_label_ids_map_to_train_ids() -> None:
    assert LABEL_ID_TO_TRAIN_ID[26] == 13 and LABEL_ID_TO_TRAIN_ID[7] == 0


@pytest.mark.parametrize("args, message", [
    (["--n-source", "-1"], "n_source must be 0 or more"),
    (["--size", "10x10"], "outside 32..4096"),
    (["--size", "wide"], "not WIDTHxHEIGHT"),
    (["--n-source", "0", "--n-target", "0", "--n-val", "0"], "nothing to generate"),
])
def test_bad_options(tmp_path: Path, capsys, args, message) -> None:
    assert main(["synth", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_refuses_a_folder_that_is_not_synthcity(tmp_path: Path, capsys) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["synth", str(tmp_path), "--n-source", "1", "--n-target", "0", "--n-val", "0"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_inspect_and_evaluate_on_synthcity(synth: Path, tmp_path: Path, capsys) -> None:
    assert main(["inspect", f"synthcity:{synth}", "--split", "source", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["kind"], report["n_images"], report["n_labelled"]) == ("synthcity", 6, 6)
    assert abs(sum(report["class_pixel_fraction"].values()) - 1.0) < 1e-9

    # Predictions equal to the labels score 1.0; wrecking one class's pixels lowers only that class.
    val = open_dataset(f"synthcity:{synth}", "val")
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    road_pixels = 0
    for i, sample in enumerate(val.samples):
        label = val.read_label(i).copy()
        road_pixels += int((label == 0).sum())
        label[label == 0] = 1  # every road pixel predicted as sidewalk
        Image.fromarray(label).save(pred_dir / f"{sample.stem}.png")
    out = tmp_path / "scores.json"
    assert main(["evaluate", "--pred", str(pred_dir), "--gt", f"synthcity:{synth}", "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert scores["n_images"] == 3 and scores["per_class_iou"]["road"] == 0.0
    sidewalk = sum(int((val.read_label(i) == 1).sum()) for i in range(len(val)))
    assert abs(scores["per_class_iou"]["sidewalk"] - sidewalk / (sidewalk + road_pixels)) < 1e-12
    others = [v for k, v in scores["per_class_iou"].items() if k not in ("road", "sidewalk") and v is not None]
    assert others and all(v == 1.0 for v in others)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_cancelled_generation_reports_each_image_and_leaves_nothing(tmp_path: Path, workers: int) -> None:
    from murid_engine.jobs import StopRequested

    cfg = SynthConfig(n_source=6, n_target=4, n_val=2, width=64, height=32)
    seen = []

    def on_image(done: int, total: int) -> None:
        seen.append((done, total))
        if done == 3:
            raise StopRequested  # the user cancels after the third image
    out = tmp_path / "synth"
    with pytest.raises(StopRequested):
        generate(out, cfg, workers=workers, on_image=on_image)
    assert seen == [(1, 12), (2, 12), (3, 12)]
    assert not out.exists()  # what it wrote is gone: the same folder can be generated into again
    seen.clear()
    generate(out, cfg, workers=1, on_image=lambda d, t: seen.append(d))
    assert seen == list(range(1, 13)) and (out / "synthcity.json").is_file()
