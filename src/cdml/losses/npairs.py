"""Multi-class N-pair loss (Sohn, NeurIPS 2016)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cdml.tuning.knob import Knob

from ._base import MetricLoss
from ._inputs import check_hyperparameter
from ._pairwise import rank_in_class, same_label
from ._registry import register_method


@register_method("npairs")
class NPairsLoss(MetricLoss):
    """N-pair loss on the anchor/positive pairs of a labelled batch, as TensorFlow's
    ``npairs_loss`` (the baseline of Song et al., CVPR 2017).

    Each class with at least two samples contributes its first two (batch order) as anchor
    ``a_c`` and positive ``p_c``. With logits ``a_c . p_c'`` (raw dot products) over the
    positives and one-hot targets (the anchors' labels are distinct)::

        loss = mean_c -log softmax_c'(a_c . p_c')[c]
               + 0.25 * reg_lambda * (mean_c ||a_c||^2 + mean_c ||p_c||^2)

    A batch without any class of two samples gives 0.

    Args:
        reg_lambda: weight of the L2 penalty on the embeddings, default 0.002.

    Shapes: ``embeddings (n, d)``, ``labels (n,)`` -> scalar.
    """

    images_per_class = 2  # an anchor and a positive per class (C/n = 0.5)
    normalize_embeddings = False  # seed 000: dot-product logits of unnormalised embeddings

    search_space = {"reg_lambda": Knob(1e-4, 1e-1, log=True)}

    def __init__(self, reg_lambda: float = 0.002) -> None:
        super().__init__()
        self.reg_lambda = check_hyperparameter("reg_lambda", reg_lambda, 0)

    def extra_repr(self) -> str:
        return f"reg_lambda={self.reg_lambda}"

    def compute(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        # Anchors and positives stay in place, selected by masks (no data-dependent shapes).
        same = same_label(labels)
        rank = rank_in_class(labels)
        anchor = (rank == 0) & (same.sum(1) >= 2)
        positive = rank == 1
        floor = torch.finfo(embeddings.dtype).min
        logits = (embeddings @ embeddings.T).masked_fill(~positive[None, :], floor)
        log_prob = F.log_softmax(logits, 1)
        cross_entropy = -torch.where(same & positive[None, :], log_prob, 0).sum(1)
        pairs = anchor.sum().clamp_min(1)
        softmax_loss = torch.where(anchor, cross_entropy, 0).sum() / pairs
        norms = embeddings.square().sum(1)
        penalty = torch.where(anchor | positive, norms, 0).sum() / pairs
        return softmax_loss + 0.25 * self.reg_lambda * penalty
