"""Retrieval and clustering metrics with the zero-shot protocol of the seed papers.

The protocol (METHODS.md section 5):

- Recall@K: Euclidean k-nearest neighbours over the evaluation embeddings, the query itself
  excluded; a query scores 1 when any of its K nearest shares its label.
- NMI: k-means on the embeddings with k = number of distinct labels, every point used, then
  scikit-learn's NMI (arithmetic normalisation) against the labels; AMI, ARI and purity of
  the same clustering beside it, optionally averaged over several k-means seeds.
- MAP@R (Musgrave et al., 2020): R = number of other items with the query's label,
  ``MAP@R = mean_q (1/R) sum_{i<=R} P(i) rel(i)``.

Neighbours and k-means run through faiss (exact flat index; torch for thousands of
neighbours, and on the GPU of CUDA embeddings). Queries are processed in chunks so memory
stays bounded (no n x n matrix).
Neighbours are ranked by distance, ties by the lower gallery index, so results are
deterministic.
"""

from cdml.metrics.arrays import as_embeddings, as_labels
from cdml.metrics.clustering_scores import (
    CLUSTERING_SCORES,
    kmeans,
    kmeans_scores,
    partition_scores,
)
from cdml.metrics.neighbours import METRICS, check_metric, nearest_neighbours
from cdml.metrics.protocol import DEFAULT_KS, ITEM_MARKS, evaluate, per_query_scores

__all__ = [
    "CLUSTERING_SCORES",
    "DEFAULT_KS",
    "ITEM_MARKS",
    "METRICS",
    "as_embeddings",
    "as_labels",
    "check_metric",
    "evaluate",
    "kmeans",
    "kmeans_scores",
    "nearest_neighbours",
    "partition_scores",
    "per_query_scores",
]
