"""The optimisers of ``optim.name``, by name."""

from __future__ import annotations

import torch

from cdml.registry import Registry

OPTIMIZERS: Registry[type[torch.optim.Optimizer]] = Registry("optimiser", setting="optim.name")
OPTIMIZERS.register("rmsprop", torch.optim.RMSprop)
OPTIMIZERS.register("adam", torch.optim.Adam)
OPTIMIZERS.register("radam", torch.optim.RAdam)
OPTIMIZERS.register("sgd", torch.optim.SGD)
