"""Predict view: the project's model on a folder of the user's images, overlay and saved masks."""

from __future__ import annotations

import numpy as np
from gui_helpers import close_window, copy_of, make_window, synth, trained

from murid_engine.imageio import list_images, read_index_png, read_rgb, write_rgb


def test_predict_a_folder_shows_an_overlay_of_the_right_size_and_saves_masks(qtbot, tmp_path,
                                                                            tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    project = copy_of(trained(base), tmp_path / "project")
    photos = tmp_path / "photos"
    photos.mkdir()
    source = list_images(next(p for p in synth(base).rglob("*") if p.is_dir() and list_images(p)))[:2]
    sizes = {}
    for i, path in enumerate(source):  # the user's own images: other sizes than the training data
        rgb = read_rgb(path)
        rgb = np.ascontiguousarray(np.repeat(rgb, 2, axis=0)[:, : rgb.shape[1] - 3 * i])
        write_rgb(photos / f"my photo {i}.png", rgb)
        sizes[f"my photo {i}"] = rgb.shape[:2]
    window = make_window(qtbot, tmp_path)
    assert window.open_project(project)
    window.show_view("predict")
    view = window.predict_view
    with qtbot.waitSignal(window.runner.finished, timeout=60000) as blocker:
        assert view.predict(photos)
    assert blocker.args[0] == "predict" and blocker.args[1] is not None, window.last_error
    assert window.status_label.text() == "predict: finished"  # not the stage's lingering "started"
    assert view.images.count() == 2 and view.images.currentItem().text() == "my photo 0"
    shown = view.overlay.image
    assert shown.shape == sizes["my photo 0"] and shown.dtype == np.uint8 and shown.max() < 19
    assert view.image.image.shape[:2] == sizes["my photo 0"]
    assert view.confidence.image.shape == sizes["my photo 0"]
    assert "%" in view.legend.text()
    view.images.setCurrentRow(1)
    assert view.overlay.image.shape == sizes["my photo 1"]
    view.opacity.setValue(25)
    assert abs(view.overlay.opacity() - 0.25) < 1e-6
    out = tmp_path / "masks"
    with qtbot.waitSignal(window.runner.finished, timeout=60000) as blocker:
        assert view.save_masks(out)
    assert blocker.args[1] == {"count": 2, "output": str(out)}, window.last_error
    saved = read_index_png(out / "my photo 1.png")
    assert np.array_equal(saved, view.results["my photo 1"].pred)
    assert (out / "my photo 0_color.png").is_file()
    close_window(window)
