"""A linear probe before fine-tuning (LP-FT, Kumar et al., ICLR 2022): the backbone stays as
it started for the first epochs while the head (and the method's own parameters) learn."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import Callback


class LinearProbe(Callback):
    """Drops the backbone's gradients before every optimiser step of the first ``epochs``
    epochs, so the optimiser leaves it (and its moments) untouched; fine-tuning of everything
    follows. The head then starts fine-tuning fitted to the pretrained features instead of
    random, which distorts those features less (the paper's argument).

    Under DDP the gradients are dropped after they were averaged, on every process alike.
    BatchNorm statistics still follow the batches unless the model freezes them
    (``model.freeze_bn``, the default).

    Args:
        epochs: probing epochs, >= 1; from epoch ``epochs`` on (counted from 0) everything
            trains.
    """

    def __init__(self, epochs: int) -> None:
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        self.epochs = epochs

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if trainer.current_epoch < self.epochs:
            for parameter in pl_module.model.backbone.parameters():
                parameter.grad = None
