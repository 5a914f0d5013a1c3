"""The unsupervised losses against literal loops over the METHODS.md / paper formulas."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cdml.losses.centre_softmax import CentreSoftmaxLoss
from cdml.losses.mom import MOMTripletLoss, manifold_tuples
from cdml.losses.rim import RIMClusteringLoss, cluster_statistics
from cdml.losses.sme import InstanceSoftmaxLoss


def rim_literal(p):
    n, k = len(p), len(p[0])
    conditional = (
        -sum(p[i][j] * math.log(p[i][j]) for i in range(n) for j in range(k) if p[i][j] > 0) / n
    )
    mean = [sum(p[i][j] for i in range(n)) / n for j in range(k)]
    marginal = -sum(m * math.log(m) for m in mean if m > 0)
    return conditional / math.log(n) + 1 - marginal / math.log(k)


def centre_literal(f, c, assign, t, partners=None):
    rows = len(f)
    partners = f.roll(rows // 2, 0) if partners is None else partners
    total = 0.0
    for i in range(rows):
        other = partners[i]
        pos = math.exp(float(f[i] @ other) / t)
        e = [math.exp(float(f[i] @ c[j]) / t) for j in range(len(c))]
        z = sum(e)
        z_neg = sum(e[j] for j in range(len(c)) if j != assign[i])
        total += math.log(pos / z_neg)
        total += sum(math.log(1 - e[j] / z) for j in range(len(c)) if j != assign[i])
    return -total / rows


def sme_literal(f, t):
    rows = len(f)
    half = rows // 2
    total = 0.0
    for i in range(rows):
        s = [math.exp(float(f[i] @ f[k]) / t) for k in range(rows)]
        z = sum(s[k] for k in range(rows) if k != i)
        q = (i + half) % rows
        total += math.log(s[q] / z)
        total += sum(math.log(1 - s[k] / z) for k in range(rows) if k not in (i, q))
    return -total / rows


def unit_rows(n, d, seed, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=generator, dtype=dtype), dim=1)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("n", "k"), [(2, 2), (16, 4), (40, 32)])
def test_rim_equals_literal(seed, n, k):
    generator = torch.Generator().manual_seed(seed)
    probs = torch.softmax(3 * torch.randn(n, k, generator=generator, dtype=torch.float64), 1)
    if seed == 3:
        probs = F.one_hot(torch.arange(n) % k, k).double()  # zeros: 0 log 0 = 0
    value = RIMClusteringLoss()(probs)
    assert value.item() == pytest.approx(rim_literal(probs.tolist()), rel=1e-9, abs=1e-12)


def test_rim_extremes_and_statistics():
    even = F.one_hot(torch.arange(8) % 4, 4).float()  # confident and balanced
    assert RIMClusteringLoss()(even).item() == pytest.approx(0.0, abs=1e-6)
    collapsed = F.one_hot(torch.zeros(8, dtype=torch.long), 4).float()
    assert RIMClusteringLoss()(collapsed).item() == pytest.approx(1.0, abs=1e-6)
    stats = cluster_statistics(even)
    assert stats["non_empty_clusters"].item() == 4
    assert stats["cluster_entropy"].item() == pytest.approx(1.0)
    assert cluster_statistics(collapsed)["cluster_entropy"].item() == pytest.approx(0.0)
    with pytest.raises(ValueError, match="probs must have shape"):
        RIMClusteringLoss()(torch.ones(1, 4))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("b", "k", "t"), [(1, 2, 0.1), (6, 3, 0.1), (16, 8, 0.5), (8, 5, 1.0)])
def test_centre_softmax_equals_literal(seed, b, k, t):
    f = unit_rows(2 * b, 6, seed)
    c = unit_rows(k, 6, seed + 100)
    assign = torch.arange(2 * b) % k
    value = CentreSoftmaxLoss(t)(f, c, assign)
    assert value.item() == pytest.approx(centre_literal(f, c, assign.tolist(), t), rel=1e-9)


def test_centre_softmax_gradient_and_constants():
    f = unit_rows(8, 5, 0).requires_grad_()
    c = unit_rows(3, 5, 1).requires_grad_()
    assign = torch.tensor([0, 1, 2, 0, 0, 1, 2, 0])
    loss = CentreSoftmaxLoss(0.5)
    loss(f, c, assign).backward()
    # The other view is a constant: the gradient is that of the literal formula with the
    # partners frozen at their current values (central differences).
    frozen = f.detach().clone()

    def literal(x):
        return centre_literal(x, c.detach(), assign.tolist(), 0.5, partners=frozen.roll(4, 0))

    for row, col in [(0, 0), (3, 2), (7, 4)]:
        step = torch.zeros_like(frozen)
        step[row, col] = 1e-6
        numeric = (literal(frozen + step) - literal(frozen - step)) / 2e-6
        assert f.grad[row, col].item() == pytest.approx(numeric, rel=1e-4, abs=1e-7)
    assert c.grad is None  # centroids are constants
    assert loss(f, c[:1], torch.zeros(8, dtype=torch.long)).item() == 0  # one cluster


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((torch.zeros(3, 2), torch.zeros(2, 2), torch.zeros(3, dtype=torch.long)), "(2B, d)"),
        ((torch.zeros(4, 2), torch.zeros(2, 3), torch.zeros(4, dtype=torch.long)), "centroids"),
        ((torch.zeros(4, 2), torch.zeros(2, 2), torch.zeros(4)), "assignments"),
    ],
)
def test_centre_softmax_bad_shapes(args, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        CentreSoftmaxLoss()(*args)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("b", "t"), [(2, 0.1), (5, 0.1), (12, 0.5)])
def test_sme_equals_literal(seed, b, t):
    f = unit_rows(2 * b, 7, seed)
    value = InstanceSoftmaxLoss(t)(f)
    assert value.item() == pytest.approx(sme_literal(f, t), rel=1e-9)


def test_sme_gradient_prefers_matching_views():
    f = unit_rows(8, 4, 3).requires_grad_()
    torch.autograd.gradcheck(lambda x: InstanceSoftmaxLoss(0.5)(x), (f,))
    views = unit_rows(4, 16, 0)
    matched = InstanceSoftmaxLoss()(torch.cat([views, views]))
    shuffled = InstanceSoftmaxLoss()(torch.cat([views, views.roll(1, 0)]))
    assert matched < shuffled
    with pytest.raises(ValueError, match="B >= 2"):
        InstanceSoftmaxLoss()(torch.zeros(2, 3))


def two_arcs(n, seed):
    """Two interleaved half circles: neighbours along an arc are manifold neighbours."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, np.pi, n)
    arc = np.arange(n) % 2
    x = np.where(arc == 0, np.cos(angle), 1 - np.cos(angle))
    y = np.where(arc == 0, np.sin(angle), 0.5 - np.sin(angle))
    points = np.stack([x, y, np.full(n, 1.5)], 1) + rng.normal(0, 0.02, (n, 3))
    return torch.tensor(points, dtype=torch.float32), arc


