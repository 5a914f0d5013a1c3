"""The labelled dataset every cdml data source returns."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from torch.utils.data import Dataset


def encode_labels(raw_labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Renumber arbitrary class keys to ``0..C-1`` in sorted key order.

    Returns ``(codes, keys)``: ``codes`` (n,) int64 with ``keys[codes[i]] == raw_labels[i]``,
    ``keys`` (C,) the sorted distinct keys.
    """
    keys, codes = np.unique(np.asarray(raw_labels), return_inverse=True)
    return codes.astype(np.int64).reshape(-1), keys


class LabelledDataset(Dataset, ABC):
    """Map-style dataset of ``(image, label)`` pairs with known labels.

    Attributes:
        labels: (n,) int64 array, class indices in ``0..len(class_names)-1``.
        class_names: one name per class index.
        transform: applied to each image (a PIL image) when not None.
        evaluation: per-item ``(n,)`` arrays that :func:`cdml.metrics.evaluate` takes as
            keywords (``is_query``, ``is_gallery``, ``categories``); empty for the papers'
            protocol, where every item queries all the others.
    """

    def __init__(
        self,
        labels: ArrayLike,
        class_names: Sequence[str],
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"labels must be a 1-D integer array, got {labels.dtype} of shape {labels.shape}"
            )
        class_names = [str(name) for name in class_names]
        if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise ValueError(
                f"labels must lie in 0..{len(class_names) - 1} (one per class name), "
                f"found {labels.min()}..{labels.max()}"
            )
        self.labels = labels.astype(np.int64)
        self.class_names = class_names
        self.transform = transform
        self.evaluation: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self._image(int(index))
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])

    def subset(self, indices: ArrayLike) -> LabelledDataset:
        """The dataset restricted to ``indices``, its classes renumbered ``0..C'-1``.

        Class names are kept, so ``subset.class_names`` names the original classes.
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        codes, kept = encode_labels(self.labels[indices])
        subset = self._take(indices, codes, [self.class_names[k] for k in kept])
        subset.evaluation = {name: values[indices] for name, values in self.evaluation.items()}
        return subset

    @abstractmethod
    def _image(self, index: int) -> Any:
        """The untransformed image at ``index``."""

    @abstractmethod
    def _take(
        self, indices: np.ndarray, labels: np.ndarray, class_names: list[str]
    ) -> LabelledDataset:
        """A dataset of the same kind holding the items at ``indices`` with new labels."""
