"""A whole training run: build, train with model selection on validation classes, test."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, RichProgressBar
from lightning.pytorch.utilities import rank_zero_only

from cdml.console import console
from cdml.data import dataset_info
from cdml.io import remove_temporaries, write_json, write_text
from cdml.losses import RunInfo, create_method
from cdml.models import EmbeddingModel, build_model
from cdml.training.averaging import weight_averaging
from cdml.training.callbacks import UNTRAINED_EPOCH, AtomicCheckpointIO, BestCheckpoint
from cdml.training.config import RunConfig
from cdml.training.datamodule import load_data
from cdml.training.loggers import create_loggers
from cdml.training.module import MetricLearningModule
from cdml.training.resolve import resolve
from cdml.training.results import METRICS_FILE, UNTRAINED_FILE, read_untrained
from cdml.training.run_folder import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    check_resumable,
    prepare_output,
    run_lock,
)
from cdml.training.settings import lightning_arguments


def build_module(
    config: RunConfig, model: EmbeddingModel, num_train_classes: int
) -> MetricLearningModule:
    """The LightningModule of ``config`` around ``model``: the method of ``config.loss``
    (given what it needs from the run) and the optimiser settings."""
    data = config.data
    run = RunInfo(
        model=model,
        embedding_size=config.model.embedding_size,
        num_classes=num_train_classes,
        image_size=data.image_size,
        mean=tuple(data.mean) if data.mean else None,
        std=tuple(data.std) if data.std else None,
    )
    method = create_method(config.loss.name, run, **config.loss.params)
    return MetricLearningModule(
        model,
        method,
        config.optim,
        ks=tuple(config.eval.ks or dataset_info(config.data.dataset).ks),
        nmi=config.eval.nmi,
        hparams=config.to_dict(),
    )


def quiet_lightning() -> None:
    """Keep Lightning's start-up notices (accelerators, tips, restores) off the console."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*Total length of .* across ranks is zero.*")
    # Frozen BatchNorm layers are in eval mode on purpose.
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
    # Expected when resuming: the run's own checkpoints are there.
    warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")


def train(
    config: RunConfig,
    resume: bool = False,
    baseline: bool = True,
    test: bool = True,
    callbacks: Sequence[Callback] = (),
) -> dict[str, Any]:
    """Train as ``config`` says, write the run folder, return its ``metrics.json`` content.

    The folder ``config.out`` receives ``config.yaml``, ``checkpoints/{best,last}.ckpt``,
    ``logs/version_N/`` (CSV and TensorBoard, one version per start of the run) and
    ``metrics.json``: ``{"test": ..., "val": ..., "untrained": ..., "untrained_val": ...,
    "epochs": N, "best_epoch": E, "monitor": M, "checkpoint": ...}``. The best checkpoint is
    chosen by ``config.trainer.monitor`` (default validation Recall@1, on held-out training
    classes; higher is better) among the epochs and the untrained
    model (pretrained backbone, random head; ``best_epoch`` -1), which is validated first;
    without a validation split the last one is used. ``baseline`` also tests the untrained
    model; without ``test`` the test split is not even loaded (a tuner's runs, which must
    never read a test label). ``callbacks`` join the trainer's (e.g. a tuner's pruning).
    The run's report (``trainer.report``) is its caller's to write:
    :func:`cdml.report.report_run`.
    """
    config = resolve(config)
    out = Path(config.out)
    # Under DDP every process runs this function; only rank 0 checks and writes the folder.
    is_zero = rank_zero_only.rank == 0
    if is_zero:
        resume_from = prepare_output(out, resume)
    else:
        last = out / "checkpoints" / LAST_CHECKPOINT
        resume_from = last if resume and last.is_file() else None
    with run_lock(out) if is_zero else contextlib.nullcontext():
        if is_zero:  # what a process killed while writing a checkpoint left
            remove_temporaries(out / "checkpoints", ".ckpt")
        return _train(config, out, resume, resume_from, baseline, is_zero, test, callbacks)


