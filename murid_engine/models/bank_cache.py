"""The keys and values of a source bank, cached per model version and per bank entry.

At inference the teacher's MR points attend from target features to a fixed bank of pooled
source features (models/banked.py). The bank's keys and values are projections of constants by
constant weights, so they are computed once and kept here, per entry (K×T×d): a bank chosen per
target image as a subset or an ordering of a pool's entries is then assembled by indexing the
pool's cached entries (``EntryKeyValues.select``), never projected again.

A cache is valid while nothing it was computed from has changed: the projections' weights and
biases, and the bank tensor. Each is recognised by its storage (a view of it is kept, so the
storage cannot be freed and its address handed to another tensor) and by PyTorch's version
counter, which every in-place write through the tensor bumps: an optimiser step,
load_state_dict, an EMA update, ``copy_``/``fill_`` under no_grad. Moving or casting a module
(``.to``, ``.half``) gives it new storage. Writes that bypass the counter (through ``.data``, or
a torch.distributed collective) are not seen: call ``clear_bank_caches`` after them; a module's
cache is also dropped when it is put in training mode.

Only used where autograd records nothing (no_grad, inference_mode): in grad mode the keys and
values are projected afresh, so training sees current weights and its gradients reach them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class EntryKeyValues:
    """Keys and values of every entry of a bank: K×T×d each, contiguous (T = tokens²)."""

    keys: torch.Tensor
    values: torch.Tensor

    @property
    def entries(self) -> int:
        return self.keys.shape[0]

    def select(self, entries: torch.Tensor | None, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and values of the bank each of `batch` target images attends to: B×M×T×d.

        ``entries`` None: every entry, for every image (B = 1). A 1-D index tensor (M,): those
        entries in that order, for every image (B = 1). A 2-D one (batch×M): a bank per image
        (B = batch). Indices refer to this bank's entries.
        """
        if entries is None:
            return self.keys.unsqueeze(0), self.values.unsqueeze(0)
        entries = torch.as_tensor(entries, dtype=torch.long, device=self.keys.device)
        if entries.dim() not in (1, 2) or entries.shape[-1] == 0 or (
                entries.dim() == 2 and entries.shape[0] != batch):
            raise ValueError(f"bank entries must be (M,) or ({batch}, M) indices with M ≥ 1, "
                             f"not of shape {tuple(entries.shape)}")
        if int(entries.min()) < 0 or int(entries.max()) >= self.entries:
            raise ValueError(f"bank entries must lie in 0..{self.entries - 1}")
        keys, values = self.keys[entries], self.values[entries]
        if entries.dim() == 1:
            return keys.unsqueeze(0), values.unsqueeze(0)
        return keys, values


class _Stamp:
    """What a tensor was when a cache was computed: its storage (kept alive) and version."""

    def __init__(self, tensor: torch.Tensor, version: int):
        self.view = tensor.detach()  # shares the storage, so its address stays this tensor's
        self.version = version

    def matches(self, tensor: torch.Tensor) -> bool:
        v = self.view
        return (tensor.data_ptr() == v.data_ptr() and tensor.shape == v.shape
                and tensor.stride() == v.stride() and tensor.dtype == v.dtype
                and tensor.device == v.device and _version(tensor) == self.version)


def _version(tensor: torch.Tensor) -> int | None:
    """PyTorch's in-place write counter; None for an inference tensor, which has none."""
    return None if tensor.is_inference() else tensor._version


class BankKeyValueCache:
    """One slot: the keys and values of the last bank a module attended to, with their stamps."""

    def __init__(self) -> None:
        self.enabled = True
        self.computed = 0  # how many times the slot was (re)filled: what tests and the bench count
        self._stamps: list[_Stamp] = []
        self._kv: EntryKeyValues | None = None

    def clear(self) -> None:
        self._stamps, self._kv = [], None

    def get(self, sources: list[torch.Tensor], compute: Callable[[], EntryKeyValues]) -> EntryKeyValues:
        """The cached keys and values if `sources` are unchanged since they were computed,
        otherwise `compute()` (stored for next time when caching is allowed here)."""
        if not self.enabled or torch.is_grad_enabled():
            return compute()
        if (self._kv is not None and len(self._stamps) == len(sources)
                and all(s.matches(t) for s, t in zip(self._stamps, sources))):
            return self._kv
        versions = [_version(t) for t in sources]
        kv = compute()
        if any(v is None for v in versions):  # an inference tensor: no way to see it change
            self.clear()
            return kv
        self._stamps = [_Stamp(t, v) for t, v in zip(sources, versions)]
        self._kv = kv
        self.computed += 1
        return kv

    def __deepcopy__(self, memo: dict) -> BankKeyValueCache:
        # A copy (the EMA teacher) has its own weights: it starts empty rather than carrying
        # tensors that describe the original's.
        copy = BankKeyValueCache()
        copy.enabled = self.enabled
        return copy


def _caches(model: nn.Module) -> Iterator[BankKeyValueCache]:
    for module in model.modules():
        cache = getattr(module, "bank_cache", None)
        if isinstance(cache, BankKeyValueCache):
            yield cache


def clear_bank_caches(model: nn.Module) -> None:
    """Drop every cached bank key/value in `model` (after a write PyTorch does not count)."""
    for cache in _caches(model):
        cache.clear()


@contextmanager
def bank_caching(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Run `model` with its bank key/value caches on or off (the bench times both)."""
    caches = list(_caches(model))
    before = [c.enabled for c in caches]
    for c in caches:
        c.enabled = enabled
        c.clear()
    try:
        yield
    finally:
        for c, was in zip(caches, before):
            c.enabled = was
