"""One resolution step, :func:`resolve`: the user's config, the method it names and the facts
of its data and weights give the complete config that a run's ``config.yaml`` records.

Configs are frozen: :func:`resolve` returns a new one, and nothing downstream writes into it.
Called without facts it resolves what the names decide and runs every check that needs no
data, so that a bad setting is refused before any work; called again with the facts (once
the data and the weights are loaded) it completes the config.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from cdml.training.config import EVAL_BATCH_SIZE, DataConfig, RunConfig
from cdml.training.settings import check_declared, described, flags

# The data's defaults, resolved from its sizes.
DEFAULT_BATCH_SIZE = 128
DEFAULT_VAL_FRACTION = 0.2
MIN_VAL_CLASSES = 4  # fewer validation classes cannot rank models (Recall@1 near 1.0)
# A batch's float32 images, and at least as much again for the first layer's activations:
# a lower bound of what a step needs, so a refusal is certain, never a guess.
MIN_BYTES_PER_INPUT_VALUE = 2 * 4


@dataclass(frozen=True)
class Facts:
    """What the defaults depend on beyond the config's names.

    ``train_labels``: ``(n,)`` class ids of the dataset's training half, before validation
    classes are held out; ``mean``, ``std``: the backbone weights' input normalisation
    (None: not known yet, ``data.mean`` and ``data.std`` stay as they are).
    """

    train_labels: np.ndarray
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


def resolve(config: RunConfig, facts: Facts | None = None) -> RunConfig:
    """The complete config of ``config``; a setting given is kept, or refused naming it (and
    its flag) when the method, this machine or the data cannot honour it.

    Always: the settings whose default follows from the method or the dataset's name
    (``model.embedding_size``, ``model.normalize``, ``optim.loss_lr``, ``data.flip``, no
    validation classes for the unsupervised methods unless given), then every check that
    needs no data.
    With ``facts``: ``data.val_fraction`` (0.2 when that holds out at least 4 classes, else
    0), ``data.batch_size`` and ``data.classes_per_batch`` for the training classes left
    after it, and ``data.mean`` / ``data.std`` (the weights' own). Resolving a resolved
    config returns it unchanged.
    """
    from cdml.data import dataset_info
    from cdml.losses import method_class

    try:
        method = method_class(config.loss.name)
    except ValueError as error:
        raise ValueError(f"{described('loss.name', RunConfig)}: {error}") from None
    try:
        info = dataset_info(config.data.dataset)
    except ValueError as error:
        raise ValueError(f"{described('data.dataset', RunConfig)}: {error}") from None
    config = _by_name(config, method, info)
    check_ranges(config)
    if facts is None:
        return config
    data = config.data
    if data.val_fraction is None:
        held_out = round(DEFAULT_VAL_FRACTION * len(np.unique(facts.train_labels)))
        fraction = DEFAULT_VAL_FRACTION if held_out >= MIN_VAL_CLASSES else 0.0
        data = replace(data, val_fraction=fraction)
    images, classes = _training_sizes(data, facts.train_labels, config.trainer.seed)
    data = _batches(data, images, classes, method, held_out=data.val_fraction > 0)
    if facts.mean is not None and facts.std is not None:
        data = replace(data, mean=data.mean or list(facts.mean), std=data.std or list(facts.std))
    return replace(config, data=data)


def _by_name(config: RunConfig, method: Any, info: Any) -> RunConfig:
    """``config`` with the defaults that the method and the dataset's name decide."""
    from cdml.losses import VIEWS

    m, o, d = config.model, config.optim, config.data
    if method.batch_kind == VIEWS and d.val_fraction is None:
        # Holding out classes reads the training labels: an unsupervised run does only when
        # asked (model selection on labelled classes, as cdml tune does).
        d = replace(d, val_fraction=0.0)
    return replace(
        config,
        model=replace(
            m,
            normalize=method.normalize_embeddings if m.normalize is None else m.normalize,
            embedding_size=(
                method.default_embedding_size if m.embedding_size is None else m.embedding_size
            ),
        ),
        optim=replace(o, loss_lr=method.default_loss_lr if o.loss_lr is None else o.loss_lr),
        data=replace(d, flip=not info.mirror_sensitive if d.flip is None else d.flip),
    )


def _training_sizes(data: DataConfig, labels: np.ndarray, seed: int) -> tuple[int, int]:
    """``(images, classes)`` of the training split ``labels`` once ``data.val_fraction`` of
    its classes is held out (the classes :class:`MetricLearningDataModule` holds out)."""
    from cdml.data import validation_classes

    classes = np.unique(labels)
    if not data.val_fraction:
        return len(labels), len(classes)
    held_out = validation_classes(labels, data.val_fraction, seed, data.val_split)
    if len(held_out) < 2:
        raise ValueError(
            f"data.val_fraction {data.val_fraction} holds out {len(held_out)} of the "
            f"{len(classes)} training classes of {data.dataset}: one class cannot rank models "
            "(its Recall@1 is 1.0 whatever the training did); hold out at least 2, or set 0"
        )
    kept = ~np.isin(labels, held_out)
    return int(kept.sum()), len(classes) - len(held_out)


def _batches(
    config: DataConfig, images: int, classes: int, method: Any, held_out: bool
) -> DataConfig:
    """``config`` with ``batch_size`` and ``classes_per_batch`` resolved for a training split
    of ``images`` images of ``classes`` classes (after holding out validation classes, when
    ``held_out``) and ``method``; the values given are checked against it."""
    from cdml.losses import VIEWS

    batch = described("data.batch_size", RunConfig)
    views = method.batch_kind == VIEWS
    if config.batch_size is None:
        default = DEFAULT_BATCH_SIZE // 2 if views else DEFAULT_BATCH_SIZE
        config = replace(config, batch_size=min(default, images))
    if config.batch_size > images:
        raise ValueError(
            f"{batch} is {config.batch_size:,}, but the training "
            f"split of {config.dataset} holds {images:,} images; give at most {images:,}"
        )
    # The unsupervised methods' batches hold two views (or three images) of each image.
    step_images = max(config.batch_size * (3 if views else 1), EVAL_BATCH_SIZE)
    check_batch_fits(step_images, config.image_size)
    if views:  # batches of unlabelled images: no classes to balance
        return config
    if config.batch_size < 2:
        raise ValueError(f"{batch} must be at least 2, got {config.batch_size}")
    if config.classes_per_batch is None:
        share = max(config.batch_size // method.images_per_class, 2)
        config = replace(config, classes_per_batch=min(share, classes, config.batch_size))
    if config.classes_per_batch > classes:
        after = " after holding out validation classes" if held_out else ""
        raise ValueError(
            f"{described('data.classes_per_batch', RunConfig)} is {config.classes_per_batch}, "
            f"but the training split of {config.dataset} holds {classes} classes{after}; "
            f"give at most {classes}, or leave it out to have it chosen"
        )
    if config.classes_per_batch > config.batch_size:
        raise ValueError(
            f"{_valued('data.classes_per_batch', config.classes_per_batch)} exceeds "
            f"{_valued('data.batch_size', config.batch_size)}"
        )
    return config


def _valued(key: str, value: Any) -> str:
    """``data.batch_size (--batch-size, 3)``: a setting, its flag and its value."""
    flag = flags(RunConfig).get(key)
    return f"{key} ({flag}, {value})" if flag else f"{key} ({value})"


def check_batch_fits(batch_size: int, image_size: int) -> None:
    """``ValueError`` when ``batch_size`` images of ``image_size`` pixels squared cannot fit
    in this machine's memory even at :data:`MIN_BYTES_PER_INPUT_VALUE` bytes per input
    value."""
    needed = batch_size * 3 * image_size**2 * MIN_BYTES_PER_INPUT_VALUE
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > memory:
        settings = [described(k, RunConfig) for k in ("data.batch_size", "data.image_size")]
        raise ValueError(
            f"{settings[0]} with {settings[1]}: a batch of {batch_size} images of "
            f"{image_size} x {image_size} pixels needs at least {needed / 2**30:,.0f} GiB, and "
            f"this machine has {memory / 2**30:,.0f} GiB; use smaller images or batches"
        )


def runs_on_cpu(accelerator: str) -> bool:
    """Whether a run of ``trainer.accelerator`` runs on the CPU here."""
    if accelerator == "cpu":
        return True
    if accelerator != "auto":
        return False
    import torch

    return not (torch.cuda.is_available() or torch.backends.mps.is_available())


def check_ranges(config: RunConfig) -> None:
    """``ValueError`` naming the first setting out of its declared range (and its flag), or
    the first combination of settings this machine cannot run, so that a bad value is
    reported before any data is read or any training starts."""
    check_declared(config)
    d, t = config.data, config.trainer

    def bad(key: str, wanted: str) -> ValueError:
        value = getattr(t, key.partition(".")[2])
        return ValueError(f"{described(key, type(config))} must be {wanted}, got {value!r}")

    # The smallest batch at this size (the data's size gives the full check, when loaded).
    check_batch_fits(max(d.batch_size or 2, 2), d.image_size)
    if runs_on_cpu(t.accelerator):
        if str(t.devices).strip() == "-1":
            raise bad(
                "trainer.devices",
                "a number of processes on the CPU (-1 means every GPU, "
                "and this run has none), e.g. 2 with --strategy ddp",
            )
        if t.precision.startswith("16"):
            raise bad(
                "trainer.precision",
                "32-true, bf16-mixed or bf16-true on the CPU (16-bit "
                "floats need a GPU; Lightning would run bf16 instead)",
            )
    if t.num_nodes > 1:
        from cdml.distributed import launched_on_nodes

        if not launched_on_nodes():
            raise bad(
                "trainer.num_nodes",
                "1 without a launcher that starts the run on every "
                "node (srun, torchrun, or NODE_RANK, MASTER_ADDR and MASTER_PORT set); "
                "without one the run would wait for nodes forever",
            )
    if t.accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise bad("trainer.accelerator", "'cpu' or 'auto' here: no CUDA device")
    if t.ema_decay is not None and t.backbone_interpolation is not None:
        raise bad("trainer.backbone_interpolation", "null with trainer.ema_decay (one or other)")
    from cdml.training.loggers import check_loggers

    check_loggers(t.loggers)
