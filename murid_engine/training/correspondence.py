"""The correspondence loss that teaches MR's attention what to attend to.

A pixel's attention weights over its partner's tokens, applied to the class distribution of
each token (the partner's labels pooled to the same token grid), predict a class for the pixel:
label propagation. Its negative log-likelihood under the pixel's own label is low only when the
pixel attends to partner regions of its own class. Attn(target → source) at inference then
mixes in source features of the class the target pixel shows, rather than an average of the
whole source image, which is all an untrained attention map gives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from murid_engine.labels import IGNORE

MIN_PROBABILITY = 1e-4  # floor of the propagated probability, so one wrong pixel costs at most ~9


def token_class_distribution(labels: torch.Tensor, tokens: int, num_classes: int) -> torch.Tensor:
    """B×H×W labels -> B×T×C: per token, the share of its pixels in each class.

    Tokens are the tokens×tokens adaptive-average-pooling grid the MR keys are pooled to, so a
    token's labels cover the image region its features do. Ignored pixels count towards no
    class: a token that is half unlabelled sums to one half.
    """
    valid = labels != IGNORE
    one_hot = F.one_hot(torch.where(valid, labels, 0), num_classes).permute(0, 3, 1, 2).float()
    one_hot = one_hot * valid.unsqueeze(1)
    pooled = F.adaptive_avg_pool2d(one_hot, (tokens, tokens))  # B×C×t×t
    return pooled.flatten(2).transpose(1, 2)


def correspondence_nll(weights: torch.Tensor, query_labels: torch.Tensor,
                       partner_dist: torch.Tensor, feature_size: tuple[int, int]) -> torch.Tensor:
    """Mean NLL of the query pixels' labels under attention-propagated partner labels.

    ``weights``: B×L×T attention of the queries (L = h×w feature pixels) over the partner's
    T tokens; ``partner_dist``: the partner's B×T×C ``token_class_distribution`` (computed once
    per label map, shared by every MR point and direction); ``query_labels``: B×H×W at image
    resolution, taken at the feature pixels by nearest-neighbour sampling. Returns 0 (with a
    graph) when no query pixel is labelled.
    """
    h, w = feature_size
    queries = F.interpolate(query_labels[:, None].float(), size=(h, w), mode="nearest")
    queries = queries.long().flatten(1)  # B×L
    valid = queries != IGNORE
    if not valid.any():
        return weights.sum() * 0.0
    propagated = weights.float() @ partner_dist  # B×L×C
    picked = propagated.gather(2, torch.where(valid, queries, 0).unsqueeze(-1)).squeeze(-1)
    nll = -torch.log(picked.clamp(min=MIN_PROBABILITY))
    return nll[valid].mean()
