"""Re-rankers that average neighbours into vectors: of the query (alpha-QE) or of every
gallery item (database-side augmentation)."""

from __future__ import annotations

import numpy as np

from cdml.metrics.neighbours import unit_rows
from cdml.reranking.base import RERANKERS, Reranker, check_count, check_real
from cdml.reranking.gallery import GATHER_ELEMENTS, Gallery


def with_neighbours(points: np.ndarray, vectors: np.ndarray, neighbours: np.ndarray, alpha: float
              ) -> np.ndarray:  # fmt: skip
    """``(b, d)``: each point plus its ``neighbours`` ``(b, k)`` (-1: none) among ``vectors``
    weighted by ``max(cosine similarity, 0) ** alpha`` (itself by 1), rescaled to the
    point's norm (the papers' unit embeddings stay unit)."""
    out = np.empty_like(points)
    rows = max(1, GATHER_ELEMENTS // max(1, neighbours.shape[1] * points.shape[1]))
    for start in range(0, len(points), rows):
        chunk, found = points[start : start + rows], neighbours[start : start + rows]
        gathered = vectors[np.maximum(found, 0)]
        cosine = np.einsum("bd,bkd->bk", unit_rows(chunk), unit_rows(
            gathered.reshape(-1, gathered.shape[2])).reshape(gathered.shape))  # fmt: skip
        weights = np.where(found >= 0, np.maximum(cosine, 0) ** alpha, 0).astype(np.float32)
        total = chunk + np.einsum("bk,bkd->bd", weights, gathered)
        norms = np.linalg.norm(total, axis=1, keepdims=True)
        scale = np.divide(np.linalg.norm(chunk, axis=1, keepdims=True), norms,
                          out=np.zeros_like(norms), where=norms > 0)  # fmt: skip
        out[start : start + rows] = total * scale
    return out


@RERANKERS.register("aqe")
class AlphaQueryExpansion(Reranker):
    """Average query expansion, alpha-QE (Radenović et al., TPAMI 2019): a query ``q``
    ``(d,)`` becomes ``q + sum_i w_i g_i`` over its ``k`` nearest gallery items, ``w_i =
    max(cos(q, g_i), 0) ** alpha``, rescaled to ``|q|``, and is searched again. Scores are
    the expanded query's (distances for ``l2``, similarities for ``cosine`` and ``ip``).

    Args:
        k: neighbours averaged into the query (default 2).
        alpha: exponent of the weights; 0 is plain average query expansion (default 3).
    """

    name = "aqe"

    def __init__(self, k: int = 2, alpha: float = 3.0) -> None:
        super().__init__()
        self.k = check_count("k", k)
        self.alpha = check_real("alpha", alpha, 0.0)

    def _fit(self, gallery: Gallery) -> None:
        self._gallery = gallery

    def _rank(self, queries: np.ndarray, k: int, own: np.ndarray | None, scored: bool = True
              ) -> tuple[np.ndarray | None, np.ndarray]:  # fmt: skip
        gallery = self._fitted()
        first = gallery.nearest(queries, self.k, own)
        expanded = with_neighbours(queries, gallery.vectors, first, self.alpha)
        indices = gallery.nearest(expanded, k, own)
        return (gallery.scores(expanded, indices) if scored else None), indices


@RERANKERS.register("dba")
class DatabaseAugmentation(Reranker):
    """Database-side augmentation (Arandjelović & Zisserman, CVPR 2012; weighted as in
    Radenović et al.): each gallery item ``g`` becomes ``g + sum_i w_i g_i`` over its ``k``
    nearest other gallery items, ``w_i = max(cos(g, g_i), 0) ** alpha``, rescaled to
    ``|g|``; queries are searched, as they are, in the augmented gallery (its own faiss
    index, of the gallery's kind). Scores are against the augmented items.

    Args:
        k: neighbours averaged into each gallery item (default 2).
        alpha: exponent of the weights; 0 averages them equally (default 3).
    """

    name = "dba"

    def __init__(self, k: int = 2, alpha: float = 3.0) -> None:
        super().__init__()
        self.k = check_count("k", k)
        self.alpha = check_real("alpha", alpha, 0.0)
        self._augmented: Gallery | None = None

    def _fit(self, gallery: Gallery) -> None:
        items = np.arange(len(gallery))
        neighbours = gallery.nearest(gallery.vectors, self.k, own=items)
        augmented = with_neighbours(gallery.vectors, gallery.vectors, neighbours, self.alpha)
        self._augmented = gallery.over(augmented)
        self._gallery = gallery

    def _rank(self, queries: np.ndarray, k: int, own: np.ndarray | None, scored: bool = True
              ) -> tuple[np.ndarray | None, np.ndarray]:  # fmt: skip
        self._fitted()
        augmented = self._augmented
        indices = augmented.nearest(queries, k, own)
        return (augmented.scores(queries, indices) if scored else None), indices
