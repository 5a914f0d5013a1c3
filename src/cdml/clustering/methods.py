"""Cluster embeddings: spectral clustering of the nearest-neighbour graph, k-means or
facility-location medoids, and an estimate of the number of groups.

``cluster(embeddings, k)`` returns each item's cluster, each cluster's exemplar (a real item:
the medoid, or the member nearest the cluster's centroid) and each item's distance to it
(the medoid) or to the centroid. ``k="auto"`` estimates the number of groups from the
eigenvalues of the nearest-neighbour graph of a sample (:func:`estimate_num_clusters`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import eigsh
from sklearn.cluster import kmeans_plusplus

from cdml.checks import MAX_SEED, check_seed
from cdml.losses.facility_location import facility_location_medoids
from cdml.metrics import as_embeddings, kmeans, nearest_neighbours
from cdml.progress import Progress
from cdml.registry import Registry
from cdml.viz.inputs import sample_indices

# Points the medoid search sees at most (its cost grows as n^2).
SAMPLE_SIZE = 2048
# Points the estimate of the number of groups sees at most, and how many such samples.
ESTIMATE_SAMPLE_SIZE = 8192
ESTIMATE_DRAWS = 3
# k-means restarts (the one of lowest squared error is kept).
RESTARTS = 3
# Nearest neighbours of each item in the graph of spectral clustering and of the estimate.
NEIGHBOURS = 30
# The estimate counts the graph's eigenvalues above this; chosen on training and validation
# classes (digits' and Fashion-MNIST's 5 training classes, glyphs' 27 validation ones).
EIGENVALUE_THRESHOLD = 0.9
# Largest k of spectral clustering: it needs k eigenvectors of an n x n graph.
SPECTRAL_MAX_K = 1000


@dataclass
class Clustering:
    """``assignment`` ``(n,)`` cluster of each item in ``0..k-1`` (clusters numbered by
    decreasing size); ``exemplars`` ``(k,)`` the item index of each cluster's exemplar;
    ``distances`` ``(n,)`` each item's distance to its medoid (``"medoids"``) or to its
    cluster's centroid, the mean of its members (``"spectral"``, ``"kmeans"``)."""

    assignment: np.ndarray
    exemplars: np.ndarray
    distances: np.ndarray
    method: str

    @property
    def k(self) -> int:
        return len(self.exemplars)


# ``method(points, k, seed, progress) -> (assignment (n,), medoids)``: the assignment in
# ``0..k-1``, and ``medoids`` ``(k,)`` the item index of each cluster's medoid, or None for a
# method whose clusters have centroids instead; ``@CLUSTER_METHODS.register(name)`` adds one.
CLUSTER_METHODS: Registry[Callable[..., tuple[np.ndarray, np.ndarray | None]]] = Registry(
    "clustering method", setting="method"
)


