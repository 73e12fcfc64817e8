"""The MURID teacher: a DeepLab-v2 whose source and target streams meet at MR points.

Composition, not inheritance: ``self.net`` is a plain DeepLabV2, so the teacher's checkpoint keys
are ``net.backbone.layer1...`` + ``mr.<point>...`` and a student initialises from
``teacher.net.state_dict()`` directly.

BatchNorm (DESIGN.md §2: evaluate with the statistics of the evaluated domain). The two streams
run through the same modules separately, never concatenated, so each is normalised with its own
domain's batch statistics. The source stream always uses its own batch statistics (also in eval
mode) and by default does not feed the running statistics, which therefore track the target
domain only: the teacher is evaluated, pseudo-labels and is distilled on target images, and a
student initialised from ``teacher.net`` starts with target statistics. With ``mr.norm`` 'shared'
(what DACS and DAFormer do) the two crops go through every module as one batch instead: batch
statistics and running statistics are those of the mixture, and evaluation and the source bank
use the running ones. 'shared-target' normalises the same way in training but keeps running
statistics of the target crops alone, so that evaluation uses the evaluated domain's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from .deeplab import DeepLabV2, ModelConfig
from .mutual_refinement import MRConfig, MutualRefinement, StatisticsExchange

# query domain > partner domain; 'source>source' pairs source sample i with source sample i-1
# (torch.roll by one), whose labels are known, so correspondence is learnt before any pseudo-label
# (a batch of one source image is its own partner: an easier, still consistent task).
CORRESPONDENCE_DIRECTIONS = ("source>source", "target>source", "source>target")
SourceBank = dict[int, torch.Tensor]  # MR point -> pooled source tokens, K×C×t×t (plain tensors)


@contextmanager
def own_batch_stats(module: nn.Module, update_running: bool) -> Iterator[None]:
    """Make every BatchNorm in ``module`` normalise with the batch's own statistics.

    With ``update_running`` False the running statistics are left untouched (BN passes no
    running buffers to the kernel when track_running_stats is False in training mode).
    """
    saved = []
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            saved.append((m, m.training, m.track_running_stats))
            m.training = True
            m.track_running_stats = update_running and m.track_running_stats
    try:
        yield
    finally:
        for m, training, track in saved:
            m.training, m.track_running_stats = training, track


@contextmanager
def running_stats_of_tail(module: nn.Module, n_tail: int) -> Iterator[None]:
    """BatchNorms in training mode normalise with the whole batch's statistics but update their
    running statistics from its last ``n_tail`` samples only (``mr.norm`` 'shared-target').

    The update is PyTorch's own (momentum, unbiased variance, ``num_batches_tracked``), done in
    a pre-hook while the module's tracking is off so that it does not also update them itself.
    """
    saved, handles = [], []

    def update(m: nn.modules.batchnorm._BatchNorm, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0][-n_tail:].detach().float()
        var, mean = torch.var_mean(x, dim=[0, *range(2, x.dim())], unbiased=x.numel() > x.shape[1])
        m.num_batches_tracked.add_(1)
        momentum = m.momentum if m.momentum is not None else 1.0 / float(m.num_batches_tracked)
        m.running_mean.lerp_(mean.to(m.running_mean.dtype), momentum)
        m.running_var.lerp_(var.to(m.running_var.dtype), momentum)

    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats:
            saved.append(m)
            m.track_running_stats = False
            handles.append(m.register_forward_pre_hook(update))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        for m in saved:
            m.track_running_stats = True


@contextmanager
def running_stats(module: nn.Module) -> Iterator[None]:
    """Make every BatchNorm in ``module`` normalise with its running statistics."""
    saved = [(m, m.training) for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m, _ in saved:
        m.training = False
    try:
        yield
    finally:
        for m, training in saved:
            m.training = training


class MuridTeacher(nn.Module):
    """forward(source, target) -> named logits and refined features; no loss code."""

    def __init__(self, cfg: ModelConfig, mr: MRConfig | None = None):
        super().__init__()
        self.cfg = cfg
        self.mr_cfg = (mr or MRConfig()).validate()
        self.net = DeepLabV2(cfg)
        self.points = tuple(sorted(self.mr_cfg.points))
        channels = self.net.backbone.stage_channels
        # Built whether or not MR is enabled: a warm-up without MR and an adaptation with it
        # share one checkpoint layout, and `mr_enabled` can be switched between stages.
        self.mr = nn.ModuleDict({
            str(p): MutualRefinement(channels[p - 1], self.mr_cfg.tokens, self.mr_cfg.attn_dim,
                                     self.mr_cfg.alpha, self.mr_cfg.exchange_prob,
                                     self.mr_cfg.bank_mode,
                                     exchanges=self.mr_cfg.exchange_at == "points")
            for p in self.points
        })
        # No parameters: the checkpoint layout is the same wherever the exchange stands.
        self.output_exchange = (StatisticsExchange(self.mr_cfg.alpha, self.mr_cfg.exchange_prob)
                                if self.mr_cfg.exchange_at == "output" else None)
        self.mr_enabled = self.mr_cfg.enabled

    # -- helpers -------------------------------------------------------------------------------
    @property
    def shared_norm(self) -> bool:
        return self.mr_cfg.norm in ("shared", "shared-target")

    def _source_ctx(self, module: nn.Module):
        update = self.training and self.mr_cfg.source_running_stats
        return own_batch_stats(module, update_running=update)

    def _both(self, run: Callable[[torch.Tensor], torch.Tensor], module: nn.Module,
              xs: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`run` (whose BatchNorms are those of `module`) on both streams: separately, the
        source with its own statistics, or, with shared normalisation, as one batch."""
        if self.shared_norm:
            if xs.shape[1:] != xt.shape[1:]:
                raise ValueError("mr.norm 'shared' needs source and target crops of one size, not "
                                 f"{tuple(xs.shape[-2:])} and {tuple(xt.shape[-2:])}")
            stats = (running_stats_of_tail(module, xt.shape[0]) if self.mr_cfg.norm == "shared-target"
                     else nullcontext())
            with stats:
                both = run(torch.cat([xs, xt]))
            return both[: xs.shape[0]], both[xs.shape[0]:]
        with self._source_ctx(module):
            ys = run(xs)
        return ys, run(xt)

    def _head(self, features: torch.Tensor, size: torch.Size) -> torch.Tensor:
        logits = self.net.classifier(features)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)

    def _active(self, point: int) -> bool:
        return self.mr_enabled and point in self.points

    # -- training ------------------------------------------------------------------------------
    def forward(self, source: torch.Tensor, target: torch.Tensor,
                correspondence: tuple[str, ...] = ()) -> dict[str, object]:
        """Source and target batches in [0, 1] (sizes and batch sizes may differ).

        Returns {'source', 'target'}: logits at each input's size, and {'source_features',
        'target_features'}: point -> features after the MR point (the raw stage output when MR
        is disabled). ``correspondence`` names attention maps to return as well, under
        'correspondence': point -> direction -> B×L×T weights (see CORRESPONDENCE_DIRECTIONS),
        computed on the stage outputs that enter the MR point. They are computed here, inside
        forward, so that DistributedDataParallel sees every use of the MR parameters.
        """
        unknown = set(correspondence) - set(CORRESPONDENCE_DIRECTIONS)
        if unknown:
            raise ValueError(f"unknown correspondence direction(s) {sorted(unknown)}")
        backbone = self.net.backbone
        xs, xt = self._both(backbone.stem, backbone.bn1,
                            self.net.normalize(source), self.net.normalize(target))
        feats_s: dict[int, torch.Tensor] = {}
        feats_t: dict[int, torch.Tensor] = {}
        matches: dict[int, dict[str, torch.Tensor]] = {}
        for point, stage in enumerate(backbone.stages, start=1):
            xs, xt = self._both(stage, stage, xs, xt)
            if self._active(point):
                if correspondence:
                    matches[point] = self._correspondence(point, xs, xt, correspondence)
                xs, xt = self.mr[str(point)](xs, xt)
            if point in self.points:
                feats_s[point], feats_t[point] = xs, xt
        if self.mr_enabled and self.output_exchange is not None:
            xs, xt = self.output_exchange(xs, xt)
        with self._source_ctx(self.net.classifier):  # no BN there today; kept for safety
            out_s = self._head(xs, source.shape[-2:])
        out_t = self._head(xt, target.shape[-2:])
        return {"source": out_s, "target": out_t, "source_features": feats_s,
                "target_features": feats_t, "correspondence": matches}

    def _correspondence(self, point: int, xs: torch.Tensor, xt: torch.Tensor,
                        directions: tuple[str, ...]) -> dict[str, torch.Tensor]:
        mr = self.mr[str(point)]
        pairs = {"source>source": (xs, xs.roll(1, dims=0)), "target>source": (xt, xs),
                 "source>target": (xs, xt)}
        return {d: mr.attention_weights(*pairs[d]) for d in directions}

    def forward_single(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The plain network without MR (source-only warm-up, ablations)."""
        return self.net(x)

    # -- inference with a cached source bank ---------------------------------------------------
    def forward_target(self, target: torch.Tensor, bank: SourceBank | None = None,
                       entries: torch.Tensor | None = None) -> dict[str, object]:
        """Target only; each active MR point refines against ``bank[point]``.

        ``entries``: which of the bank's entries each image attends to (None: all of them;
        see EntryKeyValues.select). The bank's keys and values are cached per MR point while
        the weights and the bank stay unchanged (models/bank_cache.py).

        Returns {'out': logits at input size, 'features': point -> refined target features}.
        """
        if self.mr_enabled and self.points:
            missing = [p for p in self.points if bank is None or p not in bank]
            if missing:
                raise ValueError(f"the source bank has no features for MR point(s) {missing}; "
                                 "build it with build_source_bank()")
        backbone = self.net.backbone
        x = backbone.stem(self.net.normalize(target))
        feats: dict[int, torch.Tensor] = {}
        for point, stage in enumerate(backbone.stages, start=1):
            x = stage(x)
            if self._active(point):
                x = self.mr[str(point)].refine_target(x, bank[point], entries)  # type: ignore[index]
            if point in self.points:
                feats[point] = x
        return {"out": self._head(x, target.shape[-2:]), "features": feats}

    @torch.no_grad()
    def build_source_bank(self, source_images: torch.Tensor | Iterable[torch.Tensor],
                          max_items: int | None = None, batch_size: int = 8) -> SourceBank:
        """Pooled source features per MR point for at most ``max_items`` images (no grad).

        ``max_items`` defaults to the configured ``bank_size``.

        ``source_images``: an N×3×H×W tensor in [0, 1] (split into ``batch_size`` chunks) or an
        iterable of such batches (e.g. from a loader). Each chunk is normalised with its own
        batch statistics, as the source stream is in training (with ``mr.norm`` 'shared': with
        the running statistics, as the target is); running statistics are not touched. The
        source side is not refined (its refinement needs a target partner), so
        deeper points see unrefined source features. Returns point -> K×C×t×t float32 tensors
        on the model's device: plain tensors, storable in a checkpoint.
        """
        limit = self.mr_cfg.bank_size if max_items is None else max_items
        if limit < 1:
            raise ValueError(f"max_items must be at least 1, not {limit}")
        if isinstance(source_images, torch.Tensor):
            source_images = source_images.split(batch_size)
        backbone = self.net.backbone
        last = max(self.points, default=0)
        parts: dict[int, list[torch.Tensor]] = {p: [] for p in self.points}
        count = 0
        device = self.net.mean.device
        with running_stats(self.net) if self.shared_norm else own_batch_stats(self.net, update_running=False):
            for batch in source_images:
                if count >= limit or not self.points:
                    break
                batch = batch[: limit - count].to(device)
                x = backbone.stem(self.net.normalize(batch))
                for point, stage in enumerate(backbone.stages[:last], start=1):
                    x = stage(x)
                    if point in parts:
                        parts[point].append(self.mr[str(point)].bank_tokens(x))
                count += batch.shape[0]
        if count == 0 and self.points:
            raise ValueError("build_source_bank needs at least one source image")
        return {p: torch.cat(chunks) for p, chunks in parts.items()}
