"""Checks of the arguments that several entry points share, with messages naming them."""

from __future__ import annotations

from typing import Any

import numpy as np

MIN_IMAGE_SIZE = 16  # smaller inputs vanish in the backbones' downsampling (stride 32)
MAX_SEED = 2**32 - 1  # numpy's and scikit-learn's seeds


def check_seed(seed: Any, name: str = "seed") -> int:
    """``seed`` if it is an integer in ``0..2**32 - 1``, else ``ValueError`` naming ``name``."""
    if (
        isinstance(seed, bool)
        or not isinstance(seed, int | np.integer)
        or not (0 <= seed <= MAX_SEED)
    ):
        raise ValueError(f"{name} must be an integer in 0..{MAX_SEED}, got {seed!r}")
    return int(seed)


def check_image_size(size: Any, name: str = "image_size") -> int:
    """``size`` if it is an integer of at least :data:`MIN_IMAGE_SIZE`, else ``ValueError``
    naming ``name``."""
    if isinstance(size, bool) or not isinstance(size, int) or size < MIN_IMAGE_SIZE:
        raise ValueError(f"{name} must be an integer of at least {MIN_IMAGE_SIZE}, got {size!r}")
    return size
