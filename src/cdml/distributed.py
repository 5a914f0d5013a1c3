"""Collectives that keep multi-process training equal to one process on the global batch."""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import Tensor
from torch.utils.data import Sampler


def launched_on_nodes() -> bool:
    """Whether this process was started by a launcher that starts one on every node of a
    multi-node run: SLURM's srun, torchrun, LSF or MPI, or by hand with Lightning's
    ``NODE_RANK`` (and ``MASTER_ADDR`` / ``MASTER_PORT``) set."""
    from lightning.fabric.plugins.environments import (
        LSFEnvironment,
        MPIEnvironment,
        SLURMEnvironment,
        TorchElasticEnvironment,
    )

    launchers = (SLURMEnvironment, TorchElasticEnvironment, LSFEnvironment, MPIEnvironment)
    return "NODE_RANK" in os.environ or any(launcher.detect() for launcher in launchers)


def world_size() -> int:
    """Number of processes of the default group (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_with_grad(tensor: Tensor) -> Tensor:
    """Every rank's ``(n, ...)`` tensor concatenated in rank order: ``(world_size * n, ...)``.

    The gradient of each rank's rows flows back to that rank, summed over the ranks' losses.
    Every rank computes the same loss on the global batch, so a rank's rows get ``world_size``
    times the gradient of that loss; DDP's averaging of the parameter gradients divides it
    back out, and the parameters receive exactly the single-process gradient of the global
    batch. All ranks must pass the same shape.
    """
    if world_size() == 1:
        return tensor
    return torch.cat(dist_fn.all_gather(tensor), 0)


def gather_shards(tensor: Tensor) -> Tensor:
    """Undo :class:`ShardSampler`: the ranks' strided shards ``(n_r, ...)`` of a split,
    gathered (without gradient) and put back in dataset order ``(sum_r n_r, ...)``."""
    ranks = world_size()
    if ranks == 1:
        return tensor
    length = torch.tensor([len(tensor)], device=tensor.device)
    lengths = [torch.zeros_like(length) for _ in range(ranks)]
    dist.all_gather(lengths, length)
    longest = int(max(lengths).item())
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[: len(tensor)] = tensor
    shards = [torch.empty_like(padded) for _ in range(ranks)]
    dist.all_gather(shards, padded.contiguous())
    # Shard r holds items r, r + R, r + 2R, ...: interleave the rows back.
    interleaved = torch.stack(shards, 1).flatten(0, 1)
    keep = torch.arange(longest, device=tensor.device)[:, None] < torch.cat(lengths)[None, :]
    return interleaved[keep.flatten()]


class ShardSampler(Sampler[int]):
    """Items ``rank, rank + R, rank + 2R, ...`` of a dataset of ``length`` items, in order:
    each item is seen by exactly one of the ``R`` ranks (no padding, unlike
    ``DistributedSampler``), so evaluation embeds every item once."""

    def __init__(self, length: int, num_replicas: int, rank: int) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must lie in 0..{num_replicas - 1}, got {rank}")
        self.length = length
        self.num_replicas = num_replicas
        self.rank = rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.num_replicas))


class RankShare(Sampler[list]):
    """Rank ``rank``'s contiguous share of every global batch of ``batches``: the slice
    ``[rank * b, (rank + 1) * b)`` with ``b = batch_size / num_replicas``. Every rank builds
    the same global batches (same seed and epoch), so the ranks' shares concatenated in rank
    order are exactly the single-process batches.

    Args:
        batches: a batch sampler with ``batch_size`` (the global batch) and ``set_epoch``.
        num_replicas: number of ranks; ``batch_size`` must be divisible by it.
        rank: this rank.
    """

    def __init__(self, batches: Sampler[list], num_replicas: int, rank: int) -> None:
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be positive, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must lie in 0..{num_replicas - 1}, got {rank}")
        if batches.batch_size % num_replicas:
            raise ValueError(
                f"batch_size ({batches.batch_size}) must be divisible by num_replicas "
                f"({num_replicas})"
            )
        self.batches = batches
        self.num_replicas = num_replicas
        self.rank = rank
        self.local_batch_size = batches.batch_size // num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list]:
        start = self.rank * self.local_batch_size
        for batch in self.batches:
            yield batch[start : start + self.local_batch_size]
