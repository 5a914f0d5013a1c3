"""A validation split carved from the training classes (model selection never sees test classes)."""

from __future__ import annotations

import math

import numpy as np

from cdml.data.base import LabelledDataset

VALIDATION_SPLITS = ("random", "contiguous")


def validation_classes(
    labels: np.ndarray, fraction: float = 0.2, seed: int = 0, how: str = "random"
) -> np.ndarray:
    """The class ids (sorted) that :func:`split_validation_classes` holds out of a split of
    ``labels`` ``(n,)``: ``fraction`` of its classes, rounded half up, kept within
    ``1..C-1``; ``how`` is ``"random"`` (a seeded sample of the classes) or ``"contiguous"``
    (the last block of the sorted class ids, cut as the datasets cut their test half from the
    classes in order, so that validation classes may differ in kind from the training ones
    as the unseen classes do)."""
    if how not in VALIDATION_SPLITS:
        raise ValueError(f"how must be one of {', '.join(VALIDATION_SPLITS)}, got {how!r}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie strictly between 0 and 1, got {fraction}")
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError(
            f"dataset must hold at least two classes to split off validation classes, "
            f"got {len(classes)}"
        )
    held_out = min(max(math.floor(fraction * len(classes) + 0.5), 1), len(classes) - 1)
    if how == "contiguous":
        return classes[len(classes) - held_out :]
    return np.sort(np.random.default_rng(seed).permutation(classes)[:held_out])


def split_validation_classes(
    dataset: LabelledDataset, fraction: float = 0.2, seed: int = 0, how: str = "random"
) -> tuple[LabelledDataset, LabelledDataset]:
    """Hold out the :func:`validation_classes` of ``dataset``, with all their images.

    Returns ``(train, validation)``: datasets of the same kind with disjoint classes, each
    relabelled ``0..C'-1`` (``class_names`` keep the original names), items in their
    original order.
    """
    held_out = validation_classes(dataset.labels, fraction, seed, how)
    is_validation = np.isin(dataset.labels, held_out)
    return (
        dataset.subset(np.flatnonzero(~is_validation)),
        dataset.subset(np.flatnonzero(is_validation)),
    )


def cap_per_class(dataset: LabelledDataset, cap: int, seed: int = 0) -> LabelledDataset:
    """At most ``cap`` images of each class of ``dataset`` (a seeded sample, order kept).

    Every class keeps at least ``min(cap, its size)`` images, so the class set is unchanged.
    """
    if cap < 2:
        raise ValueError(f"cap must be at least 2 images per class, got {cap}")
    rng = np.random.default_rng(seed)
    keep = [
        rng.choice(members, cap, replace=False) if len(members) > cap else members
        for members in (np.flatnonzero(dataset.labels == c) for c in range(dataset.num_classes))
    ]
    return dataset.subset(np.sort(np.concatenate(keep)))
