"""Image pipelines: PIL image (any size, RGB or grayscale) -> normalised (3, S, S) float tensor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torchvision.transforms import v2

if TYPE_CHECKING:
    from cdml.training.config import DataConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The papers resize to 256 and crop 227.
DEFAULT_RESIZE_RATIO = 256 / 227


def build_transforms(
    image_size: int = 227,
    train: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    resize_ratio: float = DEFAULT_RESIZE_RATIO,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    flip: bool = True,
) -> v2.Compose:
    """The train or test pipeline for square ``image_size`` inputs.

    Train: random resized crop to ``image_size`` (a ``crop_scale`` share of the image area,
    default torchvision's 0.08-1, aspect 3/4-4/3), random horizontal flip unless ``flip`` is
    False (where a mirror image is another class, as for characters). Test: resize the
    shorter side to ``round(image_size * resize_ratio)``, centre crop ``image_size``. Both
    convert grayscale to 3 channels first and end with ``(x / 255 - mean) / std`` per channel,
    ``mean`` and ``std`` being the backbone's normalisation (ImageNet's by default).
    Output: float32 tensor (3, image_size, image_size).
    """
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    if resize_ratio < 1:
        raise ValueError(f"resize_ratio must be at least 1 (resize, then crop), got {resize_ratio}")
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values (RGB), got {len(mean)} and {len(std)}")
    if len(crop_scale) != 2 or not 0 < crop_scale[0] <= crop_scale[1] <= 1:
        raise ValueError(
            f"crop_scale must be (low, high) with 0 < low <= high <= 1, got {crop_scale}"
        )
    if train:
        geometry = [v2.RandomResizedCrop(image_size, scale=crop_scale)]
        geometry += [v2.RandomHorizontalFlip()] if flip else []
    else:
        geometry = [v2.Resize(round(image_size * resize_ratio)), v2.CenterCrop(image_size)]
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RGB(),
            *geometry,
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(mean), std=list(std)),
        ]
    )


def transforms_of(config: DataConfig, train: bool) -> v2.Compose:
    """The train or test pipeline of ``config`` (ImageNet normalisation if it names none)."""
    normalisation = {"mean": config.mean, "std": config.std} if config.mean and config.std else {}
    return build_transforms(
        config.image_size,
        train=train,
        resize_ratio=config.resize_ratio,
        crop_scale=tuple(config.crop_scale),
        flip=config.flip is not False,
        **normalisation,
    )
