"""The supervised contract: ``loss(embeddings, labels)`` -> scalar, as a training method."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from ._inputs import prepare_inputs
from ._method import LABELLED, Method, embed_labelled_batch


class MetricLoss(Method):
    """Base class of cdml's supervised losses: validates the batch, then computes the loss in
    float32 (or float64).

    Subclasses implement :meth:`compute`, which receives ``(n, d)`` float32 or float64
    embeddings and ``(n,)`` int64 labels on the same device (where the caller gave them if
    the class sets ``labels_where_given``) and runs with autocast disabled,
    so under mixed precision the loss is still computed, and returned, in float32. What a
    subclass exposes about its last call (:attr:`statistics`) is logged during training.
    """

    batch_kind = LABELLED
    labels_where_given: ClassVar[bool] = False

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """``embeddings`` ``(n, d)`` float, ``labels`` ``(n,)`` integer -> scalar loss."""
        embeddings, labels = prepare_inputs(embeddings, labels, not self.labels_where_given)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return self.compute(embeddings, labels)

    def compute(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError

    @property
    def statistics(self) -> dict[str, Tensor]:
        """Named values of the last call, for logging (none by default)."""
        return {}

    def batch_loss(
        self, model: nn.Module, batch: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        embeddings, labels = embed_labelled_batch(model, batch)
        return self(embeddings, labels), dict(self.statistics)


class ExternalLoss(Method):
    """Any ``nn.Module`` called as ``loss(embeddings, labels)`` -> scalar (a user's loss, or
    one of another library such as pytorch-metric-learning), trained on class-balanced batches
    of L2-normalised embeddings.

    Args:
        loss: the module; its parameters, if any, train at ``optim.loss_lr``.
    """

    batch_kind = LABELLED

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def batch_loss(
        self, model: nn.Module, batch: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        embeddings, labels = embed_labelled_batch(model, batch)
        return self.loss(embeddings, labels), {}
