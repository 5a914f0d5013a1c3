"""The data side of a run: zero-shot splits, a validation split, the method's batches."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
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
from cdml.data.loading import loader_settings
from cdml.data.seeding import SeededBatches, SeededItems
from cdml.data.unlabelled import Pairing, UnlabelledBatchSampler, Views
from cdml.distributed import RankShare, ShardSampler
from cdml.losses import VIEWS, Method, MetricLoss, method_class
from cdml.training.config import EVAL_BATCH_SIZE, DataConfig, RunConfig
from cdml.training.resolve import Facts, resolve


def load_data(
    config: RunConfig, mean: Sequence[float], std: Sequence[float], test: bool = True
) -> tuple[RunConfig, MetricLearningDataModule]:
    """Load the zero-shot halves of ``config.data``'s dataset (the training half alone
    unless ``test``) and return the complete config (:func:`~cdml.training.resolve.resolve`
    with the data's facts and the weights' ``mean`` and ``std``) and the data module of that
    config."""
    data = config.data
    options = {"skip_bad": data.skip_bad}
    train = load_dataset(data.dataset, data.root, "train", **options)
    # An unlabelled image folder has no test split, a CSV may list no test rows: such runs
    # are not tested.
    test = (
        load_dataset(data.dataset, data.root, "test", **options)
        if test and dataset_info(data.dataset).labelled
        else None
    )
    config = resolve(config, Facts(train.labels, tuple(mean), tuple(std)))
    module = MetricLearningDataModule(
        config.data,
        train,
        test if test is not None and len(test) else None,
        seed=config.trainer.seed,
        method=method_class(config.loss.name),
    )
    return config, module


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
      No validation classes are carved out unless ``val_fraction`` asks (that reads the
      labels that choose them; the training images' labels still reach no method).

    ``config`` is complete (:func:`load_data` resolves it); ``train`` and ``test`` are the
    dataset's halves as loaded (``test`` None: not tested). The test split is the unseen
    half; :meth:`pairing_dataloader` gives the training images
    without augmentation, in order.
    """

    def __init__(
        self,
        config: DataConfig,
        train: LabelledDataset,
        test: LabelledDataset | None,
        seed: int = 0,
        method: type[Method] = MetricLoss,
    ) -> None:
        super().__init__()
        self.config = config
        self.seed = seed
        self.batch_kind = method.batch_kind
        self.sampler: UnlabelledBatchSampler | None = None
        self.pairing: Pairing | None = None
        self.train_transform = transforms_of(config, train=True)
        self.test_transform = transforms_of(config, train=False)
        train.transform = self.train_transform
        if config.val_fraction:
            self.train_set, self.val_set = split_validation_classes(
                train, config.val_fraction, seed=seed, how=config.val_split
            )
            self.val_set.transform = self.test_transform
        else:
            self.train_set, self.val_set = train, None
        self.test_set = test
        if test is not None:
            test.transform = self.test_transform
        if config.max_eval_per_class:
            if self.test_set is not None:
                self.test_set = cap_per_class(self.test_set, config.max_eval_per_class, seed)
            if self.val_set is not None:
                self.val_set = cap_per_class(self.val_set, config.max_eval_per_class, seed)

    def describe(self) -> str:
        """One line on the resolved batches and the validation split."""
        config, train = self.config, self.train_set
        validation = (
            f"{self.val_set.num_classes} held-out training classes ({config.val_split})"
            if self.val_set is not None
            else "none (the last epoch is kept)"
        )
        if self.batch_kind == VIEWS:
            labels = "only to hold out validation classes" if self.val_set else "not read"
            return (
                f"{config.dataset}: {len(train):,} training images, labels {labels}; batches "
                f"of {config.batch_size} images; validation: {validation}"
            )
        return (
            f"{config.dataset}: {len(train):,} training images of {train.num_classes} "
            f"classes; batches of {config.batch_size} from {config.classes_per_batch} "
            f"classes; validation: {validation}"
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
            batch_sampler=self._seeded(batches),
            **self.loader_settings(),
        )

    def _views_dataloader(self) -> DataLoader:
        images = len(self.train_set)
        if self.trainer is not None:
            images = self.trainer.lightning_module.method.images_per_epoch(images)
        self.sampler = UnlabelledBatchSampler(
            len(self.train_set), self.config.batch_size, seed=self.seed, images_per_epoch=images
        )
        if self.pairing is not None:
            self.sampler.set_pairing(self.pairing)
        return DataLoader(
            Views(self.train_set),
            batch_sampler=self._seeded(self.sampler),
            **self.loader_settings(),
        )

    def set_pairing(self, pairing: Pairing) -> None:
        """The partners of the coming epoch's images, for the views sampler (now, or when the
        training loader makes it)."""
        self.pairing = pairing
        if self.sampler is not None:
            self.sampler.set_pairing(pairing)

    def _seeded(self, batches: Sampler[list]) -> SeededBatches:
        """This rank's share of ``batches`` with their augmentation seeds, from the epoch the
        run is at: with loading workers a loader draws its first batches when it starts,
        before Lightning sets the epoch (a resumed run's are its own epoch's)."""
        seeded = SeededBatches(self._rank_share(batches), self.seed)
        # The epoch Lightning gives set_epoch: a checkpoint written at an epoch's end counts it
        # as processed, not yet completed.
        seeded.set_epoch(
            self.trainer.fit_loop.epoch_progress.current.processed if self.trainer else 0
        )
        return seeded

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
            dataset, batch_size=EVAL_BATCH_SIZE, sampler=sampler, **self.loader_settings()
        )

    def loader_settings(self) -> dict[str, Any]:
        """The loaders' workers (``data.num_workers``, else from the machine, shared among
        the training processes), pinned memory when training on a CUDA device, and a
        generator of their own: starting a loader draws its workers' seed from it, not from
        the global random state, so training does not depend on the workers or on where a run
        was resumed (the images' augmentation is seeded by :class:`SeededBatches`)."""
        trainer = self.trainer
        processes = trainer.world_size if trainer else 1
        pinned = trainer is not None and trainer.strategy.root_device.type == "cuda"
        generator = torch.Generator().manual_seed(self.seed)
        return {
            **loader_settings(self.config.num_workers, processes, pinned),
            "generator": generator,
        }
