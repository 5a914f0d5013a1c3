"""Embedding head: a linear projection followed by L2 normalisation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class EmbeddingHead(nn.Module):
    """``(B, in_features) -> (B, embedding_size)``: ``x W^T + b``, then ``x / ||x||_2``.

    Args:
        in_features: size of the backbone's pooled features.
        embedding_size: output dimension (64 as in the facility-location paper).
        normalize: L2-normalise the output rows (``F.normalize``, eps 1e-12).
    """

    def __init__(self, in_features: int, embedding_size: int = 64, normalize: bool = True) -> None:
        super().__init__()
        if in_features < 1:
            raise ValueError(f"in_features must be positive, got {in_features}")
        if embedding_size < 1:
            raise ValueError(f"embedding_size must be positive, got {embedding_size}")
        self.normalize = normalize
        self.linear = nn.Linear(in_features, embedding_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        embeddings = self.linear(features)
        return F.normalize(embeddings, dim=1) if self.normalize else embeddings

    def extra_repr(self) -> str:
        return f"normalize={self.normalize}"
