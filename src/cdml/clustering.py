"""Cluster embeddings: k-means or facility-location medoids, and an estimate of the number of
groups.

``cluster(embeddings, k)`` returns each item's cluster, each cluster's exemplar (a real item:
the medoid, or for k-means the member nearest the centroid) and each item's distance to what
it was assigned to (the medoid, or the centroid). ``k="auto"`` estimates the number of groups
by the silhouette of k-means clusterings of a sample (:func:`estimate_num_clusters`).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch
from sklearn.cluster import kmeans_plusplus
from sklearn.metrics import silhouette_score

from cdml.inference import source_images
from cdml.io import atomic_path, write_json
from cdml.losses.facility_location import facility_location_medoids
from cdml.metrics import as_embeddings, kmeans, partition_scores
from cdml.progress import Progress
from cdml.viz.contact_sheet import contact_sheet
from cdml.viz.inputs import sample_indices

# Points the medoid search and the silhouette see at most (their cost grows as n^2).
SAMPLE_SIZE = 2048
# k-means restarts (the one of lowest squared error is kept).
RESTARTS = 3


@dataclass
class Clustering:
    """``assignment`` ``(n,)`` cluster of each item in ``0..k-1`` (clusters numbered by
    decreasing size); ``exemplars`` ``(k,)`` the item index of each cluster's exemplar;
    ``distances`` ``(n,)`` each item's distance to its medoid (``"medoids"``) or centroid
    (``"kmeans"``)."""

    assignment: np.ndarray
    exemplars: np.ndarray
    distances: np.ndarray
    method: str

    @property
    def k(self) -> int:
        return len(self.exemplars)


CLUSTER_METHODS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {}


def register_cluster_method(name: str) -> Callable[[Callable], Callable]:
    """Decorator: ``method(points, k, seed, progress) -> (centres (k, d), exemplars (k,))``,
    exemplars the item indices of real items (-1 where a centre is not one)."""

    def add(method: Callable) -> Callable:
        CLUSTER_METHODS[name] = method
        return method

    return add


def kmeans_plus_plus(
    points: np.ndarray, k: int, seed: int = 0, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``(centroids (k, d), assignment (n,))``: the best (lowest squared error) of
    ``RESTARTS`` faiss k-means runs, each started by scikit-learn's k-means++ seeding on a
    sample of up to 16,384 points (random starting points often leave two centroids in one
    well-separated group)."""
    best = None
    for restart in range(RESTARTS):
        sample = points[sample_indices(len(points), max(8 * SAMPLE_SIZE, k), seed + restart)]
        init, _ = kmeans_plusplus(sample, k, random_state=seed + restart)
        centroids, assignment = kmeans(points, k, seed + restart, progress=progress, init=init)
        error = float(((points - centroids[assignment]) ** 2).sum())
        if best is None or error < best[0]:
            best = (error, centroids, assignment)
    return best[1], best[2]


@register_cluster_method("kmeans")
def _kmeans(points: np.ndarray, k: int, seed: int, progress: bool) -> tuple[np.ndarray, ...]:
    centroids, _ = kmeans_plus_plus(points, k, seed, progress)
    return centroids, np.full(k, -1)


@register_cluster_method("medoids")
def _medoids(points: np.ndarray, k: int, seed: int, progress: bool) -> tuple[np.ndarray, ...]:
    # Facility location over a sample: medoids of up to SAMPLE_SIZE points, every item then
    # assigned to its nearest medoid.
    sample = sample_indices(len(points), max(SAMPLE_SIZE, k), seed)
    chosen = torch.from_numpy(points[sample])
    with Progress(f"facility-location medoids ({k:,})", enabled=progress):
        medoids = facility_location_medoids(torch.cdist(chosen, chosen), k).numpy()
    exemplars = sample[medoids]
    return points[exemplars], exemplars


def cluster(
    embeddings: np.ndarray,
    k: int | str = "auto",
    method: str = "kmeans",
    *,
    seed: int = 0,
    k_max: int | None = None,
    progress: bool = False,
) -> Clustering:
    """Cluster ``embeddings`` ``(n, d)`` into ``k`` groups (``"auto"``: estimated by
    :func:`estimate_num_clusters` up to ``k_max``) with ``method``: ``"kmeans"`` (faiss from
    k-means++ seeds, best of 3 restarts) or ``"medoids"`` (the facility-location loss's
    greedy + swap search without margin, on a sample of up to 2,048 items, every item then
    assigned to its nearest medoid). Empty k-means clusters are dropped."""
    points = as_embeddings(embeddings, "embeddings", min_rows=2)
    if method not in CLUSTER_METHODS:
        raise ValueError(f"method must be one of {', '.join(CLUSTER_METHODS)}, got {method!r}")
    if k == "auto":
        k = estimate_num_clusters(points, k_max=k_max, seed=seed, progress=progress)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(points):
        raise ValueError(f"k must be 'auto' or an integer in 1..{len(points)}, got {k!r}")
    centres, exemplars = CLUSTER_METHODS[method](points, k, seed, progress)
    index = faiss.IndexFlatL2(points.shape[1])
    index.add(np.ascontiguousarray(centres, dtype=np.float32))
    squared, nearest = index.search(points, 1)
    assignment, distances = nearest[:, 0], np.sqrt(np.maximum(squared[:, 0], 0))
    if method != "medoids":  # the exemplar of a centroid: its nearest member
        exemplars = np.full(len(centres), -1)
        for c in np.unique(assignment):
            members = np.flatnonzero(assignment == c)
            exemplars[c] = members[np.argmin(distances[members])]
    # Number clusters by decreasing size (ties by exemplar), dropping empty ones.
    sizes = np.bincount(assignment, minlength=len(centres))
    order = np.lexsort((exemplars, -sizes))
    order = order[sizes[order] > 0]
    renumber = np.empty(len(centres), np.int64)
    renumber[order] = np.arange(len(order))
    return Clustering(renumber[assignment], exemplars[order], distances, method)


