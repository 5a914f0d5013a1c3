"""Batches for the unsupervised methods: shuffled images, each with the images it is paired
with (itself for a second view, a neighbour, mined positives and negatives), all augmented.

Labels are never read here: :class:`Views` returns images and dataset indices only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import Dataset, Sampler

from cdml.data.seeding import seeded_item


class Pairing:
    """Chooses the partners of a batch's images: ``pairing(indices (n,), rng)`` -> ``(n, m)``
    indices of their partners. :attr:`images` is the pool an epoch draws its images from
    (``None``: every image)."""

    images: np.ndarray | None = None

    def __call__(self, indices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


class SameImage(Pairing):
    """Each image's partner is itself: its second view is another augmentation of it."""

    def __call__(self, indices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return indices[:, None]


same_image = SameImage()


class NeighbourPairing(Pairing):
    """Partner = the image itself, or with probability ``prob`` its nearest neighbour (seed
    001's released pairing).

    Args:
        neighbours: ``(n,)`` index of every image's nearest neighbour.
        prob: probability of the neighbour, default 0.5.
    """

    def __init__(self, neighbours: np.ndarray, prob: float = 0.5) -> None:
        if not 0 <= prob <= 1:
            raise ValueError(f"prob must lie in [0, 1], got {prob}")
        self.neighbours = np.asarray(neighbours, dtype=np.int64)
        self.prob = prob

    def __call__(self, indices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        swap = rng.random(len(indices)) < self.prob
        return np.where(swap, self.neighbours[indices], indices)[:, None]


class TuplePairing(Pairing):
    """Partners ``(positive, negative)``, drawn uniformly from each image's candidates.

    Args:
        positives: ``(n, p)`` candidate positives of every image, ``-1`` for none.
        negatives: ``(n, q)`` candidate negatives, ``-1`` for none.
        images: the anchors, the images an epoch draws (default every image).

    An image without a positive candidate is its own positive (another augmentation of it);
    without a negative candidate, a random other image.
    """

    def __init__(
        self, positives: np.ndarray, negatives: np.ndarray, images: np.ndarray | None = None
    ) -> None:
        self.positives = np.asarray(positives, dtype=np.int64)
        self.negatives = np.asarray(negatives, dtype=np.int64)
        self.images = None if images is None else np.asarray(images, dtype=np.int64)

    def __call__(self, indices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = len(self.positives)
        positive = _pick(self.positives[indices], rng, fallback=indices)
        others = (indices + rng.integers(1, n, size=len(indices))) % n
        negative = _pick(self.negatives[indices], rng, fallback=others)
        return np.stack([positive, negative], 1)


def _pick(candidates: np.ndarray, rng: np.random.Generator, fallback: np.ndarray) -> np.ndarray:
    """One valid (>= 0) entry per row at random; ``fallback`` for rows without one."""
    valid = candidates >= 0
    scores = np.where(valid, rng.random(candidates.shape), -1.0)
    chosen = candidates[np.arange(len(candidates)), scores.argmax(1)]
    return np.where(valid.any(1), chosen, fallback)


class UnlabelledBatchSampler(Sampler[list[tuple[int, ...]]]):
    """Shuffled batches of keys ``(index, *partners)`` for :class:`Views` (wrapped in
    :class:`cdml.data.seeding.SeededBatches`, which gives each its augmentation seed).

    Every epoch draws ``images_per_epoch`` images (default all ``length``) in random order
    from the pairing's pool (:attr:`Pairing.images`, e.g. MOM's anchors; default all) and
    cuts them into ``batch_size`` batches (the last, incomplete one dropped); each image gets
    its partners from the pairing (default :data:`same_image`). Everything depends only on
    ``(seed, epoch)`` and the pairing: call ``set_epoch`` before each epoch; the same epoch
    replays the same batches, so resuming is exact. Under DDP,
    :class:`cdml.distributed.RankShare` gives each rank its share of every batch.

    Args:
        length: number of images.
        batch_size: images per batch.
        seed: seed of the orders and pairings.
        images_per_epoch: images drawn per epoch, at most ``length`` (default all).
    """

    def __init__(
        self, length: int, batch_size: int, seed: int = 0, images_per_epoch: int | None = None
    ) -> None:
        images_per_epoch = length if images_per_epoch is None else images_per_epoch
        if not 1 <= images_per_epoch <= length:
            raise ValueError(
                f"images_per_epoch must lie in 1..{length} (the number of images), got "
                f"{images_per_epoch}"
            )
        if not 1 <= batch_size <= images_per_epoch:
            raise ValueError(
                f"batch_size must lie in 1..{images_per_epoch} (the images of an epoch), got "
                f"{batch_size}"
            )
        self.length = length
        self.batch_size = batch_size
        self.seed = seed
        self.images_per_epoch = images_per_epoch
        self.epoch = 0
        self.set_pairing(same_image)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_pairing(self, pairing: Pairing) -> None:
        """Partners from ``pairing``; epochs draw from its pool of images."""
        pool = np.arange(self.length) if pairing.images is None else pairing.images
        if len(pool) < self.images_per_epoch:
            raise ValueError(
                f"the pool of {len(pool)} images is smaller than an epoch "
                f"({self.images_per_epoch} images)"
            )
        self.pairing, self.pool = pairing, pool

    def __len__(self) -> int:
        return self.images_per_epoch // self.batch_size

    def __iter__(self) -> Iterator[list[tuple[int, ...]]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = self.pool[rng.permutation(len(self.pool))[: self.images_per_epoch]]
        keys = np.concatenate([order[:, None], self.pairing(order, rng)], 1)
        for step in range(len(self)):
            start = step * self.batch_size
            yield [tuple(key) for key in keys[start : start + self.batch_size].tolist()]


class Views(Dataset):
    """``views[((index, *partners), seed)]`` -> ``(views, index)``: ``views`` a tuple of the
    augmented images ``index, *partners`` (view ``j`` seeded from ``seed + j``). The
    dataset's labels are not read.

    Args:
        dataset: a dataset of ``(image, label)`` whose ``transform`` is the random training
            augmentation.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[tuple[int, ...], int]) -> tuple[tuple[Any, ...], int]:
        images, seed = key
        views = tuple(
            seeded_item(self.dataset, image, seed + j)[0] for j, image in enumerate(images)
        )
        return views, images[0]
