"""Cluster head of seed 001: embeddings -> soft cluster assignments."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ClusterHead(nn.Module):
    """``(N, embedding_size) -> (N, num_clusters)`` probabilities: BatchNorm1d, Dropout,
    Linear to ``K``, L2 normalisation of the logits, softmax (METHODS.md section 4).

    Args:
        embedding_size: ``d``, default 128.
        num_clusters: ``K``, default 32.
        dropout: default 0.6.
    """

    def __init__(self, embedding_size: int = 128, num_clusters: int = 32, dropout: float = 0.6):
        super().__init__()
        if embedding_size < 1:
            raise ValueError(f"embedding_size must be positive, got {embedding_size}")
        if num_clusters < 2:
            raise ValueError(f"num_clusters must be at least 2, got {num_clusters}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.layers = nn.Sequential(
            nn.BatchNorm1d(embedding_size),
            nn.Dropout(dropout),
            nn.Linear(embedding_size, num_clusters),
        )

    def forward(self, embeddings: Tensor) -> Tensor:
        return F.softmax(F.normalize(self.layers(embeddings), dim=1), dim=1)
