import pytest
import torch

from cdml.models import EmbeddingHead


def test_output_is_the_l2_normalised_linear_projection():
    torch.manual_seed(0)
    head = EmbeddingHead(16, embedding_size=8)
    features = torch.randn(5, 16)
    embeddings = head(features)
    assert embeddings.shape == (5, 8)
    for row, feature in zip(embeddings, features, strict=True):
        projected = head.linear.weight @ feature + head.linear.bias
        expected = projected / projected.pow(2).sum().sqrt()
        torch.testing.assert_close(row, expected)
        assert row.norm().item() == pytest.approx(1.0, abs=1e-6)


def test_without_normalisation_the_output_is_the_linear_layer():
    head = EmbeddingHead(16, embedding_size=4, normalize=False)
    features = torch.randn(3, 16)
    torch.testing.assert_close(head(features), head.linear(features))
    assert not torch.allclose(head(features).norm(dim=1), torch.ones(3))


def test_default_embedding_size_is_64():
    assert EmbeddingHead(10)(torch.randn(2, 10)).shape == (2, 64)


def test_gradients_reach_the_linear_layer():
    head = EmbeddingHead(6, embedding_size=3)
    head(torch.randn(4, 6))[:, 0].sum().backward()
    assert head.linear.weight.grad is not None and head.linear.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("in_features", "embedding_size", "name"), [(0, 4, "in_features"), (4, 0, "embedding_size")]
)
def test_rejects_non_positive_sizes(in_features, embedding_size, name):
    with pytest.raises(ValueError, match=name):
        EmbeddingHead(in_features, embedding_size)
