"""Clustering-based self-supervision with reconstruction, CBSwR (seed 001), and its ablations."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from cdml.data.unlabelled import NeighbourPairing
from cdml.metrics import nearest_neighbours
from cdml.models import EmbeddingModel
from cdml.models.cluster_head import ClusterHead
from cdml.models.decoder import ReconstructionDecoder, centroid_feature_maps
from cdml.tuning.knob import Knob

from ._method import ViewsMethod
from ._registry import register_method
from ._schedules import CollapseWarning, Repairing
from .centre_softmax import CentreSoftmaxLoss
from .rim import RIMClusteringLoss, cluster_statistics


@register_method("cbswr")
class CBSwRObjective(ViewsMethod):
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
            by cosine similarity of its backbone features (refreshed each epoch) for its
            second view, as the released code does for CUB.

    Each loss term is logged, with the clustering's number of non-empty clusters per batch
    and its balance entropy; a warning says when the clustering collapses.
    """

    needs = ("model", "image_size", "mean", "std")

    search_space = {
        "num_clusters": Knob(choices=(16, 32, 64, 128)),
        "temperature": Knob(0.03, 0.3, log=True),
        "metric_weight": Knob(0.1, 1.0),
        "rim_weight": Knob(0.01, 1.0, log=True),
        "reconstruction_weight": Knob(1e-4, 1e-1, log=True),
        "optim.loss_lr": Knob(1e-4, 1e-1, log=True),  # the cluster head's
    }

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
        self.neighbour_pairs = neighbour_pairs
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
            present = clusters.new_zeros(self.num_clusters).index_fill_(0, clusters, 1).bool()
            with torch.no_grad():
                centroids = model.embed_feature_maps(centroid_maps)
            terms["metric"] = self.metric(embeddings, centroids, clusters, present)
        if self.decoder is not None:
            reconstruction = self.decoder(centroid_maps[clusters])
            target = (images * self.std + self.mean).clamp(0, 1)
            terms["reconstruction"] = F.mse_loss(reconstruction.float(), target.float())
        loss = sum(self.weights[name] * value for name, value in terms.items())
        statistics = cluster_statistics(probs.detach())
        return loss, {**terms, **statistics}

    def callbacks(self) -> list[Callback]:
        schedule: list[Callback] = [CollapseWarning(self.num_clusters)]
        return [*schedule, Repairing(self)] if self.neighbour_pairs else schedule

    def pairing(
        self,
        features: Callable[[Tensor | None], Tensor],
        images: int,
        report: Callable[[str], None] = print,
        stop: Callable[[], bool] = lambda: False,
    ) -> NeighbourPairing:
        """The neighbour pairing of the coming epoch, from the current backbone features
        ``(images, D)`` of every training image (computed by ``features()``). It takes
        seconds, so ``report`` (a progress-message sink) and ``stop`` are not used."""
        return NeighbourPairing(_nearest_other(features()))


def _nearest_other(features: Tensor) -> np.ndarray:
    """Index of every row's most similar other row by cosine similarity (exact), as the
    released code pairs images."""
    points = np.ascontiguousarray(F.normalize(features.float(), dim=1).cpu().numpy())
    return nearest_neighbours(points, points, k=1, exclude_self=True)[:, 0]
