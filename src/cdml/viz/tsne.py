"""Barnes-Hut t-SNE maps of embeddings, coloured by class, optionally with image thumbnails
(as figures 4-6 of the facility-location paper)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.lines import Line2D
from matplotlib.offsetbox import AnnotationBbox, OffsetImage
from PIL import Image

from cdml.metrics import as_embeddings, as_labels
from cdml.viz.figures import new_figure, save_png
from cdml.viz.inputs import (
    ClassNames,
    as_images,
    check_class_names,
    label_name,
    sample_indices,
)

MIN_POINTS = 4
_MAP_INCHES = 10.0
_DPI = 150
_MAX_LEGEND_CLASSES = 20
_MAX_THUMB_SIZE = 300  # pixels, a fifth of the map
_GOLDEN_RATIO_CONJUGATE = 0.6180339887498949


def tsne_2d(embeddings: Any, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-D Barnes-Hut t-SNE (openTSNE, PCA initialisation) of ``embeddings`` ``(n, d)``, n >= 4.

    Returns ``(n, 2)`` float64. ``perplexity`` is lowered to ``(n - 1) / 3`` for small n.
    """
    from openTSNE import TSNE  # imported here: only plotting needs openTSNE

    points = as_embeddings(embeddings, min_rows=MIN_POINTS, dtype=np.float64)
    if perplexity <= 0:
        raise ValueError(f"perplexity must be positive, got {perplexity}")
    tsne = TSNE(
        n_components=2,
        perplexity=min(perplexity, (len(points) - 1) / 3),
        negative_gradient_method="bh",
        random_state=seed,
        verbose=False,
    )
    return np.asarray(tsne.fit(points), dtype=np.float64)


def class_colors(num_classes: int) -> np.ndarray:
    """``(num_classes, 4)`` RGBA colours: ``tab10``/``tab20`` up to 20 classes, beyond that
    ``turbo`` sampled in golden-ratio steps so that consecutive classes get distant hues."""
    if num_classes <= 10:
        return colormaps["tab10"](np.arange(num_classes))
    if num_classes <= 20:
        return colormaps["tab20"](np.arange(num_classes))
    positions = (np.arange(num_classes) * _GOLDEN_RATIO_CONJUGATE) % 1.0
    return colormaps["turbo"](0.05 + 0.9 * positions)  # the ends of turbo are very dark


def plot_tsne(
    embeddings: Any,
    labels: Any,
    out_path: str | os.PathLike[str],
    images: Any = None,
    class_names: ClassNames | None = None,
    max_points: int = 3000,
    thumb_size: int = 40,
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """Draw the t-SNE map of ``embeddings`` ``(n, d)`` coloured by ``labels`` ``(n,)`` to a PNG.

    Args:
        out_path: PNG written atomically (the map is 1500 pixels wide); returned.
        images: optional ``n`` uint8 images ``(H, W)`` or ``(H, W, 3)``. Thumbnails framed in
            their class colour are laid on a grid over the map, one per occupied cell (a random
            point of the cell), at the cell's centre, so they never overlap.
        class_names: ``class_names[label]`` for the legend (shown up to 20 classes, right of
            the map).
        max_points: larger inputs are subsampled to this many points (seeded, without
            replacement) before t-SNE, which costs about 10 s per 3000 points.
        thumb_size: longer side of a thumbnail in pixels of the PNG, at most 300.
        seed: seed of the subsampling, t-SNE and thumbnail choice.
        title: optional title.
    """
    points = as_embeddings(embeddings, min_rows=MIN_POINTS, dtype=np.float64)
    point_labels = as_labels(labels, len(points))
    pictures = None if images is None else as_images(images, len(points))
    check_class_names(class_names, point_labels)
    if not 1 <= thumb_size <= _MAX_THUMB_SIZE:
        raise ValueError(f"thumb_size must be in [1, {_MAX_THUMB_SIZE}], got {thumb_size}")
    keep = sample_indices(len(points), max_points, seed)
    if len(keep) < MIN_POINTS:
        raise ValueError(f"max_points must be at least {MIN_POINTS}, got {max_points}")
    xy = tsne_2d(points[keep], seed=seed)
    point_labels = point_labels[keep]

    classes, class_index = np.unique(point_labels, return_inverse=True)
    colors = class_colors(len(classes))
    figure = new_figure(_MAP_INCHES, _MAP_INCHES, _DPI)
    axes = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    axes.set_axis_off()
    map_pixels = _MAP_INCHES * _DPI
    # Thumbnails sit on a grid of cells a little larger than themselves, so frames never touch;
    # the window leaves one cell of border so the outer thumbnails stay inside.
    cell_fraction = 1.25 * thumb_size / map_pixels if pictures is not None else 0.0
    lower, span = _square_window(xy, border_fraction=max(cell_fraction, 0.02))
    axes.set_xlim(lower[0], lower[0] + span)
    axes.set_ylim(lower[1], lower[1] + span)
    axes.scatter(
        xy[:, 0],
        xy[:, 1],
        c=colors[class_index],
        s=14 if len(xy) <= 1000 else 6,
        linewidths=0,
        alpha=0.85 if pictures is None else 0.5,
    )
    if pictures is not None:
        for i, position in _one_per_cell(xy, lower, cell_fraction * span, seed):
            thumbnail = OffsetImage(
                _thumbnail(pictures[keep[i]], thumb_size),
                dpi_cor=False,  # one thumbnail pixel per PNG pixel
                cmap="gray",  # for grey images; RGB ones are drawn as they are
                norm=Normalize(0, 255),
            )
            frame = {"edgecolor": colors[class_index[i]], "linewidth": 1.5}
            axes.add_artist(AnnotationBbox(thumbnail, position, pad=0.1, bboxprops=frame))
    if len(classes) <= _MAX_LEGEND_CLASSES:
        handles = [
            Line2D([], [], marker="o", ls="", color=color, label=label_name(label, class_names))
            for label, color in zip(classes.tolist(), colors, strict=True)
        ]
        axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    if title:
        axes.set_title(title, fontsize=14)
    return save_png(figure, out_path)


def _square_window(xy: np.ndarray, border_fraction: float) -> tuple[np.ndarray, float]:
    """Lower-left corner and side of a square window centred on the points, with a border of
    ``border_fraction`` of the side on every edge."""
    low, high = xy.min(axis=0), xy.max(axis=0)
    extent = max(float((high - low).max()), 1e-12)
    span = extent / (1 - 2 * border_fraction)
    return (low + high) / 2 - span / 2, span


def _one_per_cell(
    xy: np.ndarray, lower: np.ndarray, cell: float, seed: int
) -> list[tuple[int, np.ndarray]]:
    """``(index, cell centre)`` for one point drawn at random (seeded) in each occupied square
    cell of side ``cell`` of a grid anchored at ``lower``."""
    cells = np.floor((xy - lower) / cell).astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(xy))
    _, first = np.unique(cells[order], axis=0, return_index=True)
    chosen = np.sort(order[first])
    return [(int(i), lower + (cells[i] + 0.5) * cell) for i in chosen]


def _thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` resized so that its longer side is ``size`` pixels, aspect ratio kept."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    shape = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Nearest neighbour keeps small images (e.g. 8x8 digits) crisp when enlarged.
    resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.NEAREST
    return np.asarray(Image.fromarray(image).resize(shape, resample))
