"""Where a loss may read tensor values on the host.

On an accelerator, reading a value (``.item()``, ``bool(t)``, ``.tolist()``, ``nonzero``,
``unique``, a boolean mask index) makes the host wait for the device. On the CPU the values are
already on the host: there a loss may compact its work to what is active or stop a search
early. The losses ask :func:`reads_are_free` before doing so, and take the same results with
fixed shapes and loop counts otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from torch import Tensor

_AS_ON_ACCELERATOR: ContextVar[bool] = ContextVar("as_on_accelerator", default=False)


def reads_are_free(tensor: Tensor) -> bool:
    """Whether reading ``tensor``'s values costs no device synchronisation: true on the CPU,
    false on accelerators and inside :func:`as_on_accelerator`."""
    return tensor.device.type == "cpu" and not _AS_ON_ACCELERATOR.get()


@contextmanager
def as_on_accelerator() -> Iterator[None]:
    """Run the losses on CPU tensors as they run on an accelerator, without reading any value
    on the host: to check a loss for host synchronisations where no GPU is at hand."""
    token = _AS_ON_ACCELERATOR.set(True)
    try:
        yield
    finally:
        _AS_ON_ACCELERATOR.reset(token)
