"""Reproducible augmentation: every item of a training batch carries its own seed.

The seed of an item depends only on (run seed, epoch, step, slot in the global batch), so a
resumed run, and any number of ranks, draw exactly the augmentations of one uninterrupted
process. Labelled batches and unlabelled views are seeded the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler


def augmentation_seed(seed: int, epoch: int, step: int, slot: int) -> int:
    """The seed (63 bits) of the item in ``slot`` of the global batch ``step`` of ``epoch``."""
    digest = hashlib.blake2b(repr((seed, epoch, step, slot)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def seeded_item(dataset: Any, index: int, seed: int) -> Any:
    """``dataset[index]`` with the global torch generator seeded by ``seed`` for its random
    transform (and restored afterwards): the same ``(index, seed)`` gives the same item in any
    process."""
    with torch.random.fork_rng(devices=[]):
        # The CPU generator only: torch.manual_seed also queues a seeding of CUDA, which
        # costs a recorded stack per call (half of the views' loading time).
        torch.default_generator.manual_seed(seed)
        return dataset[index]


class SeededBatches(Sampler[list[tuple[Any, int]]]):
    """Every key of every batch of ``batches`` paired with its :func:`augmentation_seed`:
    batches of ``(key, seed)``.

    ``batches`` may be a :class:`cdml.distributed.RankShare` (its ``rank`` and
    ``local_batch_size`` place this rank's share in the global batch). Lightning calls
    ``set_epoch`` before every epoch (through :attr:`sampler`); it reaches ``batches``.

    Args:
        batches: a batch sampler with ``set_epoch``; its keys are dataset indices or tuples.
        seed: the run's seed.
    """

    def __init__(self, batches: Sampler[list], seed: int) -> None:
        self.batches = batches
        self.seed = seed
        self.epoch = 0

    @property
    def sampler(self) -> SeededBatches:
        # Lightning calls ``set_epoch`` on ``loader.batch_sampler.sampler`` before every epoch.
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[tuple[Any, int]]]:
        offset = getattr(self.batches, "rank", 0) * getattr(self.batches, "local_batch_size", 0)
        for step, batch in enumerate(self.batches):
            yield [
                (key, augmentation_seed(self.seed, self.epoch, step, offset + slot))
                for slot, key in enumerate(batch)
            ]


class SeededItems(Dataset):
    """``items[(index, seed)]``: ``dataset[index]`` with its random transform seeded."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        return seeded_item(self.dataset, index, seed)
