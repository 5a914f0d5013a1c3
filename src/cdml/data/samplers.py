"""Class-balanced batch samplers for the supervised losses.

The facility-location loss draws batches of ``n`` examples from ``C`` classes (C/n in
{0.25, 0.5, 0.75}); Group Loss uses classes x samples per class (e.g. 6 x 9). The
unsupervised methods need no labels: see ``cdml.data.unlabelled``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from numpy.typing import ArrayLike
from torch.utils.data import Sampler


class ClassBalancedBatchSampler(Sampler[list[int]]):
    """Batches of ``batch_size`` indices from exactly ``classes_per_batch`` distinct classes.

    Each chosen class gives ``k = batch_size / classes_per_batch`` of its indices, drawn
    without replacement, or with replacement when it has fewer than ``k``; a batch lists them
    class by class. When ``classes_per_batch`` does not divide ``batch_size`` (seed 000's
    C/m = 0.75 for Stanford Online Products: 96 classes in 128), the first
    ``batch_size mod classes_per_batch`` classes of a batch give ``floor(k) + 1`` images and
    the others ``floor(k)``. Classes are visited in rounds, each round a fresh random permutation of
    all ``C`` classes cut into consecutive groups (a class left over at the end of a round
    is moved to the end of the next one, so no batch holds a class twice).

    An epoch has ``max(ceil(n / batch_size), ceil(C / classes_per_batch))`` batches, so it
    covers every class at least once. The batches depend only on ``(seed, epoch)``: call
    ``set_epoch`` before each epoch (as with ``DistributedSampler``) for a new order; the
    same epoch number replays the same batches, which makes resuming exact.

    Args:
        labels: (n,) class label of every item of the dataset.
        batch_size: indices per batch.
        classes_per_batch: distinct classes per batch; at most ``batch_size`` and the
            number of classes.
        seed: base seed of the random order.
    """

    def __init__(
        self, labels: ArrayLike, batch_size: int, classes_per_batch: int, seed: int = 0
    ) -> None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0:
            raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
        if batch_size < 1 or classes_per_batch < 1:
            raise ValueError(
                f"batch_size and classes_per_batch must be positive, got {batch_size} "
                f"and {classes_per_batch}"
            )
        if classes_per_batch > batch_size:
            raise ValueError(
                f"classes_per_batch ({classes_per_batch}) exceeds batch_size ({batch_size})"
            )
        _, class_of = np.unique(labels, return_inverse=True)
        counts = np.bincount(class_of)
        if classes_per_batch > len(counts):
            raise ValueError(
                f"classes_per_batch ({classes_per_batch}) exceeds the number of classes "
                f"in labels ({len(counts)})"
            )
        by_class = np.argsort(class_of, kind="stable")
        self._members = np.split(by_class, np.cumsum(counts)[:-1])
        self.num_items = labels.size
        self.batch_size = batch_size
        self.classes_per_batch = classes_per_batch
        share, extra = divmod(batch_size, classes_per_batch)
        # Images each class position of a batch gives.
        self.samples_per_class = np.full(classes_per_batch, share)
        self.samples_per_class[:extra] += 1
        self.seed = seed
        self.epoch = 0

    @property
    def num_classes(self) -> int:
        return len(self._members)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return max(
            math.ceil(self.num_items / self.batch_size),
            math.ceil(self.num_classes / self.classes_per_batch),
        )

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        for classes in self._class_groups(rng):
            draws = []
            for c, k in zip(classes, self.samples_per_class, strict=True):
                members = self._members[c]
                draws.append(rng.choice(members, k, replace=len(members) < k))
            yield np.concatenate(draws).tolist()

    def _class_groups(self, rng: np.random.Generator) -> Iterator[np.ndarray]:
        """``len(self)`` groups of ``classes_per_batch`` distinct class indices."""
        size = self.classes_per_batch
        queue = np.empty(0, dtype=np.int64)
        for _ in range(len(self)):
            if len(queue) < size:
                fresh = rng.permutation(self.num_classes)
                # Classes still queued from the last round take their turn at this round's end.
                queued = np.isin(fresh, queue)
                queue = np.concatenate([queue, fresh[~queued], fresh[queued]])
            yield queue[:size]
            queue = queue[size:]
