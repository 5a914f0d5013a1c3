"""Reconstruction decoder of seed 001: a cluster's centroid feature map -> an image."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ReconstructionDecoder(nn.Module):
    """``(N, C, h, w)`` backbone feature maps -> ``(N, 3, S, S)`` images in ``(0, 1)``.

    Blocks of 3x3 convolution, BatchNorm, ReLU and 2x upsampling take the ``h x w`` map to
    at least ``S x S`` (``ceil(log2(S / min(h, w)))`` blocks, channels halving from
    ``width * 2^(blocks - 1)`` to ``width``); a bilinear resize to exactly ``S x S`` (any
    backbone, any image size), a 3x3 convolution and a sigmoid finish.

    Args:
        in_channels: ``C`` of the backbone's last feature map.
        feature_size: its ``(h, w)`` at the training image size.
        image_size: ``S``.
        out_channels: default 3.
        width: channels of the last block, default 32.
    """

    def __init__(
        self,
        in_channels: int,
        feature_size: tuple[int, int],
        image_size: int,
        out_channels: int = 3,
        width: int = 32,
    ) -> None:
        super().__init__()
        if in_channels < 1 or width < 1 or image_size < 1 or min(feature_size) < 1:
            raise ValueError(
                f"sizes must be positive, got in_channels={in_channels}, width={width}, "
                f"feature_size={feature_size}, image_size={image_size}"
            )
        self.image_size = image_size
        blocks = max(0, math.ceil(math.log2(image_size / min(feature_size))))
        layers: list[nn.Module] = []
        channels = in_channels
        for block in range(blocks):
            out = width * 2 ** (blocks - 1 - block)
            layers += [
                nn.Conv2d(channels, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.Upsample(scale_factor=2, mode="nearest"),
            ]
            channels = out
        self.blocks = nn.Sequential(*layers)
        self.output = nn.Conv2d(channels, out_channels, 3, padding=1)

    def forward(self, maps: Tensor) -> Tensor:
        x = self.blocks(maps)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear")
        return torch.sigmoid(self.output(x))


def centroid_feature_maps(maps: Tensor, assignments: Tensor, num_clusters: int) -> Tensor:
    """Mean feature map of each cluster's members (zeros for an empty cluster),
    differentiable. Shapes: ``maps (N, C, h, w)``, ``assignments (N,)`` in ``[0, K)`` ->
    ``(K, C, h, w)``."""
    if assignments.shape != (len(maps),):
        raise ValueError(f"assignments must have shape ({len(maps)},), got {assignments.shape}")
    sums = maps.new_zeros((num_clusters, *maps.shape[1:])).index_add(0, assignments, maps)
    counts = maps.new_zeros(num_clusters).index_add_(0, assignments, maps.new_ones(len(maps)))
    return sums / counts.clamp(min=1).view(-1, *([1] * (maps.ndim - 1)))