def estimate_num_clusters(
    embeddings: np.ndarray,
    k_max: int | None = None,
    *,
    seed: int = 0,
    progress: bool = False,
) -> int:
    """The number of groups in ``embeddings`` ``(n, d)``: the k of highest silhouette
    (Euclidean) among k-means clusterings of a sample of up to 2,048 items, for k from 2 to
    ``k_max`` (default ``min(200, sample / 4)``): every k up to 20, then steps of about 10%.
    Ties go to the smaller k."""
    points = as_embeddings(embeddings, "embeddings", min_rows=3)
    sample = points[sample_indices(len(points), SAMPLE_SIZE, seed)]
    largest = len(sample) - 1
    k_max = min(200, max(2, len(sample) // 4)) if k_max is None else k_max
    if not 2 <= k_max <= largest:
        raise ValueError(f"k_max must lie in 2..{largest} for {len(sample)} items, got {k_max}")
    candidates = sorted({*range(2, min(20, k_max) + 1), *np.geomspace(20, k_max, 30).astype(int)})
    candidates = [k for k in candidates if 2 <= k <= k_max]
    best_k, best_score = 2, -np.inf
    with Progress("estimating k (silhouette)", total=len(candidates), enabled=progress) as bar:
        for k in candidates:
            _, assignment = kmeans_plus_plus(sample, k, seed)
            score = silhouette_score(sample, assignment) if len(np.unique(assignment)) > 1 else -1
            if score > best_score + 1e-12:
                best_k, best_score = k, score
            bar.advance(1)
    return best_k


def write_clusters(
    out: str | Path,
    clustering: Clustering,
    arrays: dict[str, np.ndarray],
    *,
    members: int = 35,
    progress: bool = False,
) -> dict[str, Any]:
    """Write a clustering of the items of ``arrays`` (as ``cdml embed`` writes them:
    ``paths``, and ``labels`` where known) to the folder ``out``:

    - ``assignments.csv``: path, cluster, distance (to the medoid or centroid), label;
    - ``clusters.json``: the method, k, per cluster its size, exemplar's path and mean
      distance, and with labels the scores against them (NMI, AMI, ARI, purity);
    - ``sheets/cluster_NNN.png``: the exemplar (framed) and up to ``members`` members,
      nearest first; ``sheets/overview.png``: every exemplar, with its cluster and size.

    Returns the content of ``clusters.json``."""
    out = Path(out)
    (out / "sheets").mkdir(parents=True, exist_ok=True)
    n = len(clustering.assignment)
    paths = arrays.get("paths", np.array([f"item {i}" for i in range(n)]))
    labels = arrays.get("labels")
    rows = [["path", "cluster", "distance", "label"]]
    for i in range(n):
        label = "" if labels is None else int(labels[i])
        rows.append([str(paths[i]), int(clustering.assignment[i]),
                     f"{clustering.distances[i]:.6g}", label])  # fmt: skip
    with atomic_path(out / "assignments.csv") as tmp, tmp.open("w", newline="") as file:
        csv.writer(file).writerows(rows)
    clusters = []
    for c, exemplar in enumerate(clustering.exemplars):
        chosen = clustering.assignment == c
        clusters.append({
            "cluster": c,
            "size": int(chosen.sum()),
            "exemplar": str(paths[exemplar]),
            "mean_distance": float(clustering.distances[chosen].mean()),
        })  # fmt: skip
    summary: dict[str, Any] = {"method": clustering.method, "k": clustering.k, "items": n}
    if labels is not None:
        summary["scores"] = partition_scores(labels, clustering.assignment)
    summary["clusters"] = clusters
    write_json(out / "clusters.json", summary)
    _write_sheets(out / "sheets", clustering, arrays, members, progress)
    return summary


def _write_sheets(
    folder: Path, clustering: Clustering, arrays: dict[str, np.ndarray], members: int,
    progress: bool,
) -> None:  # fmt: skip
    for stale in folder.glob("cluster_*.png"):  # of an earlier clustering into this folder
        stale.unlink()
    sizes = np.bincount(clustering.assignment, minlength=clustering.k)
    images = source_images(arrays, clustering.exemplars)
    captions = [f"{c}: {sizes[c]}" for c in range(clustering.k)]
    contact_sheet(images, folder / "overview.png", captions=captions, frame_first=False)
    with Progress("contact sheets", total=clustering.k, enabled=progress) as bar:
        for c, exemplar in enumerate(clustering.exemplars):
            others = np.flatnonzero(clustering.assignment == c)
            others = others[others != exemplar]
            nearest = others[np.argsort(clustering.distances[others], kind="stable")[:members]]
            sheet = source_images(arrays, [exemplar, *nearest])
            contact_sheet(sheet, folder / f"cluster_{c:03d}.png")
            bar.advance(1)
