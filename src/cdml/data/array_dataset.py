"""Small image sets held in memory as uint8 arrays."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image

from cdml.data.base import LabelledDataset


class ArrayImageDataset(LabelledDataset):
    """In-memory images returned as PIL images, so the file datasets' transforms apply.

    Args:
        images: (n, H, W) grayscale or (n, H, W, 3) RGB uint8 array.
        labels: (n,) class indices in ``0..len(class_names)-1``.
        class_names: one name per class index.
        transform: applied to each PIL image (mode ``"L"`` or ``"RGB"``).
    """

    def __init__(
        self,
        images: ArrayLike,
        labels: ArrayLike,
        class_names: Sequence[str],
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        super().__init__(labels, class_names, transform)
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise ValueError(f"images must be uint8, got {images.dtype}")
        if not (images.ndim == 3 or (images.ndim == 4 and images.shape[3] == 3)):
            raise ValueError(f"images must be (n, H, W) or (n, H, W, 3), got {images.shape}")
        if len(images) != len(self.labels):
            raise ValueError(f"got {len(images)} images but {len(self.labels)} labels")
        self.images = images

    def _image(self, index: int) -> Image.Image:
        return Image.fromarray(self.images[index])

    def _take(
        self, indices: np.ndarray, labels: np.ndarray, class_names: list[str]
    ) -> ArrayImageDataset:
        return ArrayImageDataset(self.images[indices], labels, class_names, self.transform)
