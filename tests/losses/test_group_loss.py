import pytest
import torch

from cdml.losses import GroupLoss

from .reference_baselines import group_loss_reference


def _batch(n: int, dim: int, n_classes: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    return embeddings, torch.randint(0, n_classes, (n,), generator=generator)


@pytest.mark.parametrize(
    ("temperature", "num_anchors", "num_iters", "seed"),
    [(24.0, 2, 1, 0), (79.0, 3, 1, 1), (1.0, 1, 3, 2), (54.0, 0, 2, 3)],
)
def test_equals_literal_reference(temperature, num_anchors, num_iters, seed):
    torch.manual_seed(seed)
    embeddings, labels = _batch(14, 6, 5, seed)
    loss = GroupLoss(6, 7, temperature, num_anchors, num_iters)
    expected = group_loss_reference(
        embeddings.numpy(),
        labels.tolist(),
        loss.classifier.weight.detach().numpy(),
        loss.classifier.bias.detach().numpy(),
        temperature,
        num_anchors,
        num_iters,
    )
    assert loss(embeddings, labels).item() == pytest.approx(expected, rel=1e-9)


def test_classifier_is_a_trained_parameter():
    loss = GroupLoss(embedding_size=4, num_classes=3)
    assert isinstance(loss.classifier, torch.nn.Linear)
    assert loss.classifier.in_features == 4 and loss.classifier.out_features == 3
    assert {name for name, _ in loss.named_parameters()} == {
        "classifier.weight",
        "classifier.bias",
    }
    embeddings, labels = _batch(8, 4, 3, 0)
    embeddings = embeddings.float().requires_grad_()
    loss(embeddings, labels).backward()
    assert loss.classifier.weight.grad is not None and loss.classifier.weight.grad.abs().sum() > 0
    assert embeddings.grad.abs().sum() > 0


def test_warmup_loss_is_the_classifier_cross_entropy():
    embeddings, labels = _batch(12, 4, 3, 2)
    embeddings = embeddings.float().requires_grad_()
    loss = GroupLoss(embedding_size=4, num_classes=3)
    value = loss.warmup_loss(embeddings, labels)
    expected = torch.nn.functional.cross_entropy(loss.classifier(embeddings), labels)
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    value.backward()
    assert embeddings.grad.abs().sum() > 0 and loss.classifier.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="num_classes"):
        loss.warmup_loss(embeddings, labels + 3)


def test_all_anchors_leave_only_the_cross_entropy():
    # With every sample an anchor, the propagation keeps one-hot rows: its term is ~0.
    torch.manual_seed(0)
    embeddings, _ = _batch(6, 3, 1, 1)
    labels = torch.tensor([0, 1, 0, 1, 2, 2])
    loss = GroupLoss(3, 3, num_anchors=2)
    logits = loss.classifier(embeddings.float()).double()
    cross_entropy = torch.nn.functional.cross_entropy(logits, labels)
    assert loss(embeddings, labels).item() == pytest.approx(cross_entropy.item(), abs=1e-6)


def test_constant_embedding_gives_finite_loss_and_gradient():
    embeddings, labels = _batch(8, 4, 3, 2)
    embeddings[5] = 0.5  # nothing left once centred: no Pearson similarity
    embeddings = embeddings.float().requires_grad_()
    value = GroupLoss(4, 3, num_anchors=1)(embeddings, labels)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(embeddings.grad).all()


@pytest.mark.parametrize(
    ("labels", "dim", "message"),
    [
        ([0, 1, 5, 1], 3, "num_classes"),
        ([0, -1, 2, 1], 3, "num_classes"),
        ([0, 1, 2, 1], 4, "embedding_size"),
    ],
)
def test_bad_batch_raises(labels, dim, message):
    embeddings = torch.randn(4, dim)
    with pytest.raises(ValueError, match=message):
        GroupLoss(3, 3)(embeddings, torch.tensor(labels))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"embedding_size": 0}, "embedding_size"),
        ({"num_classes": 2.5}, "num_classes"),
        ({"temperature": 0.0}, "temperature"),
        ({"num_anchors": -1}, "num_anchors"),
        ({"num_iters": True}, "num_iters"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, message):
    arguments = {"embedding_size": 4, "num_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        GroupLoss(**arguments)
