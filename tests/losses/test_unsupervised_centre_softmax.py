"""Centre-based softmax loss (METHODS.md section 4) against literal loops."""

from decimal import Decimal, localcontext

import pytest
import torch
import torch.nn.functional as F

from cdml.losses.centre_softmax import CentreSoftmaxLoss


def dot(u, v):
    return sum(a * b for a, b in zip(u, v, strict=True))


def centre_literal(embeddings, centroids, assignments, t, digits=50):
    """The formula term by term in ``digits``-digit decimals, which hold ``exp(f.c / t)`` where
    float64 overflows and ``1 - e_ij / Z_i`` where it cancels. Row ``i``'s other view is row
    ``(i + B) mod 2B``."""
    with localcontext() as context:
        context.prec = digits
        return _centre_literal(embeddings, centroids, assignments, t)


def _centre_literal(embeddings, centroids, assignments, t):
    f = [[Decimal(float(v)) for v in row] for row in embeddings.tolist()]
    c = [[Decimal(float(v)) for v in row] for row in centroids.tolist()]
    t = Decimal(t)
    rows, k = len(f), len(c)
    total = Decimal(0)
    for i in range(rows):
        own = int(assignments[i])
        pos = (dot(f[i], f[(i + rows // 2) % rows]) / t).exp()
        e = [(dot(f[i], c[j]) / t).exp() for j in range(k)]
        z = sum(e)
        z_negative = sum(e[j] for j in range(k) if j != own)
        total += (pos / z_negative).ln()
        total += sum((1 - e[j] / z).ln() for j in range(k) if j != own)
    return float(-total / rows)


def centre_literal_torch(embeddings, centroids, assignments, t):
    """Same formula with explicit loops in torch, the other view detached and the centroids
    constant: autograd of this is the gradient the loss must have."""
    rows, k = len(embeddings), len(centroids)
    c = centroids.detach()
    terms = []
    for i in range(rows):
        own = int(assignments[i])
        other = embeddings[(i + rows // 2) % rows].detach()
        pos = torch.exp(embeddings[i] @ other / t)
        e = [torch.exp(embeddings[i] @ c[j] / t) for j in range(k)]
        z = sum(e)
        z_negative = sum(e[j] for j in range(k) if j != own)
        term = torch.log(pos / z_negative)
        for j in range(k):
            if j != own:
                term = term + torch.log(1 - e[j] / z)
        terms.append(term)
    return -sum(terms) / rows


def unit_rows(n, d, seed, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=generator, dtype=dtype), dim=1)


def batch(b, k, d, seed):
    generator = torch.Generator().manual_seed(seed + 1000)
    assignments = torch.randint(k, (b,), generator=generator).repeat(2)
    return unit_rows(2 * b, d, seed), unit_rows(k, d, seed + 500), assignments


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    ("b", "k", "t"), [(1, 2, 0.1), (3, 2, 0.1), (6, 4, 0.1), (10, 7, 0.5), (4, 3, 0.02)]
)
def test_centre_softmax_equals_the_literal_formula(seed, b, k, t):
    f, c, assignments = batch(b, k, 8, seed)
    expected = centre_literal(f, c, assignments, t)
    loss = CentreSoftmaxLoss(t)
    assert loss(f, c, assignments).item() == pytest.approx(expected, rel=1e-10)
    value32 = loss(f.float(), c.float(), assignments)
    assert value32.dtype == torch.float32
    assert value32.item() == pytest.approx(expected, rel=1e-5)


def test_centre_softmax_is_stable_at_low_temperature():
    """At t = 0.002 the literal ``exp(f.c / t)`` overflows float64 and ``1 - e_ij / Z_i``
    cancels to 0; the loss stays finite and accurate."""
    f, c, assignments = batch(4, 5, 6, 0)
    expected = centre_literal(f, c, assignments, 0.002, digits=1000)
    value = CentreSoftmaxLoss(0.002)(f.float(), c.float(), assignments)
    assert torch.isfinite(value)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    assert CentreSoftmaxLoss(0.002)(f, c, assignments).item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_centre_softmax_gradient_treats_other_view_and_centroids_as_constants(seed):
    f, c, assignments = batch(4, 3, 5, seed)
    f.requires_grad_()
    c.requires_grad_()
    CentreSoftmaxLoss(0.2)(f, c, assignments).backward()
    reference = f.detach().clone().requires_grad_()
    centre_literal_torch(reference, c, assignments, 0.2).backward()
    torch.testing.assert_close(f.grad, reference.grad, rtol=1e-9, atol=1e-12)
    assert c.grad is None


def test_centre_softmax_under_autocast_returns_float32():
    f, c, assignments = batch(8, 4, 16, 1)
    expected = centre_literal(f, c, assignments, 0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = CentreSoftmaxLoss()(f.bfloat16(), c.bfloat16(), assignments)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(expected, rel=5e-2)


def test_centre_softmax_single_cluster_gives_zero_with_a_gradient():
    f, c, _ = batch(3, 1, 4, 0)
    f.requires_grad_()
    value = CentreSoftmaxLoss()(f, c, torch.zeros(6, dtype=torch.long))
    assert value.item() == 0
    value.backward()
    assert torch.equal(f.grad, torch.zeros_like(f))


def test_centre_softmax_temperature_validation():
    for bad in (0.0, -0.1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            CentreSoftmaxLoss(bad)
    assert CentreSoftmaxLoss().temperature == 0.1


@pytest.mark.parametrize(
    ("embeddings", "centroids", "assignments", "message"),
    [
        (torch.zeros(5, 3), torch.zeros(2, 3), torch.zeros(5, dtype=torch.long), "embeddings"),
        (torch.zeros(6), torch.zeros(2, 3), torch.zeros(6, dtype=torch.long), "embeddings"),
        (torch.zeros(4, 3), torch.zeros(2, 4), torch.zeros(4, dtype=torch.long), "centroids"),
        (torch.zeros(4, 3), torch.zeros(3), torch.zeros(4, dtype=torch.long), "centroids"),
        (torch.zeros(4, 3), torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), "assignments"),
        (torch.zeros(4, 3), torch.zeros(2, 3), torch.zeros(4), "assignments"),
    ],
)
def test_centre_softmax_rejects_bad_shapes(embeddings, centroids, assignments, message):
    with pytest.raises(ValueError, match=message):
        CentreSoftmaxLoss()(embeddings, centroids, assignments)
