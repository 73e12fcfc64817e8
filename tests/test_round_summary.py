"""round.json as a typed record: one writer, one reader, and the files of earlier versions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from murid_engine.curriculum.round_summary import (
    ROUND_FILE,
    ImageSummary,
    RoundSummary,
    read_round_summary,
    write_round_summary,
)
from murid_engine.curriculum.rounds import write_round
from murid_engine.errors import UserError
from murid_engine.labels import CLASS_NAMES


def _summary() -> RoundSummary:
    histogram = {n: [0] * 256 for n in CLASS_NAMES}
    histogram["road"][200], histogram["car"][90] = 30, 6
    return RoundSummary(
        round=2, portion=0.4, cap=0.9, num_classes=len(CLASS_NAMES),
        automatic_thresholds={n: 0.5 for n in CLASS_NAMES}, confidence_histogram=histogram,
        images={"b_img": ImageSummary(20, 0.61, 0.5, 3, 0.125),
                "a_img": ImageSummary(16, 0.4, None, 0, None)},
        thresholds={n: 0.25 for n in CLASS_NAMES}, overrides={"car": 0.25},
        predicted_pixels={"road": 30, "car": 6}, kept_pixels={"road": 30, "car": 2},
        kept_fraction=32 / 36, human_verified_pixels=7)


def test_a_summary_reads_back_equal_to_what_was_written(tmp_path):
    summary = _summary()
    write_round_summary(tmp_path, summary)
    again = read_round_summary(tmp_path)
    assert again == summary
    assert again.stems == ["b_img", "a_img"]  # the order the images were labelled in
    assert isinstance(again.images["a_img"], ImageSummary)
    np.testing.assert_allclose(again.threshold_values(), 0.25)
    assert again.histogram_counts().shape == (len(CLASS_NAMES), 256)
    assert not list(tmp_path.glob("*.tmp*"))


def test_the_round_writer_returns_what_the_reader_reads(tmp_path):
    rng = np.random.default_rng(0)
    items = [(f"img_{i}", rng.integers(0, 19, (6, 8)), rng.uniform(0, 1, (6, 8))) for i in range(3)]
    written = write_round(tmp_path, items, 0.5, cap=0.95, overrides={2: 0.0}, round_index=4)
    assert read_round_summary(tmp_path) == written
    assert written.round == 4 and written.overrides == {"building": 0.0}
    assert written.thresholds["building"] == 0.0
    assert all(image.kept_fraction is not None for image in written.images.values())


def test_an_older_round_json_reads_with_defaults(tmp_path):
    # What the first versions wrote: no human_verified_pixels, no disagreement or edited_pixels
    # per image, no round number or quantisation note.
    old = _summary().to_json()
    for key in ("human_verified_pixels", "round", "confidence_quantisation", "overrides", "cap"):
        del old[key]
    for image in old["images"].values():
        del image["disagreement"], image["edited_pixels"]
    (tmp_path / ROUND_FILE).write_text(json.dumps(old))
    summary = read_round_summary(tmp_path)
    assert summary.human_verified_pixels == 0 and summary.round == 0
    assert summary.overrides == {} and summary.cap is None
    assert summary.images["b_img"] == ImageSummary(20, 0.61, 0.5, 0, None)
    assert summary.thresholds == _summary().thresholds and summary.portion == 0.4


def test_a_round_json_without_final_thresholds_falls_back_to_the_automatic_ones(tmp_path):
    old = _summary().to_json()
    for key in ("thresholds", "predicted_pixels", "kept_pixels", "kept_fraction"):
        del old[key]
    old["future_key"] = {"written by": "a later version"}  # passed over
    (tmp_path / ROUND_FILE).write_text(json.dumps(old))
    summary = read_round_summary(tmp_path)
    assert summary.thresholds == summary.automatic_thresholds
    assert summary.predicted_pixels["road"] == 30 and summary.predicted_pixels["car"] == 6
    assert summary.kept_pixels == {} and summary.kept_fraction == 0.0


@pytest.mark.parametrize("text, message", [
    ('{"portion": 0.5}', "is not a round summary: it has no 'confidence_histogram'"),
    ("[1, 2]", "is not a round summary: it is not a JSON object"),
    ('{"portion": "half", "confidence_histogram": {}, "automatic_thresholds": {}, "images": {}}',
     "is not a round summary"),
    ("{not json", "is not readable"),
])
def test_a_broken_round_json_is_one_clear_error(tmp_path, text, message):
    (tmp_path / ROUND_FILE).write_text(text)
    with pytest.raises(UserError, match=message):
        read_round_summary(tmp_path)


def test_a_missing_round_json_means_an_unfinished_round(tmp_path):
    with pytest.raises(UserError, match="is not a finished pseudo-label round"):
        read_round_summary(tmp_path)
