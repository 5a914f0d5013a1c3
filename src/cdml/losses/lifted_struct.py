"""Lifted structured loss (Song et al., CVPR 2016)."""

from __future__ import annotations

import torch
from torch import Tensor

from cdml.tuning.knob import Knob

from ._base import MetricLoss
from ._inputs import check_hyperparameter
from ._pairwise import distances, same_label
from ._registry import register_method


@register_method("lifted")
class LiftedStructLoss(MetricLoss):
    """Lifted structured embedding loss, as TensorFlow's ``lifted_struct_loss`` (the baseline of
    Song et al., CVPR 2017).

    With Euclidean distances ``D``, for each unordered positive pair ``(i, j)``::

        J_ij = log( sum_{k neg of i} exp(margin - D[i, k])
                    + sum_{l neg of j} exp(margin - D[j, l]) ) + D[i, j]
        loss = sum_{(i, j)} max(0, J_ij)^2 / (2 P)

    with ``P`` the number of unordered positive pairs (log-sum-exp computed stably). A pair
    whose samples have no negative contributes 0; a batch without positive pairs gives 0.

    Args:
        margin: the margin, default 1.0.

    Shapes: ``embeddings (n, d)``, ``labels (n,)`` -> scalar.
    """

    normalize_embeddings = False  # seed 000 trains it on unnormalised embeddings

    search_space = {"margin": Knob(0.1, 2.0, log=True)}

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = check_hyperparameter("margin", margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"

    def compute(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        dist = distances(embeddings)
        same = same_label(labels)
        # The most negative finite value stands for "no negative" and keeps gradients finite.
        floor = torch.finfo(dist.dtype).min
        negatives = torch.logsumexp((self.margin - dist).masked_fill(same, floor), 1)
        lifted = torch.logaddexp(negatives[:, None], negatives[None, :]) + dist
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        positive = same & ~eye
        # Each unordered pair appears twice among the ordered ones.
        total = torch.where(positive, torch.relu(lifted).square(), 0).sum() / 2
        return total / (2 * (positive.sum() / 2).clamp_min(1))
