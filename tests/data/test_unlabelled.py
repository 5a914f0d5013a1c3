import numpy as np
import pytest
import torch
from PIL import Image

from cdml.data import load_dataset
from cdml.data.unlabelled import (
    NeighbourPairing,
    TuplePairing,
    UnlabelledBatchSampler,
    Views,
)
from cdml.distributed import RankShare


def test_batches_cover_a_permutation_and_replay_per_epoch():
    sampler = UnlabelledBatchSampler(103, batch_size=10, seed=4)
    sampler.set_epoch(2)
    first = list(sampler)
    assert len(first) == len(sampler) == 10
    indices = [index for batch in first for index, _ in batch]
    assert len(set(indices)) == 100 and all(0 <= i < 103 for i in indices)
    assert all(partner == index for batch in first for index, partner in batch)
    assert list(sampler) == first
    sampler.set_epoch(3)
    assert list(sampler) != first


def test_neighbour_pairing_draws_the_neighbour_about_half_the_time():
    sampler = UnlabelledBatchSampler(1000, batch_size=100, seed=0)
    neighbours = (np.arange(1000) + 1) % 1000
    sampler.set_pairing(NeighbourPairing(neighbours))
    pairs = [(index, partner) for batch in sampler for index, partner in batch]
    assert all(partner in (index, neighbours[index]) for index, partner in pairs)
    assert 0.4 < np.mean([partner == neighbours[index] for index, partner in pairs]) < 0.6
    with pytest.raises(ValueError, match="prob"):
        NeighbourPairing(neighbours, prob=1.5)


def test_tuple_pairing_draws_from_the_candidates_with_fallbacks():
    positives = np.array([[1, 2], [-1, -1], [0, -1], [-1, 2]])
    negatives = np.array([[3, -1], [2, 3], [-1, -1], [0, 1]])
    rng = np.random.default_rng(0)
    for _ in range(20):
        (a_pos, a_neg), (b_pos, b_neg), (c_pos, c_neg), (d_pos, d_neg) = TuplePairing(
            positives, negatives
        )(np.arange(4), rng)
        assert a_pos in (1, 2) and a_neg == 3
        assert b_pos == 1 and b_neg in (2, 3)  # no positive: itself
        assert c_pos == 0 and c_neg != 2  # no negative: another image
        assert d_pos == 2 and d_neg in (0, 1)


def test_an_epoch_draws_its_images_from_the_pool():
    sampler = UnlabelledBatchSampler(100, batch_size=8, seed=0, images_per_epoch=20)
    assert len(sampler) == 2
    anchors = np.arange(50, 75)
    sampler.set_pairing(TuplePairing(-np.ones((100, 1)), -np.ones((100, 1)), images=anchors))
    for epoch in range(3):
        sampler.set_epoch(epoch)
        drawn = [key[0] for batch in sampler for key in batch]
        assert len(drawn) == len(set(drawn)) == 16 and set(drawn) <= set(anchors)
    with pytest.raises(ValueError, match="smaller than an epoch"):
        sampler.set_pairing(TuplePairing(-np.ones((100, 1)), -np.ones((100, 1)), np.arange(10)))
    with pytest.raises(ValueError, match="images_per_epoch must lie in"):
        UnlabelledBatchSampler(10, batch_size=2, images_per_epoch=11)


def test_distributed_shares_make_up_the_global_batch():
    whole = list(UnlabelledBatchSampler(50, batch_size=12, seed=1))
    shares = [list(RankShare(UnlabelledBatchSampler(50, 12, 1), 3, r)) for r in range(3)]
    for step, batch in enumerate(whole):
        assert sum((share[step] for share in shares), []) == batch


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"length": 5, "batch_size": 6}, "batch_size must lie in"),
        ({"length": 50, "batch_size": 7, "num_replicas": 2}, "divisible by num_replicas"),
        ({"length": 50, "batch_size": 6, "num_replicas": 2, "rank": 2}, "rank must lie"),
    ],
)
def test_bad_arguments(kwargs, message):
    replicas, rank = kwargs.pop("num_replicas", 1), kwargs.pop("rank", 0)
    with pytest.raises(ValueError, match=message):
        RankShare(UnlabelledBatchSampler(**kwargs), replicas, rank)


class Noisy(torch.utils.data.Dataset):
    """Image i is i plus noise from the global generator; no label."""

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return torch.full((2,), float(index)) + torch.rand(2), None


def test_views_are_seeded_and_differ():
    views = Views(Noisy())
    (a1, a2), index = views[((1, 1), 7)]
    (b1, b2), _ = views[((1, 1), 7)]
    assert index == 1
    assert torch.equal(a1, b1) and torch.equal(a2, b2) and not torch.equal(a1, a2)
    (_, positive, negative), _ = views[((1, 3, 2), 7)]
    assert positive.floor().tolist() == [3.0, 3.0] and negative.floor().tolist() == [2.0, 2.0]


def test_folder_dataset_reads_every_image_unlabelled(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for i, name in enumerate(["a/1.png", "a/b/2.jpg", "3.bmp"]):
        Image.fromarray(np.full((6, 6, 3), 40 * i, dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    dataset = load_dataset("folder", tmp_path, "train")
    assert len(dataset) == 3 and dataset.labels.tolist() == [0, 0, 0]
    assert dataset[0][0].size == (6, 6)
    with pytest.raises(ValueError, match="no 'test' split"):
        load_dataset("folder", tmp_path, "test")
    with pytest.raises(ValueError, match="needs --data-root"):
        load_dataset("folder", None, "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        load_dataset("folder", tmp_path / "empty", "train")
