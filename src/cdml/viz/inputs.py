"""Checks and conversions shared by the plotting functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cdml.checks import check_seed

ClassNames = Mapping[int, str] | Sequence[str]


def as_images(value: Any, n: int, name: str = "images") -> list[np.ndarray]:
    """``n`` uint8 images, each ``(H, W)`` (grey) or ``(H, W, 3)`` (RGB)."""
    if len(value) != n:
        raise ValueError(f"{name} has {len(value)} entries but there are {n} embeddings")
    images = [np.asarray(image) for image in value]
    for i, image in enumerate(images):
        if image.dtype != np.uint8:
            raise ValueError(f"{name}[{i}] must be uint8, got dtype {image.dtype}")
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)) or 0 in image.shape:
            raise ValueError(f"{name}[{i}] must be (H, W) or (H, W, 3), got shape {image.shape}")
    return images


def check_class_names(class_names: ClassNames | None, labels: np.ndarray) -> None:
    """Every label must have a name (``class_names[label]``) when names are given."""
    if class_names is None:
        return
    if isinstance(class_names, Mapping):
        unnamed = [label for label in np.unique(labels).tolist() if label not in class_names]
    else:
        unnamed = [
            label for label in np.unique(labels).tolist() if not 0 <= label < len(class_names)
        ]
    if unnamed:
        raise ValueError(f"class_names has no entry for label(s) {unnamed[:5]}")


def label_name(label: int, class_names: ClassNames | None) -> str:
    return str(label) if class_names is None else str(class_names[label])


def sample_indices(n: int, max_points: int, seed: int) -> np.ndarray:
    """All of ``range(n)`` if ``n <= max_points``, else ``max_points`` sorted indices drawn
    without replacement with ``seed``."""
    check_seed(seed)
    if max_points < 1:
        raise ValueError(f"max_points must be positive, got {max_points}")
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
