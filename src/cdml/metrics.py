"""Retrieval and clustering metrics with the zero-shot protocol of the seed papers.

The protocol (METHODS.md section 5):

- Recall@K: Euclidean k-nearest neighbours over the evaluation embeddings, the query itself
  excluded; a query scores 1 when any of its K nearest shares its label.
- NMI: k-means on the embeddings with k = number of distinct labels, every point used, then
  scikit-learn's NMI (arithmetic normalisation) against the labels; AMI, ARI and purity of
  the same clustering beside it, optionally averaged over several k-means seeds.
- MAP@R (Musgrave et al., 2020): R = number of other items with the query's label,
  ``MAP@R = mean_q (1/R) sum_{i<=R} P(i) rel(i)``.

Neighbours and k-means run through faiss (exact flat index; torch for thousands of
neighbours, and on the GPU of CUDA embeddings). Queries are processed in chunks so memory
stays bounded (no n x n matrix).
Neighbours are ranked by distance, ties by the lower gallery index, so results are
deterministic.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
import torch
from sklearn.metrics import (
    adjusted_mutual_info_score,
    adjusted_rand_score,
    normalized_mutual_info_score,
)
from sklearn.metrics.cluster import contingency_matrix

from cdml.progress import Progress

DEFAULT_KS = (1, 2, 4, 8)
METRICS = ("l2", "cosine", "ip")  # how evaluate() ranks neighbours
# The per-item keywords of evaluate() that a dataset or an embeddings file may carry.
ITEM_MARKS = ("is_query", "is_gallery", "categories")
CLUSTERING_SCORES = ("nmi", "ami", "ari", "purity")  # of k-means against the labels
# Upper bound on neighbour-table entries held at once (queries in a chunk x neighbours each).
_CHUNK_ELEMENTS = 1 << 22
# The most neighbours per query asked of faiss; more are ranked with torch (see _flat_search).
_FAISS_MAX_K = 2048


def evaluate(
    embeddings: Any,
    labels: Any,
    ks: Sequence[int] = DEFAULT_KS,
    nmi: bool = True,
    map_at_r: bool = True,
    *,
    gallery: Any = None,
    gallery_labels: Any = None,
    is_query: Any = None,
    is_gallery: Any = None,
    categories: Any = None,
    seed: int = 0,
    kmeans_iters: int = 20,
    nmi_runs: int = 1,
    metric: str = "l2",
    device: str | torch.device | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Evaluate embeddings as the seed papers do.

    Three protocols: every item queries all the others (the papers'); the ``embeddings``
    query a separate ``gallery``; or, as open-metric-learning's CSVs say, the items marked
    ``is_query`` query those marked ``is_gallery`` (in-shop retrieval), an item that is both
    never retrieving itself.

    Args:
        embeddings: ``(n, d)`` real array or tensor; the queries when ``gallery`` is given.
        labels: ``(n,)`` integer labels.
        ks: the K of Recall@K (default 1, 2, 4, 8; SOP uses 1, 10, 100, 1000).
        nmi: score a k-means clustering (k = number of distinct labels) against the labels:
            NMI, AMI, ARI and purity (see :func:`partition_scores`).
        map_at_r: compute MAP@R.
        gallery: optional ``(m, d)`` gallery; queries are then searched in it and nothing is
            excluded. NMI is then computed over queries and gallery together.
        gallery_labels: ``(m,)`` integer labels of the gallery.
        is_query, is_gallery: optional ``(n,)`` booleans, given together (not with
            ``gallery``): which items query and which are searched. NMI is then computed over
            the items that are either.
        categories: optional ``(n,)`` category per item (strings or integers); the retrieval
            metrics are then also reported per category of the queries, as
            ``"recall@1/<category>"`` after the overall ones.
        seed: k-means seed.
        kmeans_iters: k-means iterations (at least 20).
        nmi_runs: k-means runs (seeds ``seed, seed + 1, ...``) the clustering scores are
            averaged over; with more than one, ``"nmi_std"`` is their NMI's standard deviation.
        metric: what ranks the neighbours: ``"l2"`` Euclidean distance (the papers'),
            ``"cosine"`` cosine similarity (k-means then clusters the unit vectors) or
            ``"ip"`` inner product (searched exactly as Euclidean neighbours of augmented
            vectors, ``[x, sqrt(M^2 - |x|^2)]`` for the gallery and ``[x, 0]`` for queries).
        device: where the exact neighbour search runs: ``None`` (default) the embeddings'
            own device (a CUDA tensor is searched on its GPU with torch, in chunks; anything
            else on the CPU with faiss), or a torch device name. The ranking and its tie rule
            are the same everywhere.
        progress: show the progress of the neighbour search and k-means (see
            :class:`cdml.progress.Progress`).

    Returns:
        ``{"recall@K": ..., "nmi": ..., "ami": ..., "ari": ..., "purity": ..., "map@r": ...}``
        as floats (in [0, 1]; AMI and ARI can dip below 0), keys in that order (``"nmi_std"``
        after purity with ``nmi_runs`` > 1), then the per-category metrics when
        ``categories`` are given.

    Raises:
        ValueError: bad shapes or dtypes, NaN or inf, a query with no other item of its label
            to retrieve, or K larger than the candidates.
    """
    device = _search_device(embeddings, device)
    if kmeans_iters < 20:
        raise ValueError(f"kmeans_iters must be at least 20, got {kmeans_iters}")
    if nmi_runs < 1:
        raise ValueError(f"nmi_runs must be at least 1, got {nmi_runs}")
    check_metric(metric)
    task = _retrieval_task(
        embeddings, labels, gallery, gallery_labels, is_query, is_gallery, categories
    )
    candidates = len(task.reference) - int(task.own is not None)
    ks = _check_ks(ks, candidates)
    per_query = _per_query_scores(task, ks, map_at_r, metric, device, progress)
    if metric == "cosine":
        task.clustered = _unit_rows(task.clustered)

    results = {name: float(per_query[name].mean()) for name in per_query if name != "map@r"}
    if nmi:
        results |= kmeans_scores(
            task.clustered, task.clustered_labels, seed=seed, iters=kmeans_iters,
            runs=nmi_runs, progress=progress,
        )  # fmt: skip
    if map_at_r:
        results["map@r"] = float(per_query["map@r"].mean())
    if task.query_categories is not None:
        for category in np.unique(task.query_categories):
            chosen = task.query_categories == category
            for name, values in per_query.items():
                results[f"{name}/{category}"] = float(values[chosen].mean())
    return results


