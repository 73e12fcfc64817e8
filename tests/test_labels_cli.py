"""`murid labels export/import`: Cityscapes-layout masks out and back, one-line errors."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from layouts import CITYSCAPES_COLORS, write_cityscapes
from murid_engine.curriculum.rounds import EDIT_IGNORE, EDIT_NONE, LABELS_DIR
from murid_engine.imageio import read_index_png
from murid_engine.labels import LABEL_ID_TO_TRAIN_ID, TRAIN_ID_TO_LABEL_ID
from murid_engine.project import Project
from smoke_runs import copy_project, murid, shared_trained


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return shared_trained(tmp_path_factory)


@pytest.fixture
def project(trained, tmp_path) -> Project:
    project = Project.open(copy_project(trained[1], tmp_path / "project"))
    r = project.latest_round()
    stem = next(iter(project.read_round_info(r).images))
    edit = np.full(read_index_png(project.round_dir(r) / LABELS_DIR / f"{stem}.png").shape, EDIT_NONE, np.uint8)
    edit[:4, :10] = 13  # car
    edit[-3:, -5:] = EDIT_IGNORE
    project.save_edit(stem, edit)
    return project


def _edits(project: Project) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(project.edits_dir.glob("*.png"))}


def _export(project: Project, out: Path) -> Path:
    result = murid("labels", "export", "--project", project.root, "--out", out)
    assert result.code == 0, result.err
    assert "masks written" in result.out
    return out


def test_export_writes_the_labels_with_edits_in_the_cityscapes_layout(project, tmp_path):
    r = project.latest_round()
    stems = list(project.read_round_info(r).images)
    out = _export(project, tmp_path / "out")
    files = sorted((out / "gtFine" / "train").glob("*/*_gtFine_labelIds.png"))
    assert sorted(f.name[: -len("_gtFine_labelIds.png")] for f in files) == sorted(stems)
    stem = project.edited_stems()[0]
    (path,) = [f for f in files if f.name.startswith(stem + "_")]
    ids = np.array(Image.open(path))  # read as the annotation tools read it
    kept = read_index_png(project.round_dir(r) / LABELS_DIR / f"{stem}.png")
    assert (ids[:4, :10] == 26).all()  # the edit: car, label id 26
    assert (ids[-3:, -5:] == 0).all()  # painted ignore: unlabeled
    rest = np.ones(ids.shape, bool)
    rest[:4, :10] = rest[-3:, -5:] = False
    expected = np.where(kept == 255, 0, TRAIN_ID_TO_LABEL_ID[kept])
    np.testing.assert_array_equal(ids[rest], expected[rest])
    color = np.array(Image.open(path.with_name(f"{stem}_gtFine_color.png")).convert("RGB"))
    np.testing.assert_array_equal(color, np.array(CITYSCAPES_COLORS, np.uint8)[ids])


def test_round_trip_through_export_and_import_changes_nothing(project, tmp_path):
    before = _edits(project)
    out = _export(project, tmp_path / "out")
    for kind, folder in (("labelids", out), ("trainids", None)):
        if folder is None:  # the same masks as train ids, in another tool's naming
            folder = tmp_path / "trainids"
            folder.mkdir()
            for f in (out / "gtFine" / "train").glob("*/*_gtFine_labelIds.png"):
                train = LABEL_ID_TO_TRAIN_ID[np.array(Image.open(f))]
                Image.fromarray(train).save(folder / f.name.replace("_gtFine_labelIds", ""))
        result = murid("labels", "import", "--project", project.root, "--masks", f"{kind}:{folder}")
        assert result.code == 0, result.err
        assert "0 corrected pixels" in result.out
        assert _edits(project) == before
    again = _export(project, tmp_path / "again")
    for f in (out / "gtFine").rglob("*.png"):
        assert filecmp.cmp(f, again / f.relative_to(out), shallow=False), f


def test_corrected_cityscapes_masks_become_edits(project, tmp_path):
    """Masks written by an independent Cityscapes writer (tests/layouts.py), two pixels fixed."""
    r = project.latest_round()
    out = _export(project, tmp_path / "out")
    stems = list(project.read_round_info(r).images)
    fixed = stems[1]  # not the edited one
    items = []
    for stem in stems[:3]:
        (f,) = (out / "gtFine" / "train").glob(f"*/{stem}_gtFine_labelIds.png")
        ids = np.array(Image.open(f))
        if stem == fixed:
            ids[0, 0] = 24 if ids[0, 0] != 24 else 25  # person (or rider)
            ids[1, 1] = 0  # unlabeled: not a correction, whatever the round had
        items.append(("tool", stem, np.zeros((*ids.shape, 3), np.uint8), ids))
    root = write_cityscapes(tmp_path / "cvat", "train", items)
    before = _edits(project)
    result = murid("labels", "import", "--project", project.root, "--masks", f"labelids:{root / 'gtFine'}")
    assert result.code == 0, result.err
    assert "1 corrected pixels written as edits of 1 images" in result.out
    edit = project.load_edit(fixed)
    assert edit[0, 0] == LABEL_ID_TO_TRAIN_ID[ids_at(root, fixed)[0, 0]]
    assert np.count_nonzero(edit != EDIT_NONE) == 1
    assert {k: v for k, v in _edits(project).items() if k != f"{fixed}.png"} == before


def ids_at(root: Path, stem: str) -> np.ndarray:
    return np.array(Image.open(root / "gtFine" / "train" / "tool" / f"{stem}_gtFine_labelIds.png"))


def test_import_errors_are_one_line_and_leave_the_project_unchanged(project, tmp_path):
    r = project.latest_round()
    stems = list(project.read_round_info(r).images)
    shape = read_index_png(project.round_dir(r) / LABELS_DIR / f"{stems[0]}.png").shape
    before = _edits(project)

    def attempt(name: str, values: np.ndarray, kind: str = "labelids") -> str:
        folder = tmp_path / name
        folder.mkdir()
        good = np.full(shape, 24, np.uint8)  # a valid correction, which must not be written either
        Image.fromarray(good).save(folder / f"{stems[1]}_gtFine_labelIds.png")
        Image.fromarray(values).save(folder / f"{stems[0]}_gtFine_labelIds.png")
        line = murid("labels", "import", "--project", project.root, "--masks", f"{kind}:{folder}").error_line()
        assert _edits(project) == before
        return line

    assert "is 3x2, but the round's label" in attempt("size", np.zeros((2, 3), np.uint8))
    assert "[40]" in attempt("value", np.full(shape, 40, np.uint8)) and "label ids" in attempt(
        "value2", np.full(shape, 40, np.uint8))
    folder = tmp_path / "stranger"
    folder.mkdir()
    Image.fromarray(np.zeros(shape, np.uint8)).save(folder / "nosuch_gtFine_labelIds.png")
    assert "'nosuch', which is not in round" in murid(
        "labels", "import", "--project", project.root, "--masks", f"labelids:{folder}").error_line()
    assert "KIND:PATH" in murid("labels", "import", "--project", project.root,
                                "--masks", f"colors:{folder}").error_line()
    assert "not a folder" in murid("labels", "import", "--project", project.root,
                                   "--masks", f"trainids:{tmp_path / 'none'}").error_line()
    assert "no complete pseudo-label round 9" in murid(
        "labels", "export", "--project", project.root, "--round", "9", "--out", tmp_path / "x").error_line()
