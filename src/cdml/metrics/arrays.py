"""Checks of the arrays the metrics take: embeddings ``(n, d)`` and labels ``(n,)``."""

from __future__ import annotations

from typing import Any

import numpy as np


def to_numpy(value: Any, name: str) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor, without importing torch
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: not an array ({error})") from None


def as_embeddings(
    value: Any, name: str = "embeddings", min_rows: int = 1, dtype: Any = np.float32
) -> np.ndarray:
    """``(n, d)`` finite array of ``dtype`` from an array or tensor of real numbers with
    ``n >= min_rows``; ``ValueError`` naming ``name`` otherwise."""
    array = to_numpy(value, name)
    if array.ndim != 2 or array.shape[0] < min_rows or array.shape[1] < 1:
        raise ValueError(
            f"{name} must be a 2-D array (n, d) with at least {min_rows} row(s) "
            f"(n >= {min_rows}) and d >= 1, got shape {array.shape}"
        )
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    ):
        raise ValueError(f"{name} must be real numbers, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=dtype)
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{name}: row {int(np.argmax(bad))} contains NaN or inf ({int(bad.sum())} row(s) "
            f"in all, after conversion to {np.dtype(dtype).name})"
        )
    return array


def as_labels(value: Any, n: int, name: str = "labels") -> np.ndarray:
    """``(n,)`` int64 labels from an array or tensor of integers; ``ValueError`` naming
    ``name`` otherwise."""
    array = to_numpy(value, name)
    if array.ndim != 1 or len(array) != n:
        raise ValueError(
            f"{name} must have shape ({n},) (1-D, one per embedding), got shape {array.shape} "
            f"({len(array) if array.ndim else 0} entries)"
        )
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got dtype {array.dtype}")
    return array.astype(np.int64)
