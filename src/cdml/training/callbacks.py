"""Model selection (the best checkpoint by a validation metric, the untrained model included)
and how checkpoints are written."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

from cdml.io import atomic_path

UNTRAINED_EPOCH = -1  # ``best_epoch`` of a run in which no epoch beat the untrained model


class BestCheckpoint(Callback):
    """Writes ``path`` whenever a training epoch's ``monitor`` beats every earlier score.

    The first score to beat is the untrained model's: :meth:`save_untrained` records it (and
    writes the untrained model to ``path``) before training, so the best checkpoint is never
    worse on validation than the model training started from. The best score and epoch travel
    in every checkpoint, so a resumed run keeps them.
    """

    def __init__(self, path: str | Path, monitor: str = "val/recall@1") -> None:
        self.path = Path(path)
        self.monitor = monitor
        self.best_score: float | None = None
        self.best_epoch: int | None = None

    def save_untrained(self, trainer: L.Trainer, score: float) -> None:
        """Record the untrained model's ``score`` and write it as the best checkpoint; call
        after ``trainer.validate`` of the untrained model."""
        self.best_score, self.best_epoch = score, UNTRAINED_EPOCH
        trainer.save_checkpoint(self.path)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        score = trainer.callback_metrics.get(self.monitor)
        if score is None:
            return
        if self.best_score is None or float(score) > self.best_score:
            self.best_score, self.best_epoch = float(score), trainer.current_epoch
            trainer.save_checkpoint(self.path)

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = state_dict["best_score"]
        self.best_epoch = state_dict["best_epoch"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file in its own folder, then renames it over the
    old one: a full disk or a kill mid-write leaves the previous checkpoint whole (Lightning's
    default stages the file in the system's temporary folder and copies it across file
    systems, which can leave a truncated file)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with atomic_path(path) as temporary:
                torch.save(checkpoint, temporary)
        except (OSError, RuntimeError) as error:  # torch's writer raises RuntimeError
            free, needed = shutil.disk_usage(path.parent).free, _tensor_bytes(checkpoint)
            full = getattr(error, "errno", None) == errno.ENOSPC or free < needed
            reason = (
                f"the disk is full ({free / 2**20:,.0f} MiB free, the checkpoint needs about "
                f"{needed / 2**20:,.0f} MiB)"
                if full
                else " ".join(str(error).split())
            )
            kept = "the previous one is kept; " if path.is_file() else ""
            then = "free some space, then " if full else ""
            raise OSError(
                f"cannot write checkpoint {path}: {reason}; {kept}{then}continue the run "
                "with --resume"
            ) from error


def _tensor_bytes(data: Any) -> int:
    """The bytes of the tensors in a nested checkpoint."""
    if isinstance(data, torch.Tensor):
        return data.nelement() * data.element_size()
    if isinstance(data, dict):
        return sum(_tensor_bytes(value) for value in data.values())
    if isinstance(data, list | tuple):
        return sum(_tensor_bytes(value) for value in data)
    return 0
