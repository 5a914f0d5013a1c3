"""Exact nearest neighbours in chunks of bounded memory (faiss; torch for many neighbours and
on the GPU of CUDA embeddings), ranked by distance, ties by the lower gallery index."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import faiss
import numpy as np
import torch

METRICS = ("l2", "cosine", "ip")  # how evaluate() ranks neighbours


# Upper bound on neighbour-table entries held at once (queries in a chunk x neighbours each).
_CHUNK_ELEMENTS = 1 << 22


# The most neighbours per query asked of faiss; more are ranked with torch (see _flat_search).
_FAISS_MAX_K = 2048


def check_metric(metric: str) -> None:
    """``ValueError`` unless ``metric`` is one of :data:`METRICS`."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")


def search_device(embeddings: Any, device: str | torch.device | None) -> torch.device:
    """``device``, or by default the embeddings' own (a tensor's; the CPU otherwise)."""
    if device is not None:
        return torch.device(device)
    own = getattr(embeddings, "device", None)
    return own if isinstance(own, torch.device) else torch.device("cpu")


def unit_rows(points: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(points, axis=1, keepdims=True)
    return np.divide(points, norms, out=np.zeros_like(points), where=norms > 0)


def inner_product_as_l2(queries: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, ...]:
    """Queries ``[q, 0]`` and gallery ``[g, sqrt(M^2 - |g|^2)]`` (``M`` the largest gallery
    norm): ``|q' - g'|^2 = |q|^2 + M^2 - 2 q.g``, so Euclidean order is inner-product order."""
    squared = np.einsum("ij,ij->i", gallery, gallery)
    lift = np.sqrt(np.maximum(squared.max() - squared, 0))[:, None]
    zeros = np.zeros((len(queries), 1), dtype=queries.dtype)
    return np.hstack([queries, zeros]), np.hstack([gallery, lift.astype(gallery.dtype)])


def without_own(found: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` entries of each row of ``found`` ``(q, m)`` but the row's ``own``
    index (``(q,)``, -1: none), the order of the others kept; -1 where fewer remain."""
    keep = np.argsort(found == own[:, None], axis=1, kind="stable")[:, :k]
    kept = np.take_along_axis(found, keep, axis=1)
    return np.where(kept == own[:, None], -1, kept)


def score_name(metric: str) -> str:
    """What a search by ``metric`` scores: ``"distance"`` (``l2``, smallest first) or
    ``"similarity"`` (``cosine`` and ``ip``, largest first)."""
    return "distance" if metric == "l2" else "similarity"


def nearest_neighbours(
    queries: np.ndarray,
    gallery: np.ndarray,
    k: int,
    exclude_self: bool = False,
    device: str | torch.device = "cpu",
    own: np.ndarray | None = None,
) -> np.ndarray:
    """Indices ``(nq, k)`` of each query's k nearest gallery items (Euclidean).

    Ranked by distance, ties by the lower gallery index. With ``exclude_self`` the queries are
    the gallery and each query's own index is left out; ``own`` ``(nq,)`` names each query's
    own gallery index to leave out (-1: none) where they are not. Inputs are float32
    ``(nq, d)``/``(m, d)``; ``device`` is where the search runs (see :func:`evaluate`).
    """
    own = np.arange(len(queries)) if exclude_self else own
    out = np.empty((len(queries), k), dtype=np.int64)
    for start, neighbours in neighbour_chunks(queries, gallery, k, own, torch.device(device)):
        out[start : start + len(neighbours)] = neighbours
    return out


def neighbour_chunks(
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
            indices = without_own(indices, own[start : start + len(chunk)], k)
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
