"""The gallery as a re-ranker sees it, and the vector arithmetic the re-rankers share."""

from __future__ import annotations

from collections.abc import Callable

import faiss
import numpy as np
import torch

from cdml.metrics.neighbours import (
    inner_product_as_l2,
    nearest_neighbours,
    unit_rows,
    without_own,
)

# Gathered vectors ((items x neighbours x dim) entries) held at once.
GATHER_ELEMENTS = 1 << 23


class Gallery:
    """The gallery as a re-ranker sees it: ``vectors`` ``(n, d)`` float32 as compared (unit
    rows for ``cosine``), its ``metric``, and ``search(queries, k) -> (q, k)`` indices of
    the nearest, -1 padding; ``over(vectors)`` is the same search over other vectors."""

    def __init__(
        self,
        vectors: np.ndarray,
        metric: str,
        search: Callable[[np.ndarray, int], np.ndarray],
        over: Callable[[np.ndarray], Gallery],
    ) -> None:
        self.vectors, self.metric, self.search, self.over = vectors, metric, search, over

    def __len__(self) -> int:
        return len(self.vectors)

    @classmethod
    def exact(cls, vectors: np.ndarray, metric: str, device: torch.device) -> Gallery:
        """Exact search (ties by the lower index), as :func:`cdml.metrics.evaluate` ranks."""
        searched = inner_product_as_l2(vectors[:0], vectors)[1] if metric == "ip" else vectors

        def search(queries: np.ndarray, k: int) -> np.ndarray:
            if metric == "ip":
                queries = np.hstack([queries, np.zeros((len(queries), 1), queries.dtype)])
            return nearest_neighbours(queries, searched, k, device=device)

        return cls(vectors, metric, search, lambda other: cls.exact(other, metric, device))

    @classmethod
    def indexed(cls, index: faiss.Index, metric: str, vectors: np.ndarray | None = None
                ) -> Gallery:  # fmt: skip
        """The search of a faiss ``index`` (approximate for IVF and HNSW) holding
        ``vectors`` (default: read back from it); ``over`` indexes other vectors in a copy
        of it (the same kind, cells and settings)."""
        if vectors is None:
            if isinstance(index, faiss.IndexIVF) and index.direct_map.no():
                index.make_direct_map()
            vectors = index.reconstruct_n(0, index.ntotal)

        def over(other: np.ndarray) -> Gallery:
            copy = faiss.clone_index(index)
            copy.reset()
            copy.add(other)
            return cls.indexed(copy, metric, other)

        return cls(vectors, metric, lambda queries, k: index.search(queries, k)[1], over)

    def nearest(self, queries: np.ndarray, k: int, own: np.ndarray | None = None) -> np.ndarray:
        """Indices ``(q, k)`` of each query's ``k`` nearest items, -1 padding; ``own``
        ``(q,)`` is each query's own index (-1: none), never returned."""
        width = min(k + int(own is not None), len(self))
        found = self.search(queries, width)
        if own is not None:
            found = without_own(found, own, found.shape[1])
        out = np.full((len(queries), k), -1, dtype=np.int64)
        kept = min(k, found.shape[1])
        out[:, :kept] = found[:, :kept]
        return out

    def prepared(self, queries: np.ndarray) -> np.ndarray:
        """``queries`` as the gallery compares them: unit rows for ``cosine``."""
        return unit_rows(queries) if self.metric == "cosine" else queries

    def scores(self, queries: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """``(q, k)`` scores of the gallery items ``indices`` for ``queries``, as
        :meth:`cdml.retrieval.GalleryIndex.search` gives them: Euclidean distances for
        ``l2`` (inf for padding), similarities for ``cosine`` and ``ip`` (-inf)."""
        if self.metric == "l2":
            return np.sqrt(squared_distances(queries, self.vectors, indices))
        products = gathered(lambda rows, chunk: np.einsum("bd,bkd->bk", chunk, rows),
                             queries, self.vectors, indices)  # fmt: skip
        return np.where(indices >= 0, products, -np.inf).astype(np.float32)


def gathered(
    apply: Callable[[np.ndarray, np.ndarray], np.ndarray],
    points: np.ndarray,
    vectors: np.ndarray,
    indices: np.ndarray,
) -> np.ndarray:
    """``apply(vectors[indices] (b, k, d), points (b, d)) -> (b, k)`` over chunks of rows
    (padding -1 gathers row 0: mask it)."""
    out = np.empty(indices.shape, dtype=np.float32)
    rows = max(1, GATHER_ELEMENTS // max(1, indices.shape[1] * vectors.shape[1]))
    for start in range(0, len(indices), rows):
        chunk = indices[start : start + rows]
        out[start : start + rows] = apply(
            vectors[np.maximum(chunk, 0)], points[start : start + rows]
        )
    return out


def squared_distances(points: np.ndarray, vectors: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``(b, k)`` squared Euclidean distances of ``points`` ``(b, d)`` to ``vectors[indices]``,
    inf for -1; summed over differences, so ``d(a, b) == d(b, a)`` exactly."""

    def squared(rows: np.ndarray, chunk: np.ndarray) -> np.ndarray:
        difference = rows - chunk[:, None]
        return np.einsum("bkd,bkd->bk", difference, difference)

    return np.where(indices >= 0, gathered(squared, points, vectors, indices), np.inf)
