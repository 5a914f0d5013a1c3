"""Mining on manifolds, MOM (Iscen et al., CVPR 2018): a baseline of seed 001."""

from __future__ import annotations

import inspect
import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn

from cdml.data.unlabelled import TuplePairing
from cdml.metrics import nearest_neighbours
from cdml.models import EmbeddingModel
from cdml.progress import Progress
from cdml.tuning.knob import Knob

from ._inputs import check_hyperparameter, full_precision, no_autocast
from ._method import ViewsMethod
from ._registry import register_method
from ._schedules import Repairing

# Defaults that bound the mining and an epoch on large sets (measured on 2 CPU cores in the
# README); the papers' configs mine every image of CUB-200-2011 and Cars196 (None, None).
MAX_IMAGES = 16384
MAX_ANCHORS = 2048


def manifold_tuples(
    features: Tensor,
    k: int = 50,
    graph_k: int = 30,
    alpha: float = 0.99,
    power: float = 3.0,
    iterations: int = 20,
    chunk: int = 512,
    max_anchors: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Anchors, and their hard positives and negatives from Euclidean and manifold neighbours.

    A ``graph_k``-nearest-neighbour graph of the L2-normalised ``features`` with affinities
    ``W_ij = max(0, cos)^power``, symmetrised as ``A = (W + W^T) / 2``, and its normalisation
    ``S = D^-1/2 A D^-1/2`` rank the points by diffusion from each query ``i``: the solution
    ``r`` of ``(I - alpha S) r = e_i``, by ``iterations`` conjugate-gradient steps on
    ``chunk`` queries at a time (memory ``O(N (graph_k + chunk))``). With ``E_i`` the ``k``
    Euclidean and ``M_i`` the ``k`` manifold neighbours of ``i`` (``i`` excluded)::

        positives(i) = M_i \\ E_i    (same manifold, far in the embedding)
        negatives(i) = E_i \\ M_i    (close in the embedding, another manifold)

    in rank order. Defaults follow the paper (``alpha`` 0.99, cubed affinities).

    Every point is an anchor when ``N <= max_anchors`` (default no limit). Otherwise the
    anchors are, as in the paper's selection, the modes of the stationary distribution of a
    random walk on the graph (proportional to the degree of ``A``): points of higher degree
    than all their ``graph_k`` neighbours, by decreasing degree, then the other points by
    decreasing degree, ``max_anchors`` in all. The cost grows as ``N x anchors``.

    ``progress(done, total)``, if given, is called after each chunk of anchors (it may raise
    to stop the mining).

    Returns ``(anchors, positives, negatives)``: ``(A,)`` indices and ``(A, k)`` int64
    tensors padded with ``-1``. Shapes: ``features (N, D)`` with ``N > k, graph_k``.
    """
    if features.ndim != 2 or len(features) <= max(k, graph_k):
        raise ValueError(
            f"features must have shape (N, D) with N > k = {k} and graph_k = {graph_k}, "
            f"got {tuple(features.shape)}"
        )
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if max_anchors is not None and max_anchors < 1:
        raise ValueError(f"max_anchors must be positive, got {max_anchors}")
    points = F.normalize(features.detach().float().cpu(), dim=1)
    n = len(points)
    array = np.ascontiguousarray(points.numpy())
    neighbours = torch.from_numpy(
        nearest_neighbours(array, array, k=max(k, graph_k), exclude_self=True)
    )
    euclidean, graph = neighbours[:, :k], neighbours[:, :graph_k]
    affinity = (
        torch.cat(
            [
                torch.einsum("nd,nkd->nk", points[rows], points[graph[rows]])
                for rows in torch.arange(n).split(chunk)
            ]
        ).clamp(min=0)
        ** power
    )
    rows = torch.arange(n).repeat_interleave(graph_k)
    a = torch.sparse_coo_tensor(
        torch.stack([torch.cat([rows, graph.flatten()]), torch.cat([graph.flatten(), rows])]),
        torch.cat([affinity.flatten(), affinity.flatten()]) / 2,
        (n, n),
        check_invariants=True,
    ).coalesce()
    degree = torch.sparse.sum(a, 1).to_dense().clamp(min=1e-12)
    anchors = _modes_first(degree, graph, max_anchors)
    scale = degree.rsqrt()
    i, j = a.indices()
    s = torch.sparse_coo_tensor(
        a.indices(), a.values() * scale[i] * scale[j], (n, n), check_invariants=True
    )
    # CSR: its product with a dense matrix is twice as fast as COO's on CPU.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
        s = s.to_sparse_csr()

    manifold = torch.empty(len(anchors), k, dtype=torch.long)
    for start in range(0, len(anchors), chunk):
        rows = torch.arange(start, min(start + chunk, len(anchors)))
        queries = anchors[rows]
        rhs = torch.zeros(n, len(queries))
        rhs[queries, torch.arange(len(queries))] = 1
        ranks = _diffusion(s, alpha, rhs, iterations)
        ranks[queries, torch.arange(len(queries))] = -math.inf
        manifold[rows] = ranks.T.topk(k, dim=1).indices
        if progress is not None:
            progress(int(rows[-1]) + 1, len(anchors))
    positives = _ordered_difference(manifold, euclidean[anchors])
    negatives = _ordered_difference(euclidean[anchors], manifold)
    return anchors, positives, negatives


def _modes_first(degree: Tensor, graph: Tensor, count: int | None) -> Tensor:
    """All ``(N,)`` points if ``count`` is None or at least N, else ``count`` of them: the
    modes of ``degree`` over the graph ``(N, graph_k)`` first, each group by decreasing
    degree (ties by index)."""
    n = len(degree)
    if count is None or count >= n:
        return torch.arange(n)
    is_mode = degree > degree[graph].amax(1)
    order = torch.argsort(degree, descending=True, stable=True)
    order = torch.cat([order[is_mode[order]], order[~is_mode[order]]])
    return order[:count].sort().values


def _diffusion(s: Tensor, alpha: float, rhs: Tensor, iterations: int) -> Tensor:
    """Solve ``(I - alpha s) x = rhs`` by conjugate gradient, one system per column.

    ``s`` ``(n, n)`` sparse CSR, symmetric; ``rhs`` ``(n, c)``. Updates run in place: the
    iteration is bound by memory traffic over ``(n, c)`` arrays.
    """
    x = torch.zeros_like(rhs)
    residual = rhs.clone()
    direction = rhs.clone()
    norm = torch.linalg.vecdot(residual, residual, dim=0)
    for _ in range(iterations):
        product = torch.sparse.addmm(direction, s, direction, alpha=-alpha)
        step = norm / torch.linalg.vecdot(direction, product, dim=0).clamp(min=1e-30)
        x.addcmul_(direction, step)
        residual.addcmul_(product, step, value=-1)
        new_norm = torch.linalg.vecdot(residual, residual, dim=0)
        direction.mul_(new_norm / norm.clamp(min=1e-30)).add_(residual)
        norm = new_norm
    return x


def _ordered_difference(ranked: Tensor, excluded: Tensor) -> Tensor:
    """Row-wise ``ranked \\ excluded`` keeping ``ranked``'s order, padded with -1."""
    member = (ranked[:, :, None] == excluded[:, None, :]).any(2)
    kept = torch.where(member, -1, ranked)
    # Stable sort moves the -1 padding to the end and keeps the rank order of the rest.
    order = torch.sort(member.to(torch.int8), dim=1, stable=True).indices
    return kept.gather(1, order)


class MOMTripletLoss(nn.Module):
    """Triplet loss on mined (anchor, positive, negative) embeddings::

        loss = mean_i max(0, ||a_i - p_i|| - ||a_i - n_i|| + margin)

    computed in float32 (or float64), as MOM trains on its mined tuples.

    Args:
        margin: default 0.5.

    Shapes: ``anchors, positives, negatives (B, d)`` -> scalar.
    """

    def __init__(self, margin: float = 0.5) -> None:
        super().__init__()
        self.margin = check_hyperparameter("margin", margin, 0)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"

    def forward(self, anchors: Tensor, positives: Tensor, negatives: Tensor) -> Tensor:
        if not (anchors.ndim == 2 and anchors.shape == positives.shape == negatives.shape):
            raise ValueError(
                "anchors, positives and negatives must have the same (B, d) shape, got "
                f"{tuple(anchors.shape)}, {tuple(positives.shape)}, {tuple(negatives.shape)}"
            )
        with no_autocast(anchors):
            a, p, n = full_precision(anchors, positives, negatives)
            hinge = (a - p).norm(dim=1) - (a - n).norm(dim=1) + self.margin
            return torch.relu(hinge).mean()


@register_method("mom")
class MOMObjective(ViewsMethod):
    """Mining on manifolds (MOM, Iscen et al., CVPR 2018): triplets of an anchor, a positive
    that is a manifold neighbour but not a Euclidean neighbour, and a negative that is a
    Euclidean neighbour but not a manifold neighbour, mined once on the pretrained model's
    features (kept in the checkpoint), trained with a triplet loss.

    The graph is built on the training images, or on a random sample of ``max_images`` of
    them (fixed seed, the same on every rank) when there are more; an epoch goes over the
    anchors once: every graph image up to ``max_anchors``, else that many chosen as the
    paper does on large collections (see :func:`manifold_tuples`). Both bound the mining and
    the epoch: on Fashion-MNIST's 35,000 training images the defaults mine 2,048 anchors
    among 16,384 images (features and mining: about a minute on 2 CPU cores, README);
    ``None`` for both mines every image, as the papers' configs do on CUB-200-2011 and
    Cars196.

    Args:
        margin: of the triplet loss.
        max_images: default 16,384 (CUB-200-2011's and Cars196's training images are all
            in the graph).
        max_anchors: default 2,048 (an epoch of 32 batches of 64 anchors).
        mining: other keyword arguments of :func:`cdml.losses.mom.manifold_tuples`.
    """

    search_space = {
        "margin": Knob(0.1, 1.0),
        "max_images": Knob(choices=(4096, 16384)),
        "max_anchors": Knob(choices=(512, 2048, 8192)),
    }

    def __init__(
        self,
        margin: float = 0.5,
        max_images: int | None = MAX_IMAGES,
        max_anchors: int | None = MAX_ANCHORS,
        **mining: Any,
    ) -> None:
        super().__init__()
        self.loss = MOMTripletLoss(margin)
        for name, value in (("max_images", max_images), ("max_anchors", max_anchors)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        defaults = inspect.signature(manifold_tuples).parameters
        neighbours = max(mining.get(n, defaults[n].default) for n in ("k", "graph_k"))
        if max_images is not None and max_images <= neighbours:
            raise ValueError(
                f"max_images must exceed the mining's neighbours (k, graph_k: {neighbours}), "
                f"got {max_images}"
            )
        self.max_images = max_images
        self.max_anchors = max_anchors
        self.mining = mining
        self.tuples: dict[str, Tensor] = {}

    def images_per_epoch(self, images: int) -> int:
        if self.max_images is not None:
            images = min(images, self.max_images)
        return images if self.max_anchors is None else min(images, self.max_anchors)

    def graph_images(self, images: int) -> Tensor | None:
        """Indices of the training images the graph is built on (``None``: all of them):
        a sorted random sample of ``max_images`` of ``images`` (generator seeded with 0)."""
        if self.max_images is None or images <= self.max_images:
            return None
        generator = torch.Generator().manual_seed(0)
        return torch.randperm(images, generator=generator)[: self.max_images].sort().values

    def forward(
        self, model: EmbeddingModel, views: tuple[Tensor, ...]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        anchors, positives, negatives = model(torch.cat(views)).chunk(3)
        return self.loss(anchors, positives, negatives), {}

    def callbacks(self) -> list[Callback]:
        return [Repairing(self)]

    def pairing(
        self,
        features: Callable[[Tensor | None], Tensor],
        images: int,
        report: Callable[[str], None] = print,
        stop: Callable[[], bool] = lambda: False,
    ) -> TuplePairing:
        """Mine the anchors' tuples on the first call, from the pretrained features
        ``features(indices)`` ``(n, D)`` of the graph's images (:meth:`graph_images` of the
        ``images`` of the training set); reuse them after (the features are not computed
        again). Mining takes minutes for tens of thousands of images: its start and duration
        go to ``report``, its progress with the time left to :class:`cdml.progress.Progress`;
        when ``stop()`` turns true (a SIGTERM) it stops with ``InterruptedError``."""
        if not self.tuples:
            sample = self.graph_images(images)
            points = features(sample)
            report(
                f"MOM: mining the tuples of {self.images_per_epoch(images):,} anchors among "
                f"{len(points):,} images of {images:,} (kNN graph, diffusion)"
            )
            start = time.perf_counter()
            with Progress("MOM: mining anchors", total=self.images_per_epoch(images)) as bar:

                def progress(done: int, total: int) -> None:
                    if stop():
                        raise InterruptedError("MOM's mining was stopped (SIGTERM)")
                    bar.advance(done - bar.done)

                anchors, positives, negatives = manifold_tuples(
                    points, max_anchors=self.max_anchors, progress=progress, **self.mining
                )
            report(f"MOM: mined {len(anchors):,} anchors in {time.perf_counter() - start:.0f} s")
            if sample is not None:  # graph positions -> training images (-1 padding kept)
                anchors = sample[anchors]
                positives, negatives = (
                    torch.where(rows < 0, rows, sample[rows.clamp(min=0)])
                    for rows in (positives, negatives)
                )
            self.tuples = {
                "anchors": anchors,
                "positives": positives,
                "negatives": negatives,
                "images": torch.tensor(images),
            }
        return self._tuple_pairing()

    def _tuple_pairing(self) -> TuplePairing:
        positives, negatives = self.tuples["positives"], self.tuples["negatives"]
        if "anchors" not in self.tuples:  # a checkpoint of when every image was an anchor
            return TuplePairing(positives.numpy(), negatives.numpy())
        anchors = self.tuples["anchors"].numpy()
        rows = np.full((int(self.tuples["images"]), 2, positives.shape[1]), -1, dtype=np.int64)
        rows[anchors, 0], rows[anchors, 1] = positives.numpy(), negatives.numpy()
        return TuplePairing(rows[:, 0], rows[:, 1], images=anchors)

    # The mined tuples travel in the checkpoint's state dict, so a resumed run keeps them.
    def get_extra_state(self) -> dict[str, Tensor]:
        return dict(self.tuples)

    def set_extra_state(self, state: dict[str, Tensor]) -> None:
        self.tuples = dict(state)
