"""RIM clustering loss and cluster statistics against high-precision literal loops."""

import math
from decimal import Decimal, localcontext

import pytest
import torch
import torch.nn.functional as F

from cdml.losses.rim import RIMClusteringLoss, cluster_statistics


def rim_literal(probs):
    """METHODS.md section 4, term by term, in 40-digit decimals (``0 log 0 = 0``)."""
    with localcontext() as context:
        context.prec = 40
        p = [[Decimal(float(v)) for v in row] for row in probs.tolist()]
        n, k = len(p), len(p[0])
        conditional = Decimal(0)
        for i in range(n):
            for j in range(k):
                if p[i][j] > 0:
                    conditional -= p[i][j] * p[i][j].ln()
        conditional /= n
        marginal = Decimal(0)
        for j in range(k):
            mean = sum(p[i][j] for i in range(n)) / n
            if mean > 0:
                marginal -= mean * mean.ln()
        return float(conditional / Decimal(n).ln() + 1 - marginal / Decimal(k).ln())


def statistics_literal(probs):
    """Argmax counts per cluster (ties: the lower index), and their entropy over ``log K``."""
    rows = probs.tolist()
    n, k = len(rows), len(rows[0])
    counts = [0] * k
    for row in rows:
        counts[max(range(k), key=lambda j: (row[j], -j))] += 1
    entropy = -sum(c / n * math.log(c / n) for c in counts if c) / math.log(k)
    return sum(c > 0 for c in counts), entropy


def random_probs(n, k, seed, sharpness=3.0):
    generator = torch.Generator().manual_seed(seed)
    logits = sharpness * torch.randn(n, k, generator=generator, dtype=torch.float64)
    return torch.softmax(logits, 1)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("n", "k"), [(2, 2), (3, 7), (20, 4), (128, 32)])
def test_rim_equals_the_literal_formula(seed, n, k):
    probs = random_probs(n, k, seed)
    expected = rim_literal(probs)
    assert RIMClusteringLoss()(probs).item() == pytest.approx(expected, rel=1e-12)
    # float32 inputs are computed (and returned) in float32.
    value32 = RIMClusteringLoss()(probs.float())
    assert value32.dtype == torch.float32
    assert value32.item() == pytest.approx(expected, rel=1e-5)


def test_rim_is_finite_with_exact_zeros():
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.2, 0.0, 0.8]], dtype=torch.float64)
    value = RIMClusteringLoss()(probs)
    assert torch.isfinite(value)
    assert value.item() == pytest.approx(rim_literal(probs), rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_rim_gradients_match_finite_differences(seed):
    # Probabilities well above the finite-difference step (the loss's domain ends at 0).
    probs = random_probs(5, 4, seed, sharpness=1.0).requires_grad_()
    assert torch.autograd.gradcheck(RIMClusteringLoss(), (probs,))
    # Through the softmax that produces the probabilities, as in training.
    logits = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    logits.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: RIMClusteringLoss()(torch.softmax(x, 1)), (logits,))


def test_rim_under_autocast_returns_float32():
    probs = random_probs(16, 8, 0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = RIMClusteringLoss()(probs.bfloat16())
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(rim_literal(probs), rel=2e-2)


def test_rim_bounds():
    """Confident and balanced gives 0; all rows uniform over the clusters gives
    ``log K / log N`` (maximal conditional entropy, balanced marginal)."""
    n, k = 12, 4
    uniform = torch.full((n, k), 1 / k, dtype=torch.float64)
    assert RIMClusteringLoss()(uniform).item() == pytest.approx(math.log(k) / math.log(n))
    balanced = F.one_hot(torch.arange(n) % k, k).double()
    assert RIMClusteringLoss()(balanced).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("shape", [(4,), (1, 4), (4, 1), (2, 3, 4)])
def test_rim_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match=r"probs must have shape \(N, K\)"):
        RIMClusteringLoss()(torch.full(shape, 0.5))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("n", "k"), [(2, 2), (9, 5), (64, 32)])
def test_cluster_statistics_equal_the_literal_counts(seed, n, k):
    probs = random_probs(n, k, seed, sharpness=1.0 + seed).float()
    non_empty, entropy = statistics_literal(probs)
    stats = cluster_statistics(probs)
    assert set(stats) == {"non_empty_clusters", "cluster_entropy"}
    assert all(v.ndim == 0 and v.device == probs.device for v in stats.values())
    assert stats["non_empty_clusters"].item() == non_empty
    assert stats["cluster_entropy"].item() == pytest.approx(entropy, rel=1e-5, abs=1e-7)


def test_cluster_statistics_extremes_and_errors():
    collapsed = F.one_hot(torch.zeros(10, dtype=torch.long), 5).float()
    stats = cluster_statistics(collapsed)
    assert stats["non_empty_clusters"].item() == 1
    assert stats["cluster_entropy"].item() == pytest.approx(0.0, abs=1e-7)
    even = F.one_hot(torch.arange(10) % 5, 5).float()
    assert cluster_statistics(even)["cluster_entropy"].item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="probs must have shape"):
        cluster_statistics(torch.ones(3))
