"""Figures of embeddings: t-SNE maps (with thumbnails) and retrieval grids, written as PNG."""

from cdml.viz.retrieval import plot_retrieval, retrieve
from cdml.viz.tsne import class_colors, plot_tsne, tsne_2d

__all__ = ["class_colors", "plot_retrieval", "plot_tsne", "retrieve", "tsne_2d"]
