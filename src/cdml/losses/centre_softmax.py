"""Centre-based softmax metric loss (seed 001)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._inputs import check_hyperparameter, full_precision, no_autocast


class CentreSoftmaxLoss(nn.Module):
    """Pulls each view towards the other view of its image and away from the centroids of
    the clusters it is not in (seed 001, METHODS.md section 4). With rows ``i`` and ``i + B``
    the two views of image ``i``, ``f_i'`` the other view of row ``i`` (detached), centroids
    ``c_j`` (constants) and ``c(i)`` row ``i``'s cluster::

        pos_i  = exp(f_i . f_i' / t)
        e_ij   = exp(f_i . c_j / t),   Z_i = sum_j e_ij,   Z_i^- = sum_{j != c(i)} e_ij
        loss   = -(1/2B) sum_i [ log(pos_i / Z_i^-) + sum_{j != c(i)} log(1 - e_ij / Z_i) ]

    computed in log space (log-sum-exp), in float32 (or float64). With a single cluster there
    is no other centroid: ``Z_i^-`` is empty and the loss is 0.

    Args:
        temperature: ``t > 0``, default 0.1.

    Shapes: ``embeddings (2B, d)`` (first views, then second views), ``centroids (K, d)``,
    ``assignments (2B,)`` integers in ``[0, K)`` -> scalar.
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = check_hyperparameter("temperature", temperature, 0, strict=True)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"

    def forward(
        self,
        embeddings: Tensor,
        centroids: Tensor,
        assignments: Tensor,
        present: Tensor | None = None,
    ) -> Tensor:
        """``present`` ``(K,)`` bool: the clusters that take part (default all); the others'
        centroids are left out of every sum, so that clusters without a member in the batch
        need not be removed first (which would read the assignments on the host)."""
        rows, k = len(embeddings), len(centroids)
        if embeddings.ndim != 2 or rows < 2 or rows % 2:
            raise ValueError(
                f"embeddings must have shape (2B, d) with B >= 1, got {tuple(embeddings.shape)}"
            )
        if centroids.ndim != 2 or centroids.shape[1] != embeddings.shape[1] or k < 1:
            raise ValueError(
                f"centroids must have shape (K, {embeddings.shape[1]}), "
                f"got {tuple(centroids.shape)}"
            )
        if assignments.shape != (rows,) or assignments.is_floating_point():
            raise ValueError(f"assignments must be ({rows},) integers, got {assignments.dtype}")
        if present is not None and (present.shape != (k,) or present.dtype != torch.bool):
            raise ValueError(f"present must be ({k},) bool, got {tuple(present.shape)}")
        if k == 1:
            return embeddings.sum() * 0
        if present is None:
            present = torch.ones(k, dtype=torch.bool, device=centroids.device)
        # With a single cluster taking part there is no other centroid and the loss is 0:
        # computed over all the centroids then (finite), and zeroed.
        several = present.sum() > 1
        present = present | ~several
        with no_autocast(embeddings):
            f, c = full_precision(embeddings, centroids.detach())
            other_view = f.detach().roll(rows // 2, 0)
            positive = (f * other_view).sum(1) / self.temperature
            logits = (f @ c.T / self.temperature).masked_fill(~present, -math.inf)
            own = torch.nn.functional.one_hot(assignments, k).bool()
            log_z_negative = logits.masked_fill(own, -math.inf).logsumexp(1)
            # log(1 - e_ij / Z_i) = log(sum_{l != j} e_il) - log Z_i, without cancellation.
            leave_one_out = (
                logits[:, None, :]
                .expand(rows, k, k)
                .masked_fill(torch.eye(k, dtype=torch.bool, device=f.device), -math.inf)
            )
            log_rest = leave_one_out.logsumexp(2) - logits.logsumexp(1, keepdim=True)
            negatives = log_rest.masked_fill(own | ~present, 0).sum(1)
            loss = -(positive - log_z_negative + negatives).mean()
            return torch.where(several, loss, loss * 0)