def per_query_scores(
    embeddings: Any,
    labels: Any,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    metric: str = "l2",
    device: str | torch.device | None = None,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Each item's own retrieval scores when it queries all the others (the papers'
    protocol of :func:`evaluate`): ``{"recall@K": (n,) bool, "map@r": (n,) AP@R}``, whose
    means are :func:`evaluate`'s values; the lowest AP@R are the worst queries."""
    check_metric(metric)
    device = _search_device(embeddings, device)
    task = _retrieval_task(embeddings, labels, None, None, None, None, None)
    ks = _check_ks(ks, len(task.reference) - 1)
    return _per_query_scores(task, ks, True, metric, device, progress)


def _per_query_scores(
    task: _RetrievalTask,
    ks: list[int],
    map_at_r: bool,
    metric: str,
    device: torch.device,
    progress: bool,
) -> dict[str, np.ndarray]:
    """``{"recall@K": (q,) bool, ..., "map@r": (q,) float}`` of the task's queries."""
    queries, reference = task.queries, task.reference
    if metric == "cosine":
        queries, reference = _unit_rows(queries), _unit_rows(reference)
    if metric == "ip":
        queries, reference = _inner_product_as_l2(queries, reference)
    depth = max(ks, default=0)
    if map_at_r:
        depth = max(depth, int(task.positives.max()))
    if not depth:
        return {}
    hits = {k: np.zeros(len(queries), bool) for k in ks}
    precision = np.zeros(len(queries))
    chunks = _neighbour_chunks(queries, reference, depth, task.own, device)
    with Progress("neighbours", total=len(queries), enabled=progress) as bar:
        for start, neighbours in chunks:
            stop = start + len(neighbours)
            relevant = task.reference_labels[neighbours] == task.query_labels[start:stop, None]
            for k in ks:
                hits[k][start:stop] = relevant[:, :k].any(axis=1)
            if map_at_r:
                r = task.positives[start:stop]
                precision[start:stop] = _average_precision_at_r(relevant[:, : r.max()], r)
            bar.advance(len(neighbours))
    scores: dict[str, np.ndarray] = {f"recall@{k}": hits[k] for k in ks}
    if map_at_r:
        scores["map@r"] = precision
    return scores


