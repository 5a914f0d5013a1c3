"""k-means (faiss) and the scores of a partition against labels: NMI, AMI, ARI, purity."""

from __future__ import annotations

import math
import time
from typing import Any

import faiss
import numpy as np
from sklearn.metrics import (
    adjusted_mutual_info_score,
    adjusted_rand_score,
    normalized_mutual_info_score,
)
from sklearn.metrics.cluster import contingency_matrix

from cdml.progress import Progress

CLUSTERING_SCORES = ("nmi", "ami", "ari", "purity")  # of k-means against the labels


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
        seed=seed % 2**31,  # faiss takes a 31-bit seed
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
