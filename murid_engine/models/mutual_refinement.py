"""Mutual Refinement (MR): the source and target streams refine each other at a shallow layer.

Two parts, applied in this order at every MR point (DESIGN.md §2):

1. statistics exchange: per-sample channel mean/std of each side are mixed with the partner's,
   AdaIN-style (Huang & Belongie, "Arbitrary Style Transfer in Real-time with Adaptive Instance
   Normalization", ICCV 2017) with a random Beta(α, α) weight as in MixStyle (Zhou et al.,
   "Domain Generalization with MixStyle", ICLR 2021). Training only: it is a style augmentation
   that makes the deeper layers see each domain's content in the other's style. In eval mode it
   is the identity: the target keeps its own statistics, so a prediction is deterministic,
   does not depend on which source image happens to be paired with it, and the deeper layers
   see unmixed target features, which training shows them too (the exchange is applied to a
   sample only with probability ``exchange_prob`` < 1), as MixStyle is switched off at test.
2. gated cross-domain attention: queries from one domain, keys/values from the partner's features
   average-pooled to a tokens×tokens grid; ``F' = F + γ·Attn(F → partner)``, γ initialised at 0
   so that the module starts as the identity.

With γ = 0 the projections get no gradient through the refinement, so on their own they never
learn what to attend to. ``attention_weights`` exposes the attention map so that training can
teach it semantic correspondence (``match_weight``, training/correspondence.py): a pixel's
attention over the partner's tokens, applied to the partner's pooled labels, must predict the
pixel's own label: label propagation from one image to another, as few-shot segmentation does
from a support image to a query (PANet, Wang et al., ICCV 2019, does it with class prototypes).
Then Attn(target → source) retrieves source features of the pixel's class, which the gate can
choose to use.

Pairing: sample ``i`` of one batch is paired with sample ``i % B_other`` of the other, so source
and target batch sizes may differ (the larger batch reuses partners cyclically).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .bank_cache import BankKeyValueCache, EntryKeyValues

BANK_MODES = ("ensemble", "mean")
PARTNERS = ("batch", "content")  # MRConfig.partners (training/content_partners.py)
# MRConfig.norm: how the teacher's BatchNorm sees the two streams (models/teacher.py)
NORM_MODES = ("domain", "shared", "shared-target")
EXCHANGE_PLACES = ("points", "output")  # MRConfig.exchange_at


@dataclass
class MRConfig:
    """Configuration of the MR points of the MURID teacher."""

    enabled: bool = True  # runtime switch; the modules exist either way (same checkpoint keys)
    points: tuple[int, ...] = (1, 2)  # after which backbone stages (subset of 1, 2, 3)
    tokens: int = 16  # the partner's features are pooled to tokens×tokens keys/values
    attn_dim: int = 0  # attention width; 0 = channels // 2, at least 8
    alpha: float = 0.3  # λ ~ Beta(α, α) for the statistics exchange
    exchange_prob: float = 0.5  # per-sample probability of the exchange during training
    bank_size: int = 16  # most source images a feature bank holds
    bank_mode: str = "ensemble"  # how a target attends to the bank: see refine_target
    source_running_stats: bool = False  # whether the source stream feeds BN running statistics
    # 'domain': each stream normalised with its own batch statistics (running statistics the
    # target's); 'shared': source and target crops normalised together, as one batch (DACS,
    # DAFormer), running statistics of the mixture, and the source bank built with them;
    # 'shared-target': normalised together, running statistics of the target crops alone
    norm: str = "domain"
    # 'points': the statistics exchange at each MR point, before its attention; 'output': at the
    # backbone's output only, where no BatchNorm follows (the ASPP classifier has none)
    exchange_at: str = "points"
    match_weight: float = 0.0  # weight of the attention's correspondence loss (0 = off)
    # 'batch': a target crop's partner is the source crop at its batch index; 'content': one of
    # the `partner_candidates` source images nearest its pseudo-label histogram, in the
    # curriculum (training/content_partners.py)
    partners: str = "batch"
    partner_candidates: int = 8
    # > 0: at inference each target image attends to this many bank entries, those whose source
    # images' class histograms are nearest its prediction's (models/banked.py); 0: all of them
    bank_select: int = 0

    def validate(self) -> MRConfig:
        from murid_engine.errors import UserError

        if not set(self.points) <= {1, 2, 3} or len(set(self.points)) != len(self.points):
            raise UserError(f"mr points must be distinct stages among 1, 2, 3, not {self.points}")
        if self.tokens < 1 or self.attn_dim < 0 or self.bank_size < 1:
            raise UserError("mr tokens and bank_size must be positive and attn_dim non-negative")
        if self.alpha <= 0 or not 0.0 <= self.exchange_prob <= 1.0:
            raise UserError(f"mr alpha must be > 0 and exchange_prob in [0, 1], not "
                            f"{self.alpha} and {self.exchange_prob}")
        if self.match_weight < 0:
            raise UserError(f"mr match_weight must be non-negative, not {self.match_weight}")
        if self.norm not in NORM_MODES:
            raise UserError(f"mr norm must be one of {', '.join(NORM_MODES)}, not '{self.norm}'")
        if self.exchange_at not in EXCHANGE_PLACES:
            raise UserError(f"mr exchange_at must be one of {', '.join(EXCHANGE_PLACES)}, "
                            f"not '{self.exchange_at}'")
        if self.bank_mode not in BANK_MODES:
            raise UserError(f"mr bank_mode must be one of {', '.join(BANK_MODES)}, not '{self.bank_mode}'")
        if self.bank_select < 0:
            raise UserError(f"mr bank_select must be non-negative, not {self.bank_select}")
        if self.partners not in PARTNERS or self.partner_candidates < 1:
            raise UserError(f"mr partners must be one of {', '.join(PARTNERS)} and partner_candidates "
                            f"at least 1, not '{self.partners}' and {self.partner_candidates}")
        return self


def channel_stats(x: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and std (B×C×1×1), in float32 so that AMP stays accurate."""
    x = x.float()
    var, mu = torch.var_mean(x, dim=(2, 3), keepdim=True, unbiased=False)
    return mu, (var + eps).sqrt()


