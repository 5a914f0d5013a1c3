"""DataLoader settings that keep the machine busy: how many processes decode and augment
images when a run does not say, and whether batches are staged in pinned memory."""

from __future__ import annotations

import os
from typing import Any

MAX_WORKERS = 8


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers(processes: int = 1) -> int:
    """Loading processes for each of ``processes`` training processes when a run gives none:
    the usable cores shared among the training processes, less the one each keeps for its own
    step, at most :data:`MAX_WORKERS` (0 on a single core: decoding then runs between the
    steps)."""
    share = usable_cores() // max(processes, 1)
    return max(0, min(share - 1, MAX_WORKERS))


def loader_settings(
    num_workers: int | None, processes: int = 1, pinned: bool = False
) -> dict[str, Any]:
    """Keyword arguments of a ``DataLoader``: ``num_workers`` (``None``: :func:`default_workers`),
    workers kept between epochs, and pinned memory (``pinned``: batches go to a CUDA device)."""
    workers = default_workers(processes) if num_workers is None else num_workers
    return {"num_workers": workers, "persistent_workers": workers > 0, "pin_memory": pinned}
