"""Augmentation seeds: the same for one process and for any number of ranks, new each epoch,
and the same scheme for labelled batches and unlabelled views."""

import numpy as np

from cdml.data import ClassBalancedBatchSampler
from cdml.data.seeding import SeededBatches
from cdml.data.unlabelled import UnlabelledBatchSampler
from cdml.distributed import RankShare


def batches(sampler, ranks=1, epoch=0):
    shares = [SeededBatches(RankShare(sampler, ranks, r) if ranks > 1 else sampler, seed=3)
              for r in range(ranks)]  # fmt: skip
    for share in shares:
        share.set_epoch(epoch)
    return [sum(step, []) for step in zip(*(list(share) for share in shares), strict=True)]


def test_ranks_draw_the_seeds_of_one_process_for_both_batch_kinds():
    labels = np.repeat(np.arange(10), 8)
    for sampler in (ClassBalancedBatchSampler(labels, 16, 4, seed=1),
                    UnlabelledBatchSampler(80, 16, seed=1)):  # fmt: skip
        whole = batches(sampler)
        assert batches(sampler, ranks=2) == batches(sampler, ranks=4) == whole
        seeds = [seed for batch in whole for _, seed in batch]
        assert len(set(seeds)) == len(seeds)  # every slot of every step its own seed
        assert batches(sampler, epoch=1) != whole
