"""The teacher as a single-input network: target images refined against a cached source bank.

At inference the MURID teacher needs a source partner for every target image (DESIGN.md §2);
``BankedTeacher`` carries that partner as a bank of pooled source features, so it has the
same interface as a plain network (``forward(x) -> {'out': logits}``) and predict, evaluate and
pseudo-labelling treat teacher and student alike. The bank's cost is part of its speed; its
keys and values are computed once per model version (models/bank_cache.py), not per image.

With `mr.bank_select` M > 0 and the class histograms of the bank's source images, each target
image attends to the M entries whose histograms are nearest (L1) the class fractions of its own
prediction against the whole bank: the inference side of content-matched partners
(training/content_partners.py), at the cost of that first pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .teacher import MuridTeacher, SourceBank


class BankedTeacher(nn.Module):
    def __init__(self, teacher: MuridTeacher, bank: SourceBank, histograms: torch.Tensor | None = None,
                 select: int = 0):
        """``histograms``: K×C class fractions of the bank's source images; ``select``: how many
        entries each image attends to, chosen by content (0: all of them)."""
        super().__init__()
        self.teacher = teacher
        self.points = sorted(bank)
        for point, tokens in bank.items():
            self.register_buffer(f"bank_{point}", tokens)
        self.register_buffer("bank_histograms", None if histograms is None else histograms.float())
        self.select = select

    @property
    def bank(self) -> SourceBank:
        return {p: getattr(self, f"bank_{p}") for p in self.points}

    @property
    def selects(self) -> bool:
        """Whether each image attends to a part of the bank chosen by content."""
        hist = self.bank_histograms
        return hist is not None and 0 < self.select < hist.shape[0]

    def content_entries(self, logits: torch.Tensor) -> torch.Tensor | None:
        """B×M indices of the entries nearest each image's predicted class fractions (None:
        every entry, when selection is off or M covers the bank)."""
        if not self.selects:
            return None
        hist = self.bank_histograms
        pred = logits.argmax(1)
        fractions = F.one_hot(pred, hist.shape[1]).float().mean(dim=(1, 2))  # B×C
        gaps = (fractions[:, None, :] - hist[None].to(fractions.device)).abs().sum(-1)  # B×K
        return gaps.argsort(dim=1, stable=True)[:, :self.select]  # ties: the lower index first

    def forward(self, x: torch.Tensor, entries: torch.Tensor | None = None) -> dict[str, object]:
        """``entries``: the bank entries each image attends to (None: all, or chosen by content
        when `select` is set; forward_target)."""
        if entries is None and self.points and self.selects:
            entries = self.content_entries(self.teacher.forward_target(x, self.bank)["out"])
        return self.teacher.forward_target(x, self.bank, entries)


def bank_to_state(bank: SourceBank) -> dict[str, torch.Tensor]:
    """A bank as a checkpoint entry (string keys, CPU tensors)."""
    return {str(p): t.detach().cpu() for p, t in bank.items()}


def bank_from_state(state: dict[str, torch.Tensor]) -> SourceBank:
    return {int(p): t for p, t in state.items()}


def bank_classes_state(teacher: BankedTeacher) -> dict[str, dict[str, torch.Tensor]]:
    """The checkpoint entry of the bank images' class histograms ({} when there are none)."""
    hist = teacher.bank_histograms
    return {} if hist is None else {"bank_classes": {"histograms": hist.detach().cpu()}}
