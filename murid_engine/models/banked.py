"""The teacher as a single-input network: target images refined against a cached source bank.

At inference the MURID teacher needs a source partner for every target image (DESIGN.md §2);
``BankedTeacher`` carries that partner as a bank of pooled source features, so it has the
same interface as a plain network (``forward(x) -> {'out': logits}``) and predict, evaluate and
pseudo-labelling treat teacher and student alike. The bank's cost is part of its speed; its
keys and values are computed once per model version (models/bank_cache.py), not per image.
"""

from __future__ import annotations

import torch
from torch import nn

from .teacher import MuridTeacher, SourceBank


class BankedTeacher(nn.Module):
    def __init__(self, teacher: MuridTeacher, bank: SourceBank):
        super().__init__()
        self.teacher = teacher
        self.points = sorted(bank)
        for point, tokens in bank.items():
            self.register_buffer(f"bank_{point}", tokens)

    @property
    def bank(self) -> SourceBank:
        return {p: getattr(self, f"bank_{p}") for p in self.points}

    def forward(self, x: torch.Tensor, entries: torch.Tensor | None = None) -> dict[str, object]:
        """``entries``: the bank entries each image attends to (None: all; forward_target)."""
        return self.teacher.forward_target(x, self.bank, entries)


def bank_to_state(bank: SourceBank) -> dict[str, torch.Tensor]:
    """A bank as a checkpoint entry (string keys, CPU tensors)."""
    return {str(p): t.detach().cpu() for p, t in bank.items()}


def bank_from_state(state: dict[str, torch.Tensor]) -> SourceBank:
    return {int(p): t for p, t in state.items()}
