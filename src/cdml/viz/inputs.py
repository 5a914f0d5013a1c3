"""Checks and conversions shared by the plotting functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

ClassNames = Mapping[int, str] | Sequence[str]


def as_embeddings(value: Any, min_rows: int, name: str = "embeddings") -> np.ndarray:
    """``(n, d)`` finite float64 array from an array or tensor with at least ``min_rows`` rows."""
    array = _to_numpy(value, name)
    if array.ndim != 2 or array.shape[0] < min_rows or array.shape[1] < 1:
        raise ValueError(
            f"{name} must be a 2-D array (n, d) with n >= {min_rows} and d >= 1, got shape "
            f"{array.shape}"
        )
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    array = array.astype(np.float64)
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        raise ValueError(f"{name}: row {int(np.argmax(bad))} contains NaN or inf")
    return array


def as_labels(value: Any, n: int, name: str = "labels") -> np.ndarray:
    """``(n,)`` int64 labels."""
    array = _to_numpy(value, name)
    if array.ndim != 1 or len(array) != n:
        raise ValueError(f"{name} must have shape ({n},), one per embedding, got {array.shape}")
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got dtype {array.dtype}")
    return array.astype(np.int64)


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
    if max_points < 1:
        raise ValueError(f"max_points must be positive, got {max_points}")
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def _to_numpy(value: Any, name: str) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch.Tensor
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: not an array ({error})") from None
