"""Input validation and dtype handling shared by every loss."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._host import reads_are_free


def check_hyperparameter(
    name: str, value: float, minimum: float | None = None, strict: bool = False
) -> float:
    """``value`` as a float, or ``ValueError`` naming ``name`` if it is not finite or is below
    ``minimum`` (at or below it with ``strict``)."""
    low_ok = minimum is None or (value > minimum if strict else value >= minimum)
    if not (math.isfinite(value) and low_ok):
        bound = "" if minimum is None else f" and {'>' if strict else '>='} {minimum:g}"
        raise ValueError(f"{name} must be finite{bound}, got {value}")
    return float(value)


def prepare_inputs(
    embeddings: Tensor, labels: Tensor, move_labels: bool = True
) -> tuple[Tensor, Tensor]:
    """Check a labelled batch and bring it to the dtype the losses compute in.

    Args:
        embeddings: ``(n, d)`` floating-point tensor, ``n >= 2``; finite (checked where
            reading it costs no device synchronisation, see :func:`reads_are_free`).
        labels: ``(n,)`` integer tensor.
        move_labels: bring the labels to the embeddings' device (else they stay where given).

    Returns:
        The embeddings as float64 if they are float64, else as float32 (so half precision and
        autocast inputs are computed in float32), and the labels as int64 on the embeddings'
        device.

    Raises:
        ValueError: naming the offending argument.
    """
    if not isinstance(embeddings, Tensor):
        raise ValueError(f"embeddings must be a torch.Tensor, got {type(embeddings).__name__}")
    if not isinstance(labels, Tensor):
        raise ValueError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must have shape (n, d), got {tuple(embeddings.shape)}")
    if not embeddings.is_floating_point():
        raise ValueError(f"embeddings must be floating point, got {embeddings.dtype}")
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (n,), got {tuple(labels.shape)}")
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    n, d = embeddings.shape
    if len(labels) != n:
        raise ValueError(f"embeddings has {n} rows but labels has {len(labels)} entries")
    if n < 2:
        raise ValueError(f"embeddings must hold at least two samples, got {n}")
    if d == 0:
        raise ValueError("embeddings must have at least one dimension, got d = 0")
    if reads_are_free(embeddings) and not torch.isfinite(embeddings).all():
        raise ValueError("embeddings contain NaN or inf")
    dtype = torch.float64 if embeddings.dtype == torch.float64 else torch.float32
    device = embeddings.device if move_labels else labels.device
    return embeddings.to(dtype), labels.to(device=device, dtype=torch.int64, non_blocking=True)


def full_precision(*tensors: Tensor) -> tuple[Tensor, ...]:
    """The floating-point ``tensors`` in float64 if the first is float64, else in float32
    (half precision and autocast outputs are computed in float32); others unchanged. Use
    inside ``torch.autocast(..., enabled=False)``, as :func:`no_autocast` gives."""
    dtype = torch.float64 if tensors[0].dtype == torch.float64 else torch.float32
    return tuple(t.to(dtype) if t.is_floating_point() else t for t in tensors)


def no_autocast(tensor: Tensor) -> torch.autocast:
    """A context disabling autocast on ``tensor``'s device, so a loss computes in full
    precision under mixed-precision training."""
    return torch.autocast(device_type=tensor.device.type, enabled=False)