def kmeans_plus_plus(
    points: np.ndarray, k: int, seed: int = 0, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``(centroids (k, d), assignment (n,))``: the best (lowest squared error) of
    ``RESTARTS`` faiss k-means runs, each started by scikit-learn's k-means++ seeding on a
    sample of up to 16,384 points (random starting points often leave two centroids in one
    well-separated group)."""
    best = None
    for restart in range(RESTARTS):
        run_seed = (seed + restart) % (MAX_SEED + 1)
        sample = points[sample_indices(len(points), max(8 * SAMPLE_SIZE, k), run_seed)]
        init, _ = kmeans_plusplus(sample, k, random_state=run_seed)
        centroids, assignment = kmeans(points, k, run_seed, progress=progress, init=init)
        error = float(((points - centroids[assignment]) ** 2).sum())
        if best is None or error < best[0]:
            best = (error, centroids, assignment)
    return best[1], best[2]


def neighbour_graph(points: np.ndarray, neighbours: int = NEIGHBOURS) -> sp.csr_matrix:
    """The symmetric 0/1 adjacency ``(n, n)`` of the k-nearest-neighbour graph of ``points``
    ``(n, d)``: ``i`` and ``j`` are joined when either is among the other's ``neighbours``
    nearest (Euclidean, capped at ``n - 1``)."""
    n = len(points)
    neighbours = min(neighbours, n - 1)
    nearest = nearest_neighbours(points, points, neighbours, exclude_self=True)
    rows = np.repeat(np.arange(n), neighbours)
    graph = sp.csr_matrix((np.ones(n * neighbours), (rows, nearest.ravel())), shape=(n, n))
    return graph.maximum(graph.T).tocsr()


def spectral_decomposition(
    graph: sp.csr_matrix, dims: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(values (dims,), vectors (n, dims))``: the ``dims`` largest eigenvalues of the
    normalised adjacency ``D^-1/2 A D^-1/2`` of ``graph``, in decreasing order, and their
    eigenvectors.

    Each connected component is solved on its own (ARPACK from one start vector finds one
    eigenvector per repeated eigenvalue, and every component has eigenvalue 1); where there
    are more components than ``dims``, the smallest are left out (their items' entries are
    zero)."""
    count, component = connected_components(graph, directed=False)
    order = np.argsort(component, kind="stable")
    groups = np.split(order, np.cumsum(np.bincount(component, minlength=count))[:-1])
    found = []  # (eigenvalue, component size, members, eigenvector)
    for members in groups:
        block = graph[members][:, members]
        scale = sp.diags(1 / np.sqrt(np.asarray(block.sum(axis=1)).ravel()))
        block = scale @ block @ scale
        wanted = min(dims, len(members))
        if wanted >= len(members) - 1:  # ARPACK needs fewer than n - 1; so small is dense
            values, vectors = np.linalg.eigh(block.toarray())
        else:
            start = np.random.default_rng(seed).random(len(members))
            values, vectors = eigsh(block, k=wanted, which="LA", v0=start)
        for j in range(len(values) - 1, len(values) - 1 - wanted, -1):  # ascending order
            found.append((round(values[j], 9), len(members), members, vectors[:, j]))
    found.sort(key=lambda pair: pair[:2], reverse=True)  # ties: the larger component first
    values, vectors = np.zeros(dims), np.zeros((graph.shape[0], dims))
    for column, (value, _, members, vector) in enumerate(found[:dims]):
        values[column], vectors[members, column] = value, vector
    return values, vectors


def spectral_embedding(graph: sp.csr_matrix, dims: int, seed: int = 0) -> np.ndarray:
    """Rows ``(n, dims)`` of unit length: the ``dims`` leading eigenvectors of
    :func:`spectral_decomposition`, row-normalised (Ng, Jordan and Weiss 2001): items of one
    well-connected group get nearly the same row. Items of components left out get zeros."""
    rows = spectral_decomposition(graph, dims, seed)[1]
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / np.maximum(norms, 1e-12)).astype(np.float32)


@CLUSTER_METHODS.register("spectral")
def _spectral(points: np.ndarray, k: int, seed: int, progress: bool) -> tuple[np.ndarray, None]:
    if k > SPECTRAL_MAX_K:
        raise ValueError(f"spectral clustering takes k up to {SPECTRAL_MAX_K}, got {k}; "
                         "use method 'kmeans'")  # fmt: skip
    if k == 1:
        return np.zeros(len(points), np.int64), None
    with Progress(f"neighbour graph ({NEIGHBOURS} per item)", enabled=progress):
        graph = neighbour_graph(points)
    with Progress(f"spectral embedding ({k} eigenvectors)", enabled=progress):
        rows = spectral_embedding(graph, k, seed)
    placed = np.flatnonzero(rows.any(axis=1))
    assignment = np.empty(len(points), np.int64)
    assignment[placed] = kmeans_plus_plus(rows[placed], k, seed, progress)[1]
    if len(placed) < len(points):
        # Components too small for a column of their own: each joins, as a whole, the cluster
        # that most of its items' nearest placed items belong to.
        rest = np.setdiff1d(np.arange(len(points)), placed)
        votes = assignment[placed[nearest_neighbours(points[rest], points[placed], 1)[:, 0]]]
        component = connected_components(graph, directed=False)[1][rest]
        pairs, counts = np.unique(np.stack([component, votes], 1), axis=0, return_counts=True)
        best = pairs[np.lexsort((-counts, pairs[:, 0]))]  # per component, most votes first
        components, first = np.unique(best[:, 0], return_index=True)
        assignment[rest] = best[first, 1][np.searchsorted(components, component)]
    return assignment, None


@CLUSTER_METHODS.register("kmeans")
def _kmeans(points: np.ndarray, k: int, seed: int, progress: bool) -> tuple[np.ndarray, None]:
    return kmeans_plus_plus(points, k, seed, progress)[1], None


