"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), sparse, within a shortlist."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from cdml.reranking.base import RERANKERS, Reranker, check_count, check_real
from cdml.reranking.gallery import GATHER_ELEMENTS, Gallery, squared_distances


@RERANKERS.register("kreciprocal")
class KReciprocal(Reranker):
    """k-reciprocal re-ranking (Zhong et al., CVPR 2017), sparse, within a shortlist.

    Squared distances ``d`` (``l2``, or of unit rows for ``cosine``) of each item are divided
    by the largest among its ``max(shortlist, k1 + 1)`` nearest (the original: by the
    largest over all items). ``R(p, k1)`` = the items among ``p``'s ``k1 + 1`` nearest
    (``p`` included) that hold ``p`` among theirs; it is expanded by each ``R(c, round(k1 /
    2))``, ``c`` in it, sharing more than 2/3 of its items with it; ``V_p`` ``(n,)`` puts
    ``exp(-d(p, j))`` on those items, normalised to sum 1, and is averaged over ``p``'s
    ``k2`` nearest (``p`` first). The Jaccard distance ``d_J(p, g) = 1 - sum min(V_p, V_g) /
    sum max(V_p, V_g)`` and the final distance ``(1 - lambda) d_J + lambda d`` re-order
    each query's ``shortlist`` nearest; the items beyond keep their order (their final
    distance takes ``d_J = 1``, so they stay behind). The gallery's sets are computed over
    the gallery: a query outside it is re-ranked as if it alone were added, without
    changing the gallery items' sets (the original computes them over queries and gallery
    together). Scores are the final distances, smallest first. Needs a distance: metric
    ``l2`` or ``cosine``.

    Args:
        k1: neighbours of the k-reciprocal sets (default 20).
        k2: neighbours of the local query expansion (default 6; 1: none).
        lambda_: weight of the original distance in the final one, in [0, 1] (default 0.3);
            ``lambda`` in a spec.
        shortlist: nearest items re-ranked per query (default 100).
    """

    name = "kreciprocal"

    def __init__(self, k1: int = 20, k2: int = 6, lambda_: float = 0.3, shortlist: int = 100
                 ) -> None:  # fmt: skip
        super().__init__()
        self.k1 = check_count("k1", k1)
        self.k2 = check_count("k2", k2)
        self.lambda_ = check_real("lambda", lambda_, 0.0, 1.0)
        self.shortlist = check_count("shortlist", shortlist)
        self.half = int(np.around(self.k1 / 2))  # the original's rounding (half to even)

    def score_name(self, metric: str) -> str:
        return "distance"

    def _fit(self, gallery: Gallery) -> None:
        if gallery.metric == "ip":
            raise ValueError("kreciprocal needs a distance: metric l2 or cosine, not ip")
        n = len(gallery)
        self._depth = min(n, max(self.shortlist, self.k1 + 1, self.k2))
        items = np.arange(n)
        table = gallery.nearest(gallery.vectors, self._depth)
        # Each item first in its own list (an approximate search may miss or misplace it).
        order = np.argsort(table == items[:, None], axis=1, kind="stable")
        table = np.hstack([items[:, None], np.take_along_axis(table, order, axis=1)[:, :-1]])
        distances = squared_distances(gallery.vectors, gallery.vectors, table)
        self._gallery, self._scale = gallery, _row_scale(distances)
        # The squared distance of the last of each item's k1 + 1 (half + 1) nearest, itself
        # included: another item is among them when it is no farther.
        self._radius = _column(distances, self.k1)
        half = slice(0, self.half + 1)
        self._half_sets = _reciprocal(table[:, half], distances[:, half],
                                      _column(distances, self.half))  # fmt: skip
        self._v = self._weights(gallery.vectors, table[:, 1:], distances[:, 1:], items)
        self._v_qe = self._local_expansion(self._v, table[:, 1:])

    def _weights(self, points: np.ndarray, forward: np.ndarray, distances: np.ndarray,
                 own: np.ndarray | None) -> sp.csr_matrix:  # fmt: skip
        """``V`` ``(b, n)`` of ``points`` ``(b, d)`` whose nearest other gallery items are
        ``forward`` ``(b, >= k1)`` at squared ``distances``; ``own`` ``(b,)`` their gallery
        indices, or None for queries outside the gallery (their own weight, exp(0), counts
        in the normalisation only: the gallery's sets know nothing of them)."""
        if not len(points):
            return sp.csr_matrix((0, len(self._gallery)))
        rows = max(1, GATHER_ELEMENTS // (self.k1 * (self.half + 1) * (self.k1 + 1)))
        return sp.vstack([
            self._weights_of(points[i : i + rows], forward[i : i + rows],
                             distances[i : i + rows], None if own is None else own[i : i + rows])
            for i in range(0, len(points), rows)
        ], format="csr")  # fmt: skip

    def _weights_of(self, points: np.ndarray, forward: np.ndarray, distances: np.ndarray,
                    own: np.ndarray | None) -> sp.csr_matrix:  # fmt: skip
        gallery, n, b = self._fitted(), len(self._gallery), len(points)
        reciprocal = _reciprocal(forward[:, : self.k1], distances[:, : self.k1], self._radius)
        own_id = np.full(b, -2) if own is None else own  # -2 matches no gallery item
        members = np.hstack([own_id[:, None], reciprocal])  # R(p, k1), p first
        candidates = self._half_sets[np.maximum(reciprocal, 0)]  # (b, k1, half + 1)
        valid = (candidates >= 0) & (reciprocal >= 0)[:, :, None]
        shared = (candidates[..., None] == members[:, None, None, :]).any(axis=3) & valid
        kept = 3 * shared.sum(axis=2) > 2 * valid.sum(axis=2)  # more than 2/3 shared
        expansion = np.where(kept[:, :, None], candidates, -1).reshape(b, -1)
        items = np.sort(np.hstack([reciprocal, expansion]), axis=1)
        items[:, 1:][items[:, 1:] == items[:, :-1]] = -1  # each item once
        if own is None:
            scale, own_weight = _row_scale(distances), 1.0
        else:
            items = np.hstack([own[:, None], np.where(items == own[:, None], -1, items)])
            scale, own_weight = self._scale[own], 0.0
        weights = np.exp(-squared_distances(points, gallery.vectors, items) / scale[:, None])
        weights = np.where(items >= 0, weights, 0)
        weights /= weights.sum(axis=1, keepdims=True) + own_weight
        keep = items.ravel() >= 0
        rows = np.repeat(np.arange(b), items.shape[1])[keep]
        return sp.csr_matrix((weights.ravel()[keep], (rows, items.ravel()[keep])), shape=(b, n))

    def _local_expansion(self, v: sp.csr_matrix, forward: np.ndarray) -> sp.csr_matrix:
        """``v`` ``(b, n)`` averaged with the gallery's ``V`` of each point's ``k2 - 1``
        nearest other gallery items ``forward`` ``(b, >= k2 - 1)``."""
        if self.k2 == 1:
            return v
        neighbours = forward[:, : self.k2 - 1]
        valid = neighbours >= 0
        rows = np.repeat(np.arange(len(neighbours)), neighbours.shape[1])[valid.ravel()]
        average = sp.csr_matrix(
            (np.full(len(rows), 1 / self.k2), (rows, neighbours[valid])),
            shape=(len(neighbours), len(self._gallery)),
        )
        return (v / self.k2 + average @ self._v).tocsr()

    def _rank(self, queries: np.ndarray, k: int, own: np.ndarray | None, scored: bool = True
              ) -> tuple[np.ndarray | None, np.ndarray]:  # fmt: skip
        gallery = self._fitted()
        shortlist = min(self.shortlist, len(gallery))
        head = max(shortlist, self._depth)  # the items whose distances the re-ranking reads
        found = gallery.nearest(queries, max(k, head), own)
        distances = squared_distances(queries, gallery.vectors, found[:, :head])
        own = np.full(len(queries), -1) if own is None else own
        inside, outside = own >= 0, own < 0
        scale = np.ones(len(queries))
        scale[inside] = self._scale[own[inside]]
        listed, near = found[outside, : self._depth], distances[outside, : self._depth]
        scale[outside] = _row_scale(near)
        v = self._weights(queries[outside], listed, near, None)
        # The queries' rows: the gallery's own for its items, computed for the others.
        v_qe = sp.vstack([self._v_qe[own[inside]], self._local_expansion(v, listed)], "csr")
        v_qe = v_qe[np.argsort(np.concatenate([np.flatnonzero(inside), np.flatnonzero(outside)]))]
        candidates = found[:, :shortlist]
        jaccard = np.ones(distances.shape)  # beyond the shortlist: d_J = 1, the order kept
        jaccard[:, :shortlist] = _jaccard(v_qe, self._v_qe, candidates)
        final = self._final(jaccard, distances, found[:, :head], scale)
        order = np.argsort(final[:, :shortlist], axis=1, kind="stable")
        found[:, :shortlist] = np.take_along_axis(candidates, order, axis=1)
        final[:, :shortlist] = np.take_along_axis(final[:, :shortlist], order, axis=1)
        if not scored:
            return None, found[:, :k]
        if k > head:
            rest = found[:, head:k]
            distances = squared_distances(queries, gallery.vectors, rest)
            final = np.hstack([final, self._final(np.ones(rest.shape), distances, rest, scale)])
        return final[:, :k], found[:, :k]

    def _final(self, jaccard: np.ndarray, distances: np.ndarray, found: np.ndarray,
               scale: np.ndarray) -> np.ndarray:  # fmt: skip
        """``(1 - lambda) d_J + lambda d / scale`` ``(b, m)``, inf for -1 in ``found``."""
        original = np.where(found >= 0, distances, 0) / scale[:, None]
        final = (1 - self.lambda_) * jaccard + self.lambda_ * original
        return np.where(found >= 0, final, np.inf)


def _reciprocal(forward: np.ndarray, distances: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """``forward`` ``(b, m)`` gallery items that hold the item among their nearest (its
    squared distance ``distances`` within their ``radius`` ``(n,)``), -1 elsewhere."""
    inside = (forward >= 0) & (distances <= radius[np.maximum(forward, 0)])
    return np.where(inside, forward, -1)


def _column(values: np.ndarray, column: int) -> np.ndarray:
    """``values[:, column]``, inf where the table is narrower (every item then fits)."""
    return values[:, column] if column < values.shape[1] else np.full(len(values), np.inf)


def _row_scale(distances: np.ndarray) -> np.ndarray:
    """Each row's largest finite squared distance (1 where there is none or it is 0)."""
    largest = np.where(np.isfinite(distances), distances, 0).max(axis=1, initial=0)
    return np.where(largest > 0, largest, 1.0)


def _jaccard(queries: sp.csr_matrix, gallery: sp.csr_matrix, candidates: np.ndarray
             ) -> np.ndarray:  # fmt: skip
    """``(b, s)`` Jaccard distances ``1 - sum min / (2 - sum min)`` of each row of
    ``queries`` ``(b, n)`` to the ``candidates`` ``(b, s)`` rows of ``gallery`` (rows sum to
    1, so ``sum max = 2 - sum min``); 1 for -1."""
    b, s = candidates.shape
    out = np.ones((b, s))
    rows = max(1, (1 << 16) // max(s, 1))
    for start in range(0, b, rows):
        chunk = candidates[start : start + rows]
        valid = chunk.ravel() >= 0
        pairs = np.repeat(np.arange(start, start + len(chunk)), s)[valid]
        shared = np.asarray(
            queries[pairs].minimum(gallery[chunk.ravel()[valid]]).sum(axis=1)
        ).ravel()
        block = np.ones(len(chunk) * s)
        block[valid] = 1 - shared / (2 - shared)
        out[start : start + len(chunk)] = block.reshape(len(chunk), s)
    return out
