"""The search space of a run: the settings every run has, and the method's own
(``Method.search_space``)."""

from __future__ import annotations

import inspect
from typing import Any

from cdml.losses import VIEWS, method_class
from cdml.training.config import RunConfig
from cdml.training.optimizers import OPTIMIZERS
from cdml.training.settings import value_at
from cdml.tuning.knob import Knob


def search_space(config: RunConfig, train_classes: int) -> dict[str, Knob]:
    """``{dotted config key: Knob}`` that ``cdml tune`` searches for the complete ``config``
    (:func:`cdml.training.resolve.resolve` with the data's facts), whose training split
    holds ``train_classes`` classes once its validation classes are held out:

    - ``optim.backbone_lr`` in [1e-6, 1e-3] and ``optim.head_lr`` in [1e-5, 1e-2] (log),
      ``optim.name`` one of the optimisers (:data:`cdml.training.optimizers.OPTIMIZERS`);
    - ``data.crop_scale``: the crops' smallest share of the image in [0.08, 1];
    - ``trainer.epochs`` from 1 to the config's (the budget);
    - for the supervised methods, ``data.classes_per_batch``: 2, 4 or 8 images per class
      of the config's batch, at most its training classes;
    - the method's own (``loss.params.NAME`` for a constructor argument).
    """
    method = method_class(config.loss.name)
    space = {
        "optim.backbone_lr": Knob(1e-6, 1e-3, log=True),
        "optim.head_lr": Knob(1e-5, 1e-2, log=True),
        "optim.name": Knob(choices=tuple(OPTIMIZERS)),
        "data.crop_scale": Knob(
            0.08, 1.0, form=lambda low: [round(low, 4), 1.0], inverse=lambda scale: scale[0]
        ),
        "trainer.epochs": Knob(1, config.trainer.epochs, integer=True),
    }
    if method.batch_kind != VIEWS:
        batch = config.data.batch_size
        shares = {max(min(batch // per_class, train_classes), 2) for per_class in (2, 4, 8)}
        space["data.classes_per_batch"] = Knob(choices=tuple(sorted(shares)))
    for name, knob in method.search_space.items():
        space[name if "." in name else f"loss.params.{name}"] = knob
    return space


def starting_point(config: RunConfig, space: dict[str, Knob]) -> dict[str, Any]:
    """The values a trial draws to train ``config`` as it is (a method's own setting that
    ``loss.params`` leaves out at its constructor's default), for the knobs of ``space``
    whose range holds them: the search's first trial, so that it never ends below the
    config it started from."""
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(method_class(config.loss.name)).parameters.items()
    }
    point = {}
    for key, knob in space.items():
        if key.startswith("loss.params."):
            name = key.removeprefix("loss.params.")
            setting = config.loss.params.get(name, defaults.get(name))
        else:
            setting = value_at(config, key)
        drawn = knob.drawn(setting)
        if drawn is not None:
            point[key] = drawn
    return point