@CLUSTER_METHODS.register("medoids")
def _medoids(points: np.ndarray, k: int, seed: int, progress: bool) -> tuple[np.ndarray, ...]:
    # Facility location over a sample: medoids of up to SAMPLE_SIZE points, every item then
    # assigned to its nearest medoid.
    sample = sample_indices(len(points), max(SAMPLE_SIZE, k), seed)
    chosen = torch.from_numpy(points[sample])
    with Progress(f"facility-location medoids ({k:,})", enabled=progress):
        medoids = sample[facility_location_medoids(torch.cdist(chosen, chosen), k).numpy()]
    return nearest_neighbours(points, points[medoids], 1)[:, 0], medoids


def cluster(
    embeddings: np.ndarray,
    k: int | str = "auto",
    method: str = "spectral",
    *,
    seed: int = 0,
    k_max: int | None = None,
    progress: bool = False,
) -> Clustering:
    """Cluster ``embeddings`` ``(n, d)`` into ``k`` groups (``"auto"``: estimated by
    :func:`estimate_num_clusters` up to ``k_max``) with ``method``:

    - ``"spectral"``: k-means (as below) of the spectral embedding of the items'
      30-nearest-neighbour graph (:func:`spectral_embedding`), k up to 1,000;
    - ``"kmeans"``: faiss k-means from k-means++ seeds, the best of 3 restarts;
    - ``"medoids"``: the facility-location loss's greedy + swap search without margin, on a
      sample of up to 2,048 items, every item then assigned to its nearest medoid.

    Empty clusters are dropped."""
    points = as_embeddings(embeddings, "embeddings", min_rows=2)
    check_seed(seed)
    run = CLUSTER_METHODS[method]
    if k == "auto":
        k = estimate_num_clusters(points, k_max=k_max, seed=seed, progress=progress)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(points):
        raise ValueError(f"k must be 'auto' or an integer in 1..{len(points)}, got {k!r}")
    assignment, medoids = run(points, k, seed, progress)
    # Number clusters by decreasing size (ties by first member), dropping empty ones.
    found, first, sizes = np.unique(assignment, return_index=True, return_counts=True)
    order = np.lexsort((first, -sizes))
    renumber = np.empty(found.max() + 1, np.int64)
    renumber[found[order]] = np.arange(len(found))
    assignment = renumber[assignment]
    if medoids is not None:
        exemplars = medoids[found[order]]
        distances = np.linalg.norm(points - points[exemplars[assignment]], axis=1)
    else:  # the exemplar of a centroid: its nearest member
        centroids = np.zeros((len(found), points.shape[1]))
        np.add.at(centroids, assignment, points)
        centroids /= sizes[order][:, None]
        distances = np.linalg.norm(points - centroids[assignment], axis=1)
        exemplars = np.full(len(found), -1)
        for c in range(len(found)):
            members = np.flatnonzero(assignment == c)
            exemplars[c] = members[np.argmin(distances[members])]
    return Clustering(assignment, exemplars, distances.astype(np.float32), method)


def estimate_num_clusters(
    embeddings: np.ndarray,
    k_max: int | None = None,
    *,
    seed: int = 0,
    progress: bool = False,
) -> int:
    """The number of groups in ``embeddings`` ``(n, d)``: how many eigenvalues of the
    normalised adjacency of the 30-nearest-neighbour graph (:func:`spectral_decomposition`)
    exceed 0.9, on a sample of up to 8,192 items (beyond that, the mean over 3 samples,
    rounded), within 2..``k_max`` (default ``min(200, sample / 4)``).

    Eigenvalue 1 counts a group with no edge leaving it, and by the graph's Cheeger
    inequalities an eigenvalue near 1 a group that few of its items' neighbours leave."""
    points = as_embeddings(embeddings, "embeddings", min_rows=3)
    draws = 1 if len(points) <= ESTIMATE_SAMPLE_SIZE else ESTIMATE_DRAWS
    size = min(len(points), ESTIMATE_SAMPLE_SIZE)
    k_max = min(200, max(2, size // 4)) if k_max is None else k_max
    if not 2 <= k_max <= min(size - 1, SPECTRAL_MAX_K):
        raise ValueError(f"k_max must lie in 2..{min(size - 1, SPECTRAL_MAX_K)} for "
                         f"{size} items, got {k_max}")  # fmt: skip
    counts = []
    with Progress("estimating k (eigenvalues)", total=draws, enabled=progress) as bar:
        for draw in range(draws):
            sample = points[sample_indices(len(points), size, (seed + draw) % (MAX_SEED + 1))]
            values, _ = spectral_decomposition(neighbour_graph(sample), k_max + 1, seed)
            counts.append(int((values > EIGENVALUE_THRESHOLD).sum()))
            bar.advance(1)
    return int(np.clip(round(float(np.mean(counts))), 2, k_max))
