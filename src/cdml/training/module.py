"""The LightningModule: an embedding model trained with any ``cdml.losses`` method."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from cdml.distributed import gather_shards
from cdml.losses import Method
from cdml.metrics import DEFAULT_KS, evaluate
from cdml.training.config import OptimConfig
from cdml.training.optimizers import OPTIMIZERS
from cdml.training.probe import LinearProbe


class MetricLearningModule(L.LightningModule):
    """Trains ``model`` (images -> embeddings) with a :class:`cdml.losses.Method`.

    - A training step is the method's ``batch_loss(model, batch)`` on a batch of its
      ``batch_kind``; the loss and the values the method returns are logged under ``train/``.
    - The method's schedule (margin decay, warm-up, re-pairing) comes from its
      ``callbacks()``, added to the trainer's.
    - Parameters owned by the method (Group Loss's classifier, CBSwR's cluster head) are
      optimised too, at ``loss_lr``; the learning rate is multiplied by ``lr_gamma`` at every
      epoch of ``lr_milestones``.
    - Validation and test embed their split (each rank a shard under DDP), and compute
      ``cdml.metrics.evaluate`` on the whole split once, on rank 0.

    Args:
        model: images ``(B, 3, H, W)`` -> embeddings ``(B, d)``, with ``param_groups``.
        method: the training method (see ``cdml.losses.create_method``).
        optim: optimiser settings.
        ks: Recall@K values of the test split.
        nmi: compute NMI at test time (validation always computes it).
        hparams: the run's full configuration, stored in checkpoints (plain data only).
    """

    def __init__(
        self,
        model: nn.Module,
        method: Method,
        optim: OptimConfig,
        ks: tuple[int, ...] = DEFAULT_KS,
        nmi: bool = True,
        hparams: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.method = method
        self.optim = optim
        self.ks = tuple(ks)
        self.nmi = nmi
        self.save_hyperparameters(hparams or {})
        self._eval_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.last_eval_metrics: dict[str, float] = {}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    # training -----------------------------------------------------------------------------
    def configure_callbacks(self) -> list[Callback]:
        probe = [LinearProbe(self.optim.probe_epochs)] if self.optim.probe_epochs else []
        return [*self.method.callbacks(), *probe]

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        loss, logged = self.method.batch_loss(self.model, batch)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        for name, value in logged.items():
            self.log(f"train/{name}", value, on_step=True, on_epoch=True)
        # What the method logged reaches the callbacks' on_train_batch_end too.
        return {"loss": loss, **{name: value.detach() for name, value in logged.items()}}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Checkpoints written before the method registry name the method's part "loss.".
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("loss.")]:
            state["method." + key.removeprefix("loss.")] = state.pop(key)

    def configure_optimizers(self) -> Any:
        optim = self.optim
        groups = self.model.param_groups(
            optim.backbone_lr, optim.head_lr, optim.weight_decay, optim.layer_decay
        )
        method_params = [p for p in self.method.parameters() if p.requires_grad]
        if method_params:
            groups.append(
                {
                    "name": "loss",
                    "params": method_params,
                    "lr": self.method.default_loss_lr if optim.loss_lr is None else optim.loss_lr,
                    "weight_decay": optim.weight_decay,
                }
            )
        extra = {"momentum": optim.momentum} if optim.name == "sgd" else {}
        optimizer = OPTIMIZERS.create(optim.name, groups, **extra)
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

    def on_validation_epoch_start(self) -> None:
        self.last_eval_metrics = {}

    def on_test_epoch_start(self) -> None:
        self.last_eval_metrics = {}

    def on_validation_epoch_end(self) -> None:
        self._evaluate("val", ks=DEFAULT_KS, nmi=True)

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
            # Query/gallery marks and categories of the split, where its dataset has them.
            dataset = getattr(getattr(self.trainer, "datamodule", None), f"{stage}_set", None)
            marks = getattr(dataset, "evaluation", {})
            candidates = int(marks["is_gallery"].sum() if "is_gallery" in marks else len(labels))
            ks = [k for k in ks if k < candidates]
            metrics = evaluate(embeddings, labels, ks=ks, nmi=nmi, progress=True, **marks)
        metrics = self.trainer.strategy.broadcast(metrics, src=0)
        self.last_eval_metrics = metrics
        for name, value in metrics.items():
            self.log(f"{stage}/{name}", value, prog_bar=name == "recall@1")
