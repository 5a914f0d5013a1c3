"""Weights that validate, checkpoint and finish a run other than the optimiser's latest
(Lightning's :class:`~lightning.pytorch.callbacks.WeightAveraging`): an exponential moving
average of the weights, or the backbone interpolated with the weights it started from."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging, WeightAveraging

from cdml.training.config import TrainerConfig

BACKBONE = "model.backbone."  # the module's parameters that start pretrained


class _AverageKept(WeightAveraging):
    """Once training ends, the module holds the averaged weights, as every checkpoint's
    ``state_dict`` does: testing or validating a checkpoint afterwards uses them as saved
    (Lightning's callback would load the optimiser's latest weights back)."""

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        super().on_train_end(trainer, pl_module)
        self._average_model = None

    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict) -> None:
        if self._average_model is not None:  # a resumed fit: both sets of weights restored
            super().on_load_checkpoint(trainer, pl_module, checkpoint)


class MovingAverage(_AverageKept, EMAWeightAveraging):
    """An exponential moving average of the weights, updated after every step.

    Args:
        decay: the average's share kept at each step, in (0, 1).
    """

    def __init__(self, decay: float) -> None:
        super().__init__(decay=decay, use_buffers=False)


class BackboneInterpolation(_AverageKept):
    """WiSE-FT (Wortsman et al., CVPR 2022) for an embedding: validation, checkpoints and the
    end of training use the backbone at ``start + alpha * (current - start)``, ``start``
    being its weights when training began (the pretrained ones; a resumed run rebuilds them
    from the config). The embedding head and the method's own parameters, which start from
    random values, are used as trained.

    Args:
        alpha: the share of the fine-tuning kept, in [0, 1] (1: the trained weights).
    """

    def __init__(self, alpha: float) -> None:
        super().__init__(use_buffers=True)
        self.alpha = alpha
        self._start: dict[str, torch.Tensor] = {}

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return False  # the interpolation is made when it is used, not after each step

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self._start = {
                name: p.detach().clone()
                for name, p in pl_module.named_parameters()
                if name.startswith(BACKBONE)
            }

    @torch.no_grad()
    def _interpolate(self, pl_module: Any) -> None:
        average = self._average_model.module
        current = dict(pl_module.named_parameters())
        for name, p in average.named_parameters():
            start = self._start.get(name)
            if start is None:
                p.copy_(current[name])
            else:
                torch.lerp(start, current[name], self.alpha, out=p)
        for b_average, b_current in zip(average.buffers(), pl_module.buffers(), strict=True):
            b_average.copy_(b_current)

    def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if self._average_model is not None:
            self._interpolate(pl_module)
        super().on_validation_epoch_start(trainer, pl_module)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict) -> None:
        if self._average_model is not None:
            self._interpolate(pl_module)
        super().on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self._average_model is not None:
            self._interpolate(pl_module)
        super().on_train_end(trainer, pl_module)


def weight_averaging(config: TrainerConfig) -> list[Callback]:
    """The callback of ``config.ema_decay`` or ``config.backbone_interpolation``, if set."""
    if config.ema_decay is not None:
        return [MovingAverage(config.ema_decay)]
    if config.backbone_interpolation is not None:
        return [BackboneInterpolation(config.backbone_interpolation)]
    return []
