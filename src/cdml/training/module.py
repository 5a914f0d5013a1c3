"""The LightningModule: an embedding model trained with any ``cdml.losses`` loss."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

from cdml.metrics import evaluate
from cdml.training.config import OptimConfig
from cdml.training.distributed import gather_shards, gather_with_grad

OPTIMIZERS = {
    "rmsprop": torch.optim.RMSprop,
    "adam": torch.optim.Adam,
    "radam": torch.optim.RAdam,
    "sgd": torch.optim.SGD,
}


class MetricLearningModule(L.LightningModule):
    """Trains ``model`` (images -> embeddings) with ``loss(embeddings, labels)``.

    - Parameters owned by the loss (Group Loss's classifier) are optimised too, at ``loss_lr``.
    - A loss with a ``margin_multiplier`` (facility location) has it set to
      ``initial * margin_decay ** epoch`` at the start of every epoch.
    - For the first ``optim.warmup_epochs`` epochs the whole network trains on the loss's
      ``warmup_loss`` instead (Group Loss: the plain cross-entropy of its classifier, as the
      released code fine-tunes a classifier first); the learning rate is multiplied by
      ``lr_gamma`` at every epoch of ``lr_milestones``.
    - Under DDP every rank gathers all ranks' embeddings and labels (with gradients) so the loss
      sees the global batch, and the parameters get the single-process gradient of that batch.
    - Validation and test embed their split (each rank a shard under DDP), and compute
      ``cdml.metrics.evaluate`` on the whole split once, on rank 0.

    Args:
        model: images ``(B, 3, H, W)`` -> embeddings ``(B, d)``, with ``param_groups``.
        loss: a ``cdml.losses`` module.
        optim: optimiser settings.
        margin_decay: per-epoch factor of the margin multiplier.
        ks: Recall@K values of the test split.
        nmi: compute NMI at test time (validation always computes it).
        hparams: the run's full configuration, stored in checkpoints (plain data only).
    """

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        optim: OptimConfig,
        margin_decay: float = 0.94,
        ks: tuple[int, ...] = (1, 2, 4, 8),
        nmi: bool = True,
        hparams: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.optim = optim
        self.margin_decay = margin_decay
        self.initial_margin = getattr(loss, "margin_multiplier", None)
        if optim.warmup_epochs and not hasattr(loss, "warmup_loss"):
            raise ValueError(
                f"optim.warmup_epochs needs a loss with a warm-up objective (group); "
                f"{type(loss).__name__} has none"
            )
        self.ks = tuple(ks)
        self.nmi = nmi
        self.save_hyperparameters(hparams or {})
        self._eval_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.last_eval_metrics: dict[str, float] = {}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    # training -----------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        if self.initial_margin is not None:
            self.loss.margin_multiplier = (
                self.initial_margin * self.margin_decay**self.current_epoch
            )
            self.log("train/margin_multiplier", self.loss.margin_multiplier)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> Any:
        images, labels = batch
        embeddings = self.model(images)
        # Under DDP the loss sees the global batch, gradients equal to one process's on it.
        embeddings, labels = gather_with_grad(embeddings), gather_with_grad(labels)
        if self.current_epoch < self.optim.warmup_epochs:
            loss = self.loss.warmup_loss(embeddings, labels)
        else:
            loss = self.loss(embeddings, labels)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        for name, value in _loss_statistics(self.loss).items():
            self.log(f"train/{name}", value, on_step=True, on_epoch=True)
        return loss

    def configure_optimizers(self) -> Any:
        optim = self.optim
        if optim.name not in OPTIMIZERS:
            raise ValueError(
                f"optim.name must be one of {', '.join(OPTIMIZERS)}, got {optim.name!r}"
            )
        groups = self.model.param_groups(optim.backbone_lr, optim.head_lr, optim.weight_decay)
        loss_params = [p for p in self.loss.parameters() if p.requires_grad]
        if loss_params:
            groups.append(
                {
                    "name": "loss",
                    "params": loss_params,
                    "lr": optim.loss_lr,
                    "weight_decay": optim.weight_decay,
                }
            )
        extra = {"momentum": optim.momentum} if optim.name == "sgd" else {}
        optimizer = OPTIMIZERS[optim.name](groups, **extra)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=optim.lr_milestones, gamma=optim.lr_gamma
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }

    # evaluation ---------------------------------------------------------------------------
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._collect(batch)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._collect(batch)

    def on_validation_epoch_end(self) -> None:
        self._evaluate("val", ks=(1, 2, 4, 8), nmi=True)

    def on_test_epoch_end(self) -> None:
        self._evaluate("test", ks=self.ks, nmi=self.nmi)

    def _collect(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        images, labels = batch
        self._eval_outputs.append((self.model(images).float(), labels))

    def _evaluate(self, stage: str, ks: tuple[int, ...], nmi: bool) -> None:
        # Under DDP each rank embedded a shard of the split: gather the whole split, compute
        # the metrics once on rank 0 and share them, so every rank logs the same values.
        embeddings = gather_shards(torch.cat([e for e, _ in self._eval_outputs]))
        labels = gather_shards(torch.cat([y for _, y in self._eval_outputs]))
        self._eval_outputs.clear()
        if self.trainer.sanity_checking:
            return
        metrics: dict[str, float] = {}
        if self.trainer.is_global_zero:
            candidates = len(labels) - 1
            ks = [k for k in ks if k <= candidates]
            metrics = evaluate(embeddings, labels, ks=ks, nmi=nmi)
        metrics = self.trainer.strategy.broadcast(metrics, src=0)
        self.last_eval_metrics = metrics
        for name, value in metrics.items():
            self.log(f"{stage}/{name}", value, prog_bar=name == "recall@1")


def _loss_statistics(loss: nn.Module) -> dict[str, torch.Tensor]:
    """What a loss exposes about its last call (``loss.statistics``, if it has one)."""
    statistics = getattr(loss, "statistics", None)
    return dict(statistics) if statistics else {}
