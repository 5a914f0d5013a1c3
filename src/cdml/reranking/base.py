"""What every re-ranker is: fitted once to a gallery, searched as the index is, ranking
the neighbours of :func:`cdml.metrics.evaluate`; and the registry its spec names."""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from cdml.metrics.arrays import as_embeddings
from cdml.metrics.neighbours import check_metric, score_name, unit_rows
from cdml.registry import Registry
from cdml.reranking.gallery import Gallery

if TYPE_CHECKING:
    from cdml.retrieval import GalleryIndex

# Entries of the (queries x neighbours) tables held at once, as the metrics bound theirs.
_CHUNK_ELEMENTS = 1 << 22


class Reranker(ABC):
    """A re-ranking of a gallery's nearest neighbours.

    ``fit(gallery)`` once, then ``search(queries, k)`` as :meth:`GalleryIndex.search`.
    Subclasses take their hyper-parameters in the constructor and implement ``_fit`` and
    ``_rank``.
    """

    name: ClassVar[str]

    def __init__(self) -> None:
        self._gallery: Gallery | None = None

    def fit(self, gallery: GalleryIndex) -> Reranker:
        """Precompute what the re-ranking needs from ``gallery``'s vectors (read back from
        its faiss index; an IVF index gets a direct map for that). Returns ``self``."""
        if gallery.index is None or len(gallery) == 0:
            raise ValueError("the index is empty: add embeddings first")
        if gallery.meta.get("shards"):
            raise ValueError("re-ranking reads one index's vectors, not a sharded index's")
        self._fit(Gallery.indexed(gallery.index, gallery.metric))
        return self

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Scores ``(q, k)`` float32 and gallery indices ``(q, k)`` int64 of each query's
        ``k`` best items after re-ranking, best first (``-1`` padding), as
        :meth:`GalleryIndex.search` returns them (see each re-ranker for its scores)."""
        gallery = self._fitted()
        queries = as_embeddings(queries, "queries")
        if queries.shape[1] != gallery.vectors.shape[1]:
            raise ValueError(
                f"queries must have shape (n, {gallery.vectors.shape[1]}), got {queries.shape}"
            )
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        scores, indices = self._rank(gallery.prepared(queries), int(k), None)
        return scores.astype(np.float32), indices

    def neighbour_chunks(
        self,
        queries: np.ndarray,
        reference: np.ndarray,
        depth: int,
        own: np.ndarray | None,
        metric: str,
        device: torch.device,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """:func:`cdml.metrics.evaluate`'s ranking: fitted to ``reference`` ``(m, d)`` (exact
        search by ``metric``), yields ``(start, indices (rows, depth))`` for consecutive
        chunks of ``queries`` ``(q, d)``; ``own`` ``(q,)`` is each query's index in
        ``reference`` (-1: none), or None, never returned."""
        check_metric(metric)
        vectors = unit_rows(reference) if metric == "cosine" else reference
        gallery = Gallery.exact(vectors, metric, device)
        self._fit(gallery)
        queries = gallery.prepared(queries)
        rows = max(1, _CHUNK_ELEMENTS // max(depth, getattr(self, "shortlist", 1)))
        for start in range(0, len(queries), rows):
            mine = None if own is None else own[start : start + rows]
            yield start, self._rank(queries[start : start + rows], depth, mine, False)[1]

    def score_name(self, metric: str) -> str:
        """What :meth:`search`'s scores are for a gallery of ``metric``: ``"distance"``
        (smallest first) or ``"similarity"`` (largest first)."""
        return score_name(metric)

    def _fitted(self) -> Gallery:
        if self._gallery is None:
            raise ValueError(f"{self.name}: call fit(gallery) before search")
        return self._gallery

    @abstractmethod
    def _fit(self, gallery: Gallery) -> None:
        """Precompute from ``gallery``; keep it as ``self._gallery``."""

    @abstractmethod
    def _rank(self, queries: np.ndarray, k: int, own: np.ndarray | None, scored: bool = True
              ) -> tuple[np.ndarray | None, np.ndarray]:  # fmt: skip
        """``(scores, indices)`` ``(q, k)`` of prepared ``queries`` (scores None unless
        ``scored``); ``own`` as in :meth:`neighbour_chunks`."""

    def __repr__(self) -> str:
        values = ", ".join(f"{_spec_name(n)}={getattr(self, n)}" for n in _parameters(type(self)))
        return f"{self.name}({values})"


RERANKERS: Registry[type[Reranker]] = Registry(
    "re-ranker", setting="rerank", hint="or none (no re-ranking)"
)


def check_count(name: str, value: Any, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
        raise ValueError(f"{name} must be an integer of at least {least}, got {value!r}")
    return int(value)


def check_real(name: str, value: Any, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        bounds = f"between {low} and {high}" if high < math.inf else f"at least {low}"
        raise ValueError(f"{name} must be a number {bounds}, got {value!r}")
    return float(value)


def _spec_name(parameter: str) -> str:
    return parameter.rstrip("_")


def _parameters(kind: type[Reranker]) -> dict[str, inspect.Parameter]:
    """The constructor's hyper-parameters, by name."""
    parameters = inspect.signature(kind.__init__).parameters
    return {name: p for name, p in parameters.items() if name != "self"}


def create_reranker(spec: str | Reranker | None) -> Reranker | None:
    """The re-ranker of ``spec``: None or ``"none"`` (no re-ranking: None), a
    :class:`Reranker` (itself), or a name of :data:`RERANKERS` with optional parameters,
    ``"aqe"``, ``"aqe:k=2,alpha=3"``, ``"kreciprocal:k1=20,k2=6,lambda=0.3"`` (numbers only).
    ``ValueError`` naming the spec for an unknown name or parameter, or a bad value."""
    if spec is None or isinstance(spec, Reranker):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"rerank must be a spec such as 'aqe:k=2', got {spec!r}")
    name, _, text = spec.partition(":")
    name = name.strip()
    if name == "none" and not text.strip():
        return None
    if name not in RERANKERS:
        raise ValueError(f"rerank {spec!r}: {RERANKERS.unknown(name).removeprefix('rerank: ')}")
    kind = RERANKERS[name]
    accepted = {_spec_name(p): p for p in _parameters(kind)}
    values: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = (part.strip() for part in item.partition("="))
        if key not in accepted:
            raise ValueError(
                f"rerank {spec!r}: unknown parameter {key!r} of {name}; accepted: "
                f"{', '.join(accepted)}"
            )
        if not sep or key in values:
            raise ValueError(f"rerank {spec!r}: expected {name}:name=value,..., got {item!r}")
        values[key] = _number(value, _parameters(kind)[accepted[key]].default, spec, key)
    try:
        return kind(**{accepted[key]: value for key, value in values.items()})
    except ValueError as error:
        raise ValueError(f"rerank {spec!r}: {error}") from None


def _number(text: str, default: Any, spec: str, key: str) -> int | float:
    """``text`` read as the parameter's type (that of its ``default``): digits for an
    integer, a finite decimal number for a real."""
    try:
        value: int | float = int(text) if isinstance(default, int) else float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        kind = "an integer" if isinstance(default, int) else "a finite number"
        raise ValueError(f"rerank {spec!r}: {key} must be {kind}, got {text!r}")
    return value
