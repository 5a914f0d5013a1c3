"""Triplet loss with semi-hard negative mining (Schroff et al., FaceNet, CVPR 2015)."""

from __future__ import annotations

import torch
from torch import Tensor

from cdml.tuning.knob import Knob

from ._base import MetricLoss
from ._inputs import check_hyperparameter
from ._pairwise import same_label, squared_distances
from ._registry import register_method


@register_method("triplet")
class TripletSemihardLoss(MetricLoss):
    """Triplet loss over all positive pairs with semi-hard negatives, as TensorFlow's
    ``triplet_semihard_loss`` (the baseline of Song et al., CVPR 2017).

    With squared distances ``D2``, for every ordered positive pair ``(a, p)``, ``a != p``, the
    negative ``n`` is the one with the smallest ``D2[a, n]`` among those with
    ``D2[a, n] > D2[a, p]``, or, if there is none, the negative farthest from ``a``::

        loss = mean_{(a, p)} max(0, margin + D2[a, p] - D2[a, n])

    Pairs whose anchor has no negative (a single-class batch) form no triplet; a batch without
    triplets gives 0. The mining uses no gradient; the gradient flows through ``D2``.

    Args:
        margin: the margin, default 1.0.

    Shapes: ``embeddings (n, d)``, ``labels (n,)`` -> scalar.
    """

    search_space = {"margin": Knob(0.01, 2.0, log=True)}

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = check_hyperparameter("margin", margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"

    def compute(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        squared = squared_distances(embeddings)
        same = same_label(labels)
        negative_count = (~same).sum(1)
        with torch.no_grad():
            # Each anchor's negatives in increasing distance, non-negatives last.
            ordered, order = squared.detach().masked_fill(same, torch.inf).sort(1)
            # First negative strictly farther than the positive; else the farthest negative.
            above = torch.searchsorted(ordered, squared.detach(), right=True)
            farthest = (negative_count - 1).clamp_min(0)[:, None]
            negative = order.gather(
                1, torch.where(above < negative_count[:, None], above, farthest)
            )
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        valid = same & ~eye & (negative_count > 0)[:, None]
        hinge = torch.relu(self.margin + squared - squared.gather(1, negative))
        return torch.where(valid, hinge, 0).sum() / valid.sum().clamp_min(1)
