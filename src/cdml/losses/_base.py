"""The common call convention of the losses: ``loss(embeddings, labels)`` -> scalar."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._inputs import prepare_inputs


class MetricLoss(nn.Module):
    """Base class: validates the batch, then computes the loss in float32 (or float64).

    Subclasses implement :meth:`compute`, which receives ``(n, d)`` float32 or float64
    embeddings and ``(n,)`` int64 labels on the same device and runs with autocast disabled,
    so under mixed precision the loss is still computed, and returned, in float32.

    ``images_per_class`` is the share of a class-balanced batch each class gets by default
    (the papers' C/n = 0.25: 32 classes of 4 in a batch of 128); ``normalize_embeddings``
    whether the model L2-normalises its embeddings by default for this loss.
    """

    images_per_class: int = 4
    normalize_embeddings: bool = True

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """``embeddings`` ``(n, d)`` float, ``labels`` ``(n,)`` integer -> scalar loss."""
        embeddings, labels = prepare_inputs(embeddings, labels)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return self.compute(embeddings, labels)

    def compute(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError
