"""`inspect_dataset` and `murid inspect`: real counts and fractions, every bad file reported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from layouts import corrupt, rgb_image, truncate, write_cityscapes, write_gta5
from murid_engine.cli import main
from murid_engine.data import open_dataset
from murid_engine.inspection import inspect_dataset
from murid_engine.labels import CLASS_NAMES

H, W = 16, 32


def gta5_two_images(root: Path) -> Path:
    """512 px each: image 1 = 256 road (7), 128 car (26), 128 static (4, ignored);
    image 2 = 512 car. Valid pixels: 896; road 256, car 640."""
    first = np.full((H, W), 7, np.uint8)
    first[:, 16:24] = 26
    first[:, 24:] = 4
    write_gta5(root, [("00001", rgb_image(seed=1), first),
                      ("00002", rgb_image(seed=2), np.full((H, W), 26, np.uint8))])
    return root


def test_class_fractions_counts_and_sizes(tmp_path: Path) -> None:
    report = inspect_dataset(open_dataset(f"gta5:{gta5_two_images(tmp_path)}"), progress=False)
    assert (report.kind, report.n_images, report.n_labelled) == ("gta5", 2, 2)
    assert report.sizes == {"32x16": 2} and report.problems == []
    assert list(report.class_pixel_fraction) == list(CLASS_NAMES) and len(CLASS_NAMES) == 19
    assert report.class_pixel_fraction["road"] == pytest.approx(256 / 896)
    assert report.class_pixel_fraction["car"] == pytest.approx(640 / 896)
    assert sum(report.class_pixel_fraction.values()) == pytest.approx(1.0)
    assert report.class_pixel_count["car"] == 640 and report.n_valid_pixels == 896
    assert report.n_ignored_pixels == 128


def test_unlabelled_images_are_sized_from_their_header(tmp_path: Path) -> None:
    write_cityscapes(tmp_path, "train", [
        ("aachen", "aachen_000000_000019", rgb_image(), None),
        ("aachen", "aachen_000001_000019", rgb_image(h=8, w=8), None),
    ])
    report = inspect_dataset(open_dataset(f"cityscapes:{tmp_path}"), progress=False)
    assert (report.n_images, report.n_labelled, report.split) == (2, 0, "train")
    assert report.sizes == {"32x16": 1, "8x8": 1}
    assert set(report.class_pixel_fraction.values()) == {0.0} and report.problems == []


def test_every_bad_file_is_reported(tmp_path: Path) -> None:
    good = np.full((H, W), 7, np.uint8)
    write_gta5(tmp_path, [
        ("00001", rgb_image(), good),
        ("00002", rgb_image(), good),                         # label: garbage bytes
        ("00003", rgb_image(), good),                         # image: truncated
        ("00004", rgb_image(), np.full((8, 8), 7, np.uint8)),  # label of another size
        ("00005", rgb_image(), np.full((H, W), 99, np.uint8)),  # value outside label ids
    ])
    corrupt(tmp_path / "labels" / "00002.png")
    truncate(tmp_path / "images" / "00003.png")
    report = inspect_dataset(open_dataset(f"gta5:{tmp_path}"), progress=False)
    assert report.n_images == 5 and len(report.problems) == 4
    for stem, problem in zip(["00002", "00003", "00004", "00005"], report.problems):
        assert f"{stem}.png" in problem and "\n" not in problem
    assert "labels/00004.png is 8x8" in report.problems[2]
    # Only the good pixels count: 00001 fully, and 00003's label (its image is unreadable).
    assert report.class_pixel_count["road"] == 512
    assert report.class_pixel_fraction["road"] == 1.0


# ------------------------------------------------------------------------------- command


def test_cli_json(tmp_path: Path, capsys) -> None:
    root = gta5_two_images(tmp_path)
    assert main(["inspect", f"gta5:{root}", "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)
    assert {"kind", "root", "split", "n_images", "n_labelled", "sizes", "problems",
            "class_pixel_fraction"} <= set(data)
    assert (data["kind"], data["n_images"], data["n_labelled"]) == ("gta5", 2, 2)
    assert data["root"] == str(root) and data["split"] is None and data["problems"] == []
    assert data["sizes"] == {"32x16": 2}
    assert data["class_pixel_fraction"]["car"] == pytest.approx(640 / 896)


def test_cli_text(tmp_path: Path, capsys) -> None:
    assert main(["inspect", f"gta5:{gta5_two_images(tmp_path)}"]) == 0
    out = capsys.readouterr().out
    assert "images:    2" in out and "32x16 (2)" in out and "problems:  none" in out
    assert all(name in out for name in CLASS_NAMES)


def test_cli_problems_exit_2(tmp_path: Path, capsys) -> None:
    root = gta5_two_images(tmp_path)
    corrupt(root / "labels" / "00002.png")
    truncate(root / "images" / "00001.png")
    assert main(["inspect", f"gta5:{root}", "--json"]) == 2
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert len(data["problems"]) == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 2 and "images/00001.png" in lines[0] and "labels/00002.png" in lines[1]
    assert "Traceback" not in captured.err


@pytest.mark.parametrize("args, match", [
    (["inspect", "gta5:{tmp}/missing"], "does not exist"),
    (["inspect", "cityscapes:{tmp}", "--split", "val"], "does not exist"),
    (["inspect", "{tmp}"], "is not KIND:PATH"),
    (["inspect", "gta5:{tmp}", "--split", "train"], "gta5 has no splits"),
])
def test_cli_user_errors(tmp_path: Path, capsys, args: list[str], match: str) -> None:
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and match in lines[0] and "Traceback" not in captured.err


def test_cli_no_images(tmp_path: Path, capsys) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    assert main(["inspect", f"gta5:{tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no images found in" in err


def test_cli_image_without_label(tmp_path: Path, capsys) -> None:
    write_gta5(tmp_path, [("00001", rgb_image(), None)])
    assert main(["inspect", f"gta5:{tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "images/00001.png has no label" in err
