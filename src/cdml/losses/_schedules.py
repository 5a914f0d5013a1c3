"""The methods' schedules, as Lightning callbacks a method returns from ``callbacks()``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import Tensor, nn

from cdml.distributed import gather_shards
from cdml.progress import Progress


class MarginDecay(Callback):
    """Sets ``method.margin_multiplier = initial * factor ** epoch`` before every epoch, and
    logs it (facility location: the paper decays the margin by 0.94 per epoch); ``initial``
    is the multiplier when training starts."""

    def __init__(self, method: nn.Module, factor: float) -> None:
        self.method = method
        self.factor = factor
        self.initial = method.margin_multiplier

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.initial = self.method.margin_multiplier

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.method.margin_multiplier = self.initial * self.factor**trainer.current_epoch
        pl_module.log("train/margin_multiplier", self.method.margin_multiplier)


class WarmUp(Callback):
    """Sets ``method.warming_up`` for the first ``epochs`` epochs (the method trains on its
    warm-up objective while it is set)."""

    def __init__(self, method: nn.Module, epochs: int) -> None:
        self.method = method
        self.epochs = epochs

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.method.warming_up = trainer.current_epoch < self.epochs


class Repairing(Callback):
    """Before every epoch, ``method.pairing(features, images, report, stop)`` chooses the
    partners of the ``images`` training images (CBSwR's neighbour pairs, MOM's mined tuples)
    from their current backbone features: ``features(indices=None)`` computes them
    ``(n, D)`` on demand for the training images at ``indices`` (default all) over the data
    module's ``pairing_dataloader(indices)`` (sharded under DDP); the views sampler draws the
    epoch's batches from the pairing. ``stop()`` says whether a SIGTERM arrived: a method that
    stops on it raises ``InterruptedError``, and the run stops as Lightning stops on
    SIGTERM. The pairing of a run's first epoch is chosen when the run starts: that epoch's
    first batches are drawn when the loader starts, before the epoch does."""

    def __init__(self, method: nn.Module) -> None:
        self.method = method
        self.paired = False  # for the coming epoch

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pair(trainer, pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.paired:
            self._pair(trainer, pl_module)
        self.paired = False

    def _pair(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        data = trainer.datamodule
        try:
            pairing = self.method.pairing(
                _features(pl_module, data.pairing_dataloader),
                len(data.train_set),
                report=pl_module.print,
                stop=lambda: trainer.received_sigterm,
            )
        except InterruptedError:
            raise SIGTERMException from None
        data.set_pairing(pairing)
        self.paired = True


def _features(
    pl_module: L.LightningModule, loader: Callable[[Tensor | None], Any]
) -> Callable[[Tensor | None], Tensor]:
    @torch.no_grad()
    def compute(indices: Tensor | None = None) -> Tensor:
        model = pl_module.model
        was_training = model.training
        model.eval()
        images = loader(None if indices is None else indices.tolist())
        batches = []
        with Progress("backbone features", total=len(images.sampler)) as bar:  # this shard
            for x, _ in images:
                batches.append(model.features(x.to(pl_module.device)).float())
                bar.advance(len(x))
        model.train(was_training)
        return gather_shards(torch.cat(batches))

    return compute


class CollapseWarning(Callback):
    """Warns at the end of an epoch whose batches used on average fewer than ``share`` of the
    method's ``num_clusters`` clusters (read from the logged ``non_empty_clusters``)."""

    def __init__(self, num_clusters: int, share: float = 0.25) -> None:
        self.num_clusters = num_clusters
        self.share = share
        self._used: list[Tensor] = []

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        if isinstance(outputs, dict) and "non_empty_clusters" in outputs:
            self._used.append(outputs["non_empty_clusters"])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._used:
            return
        used = torch.stack(self._used).float().mean().item()
        self._used.clear()
        if used < self.share * self.num_clusters:
            rank_zero_warn(
                f"epoch {trainer.current_epoch}: the clustering collapsed, batches used "
                f"{used:.1f} of {self.num_clusters} clusters on average (check the learning "
                "rates and loss.params.rim_weight)"
            )
