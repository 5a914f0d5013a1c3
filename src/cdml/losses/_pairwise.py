"""Pairwise distances and label relations of a batch."""

from __future__ import annotations

import torch
from torch import Tensor


def squared_distances(embeddings: Tensor) -> Tensor:
    """``(n, d)`` -> ``(n, n)`` squared Euclidean distances.

    Exactly symmetric, with an exactly zero diagonal, so that equal distances compare equal.
    """
    gram = embeddings @ embeddings.T
    norms = gram.diagonal()
    return ((norms[:, None] + norms[None, :]) - (gram + gram.T)).clamp_min(0)


def distances(embeddings: Tensor) -> Tensor:
    """``(n, d)`` -> ``(n, n)`` Euclidean distances ``||x_i - x_j||_2``.

    The gradient of a zero distance (the diagonal, duplicated points) is set to 0 instead of the
    NaN of ``sqrt`` at 0.
    """
    squared = squared_distances(embeddings)
    positive = squared > 0
    return torch.where(positive, torch.where(positive, squared, 1).sqrt(), 0)


def same_label(labels: Tensor) -> Tensor:
    """``(n,)`` -> ``(n, n)`` bool, ``[i, j]`` true when ``labels[i] == labels[j]``."""
    return labels[:, None] == labels[None, :]


def rank_in_class(labels: Tensor) -> Tensor:
    """``(n,)`` -> ``(n,)`` int64: how many earlier samples of the batch share each label."""
    earlier = torch.ones(len(labels), len(labels), dtype=torch.bool, device=labels.device).tril(-1)
    return (same_label(labels) & earlier).sum(1)