def _train(
    config: RunConfig, out: Path, resume: bool, resume_from: Path | None, baseline: bool,
    is_zero: bool, test: bool, extra_callbacks: Sequence[Callback],
) -> dict[str, Any]:  # fmt: skip
    quiet_lightning()
    L.seed_everything(config.trainer.seed, workers=True, verbose=False)

    model = build_model(config.model)
    # The weights' input normalisation is recorded, so the run folder describes itself.
    mean, std = model.data_config["mean"], model.data_config["std"]
    config, data = load_data(config, mean, std, test=test)
    module = build_module(config, model, data.num_train_classes)
    untrained_file = out / UNTRAINED_FILE
    if resume:  # read-only: every process refuses, so that none waits for the others
        check_resumable(config, out, resume_from)
        if resume_from is not None:
            read_untrained(untrained_file)  # unreadable: said now, not after an epoch
    if is_zero:
        console.print(data.describe())
        write_text(out / "config.yaml", config.to_yaml())

    has_val = data.val_set is not None
    checkpoints = out / "checkpoints"
    # The best epoch by the monitored validation metric (the untrained model counts as one),
    # and every epoch's end for --resume.
    monitor = config.trainer.monitor
    best_checkpoint = BestCheckpoint(checkpoints / BEST_CHECKPOINT, monitor=monitor)
    last_checkpoint = ModelCheckpoint(
        dirpath=checkpoints,
        filename=LAST_CHECKPOINT.removesuffix(".ckpt"),
        save_top_k=1,
        enable_version_counter=False,
    )
    callbacks = [best_checkpoint, last_checkpoint] if has_val else [last_checkpoint]
    callbacks += [*weight_averaging(config.trainer), *extra_callbacks]
    trainer = _trainer(config, out, callbacks=callbacks)

    has_test = data.test_set is not None
    if not has_test and test and is_zero:
        console.print(
            f"{config.data.dataset} has no labelled test split (no test images): the run reports "
            "no test metrics (evaluate its checkpoint with cdml evaluate --checkpoint on a "
            "labelled dataset)"
        )
    if resume_from is None:
        untrained: dict[str, Any] = {}
        if has_val:
            # The untrained model is the first point of the validation curves and the score
            # every epoch must beat to become the best checkpoint.
            trainer.validate(module, datamodule=data, verbose=False)
            untrained["val"] = dict(module.last_eval_metrics)
            best_checkpoint.save_untrained(trainer, untrained["val"][monitor.removeprefix("val/")])
        if baseline and has_test and is_zero:
            untrained["test"] = _test(config, module, data, out)
        if is_zero:
            write_json(untrained_file, untrained)
    trainer.fit(module, datamodule=data, ckpt_path=resume_from, weights_only=True)

    untrained = read_untrained(untrained_file)
    # Validation on which the untrained model is already perfect cannot rank the epochs.
    saturated = has_val and saturated_validation(untrained.get("val", {}))
    selects = has_val and not saturated
    selected = checkpoints / (BEST_CHECKPOINT if selects else LAST_CHECKPOINT)
    results: dict[str, Any] = {}
    if has_test:
        trainer.test(module, datamodule=data, ckpt_path=selected, weights_only=True, verbose=False)
        results["test"] = dict(module.last_eval_metrics)
    if has_val:
        trainer.validate(
            module, datamodule=data, ckpt_path=selected, weights_only=True, verbose=False
        )
        results["val"] = dict(module.last_eval_metrics)
    if "test" in untrained:
        results["untrained"] = untrained["test"]
    if "val" in untrained:
        results["untrained_val"] = untrained["val"]
    results["epochs"] = trainer.current_epoch
    results["checkpoint"] = os.path.relpath(selected, out)
    if saturated and is_zero:
        console.print(
            "[bold]The untrained model is already perfect on the validation classes[/] "
            "(Recall@1 and MAP@R 100 %): they cannot rank the epochs, so the last epoch is "
            f"kept ({selected}); hold out more or harder classes (data.val_fraction)"
        )
    if selects:
        results["best_epoch"] = best_checkpoint.best_epoch
        results["monitor"] = monitor
        if best_checkpoint.best_epoch == UNTRAINED_EPOCH and is_zero:
            console.print(
                f"[bold]No epoch beat the untrained model on the validation classes[/] "
                f"({monitor} {100 * best_checkpoint.best_score:.2f} %): {selected} holds the "
                "untrained model; try lower learning rates or frozen BatchNorm statistics"
            )
    if trainer.is_global_zero:
        write_json(out / METRICS_FILE, results)
    return results


def saturated_validation(metrics: dict[str, float]) -> bool:
    """Whether validation ``metrics`` leave no room to improve: Recall@1 and MAP@R of 1."""
    return all(metrics.get(name, 0.0) >= 1 - 1e-9 for name in ("recall@1", "map@r"))


def _test(
    config: RunConfig, module: MetricLearningModule, data: Any, out: Path
) -> dict[str, float]:
    """Test metrics of ``module`` as it is now, with a throw-away trainer that logs nothing."""
    shown = config.trainer.progress_bar
    trainer = L.Trainer(
        accelerator=config.trainer.accelerator,
        devices=1,
        precision=config.trainer.precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=shown,
        callbacks=[RichProgressBar()] if shown else [],
        enable_model_summary=False,
        default_root_dir=out,
    )
    trainer.test(module, datamodule=data, verbose=False)
    return dict(module.last_eval_metrics)


def _trainer(config: RunConfig, out: Path, callbacks: list[Any]) -> L.Trainer:
    t = config.trainer
    # Each start of the run (first, then every --resume) logs to its own version folder, so
    # resuming never overwrites the logs of the epochs before the interruption.
    version = f"version_{len(list((out / 'logs').glob('version_*')))}"
    if t.progress_bar:
        callbacks = [*callbacks, RichProgressBar()]
    return L.Trainer(
        **lightning_arguments(t),
        callbacks=callbacks,
        logger=create_loggers(t.loggers, out, version),
        enable_model_summary=False,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        default_root_dir=out,
        plugins=[AtomicCheckpointIO()],
    )
