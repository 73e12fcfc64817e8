"""Content-matched MR partners (mr.partners: content): histograms, nearest sources, the batches."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from murid_engine.errors import UserError
from murid_engine.models.mutual_refinement import MRConfig
from murid_engine.training.batches import AugmentConfig
from murid_engine.training.content_partners import class_histogram, class_histograms, nearest_sources
from murid_engine.training.domain_images import DomainImages
from murid_engine.training.loader import STREAMS, BatchMaker, BatchRequest
from murid_engine.training.round_labels import FILL, HUMAN, NO_LOSS

H, W, C = 8, 16, 19


def test_a_target_whose_histogram_equals_a_sources_picks_that_source():
    rng = np.random.default_rng(0)
    source = rng.dirichlet(np.ones(C), size=30).astype(np.float32)
    target = source[[3, 17, 3]] + 0.0
    assert nearest_sources(target, source, 1)[:, 0].tolist() == [3, 17, 3]
    near = nearest_sources(target, source, 5)
    assert near.shape == (3, 5) and near[0, 0] == 3
    gaps = np.abs(target[0] - source[near[0]]).sum(-1)
    assert np.all(np.diff(gaps) >= 0)  # nearest first
    assert nearest_sources(target, source[:2], 5).shape == (3, 2)  # no more candidates than sources


def test_a_histogram_counts_only_labelled_pixels():
    label = np.array([[0, 0, 2, 255], [2, 2, NO_LOSS, FILL]], np.uint8)
    assert class_histogram(label, C)[[0, 2]].tolist() == pytest.approx([0.4, 0.6])
    assert class_histogram(np.full((2, 2), 255, np.uint8), C).sum() == 0  # nothing labelled
    assert class_histograms([], C).shape == (0, C)


@dataclass
class _Store:
    """Images whose every pixel has one class, known by index."""
    classes: list[int]
    labelled: bool

    @property
    def stems(self) -> list[str]:
        return [f"img{i}" for i in range(len(self.classes))]

    @property
    def has_labels(self) -> bool:
        return self.labelled

    def __len__(self) -> int:
        return len(self.classes)

    def image(self, i: int) -> np.ndarray:
        return np.full((H, W, 3), 10 * self.classes[i], np.uint8)

    def label(self, i: int) -> np.ndarray:
        return np.full((H, W), self.classes[i], np.uint8)

    def shape(self, i: int) -> tuple[int, int]:
        return H, W


@dataclass(frozen=True)
class _RoundOfClasses:
    """A round's maps: target image i all class classes[i]; odd images as the user's pixels."""
    classes: tuple[int, ...]

    def read(self, stem: str, shape: tuple[int, int]) -> np.ndarray:
        i = int(stem[3:])
        label = np.full(shape, self.classes[i], np.uint8)
        label[0] = FILL  # below threshold: not counted
        return label + HUMAN * (i % 2) * (label != FILL)


def _maker(candidates: int) -> BatchMaker:
    source = DomainImages(_Store([5, 1, 7, 3, 0, 2], True), own_labels=True)
    target = DomainImages(_Store([0] * 12, False))
    return BatchMaker(source, target, AugmentConfig(crop=(W, H), scale=(1.0, 1.0), flip=False),
                      batch_size=4, seed=0, rank=0, world_size=1, as_float=True,
                      partner_candidates=candidates, num_classes=C)


def test_curriculum_batches_pair_each_target_crop_with_the_source_of_its_content():
    maker = _maker(candidates=1)
    labels = _RoundOfClasses(tuple(int(c) for c in np.tile([0, 1, 2, 3, 5, 7], 2)))
    for it in range(6):
        batch = maker[BatchRequest(STREAMS["curriculum"], it, True, labels)]
        target_classes = batch.target_labels[:, -1, 0] % HUMAN  # the user's pixels: their class
        assert batch.source_labels[:, -1, 0].tolist() == target_classes.tolist()
    # Without a round (adapt) the pairing is by batch index, as before.
    plain = maker[BatchRequest(STREAMS["adapt"], 0, True, None)]
    before = _maker(candidates=0)[BatchRequest(STREAMS["adapt"], 0, True, None)]
    assert bool((plain.source == before.source).all()) and bool((plain.target == before.target).all())


def test_candidates_are_drawn_among_and_the_batch_is_a_function_of_its_position():
    maker = _maker(candidates=2)
    labels = _RoundOfClasses((0,) * 12)  # every target nearest source 4 (class 0), then a tie
    seen = set()
    for it in range(8):
        batch = maker[BatchRequest(STREAMS["curriculum"], it, True, labels)]
        seen |= set(batch.source_labels[:, -1, 0].tolist())
        again = _maker(candidates=2)[BatchRequest(STREAMS["curriculum"], it, True, labels)]
        assert bool((again.source == batch.source).all())
    # Source 4 (class 0) is the nearest; every other source ties at distance 2 and the lower
    # index, source 0 (class 5), comes first.
    assert seen == {0, 5}


def test_the_option_is_checked():
    with pytest.raises(UserError, match="partners"):
        MRConfig(partners="nearest").validate()
    with pytest.raises(UserError, match="partner_candidates"):
        MRConfig(partners="content", partner_candidates=0).validate()


# ------------------------------------------------------------------ the inference bank
def _banked_with_classes(select: int):
    import torch

    from murid_engine.models import ModelConfig
    from murid_engine.models.banked import BankedTeacher
    from murid_engine.models.teacher import MuridTeacher
    from test_mutual_refinement import _set_gates

    torch.manual_seed(0)
    teacher = MuridTeacher(ModelConfig(backbone="tiny"), MRConfig(tokens=8, bank_size=4))
    _set_gates(teacher, 1.0)  # opened: at 0 the bank would not matter
    teacher.eval()
    bank = teacher.build_source_bank(torch.rand(4, 3, 32, 64, generator=torch.Generator().manual_seed(1)))
    histograms = torch.zeros(4, C)
    histograms[[0, 1, 2, 3], [2, 5, 2, 9]] = 1.0  # entries 0 and 2 all class 2
    return BankedTeacher(teacher, bank, histograms, select).eval()


def test_each_image_attends_to_the_bank_entries_nearest_its_predicted_classes():
    import torch

    banked = _banked_with_classes(select=2)
    logits = torch.zeros(3, C, 4, 4)
    logits[0, 2] = 1.0  # all class 2: entries 0 and 2 match exactly
    logits[1, 9] = 1.0  # all class 9: entry 3, then a tie among the others (lower index first)
    logits[2, 5, :2] = 1.0
    logits[2, 9, 2:] = 1.0  # half 5, half 9: entries 1 and 3
    assert banked.content_entries(logits).tolist() == [[0, 2], [3, 0], [1, 3]]
    assert _banked_with_classes(select=4).content_entries(logits) is None  # the whole bank: no choice
    assert _banked_with_classes(select=0).content_entries(logits) is None


def test_a_selecting_teacher_refines_against_its_chosen_entries_and_zero_keeps_the_whole_bank():
    import torch

    x = torch.rand(2, 3, 32, 64, generator=torch.Generator().manual_seed(2))
    banked = _banked_with_classes(select=2)
    with torch.no_grad():
        whole = banked.teacher.forward_target(x, banked.bank)["out"]
        chosen = banked.content_entries(whole)
        want = banked.teacher.forward_target(x, banked.bank, chosen)["out"]
        got = banked(x)["out"]
        assert torch.equal(got, want) and not torch.equal(got, whole)
        assert torch.equal(_banked_with_classes(select=0)(x)["out"], whole)  # as before the option


def test_the_bank_classes_survive_the_checkpoint(tmp_path):
    from murid_engine.checkpoint import load_checkpoint, save_checkpoint
    from murid_engine.model_store import teacher_from_checkpoint
    from murid_engine.models.banked import bank_classes_state, bank_to_state
    from murid_engine.run_config import RunConfig

    banked = _banked_with_classes(select=2)
    cfg = RunConfig()
    cfg.model.backbone = "tiny"
    cfg.mr.tokens, cfg.mr.bank_size, cfg.mr.bank_select = 8, 4, 2
    path = tmp_path / "teacher.pt"
    save_checkpoint(path, config=cfg, models={"teacher": banked.teacher, "bank": bank_to_state(banked.bank),
                                              **bank_classes_state(banked)}, stage="curriculum", iteration=1)
    loaded = teacher_from_checkpoint(load_checkpoint(path))
    assert loaded.select == 2 and loaded.bank_histograms.equal(banked.bank_histograms)
