"""What every training method declares: the batches it trains on, what it needs from the run,
its loss on a batch with the values it logs, and its schedule as Lightning callbacks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn

from cdml.distributed import gather_with_grad
from cdml.tuning.knob import Knob

# Batch kinds. LABELLED: ``(images (B, 3, H, W), labels (B,))`` from a class-balanced sampler.
# VIEWS: ``(views, indices)``, a tuple of augmented image batches of unlabelled images
# (two views of each image, or anchor / positive / negative images) and their indices.
LABELLED = "labelled"
VIEWS = "views"


@dataclass(frozen=True)
class RunInfo:
    """What a run offers a method's constructor; a method names the fields it takes in
    :attr:`Method.needs` (a field a run cannot fill is ``None``)."""

    model: nn.Module | None = None  # the embedding model (CBSwR sizes its head and decoder)
    embedding_size: int | None = None
    num_classes: int | None = None  # training classes (0 for a method that reads no label)
    image_size: int | None = None  # training input size S
    mean: tuple[float, ...] | None = None  # input normalisation of the model's weights
    std: tuple[float, ...] | None = None


class Method(nn.Module):
    """Base class of a training method: a supervised loss or an unsupervised objective.

    Class attributes a method sets:

    - ``batch_kind``: :data:`LABELLED` (class-balanced ``(images, labels)``) or :data:`VIEWS`
      (views of unlabelled images: no label reaches the method).
    - ``needs``: names of :class:`RunInfo` fields given to the constructor when the run's
      ``loss.params`` leave them out (e.g. ``("embedding_size", "num_classes")``).
    - ``images_per_class``: a class-balanced batch's default share per class (4: the papers'
      C/n = 0.25, 32 classes of 4 in a batch of 128).
    - ``normalize_embeddings``: whether the model L2-normalises its embeddings by default.
    - ``default_embedding_size``: the embedding size when the run gives none.
    - ``default_loss_lr``: the learning rate of the parameters the method owns (a classifier,
      a cluster head) when the run's ``optim.loss_lr`` gives none.
    - ``search_space``: the ranges ``cdml tune`` searches for the method's own settings, by
      constructor argument (``loss.params.NAME``) or dotted config key (``optim.loss_lr``).
    """

    batch_kind: ClassVar[str] = LABELLED
    needs: ClassVar[tuple[str, ...]] = ()
    images_per_class: ClassVar[int] = 4
    normalize_embeddings: ClassVar[bool] = True
    default_embedding_size: ClassVar[int] = 64
    default_loss_lr: ClassVar[float] = 1e-3
    search_space: ClassVar[dict[str, Knob]] = {}

    def batch_loss(self, model: nn.Module, batch: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """The training loss of one batch of ``batch_kind`` for ``model`` (images ->
        embeddings), and the named values to log beside it (tensors, not synchronised)."""
        raise NotImplementedError

    def callbacks(self) -> list[Callback]:
        """Lightning callbacks of the method's schedule (margin decay, warm-up, re-pairing)."""
        return []


def embed_labelled_batch(model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """Embeddings ``(B, d)`` and labels ``(B,)`` of a :data:`LABELLED` batch; under DDP those
    of the global batch, with gradients equal to one process's on it."""
    images, labels = batch
    return gather_with_grad(model(images)), gather_with_grad(labels)


class ViewsMethod(Method):
    """Base class of the unsupervised methods: :meth:`forward` ``(model, views)`` -> the loss
    and what to log, ``views`` the tuple of augmented image batches of a :data:`VIEWS` batch
    (no label). Embeddings of 128 dimensions by default."""

    batch_kind = VIEWS
    default_embedding_size = 128

    def batch_loss(
        self, model: nn.Module, batch: tuple[tuple[Tensor, ...], Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        views, _ = batch
        return self(model, views)

    def images_per_epoch(self, images: int) -> int:
        """How many of the ``images`` training images an epoch draws (default all)."""
        return images