def partner_index(n: int, n_partner: int, device: torch.device) -> torch.Tensor:
    """Sample i is paired with partner i % n_partner."""
    return torch.arange(n, device=device) % n_partner


class StatisticsExchange(nn.Module):
    """The statistics exchange of an MR point (part 1 above); no parameters, no state.

    Its own module so that it can also stand where no later BatchNorm renormalises what it moved
    (``MRConfig.exchange_at`` 'output': the backbone's output, read by a classifier without
    normalisation) while the attention stays at the MR points.
    """

    def __init__(self, alpha: float = 0.3, exchange_prob: float = 0.5, eps: float = 1e-5):
        super().__init__()
        self.alpha, self.exchange_prob, self.eps = alpha, exchange_prob, eps

    def weight(self, n: int, device: torch.device, lam: float | torch.Tensor | None
               ) -> torch.Tensor | None:
        """Per-sample weight (1-λ)·applied of the partner's statistics, B×1×1×1; None = skip."""
        if lam is not None:  # explicit λ: applied to every sample, in any mode (analysis, tests)
            lam_t = torch.as_tensor(lam, dtype=torch.float32, device=device).reshape(-1)
            return (1.0 - lam_t.expand(n)).view(n, 1, 1, 1)
        if not self.training or self.exchange_prob <= 0.0:
            return None
        a = torch.tensor(self.alpha, device=device)
        lam_t = torch.distributions.Beta(a, a).sample((n,))
        applied = (torch.rand(n, device=device) < self.exchange_prob).float()
        return ((1.0 - lam_t) * applied).view(n, 1, 1, 1)

    def exchange(self, x: torch.Tensor, partner: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """AdaIN towards the partner's statistics by ``weight`` = 1-λ (0 keeps x exactly).

        (x-μ)/σ·(λσ+(1-λ)σp) + λμ+(1-λ)μp, written as x + (1-λ)·[(x-μ)(σp/σ-1) + (μp-μ)] so
        that a zero weight returns x bit for bit. The partner's statistics are detached: its
        style is a target to move towards, not something the other domain's loss should reshape
        (MixStyle detaches the mixed statistics for the same reason). The sample's own μ, σ stay
        in the graph because they are part of the function applied to it.
        """
        mu, sig = channel_stats(x, self.eps)
        mu_p, sig_p = channel_stats(partner.detach(), self.eps)
        idx = partner_index(x.shape[0], partner.shape[0], x.device)
        mu_p, sig_p = mu_p[idx], sig_p[idx]
        delta = (x.float() - mu) * (sig_p / sig - 1.0) + (mu_p - mu)
        return x + (weight * delta).to(x.dtype)

    def forward(self, fs: torch.Tensor, ft: torch.Tensor, lam: float | torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each side moved towards its partner's statistics, both from the unexchanged inputs."""
        ws = self.weight(fs.shape[0], fs.device, lam)
        wt = self.weight(ft.shape[0], ft.device, lam)
        return (fs if ws is None else self.exchange(fs, ft, ws),
                ft if wt is None else self.exchange(ft, fs, wt))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, exchange_prob={self.exchange_prob}"


class MutualRefinement(nn.Module):
    """One MR point with ``channels`` channels: forward(fs, ft) -> (fs', ft')."""

    def __init__(self, channels: int, tokens: int = 16, attn_dim: int = 0, alpha: float = 0.3,
                 exchange_prob: float = 0.5, bank_mode: str = "ensemble", eps: float = 1e-5,
                 exchanges: bool = True):
        super().__init__()
        if bank_mode not in BANK_MODES:
            raise ValueError(f"bank_mode must be one of {BANK_MODES}, not {bank_mode!r}")
        self.channels, self.tokens, self.bank_mode = channels, tokens, bank_mode
        # False: the exchange stands elsewhere (MRConfig.exchange_at) and this point only attends
        self.exchanges = exchanges
        self.statistics = StatisticsExchange(alpha, exchange_prob, eps)
        dim = attn_dim or max(8, channels // 2)
        # One set of projections serves both directions: at a given point both streams come out
        # of the same (shared) backbone layers, so they live in the same feature space. The
        # direction-specific part is the gate.
        self.q_proj = nn.Conv2d(channels, dim, 1)
        self.k_proj = nn.Conv2d(channels, dim, 1)
        self.v_proj = nn.Conv2d(channels, dim, 1)
        self.o_proj = nn.Conv2d(dim, channels, 1)
        self.gamma_s = nn.Parameter(torch.zeros(()))
        self.gamma_t = nn.Parameter(torch.zeros(()))
        self.bank_cache = BankKeyValueCache()  # not state: rebuilt from the weights and the bank

    def train(self, mode: bool = True) -> MutualRefinement:
        if mode:  # weights are about to change, possibly in ways no version counter sees (DDP)
            self.bank_cache.clear()
        return super().train(mode)

    # -- cross-domain attention ----------------------------------------------------------------
    def pool_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Average-pool features to the fixed tokens×tokens grid (B×C×t×t).

        Always the same grid, also for maps smaller than it (values are then repeated evenly,
        which leaves the softmax weights unchanged): bank entries of any image size stack.
        """
        return F.adaptive_avg_pool2d(x, (self.tokens, self.tokens))

    def _queries(self, x: torch.Tensor) -> torch.Tensor:
        return self.q_proj(x).flatten(2).transpose(1, 2).unsqueeze(1)  # B×1×L×d

    def _keys_values(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.k_proj(tokens).flatten(2).transpose(1, 2).unsqueeze(1)  # K×1×T×d
        v = self.v_proj(tokens).flatten(2).transpose(1, 2).unsqueeze(1)
        return k, v

    def _project_out(self, attended: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        b, _, h, w = like.shape
        return self.o_proj(attended.squeeze(1).transpose(1, 2).reshape(b, -1, h, w))

    def attention_weights(self, x: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
        """softmax(q·kᵀ/√d) of Attn(x → partner): B×L×T, L = x's pixels, T = tokens².

        The same weights ``attend`` applies (scaled_dot_product_attention's default scale).
        """
        k, _ = self._keys_values(self.pool_tokens(partner))
        idx = partner_index(x.shape[0], partner.shape[0], x.device)
        q = self._queries(x).squeeze(1).float()  # B×L×d
        scores = q @ k[idx].squeeze(1).float().transpose(1, 2) / q.shape[-1] ** 0.5
        return torch.softmax(scores, dim=-1)

    def attend(self, x: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
        """Attn(x → partner): each sample attends to its paired partner's pooled tokens."""
        k, v = self._keys_values(self.pool_tokens(partner))
        idx = partner_index(x.shape[0], partner.shape[0], x.device)
        out = F.scaled_dot_product_attention(self._queries(x), k[idx], v[idx])
        return self._project_out(out, x)

    def forward(self, fs: torch.Tensor, ft: torch.Tensor,
                lam: float | torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Refine a source and a target batch; ``lam`` fixes λ for every sample (analysis)."""
        fs_n, ft_n = self.statistics(fs, ft, lam) if self.exchanges else (fs, ft)
        # Both directions read the exchanged features of the partner, computed before either
        # side is refined, so the two updates are symmetric.
        fs_r = fs_n + self.gamma_s * self.attend(fs_n, ft_n)
        ft_r = ft_n + self.gamma_t * self.attend(ft_n, fs_n)
        return fs_r, ft_r

    # -- inference against a bank of cached source features ------------------------------------
    @torch.no_grad()
    def bank_tokens(self, fs: torch.Tensor) -> torch.Tensor:
        """What a source-feature bank stores for this point: pooled tokens, K×C×t×t, float32."""
        return self.pool_tokens(fs).float().contiguous()

    def bank_keys_values(self, bank_fs: torch.Tensor) -> EntryKeyValues:
        """Keys and values of every entry of a bank (K×C×h×w or K×C×t×t), K×T×d each.

        Cached until the projections or the bank change (models/bank_cache.py); projected afresh
        in grad mode. Computed in float32 outside autocast, so a cached entry is what it would
        be on its own, whatever the caller's precision.
        """
        if bank_fs.dim() != 4 or bank_fs.shape[1] != self.channels or bank_fs.shape[0] == 0:
            raise ValueError(f"a bank for this MR point must be K×{self.channels}×h×w with K ≥ 1, "
                             f"not {tuple(bank_fs.shape)}")
        projections = (self.k_proj.weight, self.k_proj.bias, self.v_proj.weight, self.v_proj.bias)

        def compute() -> EntryKeyValues:
            weight = self.k_proj.weight
            with torch.autocast(weight.device.type, enabled=False):
                bank = bank_fs.to(device=weight.device, dtype=weight.dtype)
                if bank.shape[-2:] != (self.tokens, self.tokens):
                    bank = self.pool_tokens(bank)
                k, v = self._keys_values(bank)  # K×1×T×d, d not contiguous
            # Contiguous: with a last dimension of stride 1, scaled_dot_product_attention runs
            # its fused CPU kernel instead of the reference one (whose -inf checks cost more
            # than the softmax itself).
            return EntryKeyValues(k.squeeze(1).contiguous(), v.squeeze(1).contiguous())

        return self.bank_cache.get([*projections, bank_fs], compute)

    def refine_target(self, ft: torch.Tensor, bank_fs: torch.Tensor,
                      entries: torch.Tensor | None = None, chunk_elems: int = 1 << 25) -> torch.Tensor:
        """Refine target features against a bank of K source entries (K×C×h×w or K×C×t×t).

        No statistics exchange (the target keeps its own statistics, as in eval mode).
        'ensemble' (default): the average over the bank of Attn(ft → source_k): a deterministic
        estimate of the expectation over source partners that training samples at random;
        each term is exactly the training-time computation, and no result depends on batch
        order. Costs K attentions, computed in chunks of the bank so memory stays bounded.
        'mean': one attention against the position-wise mean of the bank's tokens: K× cheaper,
        but the keys are smoother than any single source image seen in training (the
        projections are affine, so the mean of the entries' keys is the mean tokens' keys).
        ``entries`` picks the bank's entries each image attends to (see EntryKeyValues.select):
        a per-image bank drawn from a pool costs an index, not a projection.
        """
        keys, values = self.bank_keys_values(bank_fs).select(entries, ft.shape[0])  # B×M×T×d
        if self.bank_mode == "mean":
            keys, values = keys.mean(dim=1, keepdim=True), values.mean(dim=1, keepdim=True)
        q = self._queries(ft).contiguous()  # N×1×L×d
        keys, values = keys.to(q.dtype), values.to(q.dtype)
        n, _, length, dim = q.shape
        step = max(1, chunk_elems // max(1, n * length * dim))
        total = torch.zeros_like(q)
        for start in range(0, keys.shape[1], step):
            kc, vc = keys[:, start:start + step], values[:, start:start + step]
            shape = (n, kc.shape[1], kc.shape[2], dim)  # the bank entries act as heads
            out = F.scaled_dot_product_attention(q.expand(n, kc.shape[1], length, dim),
                                                 kc.expand(shape), vc.expand(shape))
            total = total + out.sum(dim=1, keepdim=True)
        # o_proj is linear, so projecting the mean equals the mean of the projected outputs.
        return ft + self.gamma_t * self._project_out(total / keys.shape[1], ft)

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, tokens={self.tokens}, exchanges={self.exchanges}, "
                f"bank_mode={self.bank_mode}")
