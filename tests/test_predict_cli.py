"""`murid predict`: train-id PNGs named by stem at each input image's size, from a project or a
lone checkpoint, for a plain folder or a KIND:PATH dataset; and its one-line errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from murid_engine.checkpoint import save_checkpoint
from murid_engine.data import open_dataset
from murid_engine.imageio import read_index_png, read_rgb, write_rgb
from murid_engine.labels import NUM_CLASSES, PALETTE
from murid_engine.models.deeplab import DeepLabV2
from murid_engine.project import Project
from murid_engine.training.batches import resize_rgb
from smoke_runs import copy_project, murid, shared_trained

# Two sizes, neither the training size (64x32): outputs must follow each input image.
FOLDER_IMAGES = {"street_small": (48, 24), "street_large": (96, 40)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return shared_trained(tmp_path_factory)


@pytest.fixture(scope="module")
def image_folder(trained, tmp_path_factory) -> Path:
    """Target-val images resized to two other sizes, one as PNG and one as JPEG."""
    data = trained[0]
    val = open_dataset(f"synthcity:{data}", "val")
    folder = tmp_path_factory.mktemp("images")
    for i, (stem, size) in enumerate(FOLDER_IMAGES.items()):
        suffix = ".png" if i == 0 else ".jpg"
        write_rgb(folder / f"{stem}{suffix}", resize_rgb(val.read_image(i), size))
    return folder


def predictions(folder: Path) -> dict[str, np.ndarray]:
    return {p.stem: read_index_png(p) for p in sorted(folder.glob("*.png"))
            if not p.stem.endswith("_color")}


def check_train_ids(pred: dict[str, np.ndarray]) -> None:
    for stem, ids in pred.items():
        assert ids.dtype == np.uint8 and ids.max() < NUM_CLASSES, stem
    # a trained model is not constant: it segments the streets into several classes
    assert len(np.unique(np.concatenate([ids.ravel() for ids in pred.values()]))) >= 2


def test_predict_a_folder_with_the_project_teacher(trained, image_folder, tmp_path):
    _, root, _ = trained
    out = tmp_path / "pred"
    result = murid("predict", "--project", root, "--input", image_folder, "--output", out, "--color")
    assert result.code == 0, result.err
    assert "by the teacher of" in result.out and "teacher.pt" in result.out
    pred = predictions(out)
    assert set(pred) == set(FOLDER_IMAGES)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{s}.png" for s in FOLDER_IMAGES] + [f"{s}_color.png" for s in FOLDER_IMAGES])
    for stem, (w, h) in FOLDER_IMAGES.items():
        assert pred[stem].shape == (h, w)
        with Image.open(out / f"{stem}.png") as grey:
            assert grey.mode == "L"
        with Image.open(out / f"{stem}_color.png") as color:
            assert color.mode == "P" and color.size == (w, h)
            colors = np.array(color.getpalette()[: 3 * NUM_CLASSES]).reshape(-1, 3)
            assert np.array_equal(colors, PALETTE[:NUM_CLASSES])
            assert np.array_equal(np.array(color), pred[stem])  # the palette PNG holds the same ids
    check_train_ids(pred)


def test_a_lone_checkpoint_predicts_a_dataset_like_its_project(trained, tmp_path):
    data, root, _ = trained
    lone = tmp_path / "elsewhere" / "my_teacher.pt"
    lone.parent.mkdir()
    shutil.copy(root / "checkpoints" / "teacher.pt", lone)
    spec = f"synthcity:{data}"
    a, b = tmp_path / "from_project", tmp_path / "from_file"
    assert murid("predict", "--project", root, "--input", spec, "--split", "train", "--output", a).code == 0
    result = murid("predict", "--checkpoint", lone, "--input", spec, "--split", "train", "--output", b)
    assert result.code == 0, result.err
    assert "my_teacher.pt" in result.out
    train = open_dataset(spec, "train")
    expected = {s.stem for s in train.samples}
    assert all("_leftImg8bit" not in s for s in expected) and len(expected) == 10
    from_project, from_file = predictions(a), predictions(b)
    assert set(from_file) == expected and not list(b.glob("*_color.png"))
    for sample in train.samples:
        assert from_file[sample.stem].shape == read_rgb(sample.image).shape[:2]
        assert np.array_equal(from_file[sample.stem], from_project[sample.stem])
    check_train_ids(from_file)


def test_predict_default_split_is_val(trained, tmp_path):
    data, root, _ = trained
    assert murid("predict", "--project", root, "--input", f"synthcity:{data}", "--output", tmp_path).code == 0
    assert set(predictions(tmp_path)) == {s.stem for s in open_dataset(f"synthcity:{data}", "val").samples}


def test_project_default_model_is_the_student_once_distilled(trained, image_folder, tmp_path):
    project = Project.open(copy_project(trained[1], tmp_path / "project"))
    torch.manual_seed(0)
    cfg = project.config
    save_checkpoint(project.checkpoint_path("student"), config=cfg,
                    models={"student": DeepLabV2(cfg.student_model)}, stage="distill", iteration=1)
    student = murid("predict", "--project", project.root, "--input", image_folder, "--output", tmp_path / "s")
    assert student.code == 0 and "by the student of" in student.out and "student.pt" in student.out
    teacher = murid("predict", "--project", project.root, "--model", "teacher", "--input", image_folder,
                    "--output", tmp_path / "t")
    assert teacher.code == 0 and "by the teacher of" in teacher.out
    s, t = predictions(tmp_path / "s"), predictions(tmp_path / "t")
    assert set(s) == set(t) == set(FOLDER_IMAGES)
    assert any(not np.array_equal(s[k], t[k]) for k in s)  # an untrained student is another model


def test_predict_errors(trained, image_folder, tmp_path):
    data, root, _ = trained
    out = tmp_path / "out"

    def error(*args) -> str:
        return murid("predict", *args).error_line()

    def project_error(input_: object, *args) -> str:
        return error("--project", root, "--input", input_, "--output", out, *args)

    teacher = root / "checkpoints" / "teacher.pt"
    assert "either --project DIR or --checkpoint FILE" in error("--input", image_folder, "--output", out)
    assert "either --project DIR or --checkpoint FILE" in project_error(image_folder, "--checkpoint", teacher)
    missing = tmp_path / "no_such_folder"
    assert f"input folder {missing} does not exist" in project_error(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert f"no images in {empty}" in project_error(empty)
    assert f"input {root / 'project.json'} is a file" in project_error(root / "project.json")
    assert "'nope' is not a dataset kind" in project_error("nope:/x")
    assert "--split goes with a KIND:PATH input" in project_error(image_folder, "--split", "val")
    assert "no split 'test'" in project_error(f"synthcity:{data}", "--split", "test")
    assert "has no student model yet" in project_error(image_folder, "--model", "student")
    assert "'gpu' is not a device" in project_error(image_folder, "--device", "gpu")
    assert "is not a MURID project" in error("--project", data, "--input", image_folder, "--output", out)
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    assert f"output {a_file} is a file" in error(
        "--project", root, "--input", image_folder, "--output", a_file)
    assert "would overwrite the input image" in error(
        "--project", root, "--input", image_folder, "--output", image_folder)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"PK\x03\x04 cut off")
    assert f"checkpoint {broken} is corrupt or truncated" in error(
        "--checkpoint", broken, "--input", image_folder, "--output", out)
    assert "without its source bank" in error(
        "--checkpoint", root / "checkpoints" / "latest.pt", "--input", image_folder, "--output", out)
    assert not out.exists()  # no refused command left an output folder behind


def test_unreadable_image_and_clashing_stems_are_named(trained, image_folder, tmp_path):
    root = trained[1]
    folder = tmp_path / "images"
    shutil.copytree(image_folder, folder)
    (folder / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    line = murid("predict", "--project", root, "--input", folder, "--output", tmp_path / "o").error_line()
    assert f"{folder / 'zz_broken.png'} is not a readable image" in line
    (folder / "zz_broken.png").unlink()
    shutil.copy(folder / "street_small.png", folder / "street_large.png")  # beside street_large.jpg
    line = murid("predict", "--project", root, "--input", folder, "--output", tmp_path / "o").error_line()
    assert "street_large.png" in line and "street_large.jpg" in line and "would both be written" in line
