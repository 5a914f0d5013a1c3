"""Batches for the unsupervised methods: shuffled images, each with the images it is paired
with (itself for a second view, a neighbour, mined positives and negatives), all augmented.

Labels are never read here: :class:`Views` returns images and dataset indices only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from torch.utils.data import Dataset, Sampler

from cdml.data.transforms import seeded_item

# indices (n,) of a batch's images, random generator -> (n, m) indices of their partners
Pairing = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def same_image(indices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each image's partner is itself: its second view is another augmentation of it."""
    return indices[:, None]


class NeighbourPairing:
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


class TuplePairing:
    """Partners ``(positive, negative)``, drawn uniformly from each image's candidates.

    Args:
        positives: ``(n, p)`` candidate positives of every image, ``-1`` for none.
        negatives: ``(n, q)`` candidate negatives, ``-1`` for none.

    An image without a positive candidate is its own positive (another augmentation of it);
    without a negative candidate, a random other image.
    """

    def __init__(self, positives: np.ndarray, negatives: np.ndarray) -> None:
        self.positives = np.asarray(positives, dtype=np.int64)
        self.negatives = np.asarray(negatives, dtype=np.int64)

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
    """Shuffled batches of keys ``(seed, index, *partners)`` for :class:`Views`.

    Every epoch is a fresh permutation of the ``length`` images cut into ``batch_size``
    batches (the last, incomplete one dropped); each image gets its partners from the
    pairing (default :func:`same_image`; :meth:`set_pairing` changes it, e.g. each epoch) and
    a seed for its views' augmentations. Everything depends only on ``(seed, epoch)`` and the
    pairing: call ``set_epoch`` before each epoch; the same epoch replays the same batches, so
    resuming is exact. Under DDP, :class:`cdml.distributed.RankShare` gives each rank its
    share of every batch.

    Args:
        length: number of images.
        batch_size: images per batch.
        seed: seed of the permutations, pairings and augmentations.
    """

    def __init__(self, length: int, batch_size: int, seed: int = 0) -> None:
        if batch_size < 1 or length < batch_size:
            raise ValueError(
                f"batch_size must lie in 1..{length} (the number of images), got {batch_size}"
            )
        self.length = length
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self.pairing: Pairing = same_image

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_pairing(self, pairing: Pairing) -> None:
        self.pairing = pairing

    def __len__(self) -> int:
        return self.length // self.batch_size

    def __iter__(self) -> Iterator[list[tuple[int, ...]]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.length)
        partners = self.pairing(order, rng)
        seeds = rng.integers(0, 2**62, size=self.length)
        keys = np.concatenate([seeds[:, None], order[:, None], partners], 1)
        for step in range(len(self)):
            start = step * self.batch_size
            yield [tuple(key) for key in keys[start : start + self.batch_size].tolist()]


class Views(Dataset):
    """``dataset[(seed, index, *partners)]`` -> ``(views, index)``: ``views`` a tuple of the
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

    def __getitem__(self, key: tuple[int, ...]) -> tuple[tuple[Any, ...], int]:
        seed, index, *partners = key
        images = [index, *partners]
        views = tuple(
            seeded_item(self.dataset, image, seed + j)[0] for j, image in enumerate(images)
        )
        return views, index
