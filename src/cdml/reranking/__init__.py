"""Re-ranking of retrieval results: average query expansion (alpha-QE), database-side
augmentation (DBA) and k-reciprocal re-ranking (METHODS.md, "Re-ranking").

A re-ranker is created from a spec (:func:`create_reranker`: ``"aqe"``,
``"dba:k=2,alpha=3"``, ``"kreciprocal:k1=20,k2=6,lambda=0.3"``), fitted once to a gallery
(:meth:`Reranker.fit`, a :class:`cdml.retrieval.GalleryIndex`) and then searched as the index
is (:meth:`Reranker.search`). :func:`cdml.metrics.evaluate` ranks with one through
:meth:`Reranker.neighbour_chunks`. Every ranking is of the gallery's metric (``l2``,
``cosine``, ``ip``; k-reciprocal needs a distance: ``l2`` or ``cosine``); nothing builds an
``n x n`` matrix.
"""

from cdml.reranking.base import RERANKERS, Reranker, create_reranker
from cdml.reranking.expansion import AlphaQueryExpansion, DatabaseAugmentation
from cdml.reranking.kreciprocal import KReciprocal

__all__ = [
    "RERANKERS",
    "AlphaQueryExpansion",
    "DatabaseAugmentation",
    "KReciprocal",
    "Reranker",
    "create_reranker",
]
