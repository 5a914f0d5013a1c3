"""Class-balanced batch samplers, plain and distributed."""

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from cdml.data import ClassBalancedBatchSampler
from cdml.distributed import RankShare

# 13 classes of very different sizes, one with a single image; labels not contiguous.
SIZES = [1, 2, 3, 9, 4, 25, 7, 2, 5, 11, 3, 6, 8]
LABELS = np.repeat(np.arange(len(SIZES)) * 10 + 3, SIZES)
rng = np.random.default_rng(0)
LABELS = LABELS[rng.permutation(len(LABELS))]


def batches(sampler, epoch=0):
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize(("batch_size", "classes"), [(12, 4), (12, 3), (9, 9), (26, 13)])
def test_every_batch_has_the_requested_class_composition(batch_size, classes):
    sampler = ClassBalancedBatchSampler(LABELS, batch_size, classes, seed=1)
    for epoch in range(3):
        for batch in batches(sampler, epoch):
            assert len(batch) == batch_size
            counts = Counter(LABELS[i] for i in batch)
            assert len(counts) == classes
            assert set(counts.values()) == {batch_size // classes}


@pytest.mark.parametrize(("batch_size", "classes"), [(12, 9), (16, 12), (7, 5)])
def test_uneven_shares_give_the_first_classes_one_more(batch_size, classes):
    # Seed 000's C/m = 0.75 (e.g. 96 classes in a batch of 128) cannot be split evenly.
    sampler = ClassBalancedBatchSampler(LABELS, batch_size, classes, seed=3)
    share, extra = divmod(batch_size, classes)
    for batch in batches(sampler):
        assert len(batch) == batch_size
        counts = Counter(LABELS[i] for i in batch)
        assert len(counts) == classes
        in_order = list(dict.fromkeys(LABELS[i] for i in batch))  # classes in batch order
        assert [counts[c] for c in in_order] == [share + 1] * extra + [share] * (classes - extra)


def test_classes_with_enough_images_are_drawn_without_replacement():
    class_size = Counter(LABELS.tolist())
    sampler = ClassBalancedBatchSampler(LABELS, 12, 4, seed=2)
    for batch in batches(sampler):
        for label, count in Counter(LABELS[i] for i in batch).items():
            indices = [i for i in batch if LABELS[i] == label]
            if class_size[label] >= count:
                assert len(set(indices)) == count


def test_a_class_smaller_than_its_share_is_sampled_with_replacement():
    single = int(np.flatnonzero(LABELS == 3)[0])  # the class with one image
    sampler = ClassBalancedBatchSampler(LABELS, 12, 4, seed=0)
    with_single = [b for b in batches(sampler) if single in b]
    assert with_single
    assert all(b.count(single) == 3 for b in with_single)


@pytest.mark.parametrize("classes", [2, 4, 5, 13])
def test_every_class_is_visited_in_every_epoch(classes):
    sampler = ClassBalancedBatchSampler(LABELS, classes * 2, classes, seed=5)
    for epoch in range(4):
        seen = {LABELS[i] for batch in batches(sampler, epoch) for i in batch}
        assert seen == set(LABELS.tolist())


def test_length_is_the_number_of_batches_yielded():
    many_classes = np.repeat(np.arange(40), 2)
    for labels, batch_size, classes, expected in [
        (LABELS, 12, 4, -(-len(LABELS) // 12)),  # ceil(n / batch size) dominates
        (many_classes, 80, 2, 20),  # ceil(C / classes per batch) dominates
    ]:
        sampler = ClassBalancedBatchSampler(labels, batch_size, classes)
        assert len(sampler) == expected == len(list(sampler))


def test_order_depends_only_on_seed_and_epoch():
    a = ClassBalancedBatchSampler(LABELS, 12, 4, seed=7)
    b = ClassBalancedBatchSampler(LABELS, 12, 4, seed=7)
    assert batches(a, 3) == batches(b, 3)
    assert list(a) == list(a)  # without set_epoch an epoch replays
    assert batches(a, 4) != batches(a, 3)
    assert batches(ClassBalancedBatchSampler(LABELS, 12, 4, seed=8), 3) != batches(a, 3)


def test_works_as_a_dataloader_batch_sampler():
    dataset = TensorDataset(torch.arange(len(LABELS)), torch.as_tensor(LABELS))
    sampler = ClassBalancedBatchSampler(LABELS, 8, 2)
    loader = DataLoader(dataset, batch_sampler=sampler)
    for (indices, labels), batch in zip(loader, list(sampler), strict=True):
        assert indices.tolist() == batch
        assert len(set(labels.tolist())) == 2


@pytest.mark.parametrize(
    ("batch_size", "classes", "message"),
    [
        (4, 5, r"classes_per_batch \(5\) exceeds batch_size \(4\)"),
        (28, 14, r"classes_per_batch \(14\) exceeds the number of classes in labels \(13\)"),
        (0, 1, "must be positive"),
        (4, 0, "must be positive"),
    ],
)
def test_impossible_batches_are_rejected(batch_size, classes, message):
    with pytest.raises(ValueError, match=message):
        ClassBalancedBatchSampler(LABELS, batch_size, classes)


def test_labels_must_be_a_non_empty_vector():
    with pytest.raises(ValueError, match="non-empty 1-D"):
        ClassBalancedBatchSampler([], 2, 1)


@pytest.mark.parametrize("replicas", [1, 2, 3, 6])
def test_distributed_shares_concatenate_to_the_global_batch(replicas):
    batch_size, classes, seed, epoch = 24, 6, 11, 2
    reference = batches(ClassBalancedBatchSampler(LABELS, batch_size, classes, seed), epoch)
    shares = []
    for rank in range(replicas):
        sampler = RankShare(
            ClassBalancedBatchSampler(LABELS, batch_size, classes, seed), replicas, rank
        )
        assert len(sampler) == len(reference)
        shares.append(batches(sampler, epoch))
    for step, batch in enumerate(reference):
        parts = [shares[rank][step] for rank in range(replicas)]
        assert all(len(p) == batch_size // replicas for p in parts)
        assert sum(parts, []) == batch


def test_distributed_defaults_to_a_single_process():
    sampler = RankShare(ClassBalancedBatchSampler(LABELS, 12, 4, seed=3), 1, 0)
    assert (sampler.num_replicas, sampler.rank) == (1, 0)
    assert list(sampler) == list(ClassBalancedBatchSampler(LABELS, 12, 4, seed=3))


@pytest.mark.parametrize(
    ("replicas", "rank", "message"),
    [
        (5, 0, r"batch_size \(12\) must be divisible by num_replicas \(5\)"),
        (2, 2, r"rank must lie in 0..1, got 2"),
        (0, 0, "num_replicas must be positive"),
    ],
)
def test_distributed_rejects_bad_ranks(replicas, rank, message):
    with pytest.raises(ValueError, match=message):
        RankShare(ClassBalancedBatchSampler(LABELS, 12, 4), replicas, rank)
