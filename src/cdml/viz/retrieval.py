"""Retrieval grid: queries and their nearest neighbours, framed by whether the label matches."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cdml.checks import check_seed
from cdml.metrics import as_embeddings, as_labels, nearest_neighbours
from cdml.metrics.neighbours import without_own
from cdml.viz.figures import new_figure, save_png
from cdml.viz.inputs import (
    ClassNames,
    as_images,
    check_class_names,
    label_name,
)

MATCH_COLOR = "#1a9641"  # green
MISMATCH_COLOR = "#d7191c"  # red
QUERY_COLOR = "#252525"
_CELL_INCHES = 1.5
_DPI = 120
_FRAME_WIDTH = 4.0  # points


def retrieve(embeddings: Any, labels: Any, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` Euclidean neighbours of each query among all items, the query excluded.

    Args:
        embeddings: ``(n, d)``; labels: ``(n,)`` integers; queries: ``(q,)`` item indices.

    Returns:
        ``neighbours`` ``(q, k)`` item indices, nearest first (ties: lower index), and
        ``matches`` ``(q, k)`` bool, True where the neighbour has the query's label.
    """
    points = as_embeddings(embeddings, min_rows=2)
    item_labels = as_labels(labels, len(points))
    query_items = np.asarray(queries)
    if query_items.ndim != 1 or not np.issubdtype(query_items.dtype, np.integer):
        raise ValueError(
            f"queries must be a 1-D array of item indices, got shape {query_items.shape} "
            f"and dtype {query_items.dtype}"
        )
    outside = (query_items < 0) | (query_items >= len(points))
    if outside.any():
        raise ValueError(
            f"queries must be item indices in [0, {len(points)}), got {query_items[outside][0]}"
        )
    if not 1 <= k < len(points):
        raise ValueError(f"k must be in [1, {len(points) - 1}] for {len(points)} items, got {k}")
    ranked = nearest_neighbours(points[query_items], points, k + 1)
    # Drop the query itself (when a tie pushes it out of the k + 1, drop the last item instead).
    neighbours = without_own(ranked, query_items, k)
    return neighbours, item_labels[neighbours] == item_labels[query_items, None]


def plot_retrieval(
    embeddings: Any,
    labels: Any,
    images: Any,
    out_path: str | os.PathLike[str],
    num_queries: int = 8,
    k: int = 5,
    seed: int = 0,
    class_names: ClassNames | None = None,
    queries: Sequence[int] | None = None,
) -> Path:
    """Draw a retrieval grid to a PNG: one row per query, the query then its top-``k``
    neighbours (``retrieve``), each neighbour framed green if it shares the query's label,
    red otherwise; every image captioned with its class.

    Args:
        embeddings: ``(n, d)``; labels: ``(n,)`` integers.
        images: ``n`` uint8 images ``(H, W)`` or ``(H, W, 3)``.
        out_path: PNG written atomically; returned.
        num_queries: queries drawn at random (seeded, without replacement); all items if fewer.
        k: neighbours per query, searched among all ``n`` items.
        class_names: ``class_names[label]`` for the captions (default: the label).
        queries: the query items, in this order, instead of ``num_queries`` random ones.
    """
    points = as_embeddings(embeddings, min_rows=2, dtype=np.float64)
    item_labels = as_labels(labels, len(points))
    pictures = as_images(images, len(points))
    check_class_names(class_names, item_labels)
    if num_queries < 1:
        raise ValueError(f"num_queries must be positive, got {num_queries}")
    if queries is None:
        rng = np.random.default_rng(check_seed(seed))
        size = min(num_queries, len(points))
        queries = np.sort(rng.choice(len(points), size=size, replace=False))
    queries = np.asarray(queries, dtype=np.int64)
    neighbours, matches = retrieve(points, item_labels, queries, k)

    figure = new_figure(_CELL_INCHES * (k + 1.3), _CELL_INCHES * 1.15 * len(queries) + 0.5, _DPI)
    # A narrow empty column separates the query from its neighbours.
    grid = figure.add_gridspec(
        len(queries),
        k + 2,
        width_ratios=[1, 0.15] + [1] * k,
        left=0.02,
        right=0.98,
        bottom=0.02,
        top=1 - 0.5 / figure.get_figheight(),
        hspace=0.3,
        wspace=0.08,
    )
    for row, query in enumerate(queries):
        cells = [(query, QUERY_COLOR)] + [
            (item, MATCH_COLOR if match else MISMATCH_COLOR)
            for item, match in zip(neighbours[row], matches[row], strict=True)
        ]
        for column, (item, color) in zip([0, *range(2, k + 2)], cells, strict=True):
            axes = figure.add_subplot(grid[row, column])
            _draw_framed(axes, pictures[item], color)
            axes.set_xlabel(label_name(item_labels[item], class_names), fontsize=8, labelpad=2)
            if row == 0:
                axes.set_title("query" if column == 0 else f"#{column - 1}", fontsize=10)
    figure.suptitle(
        f"Top-{k} neighbours: green = same class as the query, red = another class",
        fontsize=10,
        y=1 - 0.12 / figure.get_figheight(),
        va="top",
    )
    return save_png(figure, out_path)


def _draw_framed(axes: Any, image: np.ndarray, color: str) -> None:
    axes.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="antialiased")
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_edgecolor(color)
        spine.set_linewidth(_FRAME_WIDTH)
