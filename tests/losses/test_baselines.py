import pytest
import torch

from cdml.losses import LiftedStructLoss, NPairsLoss, TripletSemihardLoss

from .reference_baselines import (
    lifted_struct_reference,
    npairs_reference,
    triplet_semihard_reference,
)

CASES = [
    (TripletSemihardLoss, triplet_semihard_reference, {"margin": 1.0}),
    (TripletSemihardLoss, triplet_semihard_reference, {"margin": 0.2}),
    (LiftedStructLoss, lifted_struct_reference, {"margin": 1.0}),
    (LiftedStructLoss, lifted_struct_reference, {"margin": 0.5}),
    (NPairsLoss, npairs_reference, {"reg_lambda": 0.002}),
    (NPairsLoss, npairs_reference, {"reg_lambda": 0.5}),
]


def _batch(n: int, n_classes: int, seed: int, scale: float = 1.0):
    generator = torch.Generator().manual_seed(seed)
    embeddings = scale * torch.randn(n, 5, generator=generator, dtype=torch.float64)
    return embeddings, torch.randint(0, n_classes, (n,), generator=generator)


@pytest.mark.parametrize(("loss_class", "reference", "kwargs"), CASES)
@pytest.mark.parametrize(("n", "n_classes", "seed"), [(6, 2, 0), (12, 3, 1), (20, 6, 2)])
def test_equals_literal_reference(loss_class, reference, kwargs, n, n_classes, seed):
    embeddings, labels = _batch(n, n_classes, seed, scale=0.5)
    value = loss_class(**kwargs)(embeddings, labels)
    expected = reference(embeddings.numpy(), labels.tolist(), *kwargs.values())
    assert value.dtype == torch.float64
    assert value.item() == pytest.approx(expected, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize(("loss_class", "reference", "kwargs"), CASES[::2])
@pytest.mark.parametrize("labels", [[3, 3, 3, 3], [0, 1, 2, 3], [0, 0, 1, 2]])
def test_degenerate_batches_equal_reference(loss_class, reference, kwargs, labels):
    embeddings, _ = _batch(4, 1, 3)
    value = loss_class(**kwargs)(embeddings, torch.tensor(labels))
    assert value.item() == pytest.approx(reference(embeddings.numpy(), labels), abs=1e-12)


def test_triplet_mining_by_hand():
    # Points on a line, margin 2. Class 0 at 0 and 1, class 1 at 0.5, 1.5 and 3. Per ordered
    # positive pair (a, p): D2[a, p], the chosen negative's D2 and the hinge:
    # (0,1): 1, 2.25 (semi-hard) -> 0.75     (1,0): 1, 4 -> 0
    # (2,3): 1, 0.25 (farthest) -> 2.75      (2,4): 6.25, 0.25 (farthest) -> 8
    # (3,2): 1, 2.25 -> 0.75                 (3,4): 2.25, 2.25 (not strictly farther) -> 2
    # (4,2): 6.25, 9 -> 0                    (4,3): 2.25, 4 -> 0.25
    embeddings = torch.tensor([[0.0], [1.0], [0.5], [1.5], [3.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 1])
    value = TripletSemihardLoss(margin=2.0)(embeddings, labels)
    assert value.item() == pytest.approx(14.5 / 8)


def test_lifted_is_stable_for_far_points():
    # exp(margin - D) underflows in float32 here; the log-sum-exp must not.
    embeddings, labels = _batch(10, 3, 4, scale=100.0)
    value = LiftedStructLoss()(embeddings.float(), labels)
    expected = lifted_struct_reference(embeddings.numpy(), labels.tolist())
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_npairs_uses_first_two_samples_of_each_class():
    embeddings, _ = _batch(7, 1, 5)
    labels = torch.tensor([4, 2, 4, 2, 4, 9, 2])
    value = NPairsLoss()(embeddings, labels)
    # samples 4 and 6 (third of their class) and 5 (alone) must not matter
    moved = embeddings.clone()
    moved[[4, 5, 6]] += 10.0
    assert NPairsLoss()(moved, labels).item() == pytest.approx(value.item(), rel=1e-12)
    assert value.item() == pytest.approx(npairs_reference(embeddings.numpy(), labels.tolist()))


@pytest.mark.parametrize(
    ("loss_class", "kwargs", "message"),
    [
        (TripletSemihardLoss, {"margin": float("nan")}, "margin"),
        (LiftedStructLoss, {"margin": float("inf")}, "margin"),
        (NPairsLoss, {"reg_lambda": -1.0}, "reg_lambda"),
    ],
)
def test_bad_hyperparameters_raise(loss_class, kwargs, message):
    with pytest.raises(ValueError, match=message):
        loss_class(**kwargs)
