"""Learning an embedding without labels: CBSwR (seed 001) and its ablations, SME, MOM.

Each method is an *objective*: an ``nn.Module`` owning its own parts (cluster head, decoder)
whose ``forward(model, views)`` returns the loss and what to log. ``views`` is the tuple of
augmented image batches of :class:`cdml.data.unlabelled.Views`: two views of every image
(CBSwR, SME), or anchor, positive and negative images (MOM). No objective sees a label.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from cdml.data.unlabelled import NeighbourPairing, TuplePairing
from cdml.losses.centre_softmax import CentreSoftmaxLoss
from cdml.losses.mom import MOMTripletLoss, manifold_tuples
from cdml.losses.rim import RIMClusteringLoss, cluster_statistics
from cdml.losses.sme import InstanceSoftmaxLoss
from cdml.metrics import nearest_neighbours
from cdml.models import EmbeddingModel
from cdml.models.cluster_head import ClusterHead
from cdml.models.decoder import ReconstructionDecoder, centroid_feature_maps
from cdml.training.config import OptimConfig
from cdml.training.distributed import gather_shards
from cdml.training.module import MetricLearningModule

# A clustering is reported as collapsed when, over an epoch, the batches use on average
# fewer than this share of the clusters.
COLLAPSE_SHARE = 0.25


class CBSwRObjective(nn.Module):
    """Clustering-based self-supervision with reconstruction (seed 001, METHODS.md section 4)::

        L = metric_weight L_m + rim_weight L_rim + reconstruction_weight L_rec

    on the ``2B`` rows of two views of ``B`` images: the cluster head's probabilities ``p``
    give pseudo-labels (argmax of the first view, copied to the second); cluster ``j``'s
    centroid feature map is the mean of its members' backbone maps, its centroid embedding
    the model's embedding of that map (constant); ``L_m`` is the centre-based softmax loss,
    ``L_rim`` the RIM clustering loss on ``p``, ``L_rec`` the mean squared error of the
    decoder's reconstruction of every image from its cluster's centroid map. Clusters with
    no member in the batch have no centroid and drop out of ``L_m``.

    The ablations of seed 001's tables 1-2 are settings of the weights:
    ``reconstruction_weight=0`` is CBS (no decoder is built), ``metric_weight=0,
    reconstruction_weight=0`` the RIM loss alone.

    Args:
        model: the embedding model (its sizes shape the head and decoder).
        image_size: input size ``S`` of the training images (the decoder's output).
        mean, std: input normalisation, undone before comparing with the reconstruction.
        num_clusters: ``K``, default 32.
        temperature: of ``L_m``, default 0.1.
        metric_weight, rim_weight, reconstruction_weight: default 0.9, 0.3, 0.001.
        dropout: of the cluster head, default 0.6.
        neighbour_pairs: pair each image with, at random, itself or its nearest neighbour
            (refreshed each epoch) for its second view, as the released code does for CUB.
    """

    def __init__(
        self,
        model: EmbeddingModel,
        image_size: int,
        mean: list[float],
        std: list[float],
        num_clusters: int = 32,
        temperature: float = 0.1,
        metric_weight: float = 0.9,
        rim_weight: float = 0.3,
        reconstruction_weight: float = 0.001,
        dropout: float = 0.6,
        neighbour_pairs: bool = False,
    ) -> None:
        super().__init__()
        for name, weight in (
            ("metric_weight", metric_weight),
            ("rim_weight", rim_weight),
            ("reconstruction_weight", reconstruction_weight),
        ):
            if not (math.isfinite(weight) and weight >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {weight}")
        if metric_weight + rim_weight + reconstruction_weight == 0:
            raise ValueError("at least one of the loss weights must be positive")
        self.num_clusters = num_clusters
        self.weights = {
            "metric": metric_weight,
            "rim": rim_weight,
            "reconstruction": reconstruction_weight,
        }
        self.pairs_images = neighbour_pairs
        self.cluster_head = ClusterHead(model.head.linear.out_features, num_clusters, dropout)
        self.metric = CentreSoftmaxLoss(temperature)
        self.rim = RIMClusteringLoss()
        self.decoder: ReconstructionDecoder | None = None
        if reconstruction_weight > 0:
            with torch.no_grad():
                was_training = model.training
                maps = model.eval().feature_maps(torch.zeros(1, 3, image_size, image_size))
                model.train(was_training)
            self.decoder = ReconstructionDecoder(maps.shape[1], tuple(maps.shape[2:]), image_size)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(
        self, model: EmbeddingModel, views: tuple[Tensor, ...]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        first, second = views
        images = torch.cat([first, second])
        maps = model.feature_maps(images)
        embeddings = model.embed_feature_maps(maps)
        probs = self.cluster_head(embeddings)
        clusters = probs[: len(first)].argmax(1).repeat(2)
        terms: dict[str, Tensor] = {}
        if self.weights["rim"] > 0:
            terms["rim"] = self.rim(probs)
        centroid_maps = centroid_feature_maps(maps, clusters, self.num_clusters)
        if self.weights["metric"] > 0:
            present, members = torch.unique(clusters, return_inverse=True)
            with torch.no_grad():
                centroids = model.embed_feature_maps(centroid_maps[present])
            terms["metric"] = self.metric(embeddings, centroids, members)
        if self.decoder is not None:
            reconstruction = self.decoder(centroid_maps[clusters])
            target = (images * self.std + self.mean).clamp(0, 1)
            terms["reconstruction"] = F.mse_loss(reconstruction.float(), target.float())
        loss = sum(self.weights[name] * value for name, value in terms.items())
        statistics = cluster_statistics(probs.detach())
        return loss, {**terms, **statistics}

    def pairing(
        self, features: Callable[[], Tensor], report: Callable[[str], None] = print
    ) -> NeighbourPairing:
        """The neighbour pairing of the coming epoch, from the training images' current
        backbone features ``(n, D)`` (computed by ``features()``). It takes seconds, so
        ``report`` (a progress-message sink) is not used."""
        return NeighbourPairing(_nearest_other(features()))


class SMEObjective(nn.Module):
    """Instance-level softmax embedding over two views (SME, Ye et al., CVPR 2019): each
    image's second view is its positive, every other image of the batch a negative.

    Args:
        temperature: default 0.1.
    """

    pairs_images = False  # the second view is another augmentation of the image itself

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.loss = InstanceSoftmaxLoss(temperature)

    def forward(
        self, model: EmbeddingModel, views: tuple[Tensor, ...]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        return self.loss(model(torch.cat(views))), {}


class MOMObjective(nn.Module):
    """Mining on manifolds (MOM, Iscen et al., CVPR 2018): triplets of an anchor, a positive
    that is a manifold neighbour but not a Euclidean neighbour, and a negative that is a
    Euclidean neighbour but not a manifold neighbour, mined once on the pretrained model's
    features (kept in the checkpoint), trained with a triplet loss.

    Args:
        margin: of the triplet loss.
        mining: keyword arguments of :func:`cdml.losses.mom.manifold_tuples`.
    """

    pairs_images = True

    def __init__(self, margin: float = 0.5, **mining: Any) -> None:
        super().__init__()
        self.loss = MOMTripletLoss(margin)
        self.mining = mining
        self.tuples: dict[str, Tensor] = {}

    def forward(
        self, model: EmbeddingModel, views: tuple[Tensor, ...]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        anchors, positives, negatives = model(torch.cat(views)).chunk(3)
        return self.loss(anchors, positives, negatives), {}

    def pairing(
        self, features: Callable[[], Tensor], report: Callable[[str], None] = print
    ) -> TuplePairing:
        """Mine the tuples on the first call, from the pretrained features ``features()``
        ``(n, D)``; reuse them after (the features are not computed again). Mining takes
        minutes for tens of thousands of images: its start and duration go to ``report``."""
        if not self.tuples:
            points = features()
            report(f"MOM: mining tuples of {len(points):,} images (kNN graph, diffusion)")
            start = time.perf_counter()
            positives, negatives = manifold_tuples(points, **self.mining)
            report(f"MOM: mined in {time.perf_counter() - start:.0f} s")
            self.tuples = {"positives": positives.cpu(), "negatives": negatives.cpu()}
        return TuplePairing(self.tuples["positives"].numpy(), self.tuples["negatives"].numpy())

    # The mined tuples travel in the checkpoint's state dict, so a resumed run keeps them.
    def get_extra_state(self) -> dict[str, Tensor]:
        return dict(self.tuples)

    def set_extra_state(self, state: dict[str, Tensor]) -> None:
        self.tuples = dict(state)


def _nearest_other(features: Tensor) -> np.ndarray:
    """Index of every row's nearest other row (Euclidean, exact)."""
    points = np.ascontiguousarray(features.float().cpu().numpy())
    return nearest_neighbours(points, points, k=1, exclude_self=True)[:, 0]


OBJECTIVES: dict[str, type[nn.Module]] = {
    "cbswr": CBSwRObjective,
    "sme": SMEObjective,
    "mom": MOMObjective,
}


class UnsupervisedModule(MetricLearningModule):
    """Trains ``model`` with an unsupervised objective (one of :data:`OBJECTIVES`).

    Batches are ``(views, indices)`` from :class:`cdml.training.datamodule.UnlabelledDataModule`;
    no label reaches the training step. Before every epoch the objective may re-pair the
    training images from their current backbone features (CBSwR's neighbour pairs, MOM's
    mined tuples), computed once over the whole training split (sharded under DDP).
    Parameters owned by the objective (cluster head, decoder) train at ``optim.loss_lr``.
    Validation and test are those of :class:`MetricLearningModule` (they use labels). Each
    loss term is logged, with the clustering's number of non-empty clusters per batch and its
    balance entropy; a warning says when the clustering collapses.

    Under DDP each process computes the objective on its own share of the batch.
    """

    def __init__(
        self,
        model: EmbeddingModel,
        objective: nn.Module,
        optim: OptimConfig,
        ks: tuple[int, ...] = (1, 2, 4, 8),
        nmi: bool = True,
        hparams: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(model, objective, optim, ks=ks, nmi=nmi, hparams=hparams)
        self._non_empty: list[Tensor] = []

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        if not self.loss.pairs_images:
            return
        data = self.trainer.datamodule
        pairing = self.loss.pairing(
            lambda: self._backbone_features(data.pairing_dataloader()), report=self.print
        )
        data.sampler.set_pairing(pairing)

    @torch.no_grad()
    def _backbone_features(self, loader: Any) -> Tensor:
        was_training = self.model.training
        self.model.eval()
        features = [self.model.features(images.to(self.device)).float() for images, _ in loader]
        self.model.train(was_training)
        return gather_shards(torch.cat(features))

    def training_step(self, batch: tuple[tuple[Tensor, ...], Tensor], batch_idx: int) -> Tensor:
        views, _ = batch
        loss, logged = self.loss(self.model, views)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        for name, value in logged.items():
            self.log(f"train/{name}", value, on_step=True, on_epoch=True)
        if "non_empty_clusters" in logged:
            self._non_empty.append(logged["non_empty_clusters"].detach())
        return loss

    def on_train_epoch_end(self) -> None:
        if not self._non_empty:
            return
        used = torch.stack(self._non_empty).float().mean().item()
        self._non_empty.clear()
        clusters = self.loss.num_clusters
        if used < COLLAPSE_SHARE * clusters:
            rank_zero_warn(
                f"epoch {self.current_epoch}: the clustering collapsed, batches used "
                f"{used:.1f} of {clusters} clusters on average (check the learning rates and "
                "loss.params.rim_weight)"
            )