@dataclass
class _RetrievalTask:
    """Who queries whom: ``queries`` ``(q, d)`` searched in ``reference`` ``(m, d)``;
    ``own`` ``(q,)`` the reference index of each query's own item (-1: not in it), None when
    no query is in the reference; ``positives`` ``(q,)`` how many other reference items share
    each query's label; ``clustered`` the points (and labels) NMI's k-means clusters."""

    queries: np.ndarray
    query_labels: np.ndarray
    reference: np.ndarray
    reference_labels: np.ndarray
    own: np.ndarray | None
    positives: np.ndarray
    clustered: np.ndarray
    clustered_labels: np.ndarray
    query_categories: np.ndarray | None


def _retrieval_task(
    embeddings: Any,
    labels: Any,
    gallery: Any,
    gallery_labels: Any,
    is_query: Any,
    is_gallery: Any,
    categories: Any,
) -> _RetrievalTask:
    if (gallery is None) != (gallery_labels is None):
        raise ValueError("gallery and gallery_labels must be given together")
    if (is_query is None) != (is_gallery is None):
        raise ValueError("is_query and is_gallery must be given together")
    if gallery is not None and is_query is not None:
        raise ValueError("give either a gallery or is_query/is_gallery, not both")
    items = as_embeddings(embeddings, "embeddings", min_rows=1 if gallery is not None else 2)
    item_labels = as_labels(labels, len(items))
    item_categories = None if categories is None else _as_categories(categories, len(items))
    if gallery is not None:
        reference = as_embeddings(gallery, "gallery")
        if reference.shape[1] != items.shape[1]:
            raise ValueError(
                f"embeddings have dimension {items.shape[1]} but gallery has {reference.shape[1]}"
            )
        reference_labels = as_labels(gallery_labels, len(reference), "gallery_labels")
        queries, query_labels, own = items, item_labels, None
        clustered = np.concatenate([items, reference])
        clustered_labels = np.concatenate([item_labels, reference_labels])
        query_categories = item_categories
    elif is_query is not None:
        query_mask = _as_mask(is_query, len(items), "is_query")
        gallery_mask = _as_mask(is_gallery, len(items), "is_gallery")
        queries, query_labels = items[query_mask], item_labels[query_mask]
        reference, reference_labels = items[gallery_mask], item_labels[gallery_mask]
        position = np.cumsum(gallery_mask) - 1
        own = np.where(gallery_mask, position, -1)[query_mask]
        own = own if (own >= 0).any() else None
        either = query_mask | gallery_mask
        clustered, clustered_labels = items[either], item_labels[either]
        query_categories = None if item_categories is None else item_categories[query_mask]
    else:
        _require_two_per_label(item_labels, "labels")
        queries = reference = clustered = items
        query_labels = reference_labels = clustered_labels = item_labels
        own = np.arange(len(items))
        query_categories = item_categories
    positives = _label_counts(query_labels, reference_labels)
    if own is not None:
        positives -= own >= 0
    lonely = np.flatnonzero(positives == 0)
    if lonely.size:
        raise ValueError(
            f"{lonely.size} of {len(queries)} queries have no other gallery item of their "
            f"label to retrieve, e.g. labels {np.unique(query_labels[lonely])[:5].tolist()}"
        )
    return _RetrievalTask(
        queries, query_labels, reference, reference_labels, own, positives,
        clustered, clustered_labels, query_categories,
    )  # fmt: skip


def _as_mask(value: Any, n: int, name: str) -> np.ndarray:
    array = _to_numpy(value, name)
    if array.shape != (n,) or array.dtype != np.bool_:
        raise ValueError(
            f"{name} must be {n} booleans (one per embedding), got {array.dtype} of shape "
            f"{array.shape}"
        )
    if not array.any():
        raise ValueError(f"{name}: no item is marked")
    return array


def _as_categories(value: Any, n: int) -> np.ndarray:
    array = _to_numpy(value, "categories")
    if array.shape != (n,):
        raise ValueError(
            f"categories must have shape ({n},) (one per embedding), got shape {array.shape}"
        )
    return array.astype(np.str_)


def _search_device(embeddings: Any, device: str | torch.device | None) -> torch.device:
    """``device``, or by default the embeddings' own (a tensor's; the CPU otherwise)."""
    if device is not None:
        return torch.device(device)
    own = getattr(embeddings, "device", None)
    return own if isinstance(own, torch.device) else torch.device("cpu")


