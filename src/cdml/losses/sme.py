"""Instance-level softmax embedding, SME (Ye et al., CVPR 2019): a baseline of seed 001."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cdml.models import EmbeddingModel
from cdml.tuning.knob import Knob

from ._inputs import check_hyperparameter, full_precision, no_autocast
from ._method import ViewsMethod
from ._registry import register_method


class InstanceSoftmaxLoss(nn.Module):
    """Each image is its own class: its two augmented views attract, every other row of the
    batch repels (Ye et al., *Unsupervised Embedding Learning via Invariant and Spreading
    Instance Feature*, CVPR 2019, eq. 6, in the symmetric form of the authors' code). With
    rows ``i`` and ``i + B`` the two views of image ``i``, ``q(i)`` the other view of row
    ``i`` and ``s_ik = exp(f_i . f_k / t)``::

        P_i  = s_{i q(i)} / Z_i,       Z_i = sum_{k != i} s_ik
        loss = -(1/2B) sum_i [ log P_i + sum_{k != i, q(i)} log(1 - s_ik / Z_i) ]

    the first term recognising the other view as instance ``i``, the second keeping the
    other instances apart. Computed in log space, in float32 (or float64); embeddings are
    used as given (L2-normalise them first, as the paper does).

    As in the authors' code, the gradient flows through the query row ``f_i`` only: the
    rows it is compared with (``f_k``, the positive ``f_q(i)`` among them) are constants
    (``detach_keys=False`` differentiates both sides, about twice the gradient).

    Args:
        temperature: ``t > 0``, default 0.1.
        detach_keys: default True.

    Shapes: ``embeddings (2B, d)`` (first views, then second views), ``B >= 2`` -> scalar.
    """

    def __init__(self, temperature: float = 0.1, detach_keys: bool = True) -> None:
        super().__init__()
        self.temperature = check_hyperparameter("temperature", temperature, 0, strict=True)
        self.detach_keys = detach_keys

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, detach_keys={self.detach_keys}"

    def forward(self, embeddings: Tensor) -> Tensor:
        rows = len(embeddings)
        if embeddings.ndim != 2 or rows < 4 or rows % 2:
            raise ValueError(
                "embeddings must have shape (2B, d) with B >= 2 images, "
                f"got {tuple(embeddings.shape)}"
            )
        with no_autocast(embeddings):
            (f,) = full_precision(embeddings)
            logits = f @ (f.detach() if self.detach_keys else f).T / self.temperature
            itself = torch.eye(rows, dtype=torch.bool, device=f.device)
            logits = logits.masked_fill(itself, -math.inf)
            log_z = logits.logsumexp(1, keepdim=True)
            rows_index = torch.arange(rows, device=f.device)
            other_view = (rows_index + rows // 2) % rows
            log_p = logits[rows_index, other_view] - log_z[:, 0]
            # log(1 - s_ik / Z_i): for every k but the row's largest, s_ik / Z_i <= 1/2 and
            # log1p(-s_ik / Z_i) is accurate; for the largest it is log(sum of the others) -
            # log Z_i, which does not cancel when that one term holds nearly all of Z_i.
            top = F.one_hot(logits.argmax(1), rows).bool()
            log_share = (logits - log_z).clamp(max=0).masked_fill(top, -math.inf)
            log_rest = logits.masked_fill(top, -math.inf).logsumexp(1, keepdim=True) - log_z
            log_complement = torch.where(top, log_rest, torch.log1p(-log_share.exp()))
            negative = torch.ones_like(itself)
            negative[rows_index, other_view] = False
            negative &= ~itself
            repel = torch.where(negative, log_complement, 0).sum(1)
            return -(log_p + repel).mean()


@register_method("sme")
class SMEObjective(ViewsMethod):
    """Instance-level softmax embedding over two views (SME, Ye et al., CVPR 2019): each
    image's second view is its positive, every other image of the batch a negative.

    Args:
        temperature: default 0.1.
        detach_keys: gradients through the query rows only, as the authors' code (default).
    """

    search_space = {"temperature": Knob(0.03, 0.3, log=True)}

    def __init__(self, temperature: float = 0.1, detach_keys: bool = True) -> None:
        super().__init__()
        self.loss = InstanceSoftmaxLoss(temperature, detach_keys)

    def forward(
        self, model: EmbeddingModel, views: tuple[Tensor, ...]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        return self.loss(model(torch.cat(views))), {}
