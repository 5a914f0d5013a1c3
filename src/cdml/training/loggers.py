"""Experiment trackers of a run: Lightning's own loggers, chosen by name."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from lightning.pytorch.loggers import Logger

from cdml.registry import Registry

# name -> the logger of a run folder and version; its ``package`` is the one it needs.
LOGGERS: Registry[Callable[[Path, str], Logger]] = Registry("logger", setting="trainer.loggers")


def register_logger(name: str, package: str | None = None) -> Callable[[Callable], Callable]:
    """Decorator of ``logger(out, version) -> Logger``: register it as ``name``, needing the
    package ``package`` (checked before a run starts)."""

    def add(build: Callable[[Path, str], Logger]) -> Callable[[Path, str], Logger]:
        build.package = package  # type: ignore[attr-defined]
        return LOGGERS.register(name, build)

    return add


@register_logger("csv")
def _csv(out: Path, version: str) -> Logger:
    from lightning.pytorch.loggers import CSVLogger

    return CSVLogger(out, name="logs", version=version)


@register_logger("tensorboard", package="tensorboard")
def _tensorboard(out: Path, version: str) -> Logger:
    from lightning.pytorch.loggers import TensorBoardLogger

    return TensorBoardLogger(out, name="logs", version=version, default_hp_metric=False)


@register_logger("wandb", package="wandb")
def _wandb(out: Path, version: str) -> Logger:
    from lightning.pytorch.loggers import WandbLogger

    # Online or offline as W&B's own settings say (WANDB_MODE=offline, wandb login).
    return WandbLogger(save_dir=str(out), project="cdml", name=f"{out.name}-{version}")


@register_logger("mlflow", package="mlflow")
def _mlflow(out: Path, version: str) -> Logger:
    from lightning.pytorch.loggers import MLFlowLogger

    # MLFLOW_TRACKING_URI names a server or store; without it, an SQLite store in the run
    # folder (MLflow 3 no longer takes new runs in a plain file store).
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(out / 'mlflow.db').resolve()}"
    return MLFlowLogger(experiment_name="cdml", run_name=f"{out.name}-{version}",
                        tracking_uri=uri)  # fmt: skip


def check_loggers(names: Sequence[str]) -> None:
    """``ValueError`` naming ``trainer.loggers`` for an unknown name or a missing package."""
    for name in names:
        package = LOGGERS[name].package
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
    return [LOGGERS.create(name, out, version) for name in names]