def test_manifold_tuples_find_hard_positives_on_the_same_arc():
    points, arc = two_arcs(600, 0)
    positives, negatives = manifold_tuples(points, k=20, graph_k=8)
    assert positives.shape == negatives.shape == (600, 20)
    valid = positives >= 0
    assert valid.any(1).float().mean() > 0.5
    same_arc = arc[positives[valid].numpy()] == np.repeat(arc, valid.sum(1).numpy())
    assert same_arc.mean() > 0.95
    # Positives and negatives are disjoint, and neither holds the point itself.
    rows = torch.arange(600)[:, None]
    assert not (positives == rows).any() and not (negatives == rows).any()
    for i in range(0, 600, 37):
        p = set(positives[i][positives[i] >= 0].tolist())
        assert p.isdisjoint(negatives[i][negatives[i] >= 0].tolist())


def test_manifold_tuples_scale_in_bounded_memory():
    features = torch.randn(5000, 64)
    positives, negatives = manifold_tuples(features, k=10, graph_k=10, iterations=5)
    assert positives.shape == (5000, 10)
    with pytest.raises(ValueError, match="alpha"):
        manifold_tuples(features[:100], k=5, graph_k=5, alpha=1.0)
    with pytest.raises(ValueError, match="N > k"):
        manifold_tuples(features[:10], k=50)


def test_mom_triplet_loss_literal():
    a, p, n = unit_rows(6, 3, 0), unit_rows(6, 3, 1), unit_rows(6, 3, 2)
    literal = np.mean(
        [max(0.0, float((a[i] - p[i]).norm() - (a[i] - n[i]).norm()) + 0.5) for i in range(6)]
    )
    assert MOMTripletLoss(0.5)(a, p, n).item() == pytest.approx(literal, rel=1e-5, abs=1e-6)
    with pytest.raises(ValueError, match="same"):
        MOMTripletLoss()(a, p, n[:2])
