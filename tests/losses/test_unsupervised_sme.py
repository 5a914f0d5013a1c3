"""Instance softmax embedding (SME) against a literal loop over its two-view formula."""

from decimal import Decimal, localcontext

import pytest
import torch
import torch.nn.functional as F

from cdml.losses.sme import InstanceSoftmaxLoss


def dot(u, v):
    return sum(a * b for a, b in zip(u, v, strict=True))


def sme_literal(embeddings, t, digits=50):
    """Every row ``i`` of ``[view 1; view 2]`` is a query whose positive is its other view
    ``q(i) = (i + B) mod 2B``; with ``s_ik = exp(f_i . f_k / t)`` and ``Z_i = sum_{k != i}
    s_ik``, the loss is ``-(1/2B) sum_i [log(s_iq(i) / Z_i) + sum_{k != i, q(i)}
    log(1 - s_ik / Z_i)]`` (Ye et al., CVPR 2019, eq. 6, with both views as queries)."""
    with localcontext() as context:
        context.prec = digits
        f = [[Decimal(float(v)) for v in row] for row in embeddings.tolist()]
        t = Decimal(t)
        rows = len(f)
        total = Decimal(0)
        for i in range(rows):
            q = (i + rows // 2) % rows
            s = [(dot(f[i], f[k]) / t).exp() for k in range(rows)]
            z = sum(s[k] for k in range(rows) if k != i)
            total += (s[q] / z).ln()
            total += sum((1 - s[k] / z).ln() for k in range(rows) if k not in (i, q))
        return float(-total / rows)


def unit_rows(n, d, seed, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=generator, dtype=dtype), dim=1)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("b", "t"), [(2, 0.1), (3, 0.1), (8, 0.1), (6, 0.5), (5, 1.0)])
def test_sme_equals_the_literal_formula(seed, b, t):
    f = unit_rows(2 * b, 8, seed)
    expected = sme_literal(f, t)
    loss = InstanceSoftmaxLoss(t)
    assert loss(f).item() == pytest.approx(expected, rel=1e-10)
    value32 = loss(f.float())
    assert value32.dtype == torch.float32
    assert value32.item() == pytest.approx(expected, rel=1e-5)


def dominated_batch():
    """Row 0's other view (row 2) is far and another image (row 1) nearly coincides with it:
    ``s_01 / Z_0 = 1 - 3e-8``, which rounds to 1 in float32 at the default temperature."""
    rows = [[1.0, 0.0, 0.0], [0.99, 0.141, 0.0], [-0.8, 0.0, 0.6], [-0.8, 0.0, -0.6]]
    return F.normalize(torch.tensor(rows, dtype=torch.float64), dim=1)


@pytest.mark.parametrize(
    ("embeddings", "t", "dtype", "rel"),
    [
        (dominated_batch(), 0.1, torch.float32, 1e-5),
        (unit_rows(16, 8, 3), 0.02, torch.float64, 1e-9),
    ],
    ids=["dominant-negative-float32", "low-temperature-float64"],
)
def test_sme_is_accurate_when_one_negative_dominates(embeddings, t, dtype, rel):
    value = InstanceSoftmaxLoss(t)(embeddings.to(dtype))
    assert value.item() == pytest.approx(sme_literal(embeddings, t, digits=400), rel=rel)


def test_sme_is_symmetric_in_views_and_images():
    first, second = unit_rows(5, 6, 0), unit_rows(5, 6, 1)
    loss = InstanceSoftmaxLoss()
    value = loss(torch.cat([first, second]))
    torch.testing.assert_close(loss(torch.cat([second, first])), value)
    order = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(loss(torch.cat([first[order], second[order]])), value)
    # Matching views score better than views paired with other images.
    assert loss(torch.cat([first, first])) < loss(torch.cat([first, first.roll(1, 0)]))


@pytest.mark.parametrize("seed", range(2))
def test_sme_gradients_match_finite_differences(seed):
    # Finite differences move both sides of every product: the undetached form.
    f = unit_rows(6, 3, seed).requires_grad_()
    assert torch.autograd.gradcheck(InstanceSoftmaxLoss(0.5, detach_keys=False), (f,))


def batch_criterion_reference(x, t):
    """The authors' batch criterion, step by step: the positive and the key side of every
    product are constants (``.data`` in their code), the query rows carry the gradient."""
    b = len(x)
    reordered = torch.cat([x[b // 2 :], x[: b // 2]])
    positive = ((x * reordered.detach()).sum(1) / t).exp()
    all_products = (x @ x.t().detach() / t).exp() * (1 - torch.eye(b, dtype=x.dtype))
    all_div = all_products.sum(1)
    p_positive = positive / all_div
    log_negative = (1 - all_products / all_div[:, None]).log().sum(1)
    log_negative = log_negative - (1 - p_positive).log()  # the positive is no negative
    return -(p_positive.log().sum() + log_negative.sum()) / b


@pytest.mark.parametrize("seed", range(3))
def test_sme_gradient_equals_the_authors_detached_form(seed):
    f = unit_rows(10, 6, seed).requires_grad_()
    reference = batch_criterion_reference(f, 0.1)
    (expected,) = torch.autograd.grad(reference, f)
    value = InstanceSoftmaxLoss(0.1)(f)
    (gradient,) = torch.autograd.grad(value, f)
    torch.testing.assert_close(value, reference)
    torch.testing.assert_close(gradient, expected)
    (both_sides,) = torch.autograd.grad(InstanceSoftmaxLoss(0.1, detach_keys=False)(f), f)
    assert not torch.allclose(both_sides, expected, atol=1e-3)


def test_sme_under_autocast_returns_float32():
    f = unit_rows(16, 32, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = InstanceSoftmaxLoss()(f.bfloat16())
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(sme_literal(f, 0.1), rel=5e-2)


def test_sme_temperature_validation():
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            InstanceSoftmaxLoss(bad)


@pytest.mark.parametrize("shape", [(2, 3), (5, 3), (8,), (2, 4, 3)])
def test_sme_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match=r"embeddings must have shape \(2B, d\)"):
        InstanceSoftmaxLoss()(torch.zeros(shape))
