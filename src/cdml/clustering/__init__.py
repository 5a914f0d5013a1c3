"""Cluster embeddings: spectral clustering of the nearest-neighbour graph, k-means or
facility-location medoids, and an estimate of the number of groups.

``cluster(embeddings, k)`` returns each item's cluster, each cluster's exemplar (a real item:
the medoid, or the member nearest the cluster's centroid) and each item's distance to it
(the medoid) or to the centroid. ``k="auto"`` estimates the number of groups from the
eigenvalues of the nearest-neighbour graph of a sample (:func:`estimate_num_clusters`).

``write_clusters`` writes one to a folder (:mod:`cdml.clustering.outputs`).
"""

from cdml.clustering.methods import (
    CLUSTER_METHODS,
    Clustering,
    cluster,
    estimate_num_clusters,
    kmeans_plus_plus,
    neighbour_graph,
    spectral_decomposition,
    spectral_embedding,
)
from cdml.clustering.outputs import (
    check_clusters_output,
    cluster_to_folder,
    is_clustering,
    write_clusters,
)

__all__ = [
    "CLUSTER_METHODS",
    "Clustering",
    "check_clusters_output",
    "cluster",
    "cluster_to_folder",
    "estimate_num_clusters",
    "is_clustering",
    "kmeans_plus_plus",
    "neighbour_graph",
    "spectral_decomposition",
    "spectral_embedding",
    "write_clusters",
]