def check_metric(metric: str) -> None:
    """``ValueError`` unless ``metric`` is one of :data:`METRICS`."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")


def _unit_rows(points: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(points, axis=1, keepdims=True)
    return np.divide(points, norms, out=np.zeros_like(points), where=norms > 0)


def _inner_product_as_l2(queries: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, ...]:
    """Queries ``[q, 0]`` and gallery ``[g, sqrt(M^2 - |g|^2)]`` (``M`` the largest gallery
    norm): ``|q' - g'|^2 = |q|^2 + M^2 - 2 q.g``, so Euclidean order is inner-product order."""
    squared = np.einsum("ij,ij->i", gallery, gallery)
    lift = np.sqrt(np.maximum(squared.max() - squared, 0))[:, None]
    zeros = np.zeros((len(queries), 1), dtype=queries.dtype)
    return np.hstack([queries, zeros]), np.hstack([gallery, lift.astype(gallery.dtype)])


def kmeans(
    embeddings: np.ndarray,
    num_clusters: int,
    seed: int = 0,
    iters: int = 20,
    restarts: int = 1,
    progress: bool = False,
    init: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """faiss k-means of ``embeddings`` ``(n, d)`` float32: ``(centroids (k, d), assignment (n,))``.

    Every point takes part in every iteration. As in the released codes of the seed papers,
    k-means starts from randomly drawn points (``seed``), or from the centroids ``init``
    ``(k, d)``; with ``restarts`` > 1 the run of lowest squared error is kept. With
    ``progress`` its time so far and an estimate of the whole are shown (SOP's 60,502 test
    images in 11,316 clusters take tens of seconds).
    """
    n, dim = embeddings.shape
    model = faiss.Kmeans(
        dim,
        num_clusters,
        niter=iters,
        nredo=restarts,
        seed=seed,
        verbose=False,
        # Never subsample (faiss's default keeps 256 points per centroid) and do not warn
        # about few points per centroid: SOP has ~5 images per class.
        max_points_per_centroid=math.ceil(n / num_clusters) + 1,
        min_points_per_centroid=1,
    )
    estimate = _kmeans_seconds(embeddings, num_clusters, iters) * restarts if progress else None
    with Progress(f"k-means ({num_clusters:,} clusters)", estimate=estimate, enabled=progress):
        model.train(embeddings, init_centroids=init)
        _, assignment = model.index.search(embeddings, 1)
    return model.centroids, assignment[:, 0]


def partition_scores(labels: Any, assignment: Any) -> dict[str, float]:
    """How well a partition ``assignment`` ``(n,)`` recovers the classes ``labels`` ``(n,)``:
    NMI and AMI (scikit-learn's, arithmetic normalisation), ARI, and purity (the share of
    points whose cluster's most frequent class is their own), keys in that order."""
    labels, assignment = np.asarray(labels), np.asarray(assignment)
    table = contingency_matrix(labels, assignment, sparse=True)
    return {
        "nmi": float(normalized_mutual_info_score(labels, assignment)),
        "ami": float(adjusted_mutual_info_score(labels, assignment)),
        "ari": float(adjusted_rand_score(labels, assignment)),
        "purity": float(table.max(axis=0).sum() / len(labels)),
    }


def kmeans_scores(
    embeddings: np.ndarray,
    labels: np.ndarray,
    seed: int = 0,
    iters: int = 20,
    runs: int = 1,
    progress: bool = False,
) -> dict[str, float]:
    """:func:`partition_scores` of k-means (k = number of distinct labels) on ``embeddings``
    ``(n, d)`` float32, averaged over ``runs`` runs of seeds ``seed, seed + 1, ...``; with
    ``runs`` > 1 also ``"nmi_std"``, the standard deviation of NMI over the runs (one run
    can split a class)."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    num_clusters = len(np.unique(labels))
    scores = []
    for run in range(runs):
        if num_clusters == 1:
            assignment = np.zeros(len(labels), np.int64)
        else:
            _, assignment = kmeans(embeddings, num_clusters, seed + run, iters, progress=progress)
        scores.append(partition_scores(labels, assignment))
    result = {name: float(np.mean([s[name] for s in scores])) for name in CLUSTERING_SCORES}
    if runs > 1:
        result["nmi_std"] = float(np.std([s["nmi"] for s in scores]))
    return result


def _kmeans_seconds(points: np.ndarray, clusters: int, iters: int, sample: int = 1024) -> float:
    """Expected seconds of ``iters`` k-means iterations: an assignment of ``sample`` points to
    ``clusters`` centroids, timed, scaled to every point and iteration."""
    index = faiss.IndexFlatL2(points.shape[1])
    index.add(points[:clusters])
    start = time.perf_counter()
    index.search(points[:sample], 1)
    return (time.perf_counter() - start) * len(points) / min(sample, len(points)) * (iters + 1)


def nearest_neighbours(
    queries: np.ndarray,
    gallery: np.ndarray,
    k: int,
    exclude_self: bool = False,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Indices ``(nq, k)`` of each query's k nearest gallery items (Euclidean).

    Ranked by distance, ties by the lower gallery index. With ``exclude_self`` the queries are
    the gallery and each query's own index is left out. Inputs are float32 ``(nq, d)``/``(m, d)``;
    ``device`` is where the search runs (see :func:`evaluate`).
    """
    own = np.arange(len(queries)) if exclude_self else None
    out = np.empty((len(queries), k), dtype=np.int64)
    for start, neighbours in _neighbour_chunks(queries, gallery, k, own, torch.device(device)):
        out[start : start + len(neighbours)] = neighbours
    return out


def _neighbour_chunks(
    queries: np.ndarray,
    gallery: np.ndarray,
    k: int,
    own: np.ndarray | None,
    device: torch.device,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, neighbours)`` for consecutive query chunks, neighbours ``(rows, k)``;
    ``own`` ``(nq,)`` is each query's own gallery index, left out (-1: none), or None."""
    width = k + int(own is not None)  # ranked items needed per query, its own index included
    # One more than needed, to see whether the cut falls inside a run of tied distances.
    search_k = min(width + 1, len(gallery))
    search, per_query = _flat_search(gallery, search_k, device)
    rows = max(1, _chunk_elements(device) // per_query)
    for start in range(0, len(queries), rows):
        chunk = queries[start : start + rows]
        distances, indices = search(chunk)
        # Searches sort by distance; order runs of equal distances by index.
        tied = np.flatnonzero((distances[:, 1:] == distances[:, :-1]).any(axis=1))
        if tied.size:
            indices[tied] = _ties_by_index(distances[tied], indices[tied], len(gallery))
        if search_k > width:
            ambiguous = np.flatnonzero(distances[:, width - 1] == distances[:, width])
            if ambiguous.size:
                indices[ambiguous, :width] = _exact_top(chunk[ambiguous], gallery, width)
        indices = indices[:, :width]
        if own is not None:
            mine = own[start : start + len(chunk), None]
            # Stable: move the query's own index (if present) to the end, keep the rest in order.
            keep = np.argsort(indices == mine, axis=1, kind="stable")[:, :k]
            indices = np.take_along_axis(indices, keep, axis=1)
        yield start, indices


def _chunk_elements(device: torch.device) -> int:
    """Distance-table entries computed at once: bounded host memory on the CPU, large
    enough chunks to keep a GPU busy."""
    return _CHUNK_ELEMENTS if device.type == "cpu" else _CHUNK_ELEMENTS << 4


def _flat_search(
    gallery: np.ndarray, k: int, device: torch.device
) -> tuple[Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], int]:
    """``(search, entries)``: ``search(queries) -> (distances, indices)``, each ``(nq, k)``,
    the k nearest gallery items by squared Euclidean distance, nearest first, and the
    table entries it holds per query. On the CPU faiss's flat index up to ``_FAISS_MAX_K``;
    beyond it (MAP@R's R of thousands), and on a GPU, a distance matrix per chunk and
    ``torch.topk`` (on the CPU 4x faster than faiss's heaps for R = 7,000 of 35,000 items)."""
    if device.type == "cpu" and k <= _FAISS_MAX_K:
        index = faiss.IndexFlatL2(gallery.shape[1])
        index.add(gallery)
        return (lambda queries: index.search(queries, k)), k
    items = torch.from_numpy(gallery).to(device)
    squared = torch.linalg.vecdot(items, items)

    def search(queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = torch.from_numpy(queries).to(device, non_blocking=True)
        distances = torch.addmm(squared[None], q, items.T, alpha=-2)
        distances.add_(torch.linalg.vecdot(q, q)[:, None]).clamp_(min=0)
        nearest = torch.topk(distances, k, dim=1, largest=False, sorted=True)
        return nearest.values.cpu().numpy(), nearest.indices.cpu().numpy()

    return search, len(gallery)


def _ties_by_index(distances: np.ndarray, indices: np.ndarray, size: int) -> np.ndarray:
    """``indices`` ``(q, k)`` of ``size`` items, rows sorted by ``distances``, with each run of
    equal distances ordered by index: one sort of ``run * size + index`` (5x faster than a
    lexsort of the two keys)."""
    run = np.zeros(distances.shape, np.int64)
    np.cumsum(distances[:, 1:] != distances[:, :-1], axis=1, out=run[:, 1:])
    return np.sort(run * size + indices, axis=1) % size


def _exact_top(queries: np.ndarray, gallery: np.ndarray, width: int) -> np.ndarray:
    """Top ``width`` gallery indices per query by exact float64 distance, ties by lower index.

    Used only for queries whose neighbour list is cut inside a run of equal distances, where
    faiss's choice among the tied items is arbitrary. Memory is bounded by chunking.
    """
    out = np.empty((len(queries), width), dtype=np.int64)
    gallery64 = gallery.astype(np.float64)
    gallery_sq = np.einsum("ij,ij->i", gallery64, gallery64)
    rows = max(1, _CHUNK_ELEMENTS // len(gallery))
    for start in range(0, len(queries), rows):
        q = queries[start : start + rows].astype(np.float64)
        dist = np.einsum("ij,ij->i", q, q)[:, None] + gallery_sq[None, :] - 2.0 * q @ gallery64.T
        threshold = np.partition(dist, width - 1, axis=1)[:, width - 1]
        for row, (d, t) in enumerate(zip(dist, threshold, strict=True)):
            closer = np.flatnonzero(d < t)
            closer = closer[np.lexsort((closer, d[closer]))]
            tied = np.flatnonzero(d == t)[: width - len(closer)]
            out[start + row] = np.concatenate([closer, tied])
    return out


def _average_precision_at_r(relevant: np.ndarray, r: np.ndarray) -> np.ndarray:
    """AP@R per query from ``relevant`` ``(q, depth)`` booleans and ``r`` ``(q,)`` counts >= 1."""
    ranks = np.arange(1, relevant.shape[1] + 1)
    within_r = ranks[None, :] <= r[:, None]
    relevant = relevant & within_r
    precision = np.cumsum(relevant, axis=1) / ranks[None, :]
    return (precision * relevant).sum(axis=1) / r


def _label_counts(query_labels: np.ndarray, reference_labels: np.ndarray) -> np.ndarray:
    """For each query, the number of reference items with its label."""
    values, counts = np.unique(reference_labels, return_counts=True)
    position = np.searchsorted(values, query_labels).clip(max=len(values) - 1)
    return np.where(values[position] == query_labels, counts[position], 0)


def _require_two_per_label(labels: np.ndarray, name: str) -> None:
    values, counts = np.unique(labels, return_counts=True)
    single = values[counts < 2]
    if single.size:
        raise ValueError(
            f"{name}: {single.size} label(s) have fewer than two items, so they have no "
            f"positive to retrieve, e.g. {single[:5].tolist()}"
        )


def _check_ks(ks: Sequence[int], candidates: int) -> list[int]:
    ks = list(ks)
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"ks must be positive integers, got {k!r}")
        if k > candidates:
            raise ValueError(f"ks: K={k} exceeds the {candidates} candidates per query")
    return [int(k) for k in ks]


def _to_numpy(value: Any, name: str) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor, without importing torch
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: not an array ({error})") from None


def as_embeddings(
    value: Any, name: str = "embeddings", min_rows: int = 1, dtype: Any = np.float32
) -> np.ndarray:
    """``(n, d)`` finite array of ``dtype`` from an array or tensor of real numbers with
    ``n >= min_rows``; ``ValueError`` naming ``name`` otherwise."""
    array = _to_numpy(value, name)
    if array.ndim != 2 or array.shape[0] < min_rows or array.shape[1] < 1:
        raise ValueError(
            f"{name} must be a 2-D array (n, d) with at least {min_rows} row(s) "
            f"(n >= {min_rows}) and d >= 1, got shape {array.shape}"
        )
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    ):
        raise ValueError(f"{name} must be real numbers, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=dtype)
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{name}: row {int(np.argmax(bad))} contains NaN or inf ({int(bad.sum())} row(s) "
            f"in all, after conversion to {np.dtype(dtype).name})"
        )
    return array


def as_labels(value: Any, n: int, name: str = "labels") -> np.ndarray:
    """``(n,)`` int64 labels from an array or tensor of integers; ``ValueError`` naming
    ``name`` otherwise."""
    array = _to_numpy(value, name)
    if array.ndim != 1 or len(array) != n:
        raise ValueError(
            f"{name} must have shape ({n},) (1-D, one per embedding), got shape {array.shape} "
            f"({len(array) if array.ndim else 0} entries)"
        )
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got dtype {array.dtype}")
    return array.astype(np.int64)
