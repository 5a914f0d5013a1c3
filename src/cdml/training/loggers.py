"""Experiment trackers of a run: Lightning's own loggers, chosen by name."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from lightning.pytorch.loggers import Logger


def _csv(out: Path, version: str) -> Logger:
    from lightning.pytorch.loggers import CSVLogger

    return CSVLogger(out, name="logs", version=version)


def _tensorboard(out: Path, version: str) -> Logger:
    from lightning.pytorch.loggers import TensorBoardLogger

    return TensorBoardLogger(out, name="logs", version=version, default_hp_metric=False)


def _wandb(out: Path, version: str) -> Logger:
    from lightning.pytorch.loggers import WandbLogger

    # Online or offline as W&B's own settings say (WANDB_MODE=offline, wandb login).
    return WandbLogger(save_dir=str(out), project="cdml", name=f"{out.name}-{version}")


def _mlflow(out: Path, version: str) -> Logger:
    from lightning.pytorch.loggers import MLFlowLogger

    # MLFLOW_TRACKING_URI names a server or store; without it, an SQLite store in the run
    # folder (MLflow 3 no longer takes new runs in a plain file store).
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(out / 'mlflow.db').resolve()}"
    return MLFlowLogger(experiment_name="cdml", run_name=f"{out.name}-{version}",
                        tracking_uri=uri)  # fmt: skip


# name -> (the package it needs, the logger of a run folder and version)
LOGGERS: dict[str, tuple[str | None, Callable[[Path, str], Logger]]] = {
    "csv": (None, _csv),
    "tensorboard": ("tensorboard", _tensorboard),
    "wandb": ("wandb", _wandb),
    "mlflow": ("mlflow", _mlflow),
}


def check_loggers(names: Sequence[str]) -> None:
    """``ValueError`` naming ``trainer.loggers`` for an unknown name or a missing package."""
    for name in names:
        if name not in LOGGERS:
            raise ValueError(
                f"trainer.loggers: unknown logger {name!r} (one of {', '.join(LOGGERS)})"
            )
        package = LOGGERS[name][0]
        if package and importlib.util.find_spec(package) is None:
            raise ValueError(
                f"trainer.loggers: {name} needs the package {package} (pip install it)"
            )
        default_store = name == "mlflow" and not os.environ.get("MLFLOW_TRACKING_URI")
        if default_store and importlib.util.find_spec("sqlalchemy") is None:
            raise ValueError(
                "trainer.loggers: mlflow's default store (mlflow.db in the run folder) needs "
                "the full mlflow package (sqlalchemy); pip install mlflow, or set "
                "MLFLOW_TRACKING_URI"
            )


def create_loggers(names: Sequence[str], out: Path, version: str) -> list[Logger]:
    """The loggers ``names`` (of :data:`LOGGERS`) of the run folder ``out``, start ``version``."""
    check_loggers(names)
    return [LOGGERS[name][1](out, version) for name in names]
