"""The zero-shot evaluation protocol: Recall@K, MAP@R and the clustering scores of
:func:`evaluate`, per query or over every item, a gallery or query / gallery marks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from cdml.metrics.arrays import as_embeddings, as_labels, to_numpy
from cdml.metrics.clustering_scores import kmeans_scores
from cdml.metrics.neighbours import (
    check_metric,
    inner_product_as_l2,
    neighbour_chunks,
    search_device,
    unit_rows,
)
from cdml.progress import Progress

if TYPE_CHECKING:
    from cdml.reranking import Reranker

DEFAULT_KS = (1, 2, 4, 8)


# The per-item keywords of evaluate() that a dataset or an embeddings file may carry.
ITEM_MARKS = ("is_query", "is_gallery", "categories")


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
    rerank: Reranker | None = None,
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
        rerank: a re-ranker of the neighbours that Recall@K and MAP@R read, fitted to the
            searched items (``cdml.reranking.create_reranker("aqe:k=2")``); None (default):
            the plain ranking.

    Returns:
        ``{"recall@K": ..., "nmi": ..., "ami": ..., "ari": ..., "purity": ..., "map@r": ...}``
        as floats (in [0, 1]; AMI and ARI can dip below 0), keys in that order (``"nmi_std"``
        after purity with ``nmi_runs`` > 1), then the per-category metrics when
        ``categories`` are given.

    Raises:
        ValueError: bad shapes or dtypes, NaN or inf, a query with no other item of its label
            to retrieve, or K larger than the candidates.
    """
    device = search_device(embeddings, device)
    if kmeans_iters < 20:
        raise ValueError(f"kmeans_iters must be at least 20, got {kmeans_iters}")
    if nmi_runs < 1:
        raise ValueError(f"nmi_runs must be at least 1, got {nmi_runs}")
    check_metric(metric)
    if rerank is not None and not hasattr(rerank, "neighbour_chunks"):
        raise ValueError(
            f"rerank must be a re-ranker, e.g. cdml.reranking.create_reranker({rerank!r})"
        )
    task = _retrieval_task(
        embeddings, labels, gallery, gallery_labels, is_query, is_gallery, categories
    )
    candidates = len(task.reference) - int(task.own is not None)
    ks = _check_ks(ks, candidates)
    per_query = _per_query_scores(task, ks, map_at_r, metric, device, progress, rerank)
    if metric == "cosine":
        task.clustered = unit_rows(task.clustered)

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
    device = search_device(embeddings, device)
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
    reranker: Reranker | None = None,
) -> dict[str, np.ndarray]:
    """``{"recall@K": (q,) bool, ..., "map@r": (q,) float}`` of the task's queries, ranked
    by ``reranker`` when given."""
    queries, reference = task.queries, task.reference
    depth = max(ks, default=0)
    if map_at_r:
        depth = max(depth, int(task.positives.max()))
    if not depth:
        return {}
    hits = {k: np.zeros(len(queries), bool) for k in ks}
    precision = np.zeros(len(queries))
    if reranker is not None:
        chunks = reranker.neighbour_chunks(queries, reference, depth, task.own, metric, device)
    else:
        if metric == "cosine":
            queries, reference = unit_rows(queries), unit_rows(reference)
        if metric == "ip":
            queries, reference = inner_product_as_l2(queries, reference)
        chunks = neighbour_chunks(queries, reference, depth, task.own, device)
    with Progress("neighbours", total=len(queries), enabled=progress) as bar:
        for start, neighbours in chunks:
            stop = start + len(neighbours)
            relevant = task.reference_labels[neighbours] == task.query_labels[start:stop, None]
            for k in ks:
                hits[k][start:stop] = relevant[:, :k].any(axis=1)
            if map_at_r:
                r = task.positives[start:stop]
                precision[start:stop] = average_precision_at_r(relevant[:, : r.max()], r)
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
    array = to_numpy(value, name)
    if array.shape != (n,) or array.dtype != np.bool_:
        raise ValueError(
            f"{name} must be {n} booleans (one per embedding), got {array.dtype} of shape "
            f"{array.shape}"
        )
    if not array.any():
        raise ValueError(f"{name}: no item is marked")
    return array


def _as_categories(value: Any, n: int) -> np.ndarray:
    array = to_numpy(value, "categories")
    if array.shape != (n,):
        raise ValueError(
            f"categories must have shape ({n},) (one per embedding), got shape {array.shape}"
        )
    return array.astype(np.str_)


def average_precision_at_r(relevant: np.ndarray, r: np.ndarray) -> np.ndarray:
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
