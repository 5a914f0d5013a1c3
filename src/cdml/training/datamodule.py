"""The data side of a run: zero-shot splits, a validation split, the method's batches."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from cdml.data import (
    ClassBalancedBatchSampler,
    LabelledDataset,
    cap_per_class,
    dataset_info,
    load_dataset,
    split_validation_classes,
    transforms_of,
)
from cdml.data.seeding import SeededBatches, SeededItems
from cdml.data.unlabelled import UnlabelledBatchSampler, Views
from cdml.distributed import RankShare, ShardSampler
from cdml.losses import VIEWS, Method, MetricLoss
from cdml.training.config import EVAL_BATCH_SIZE, DataConfig, resolve_batches, resolve_validation


class MetricLearningDataModule(L.LightningDataModule):
    """Train / validation / test loaders of one dataset's zero-shot halves, with the training
    batches of ``method``'s ``batch_kind``.

    - :data:`~cdml.losses.LABELLED`: the validation split holds out ``val_fraction`` of the
      *training* classes; batches come from a class-balanced sampler (split over ranks under
      DDP so that the ranks' shares form one global class-balanced batch), and every training
      image's augmentation is seeded by (seed, epoch, step, slot), so a resumed run draws
      exactly the batches an uninterrupted one would have.
    - :data:`~cdml.losses.VIEWS`: shuffled batches of :class:`Views` (two views of each image,
      or anchor / positive / negative images) that carry no label, seeded the same way;
      :attr:`sampler` takes the method's pairing, and an epoch draws as many images as the
      trained method's ``images_per_epoch`` says (all but for MOM's bounded anchors).
      No validation classes are carved out (that would read the training labels).

    The test split is the unseen half; :meth:`pairing_dataloader` gives the training images
    without augmentation, in order.
    """

    def __init__(
        self, config: DataConfig, seed: int = 0, method: type[Method] = MetricLoss
    ) -> None:
        super().__init__()
        self.config = config
        self.seed = seed
        self.batch_kind = method.batch_kind
        self.sampler: UnlabelledBatchSampler | None = None
        self.train_transform = transforms_of(config, train=True)
        self.test_transform = transforms_of(config, train=False)
        self._options: dict[str, Any] = {"skip_bad": config.skip_bad}
        full_train = self._load("train", self.train_transform)
        config = resolve_validation(config, full_train.num_classes, method)
        if config.val_fraction > 0:
            self.train_set, self.val_set = split_validation_classes(
                full_train, config.val_fraction, seed=seed
            )
            if self.val_set.num_classes < 2:
                raise ValueError(
                    f"data.val_fraction {config.val_fraction} holds out "
                    f"{self.val_set.num_classes} of the {full_train.num_classes} training "
                    f"classes of {config.dataset}: one class cannot rank models (its Recall@1 "
                    "is 1.0 whatever the training did); hold out at least 2, or set 0"
                )
            self.val_set.transform = self.test_transform
        else:
            self.train_set, self.val_set = full_train, None
        # An unlabelled image folder has no test split, a CSV may list no test rows: such
        # runs are not tested.
        self.test_set = (
            None
            if not dataset_info(config.dataset).labelled
            else self._load("test", self.test_transform)
        )
        if self.test_set is not None and len(self.test_set) == 0:
            self.test_set = None
        if config.max_eval_per_class:
            if self.test_set is not None:
                self.test_set = cap_per_class(self.test_set, config.max_eval_per_class, seed)
            if self.val_set is not None:
                self.val_set = cap_per_class(self.val_set, config.max_eval_per_class, seed)
        self.config = resolve_batches(
            config,
            len(self.train_set),
            self.train_set.num_classes,
            method,
            held_out=self.val_set is not None,
        )

    def describe(self) -> str:
        """One line on the resolved batches and the validation split."""
        config, train = self.config, self.train_set
        if self.batch_kind == VIEWS:
            return (
                f"{config.dataset}: {len(train):,} training images, labels not read; batches "
                f"of {config.batch_size} images; validation: none (the last epoch is kept)"
            )
        validation = (
            f"{self.val_set.num_classes} held-out training classes"
            if self.val_set is not None
            else "none (the last epoch is kept)"
        )
        return (
            f"{config.dataset}: {len(train):,} training images of {train.num_classes} "
            f"classes; batches of {config.batch_size} from {config.classes_per_batch} "
            f"classes; validation: {validation}"
        )

    def _load(self, split: str, transform: Any) -> LabelledDataset:
        return load_dataset(
            self.config.dataset, self.config.root, split, transform=transform, **self._options
        )

    @property
    def num_train_classes(self) -> int:
        return self.train_set.num_classes

    def train_dataloader(self) -> DataLoader:
        if self.batch_kind == VIEWS:
            return self._views_dataloader()
        batches = ClassBalancedBatchSampler(
            self.train_set.labels,
            self.config.batch_size,
            self.config.classes_per_batch,
            seed=self.seed,
        )
        return DataLoader(
            SeededItems(self.train_set),
            batch_sampler=SeededBatches(self._rank_share(batches), self.seed),
            num_workers=self.config.num_workers,
            persistent_workers=self.config.num_workers > 0,
        )

    def _views_dataloader(self) -> DataLoader:
        images = len(self.train_set)
        if self.trainer is not None:
            images = self.trainer.lightning_module.method.images_per_epoch(images)
        self.sampler = UnlabelledBatchSampler(
            len(self.train_set), self.config.batch_size, seed=self.seed, images_per_epoch=images
        )
        return DataLoader(
            Views(self.train_set),
            batch_sampler=SeededBatches(self._rank_share(self.sampler), self.seed),
            num_workers=self.config.num_workers,
        )

    def _rank_share(self, batches: Sampler[list]) -> Sampler[list]:
        """Under DDP, this rank's share of every global batch of ``batches``."""
        world_size = self.trainer.world_size if self.trainer else 1
        if world_size == 1:
            return batches
        return RankShare(batches, world_size, self.trainer.global_rank)

    def pairing_dataloader(self, indices: Sequence[int] | None = None) -> DataLoader:
        """The training images (those at ``indices``, default all), test transform, in order
        (sharded under DDP)."""
        images = copy.copy(self.train_set)
        images.transform = self.test_transform
        return self._eval_loader(images if indices is None else Subset(images, indices))

    def val_dataloader(self) -> DataLoader | list:
        return self._eval_loader(self.val_set) if self.val_set is not None else []

    def test_dataloader(self) -> DataLoader | list:
        return self._eval_loader(self.test_set) if self.test_set is not None else []

    def _eval_loader(self, dataset: Dataset) -> DataLoader:
        # Under DDP each rank embeds its own shard; the module gathers them back in order.
        world_size = self.trainer.world_size if self.trainer else 1
        sampler = (
            ShardSampler(len(dataset), world_size, self.trainer.global_rank)
            if world_size > 1
            else None
        )
        return DataLoader(
            dataset,
            batch_size=EVAL_BATCH_SIZE,
            sampler=sampler,
            num_workers=self.config.num_workers,
        )
