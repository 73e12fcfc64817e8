"""Dataset readers on tiny datasets in the official formats: real values, and one clear error
naming the file for every bad input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from layouts import (
    corrupt, rgb_image, truncate, write_cityscapes, write_folder, write_gta5, write_synthia,
)
from murid_engine.data import open_dataset
from murid_engine.errors import UserError

H, W = 16, 32


def ids(*values: int) -> np.ndarray:
    """An HxW label with `values` in equal vertical bands (left to right)."""
    out = np.empty((H, W), np.uint8)
    for i, band in enumerate(np.array_split(np.arange(W), len(values))):
        out[:, band] = values[i]
    return out


def expect_error(match: str, fn, *args) -> str:
    """Run fn(*args), expecting a one-line UserError whose message contains `match`."""
    with pytest.raises(UserError) as info:
        fn(*args)
    message = str(info.value)
    assert match in message, message
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------------ GTA5


def test_gta5_reads_palette_indices_as_label_ids(tmp_path: Path) -> None:
    label = ids(7, 26, 4, 33, 255, 8, 11, 0)  # road car static bicycle plate sidewalk building
    write_gta5(tmp_path, [("00001", rgb_image(seed=1), label)])
    path = tmp_path / "labels" / "00001.png"
    assert Image.open(path).mode == "P"
    # The file's colours are not the ids: a reader that read colours would get other values.
    assert cv2.imread(str(path))[0, 4].tolist() == [142, 0, 0]  # car, BGR
    ds = open_dataset(f"gta5:{tmp_path}")
    image, train = ds.read_pair(0)
    assert image.tolist() == rgb_image(seed=1).tolist()
    assert train.dtype == np.uint8 and train.shape == (H, W)
    expected = [0, 13, 255, 18, 255, 1, 2, 255]  # 7->0, 26->13, 4->255, 33->18, 8->1, 11->2
    assert [int(train[0, band[0]]) for band in np.array_split(np.arange(W), 8)] == expected
    assert ds.samples[0].stem == "00001" and ds.has_labels and ds.kind == "gta5"


def test_gta5_structure_errors(tmp_path: Path) -> None:
    expect_error("does not exist", open_dataset, f"gta5:{tmp_path / 'nowhere'}")
    (tmp_path / "images").mkdir()
    expect_error(str(tmp_path / "labels"), open_dataset, f"gta5:{tmp_path}")
    (tmp_path / "labels").mkdir()
    expect_error("no images found in", open_dataset, f"gta5:{tmp_path}")
    write_gta5(tmp_path, [("00001", rgb_image(), ids(7)), ("00002", rgb_image(), None)])
    expect_error("00002.png has no label", open_dataset, f"gta5:{tmp_path}")
    (tmp_path / "images" / "00002.png").unlink()
    write_gta5(tmp_path / "x", [("00003", rgb_image(), ids(7))])
    (tmp_path / "x" / "labels" / "00003.png").rename(tmp_path / "labels" / "00003.png")
    expect_error("00003.png is a label without an image", open_dataset, f"gta5:{tmp_path}")
    (tmp_path / "labels" / "00003.png").unlink()
    expect_error("gta5 has no splits", open_dataset, f"gta5:{tmp_path}", "train")
    assert len(open_dataset(f"gta5:{tmp_path}", "all")) == 1


@pytest.fixture
def gta5(tmp_path: Path):
    write_gta5(tmp_path, [("00001", rgb_image(), ids(7, 26))])
    return tmp_path, lambda: open_dataset(f"gta5:{tmp_path}")


def test_gta5_garbage_label(gta5) -> None:
    root, ds = gta5
    corrupt(root / "labels" / "00001.png")
    expect_error("00001.png is not a readable", ds().read_label, 0)


def test_gta5_truncated_label_and_image(gta5) -> None:
    root, ds = gta5
    truncate(root / "labels" / "00001.png")
    expect_error(str(root / "labels" / "00001.png"), ds().read_label, 0)
    truncate(root / "images" / "00001.png")
    expect_error(str(root / "images" / "00001.png"), ds().read_image, 0)


def test_gta5_label_cut_after_its_pixels(gta5) -> None:
    root, ds = gta5
    path = root / "labels" / "00001.png"
    path.write_bytes(path.read_bytes()[:-12])  # no IEND: Pillow alone would decode it
    expect_error("00001.png is truncated", ds().read_label, 0)


def test_gta5_garbage_image(gta5) -> None:
    root, ds = gta5
    corrupt(root / "images" / "00001.png")
    expect_error("images/00001.png is not a readable image", ds().read_pair, 0)


def test_gta5_label_of_another_size(gta5) -> None:
    root, ds = gta5
    write_gta5(root, [("00001", rgb_image(), np.full((8, 8), 7, np.uint8))])
    message = expect_error("labels/00001.png is 8x8", ds().read_pair, 0)
    assert "32x16" in message


def test_gta5_values_outside_label_ids(gta5) -> None:
    root, ds = gta5
    write_gta5(root, [("00001", rgb_image(), ids(7, 34, 200))])
    message = expect_error("00001.png holds values [34, 200]", ds().read_label, 0)
    assert "label-id" in message


def test_gta5_rgb_label_is_refused(gta5) -> None:
    root, ds = gta5
    Image.fromarray(rgb_image(), "RGB").save(root / "labels" / "00001.png")
    expect_error("00001.png is a RGB image", ds().read_label, 0)


# --------------------------------------------------------------------------------- SYNTHIA


def test_synthia_class_in_red_channel(tmp_path: Path) -> None:
    classes = ids(8, 3, 0, 22, 10, 1, 13, 12).astype(np.uint16)
    write_synthia(tmp_path, [("0000001", rgb_image(), classes)])
    ds = open_dataset(f"synthia:{tmp_path}")
    train = ds.read_pair(0)[1]
    # car, road, void, lanemarking, person, sky, parking-slot, motorcycle
    expected = [13, 0, 255, 255, 11, 10, 255, 17]
    assert [int(train[0, band[0]]) for band in np.array_split(np.arange(W), 8)] == expected
    assert ds.samples[0].stem == "0000001"


@pytest.fixture
def synthia(tmp_path: Path):
    write_synthia(tmp_path, [("0000001", rgb_image(), ids(8).astype(np.uint16))])
    return tmp_path / "GT" / "LABELS" / "0000001.png", lambda: open_dataset(f"synthia:{tmp_path}")


def test_synthia_8bit_label(synthia) -> None:
    path, ds = synthia
    cv2.imwrite(str(path), np.zeros((H, W, 3), np.uint8))
    message = expect_error("0000001.png is an 8-bit image", ds().read_label, 0)
    assert "16-bit" in message


def test_synthia_single_channel_label(synthia) -> None:
    path, ds = synthia
    cv2.imwrite(str(path), np.full((H, W), 8, np.uint16))
    expect_error("0000001.png is a single-channel image", ds().read_label, 0)


def test_synthia_values_outside(synthia) -> None:
    path, ds = synthia
    bgr = np.zeros((H, W, 3), np.uint16)
    bgr[..., 2] = 8
    bgr[0, 0, 2] = 23
    bgr[0, 1, 2] = 1000
    cv2.imwrite(str(path), bgr)
    expect_error("0000001.png holds values [23, 1000] outside the SYNTHIA", ds().read_label, 0)


def test_synthia_structure(tmp_path: Path) -> None:
    expect_error(str(tmp_path / "RGB"), open_dataset, f"synthia:{tmp_path}")
    write_synthia(tmp_path, [("0000001", rgb_image(), None)])
    expect_error("0000001.png has no label", open_dataset, f"synthia:{tmp_path}")


# ------------------------------------------------------------------------------ Cityscapes


def test_cityscapes_stems_labels_and_colour_files_ignored(tmp_path: Path) -> None:
    write_cityscapes(tmp_path, "val", [
        ("frankfurt", "frankfurt_000000_000294", rgb_image(seed=2), ids(26, 7, 4, 255)),
        ("lindau", "lindau_000000_000019", rgb_image(seed=3), ids(24)),
    ])
    ds = open_dataset(f"cityscapes:{tmp_path}", "val")
    assert [s.stem for s in ds.samples] == ["frankfurt_000000_000294", "lindau_000000_000019"]
    assert ds.samples[0].label.name == "frankfurt_000000_000294_gtFine_labelIds.png"
    image, train = ds.read_pair(0)
    assert image.tolist() == rgb_image(seed=2).tolist()
    assert train[0, [0, 8, 16, 24]].tolist() == [13, 0, 255, 255]
    assert set(ds.read_label(1).ravel().tolist()) == {11}


def test_cityscapes_unlabelled_and_default_split(tmp_path: Path) -> None:
    write_cityscapes(tmp_path, "train", [("aachen", "aachen_000000_000019", rgb_image(), None)])
    ds = open_dataset(f"cityscapes:{tmp_path}")
    assert ds.split == "train" and len(ds) == 1 and ds.n_labelled == 0 and not ds.has_labels
    expect_error("has no label", ds.read_label, 0)
    expect_error("no split 'bogus'", open_dataset, f"cityscapes:{tmp_path}", "bogus")
    expect_error("leftImg8bit/val does not exist", open_dataset, f"cityscapes:{tmp_path}", "val")


def test_cityscapes_image_without_label(tmp_path: Path) -> None:
    write_cityscapes(tmp_path, "val", [
        ("bonn", "bonn_000000_000019", rgb_image(), ids(7)),
        ("bonn", "bonn_000001_000019", rgb_image(), None),
    ])
    message = expect_error("bonn_000001_000019_leftImg8bit.png has no label", open_dataset,
                           f"cityscapes:{tmp_path}", "val")
    assert "bonn_000001_000019_gtFine_labelIds.png" in message


def test_cityscapes_bad_labels(tmp_path: Path) -> None:
    write_cityscapes(tmp_path, "val", [("ulm", "ulm_000000_000019", rgb_image(), ids(7, 40))])
    ds = open_dataset(f"cityscapes:{tmp_path}", "val")
    expect_error("ulm_000000_000019_gtFine_labelIds.png holds values [40]", ds.read_label, 0)
    label = ds.samples[0].label
    Image.fromarray(rgb_image(), "RGB").save(label)
    expect_error("_gtFine_labelIds.png is a RGB image", ds.read_label, 0)


def test_cityscapes_no_images(tmp_path: Path) -> None:
    (tmp_path / "leftImg8bit" / "train" / "aachen").mkdir(parents=True)
    expect_error("no images found in", open_dataset, f"cityscapes:{tmp_path}")


# ---------------------------------------------------------------------------------- folder


def test_folder_train_ids_jpg_images_palette_labels(tmp_path: Path) -> None:
    write_folder(tmp_path, [("a", rgb_image(), ids(0, 13, 18, 255))], suffix=".jpg", palette=True)
    ds = open_dataset(f"folder:{tmp_path}", "val")  # no val/ subfolder: the split is ignored
    assert ds.split is None and ds.samples[0].image.suffix == ".jpg"
    image, train = ds.read_pair(0)
    assert image.shape == (H, W, 3)
    assert train[0, [0, 8, 16, 24]].tolist() == [0, 13, 18, 255]


def test_folder_splits_and_errors(tmp_path: Path) -> None:
    write_folder(tmp_path / "train", [("a", rgb_image(), ids(1))])
    write_folder(tmp_path / "val", [("b", rgb_image(), ids(19)), ("c", rgb_image(), None)])
    expect_error("choose a split with --split (train, val)", open_dataset, f"folder:{tmp_path}")
    assert [s.stem for s in open_dataset(f"folder:{tmp_path}", "train").samples] == ["a"]
    expect_error("has no split 'test'; choose", open_dataset, f"folder:{tmp_path}", "test")
    expect_error("c.png has no label", open_dataset, f"folder:{tmp_path}", "val")
    (tmp_path / "val" / "images" / "c.png").unlink()
    ds = open_dataset(f"folder:{tmp_path}", "val")
    expect_error("b.png holds values [19] outside the train-id", ds.read_label, 0)
    write_folder(tmp_path / "u", [("d", rgb_image(), None)])
    assert open_dataset(f"folder:{tmp_path / 'u'}").n_labelled == 0


# ------------------------------------------------------------------------ SynthCity, specs


def test_synthcity_splits(tmp_path: Path) -> None:
    write_gta5(tmp_path / "source", [("00001", rgb_image(), ids(26))])
    write_cityscapes(tmp_path / "target", "train", [("synth", "synth_000001", rgb_image(), ids(7))])
    write_cityscapes(tmp_path / "target", "val", [
        ("synth", "synth_000002", rgb_image(), ids(24)),
        ("synth", "synth_000003", rgb_image(), ids(24)),
    ])
    val = open_dataset(f"synthcity:{tmp_path}")
    assert (val.kind, val.split, len(val)) == ("synthcity", "val", 2)
    assert repr(val).startswith(f"synthcity:{tmp_path}, split=val")
    source = open_dataset(f"synthcity:{tmp_path}", "source")
    assert source.kind == "synthcity" and set(source.read_label(0).ravel().tolist()) == {13}
    train = open_dataset(f"synthcity:{tmp_path}", "train")
    assert train.samples[0].stem == "synth_000001" and train.read_label(0)[0, 0] == 0
    expect_error("synthcity has no split 'test'", open_dataset, f"synthcity:{tmp_path}", "test")


def test_bad_specs(tmp_path: Path) -> None:
    expect_error("is not KIND:PATH", open_dataset, str(tmp_path))
    expect_error("unknown dataset kind 'kitti'", open_dataset, f"kitti:{tmp_path}")
