"""Regularised information maximisation (RIM) clustering loss (seed 001)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._inputs import full_precision, no_autocast


def _check_probs(probs: Tensor) -> None:
    if probs.ndim != 2 or probs.shape[0] < 2 or probs.shape[1] < 2:
        raise ValueError(
            f"probs must have shape (N, K) with N >= 2 rows and K >= 2 clusters, "
            f"got {tuple(probs.shape)}"
        )


class RIMClusteringLoss(nn.Module):
    """RIM clustering loss of cluster probabilities (seed 001, METHODS.md section 4)::

        H(Y|X) = -(1/N) sum_i sum_k p_ik log p_ik
        H(Y)   = -sum_k pbar_k log pbar_k,        pbar = mean_i p_i
        loss   = H(Y|X) / log N + (1 - H(Y) / log K)

    Confident assignments (low conditional entropy) that use every cluster evenly (high
    marginal entropy) minimise it; ``0 log 0 = 0``. Computed in float32 (or float64).

    Shapes: ``probs (N, K)``, rows summing to 1 -> scalar.
    """

    def forward(self, probs: Tensor) -> Tensor:
        _check_probs(probs)
        with no_autocast(probs):
            (probs,) = full_precision(probs)
            n, k = probs.shape
            conditional = -torch.special.xlogy(probs, probs).sum(1).mean()
            mean = probs.mean(0)
            marginal = -torch.special.xlogy(mean, mean).sum()
            return conditional / math.log(n) + (1 - marginal / math.log(k))


def cluster_statistics(probs: Tensor) -> dict[str, Tensor]:
    """How the hard assignments ``argmax p_i`` of a batch use the clusters, for logging.

    Returns ``non_empty_clusters`` (number of clusters holding at least one row) and
    ``cluster_entropy`` (entropy of the clusters' shares of the rows over ``log K``: 1 when
    the rows are spread evenly, 0 when all fall in one cluster), as tensors on ``probs``'s
    device (no host synchronisation). Shapes: ``probs (N, K)``.
    """
    _check_probs(probs)
    hard = probs.argmax(1)
    counts = probs.new_zeros(probs.shape[1], dtype=torch.float32)
    counts.index_add_(0, hard, torch.ones_like(hard, dtype=torch.float32))
    shares = counts / counts.sum()
    entropy = -torch.special.xlogy(shares, shares).sum() / math.log(probs.shape[1])
    return {"non_empty_clusters": (counts > 0).sum().float(), "cluster_entropy": entropy}
