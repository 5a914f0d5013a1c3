"""What every loss shares: call convention, validation, dtypes, autocast, devices, gradients."""

import pytest
import torch

from cdml.losses import LABELLED, METHODS, GroupLoss, RunInfo, create_method

DIM, CLASSES = 6, 4
# Every supervised method of the registry (a new one is tested as it is added), with
# settings that make these small batches informative where the defaults would not.
PARAMS = {"facility": {"margin_multiplier": 3.0}, "group": {"temperature": 2.0}}
SUPERVISED = [name for name, cls in METHODS.items() if cls.batch_kind == LABELLED]


def _batch(n: int = 12, seed: int = 0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.nn.functional.normalize(torch.randn(n, DIM, generator=generator), dim=1)
    labels = torch.arange(n) % CLASSES
    return embeddings.to(dtype), labels


@pytest.fixture(params=SUPERVISED)
def loss(request):
    torch.manual_seed(0)
    run = RunInfo(embedding_size=DIM, num_classes=CLASSES)
    return create_method(request.param, run, **PARAMS.get(request.param, {}))


def test_registry_builds_every_loss():
    assert {"facility", "group", "triplet", "lifted", "npairs"} <= set(SUPERVISED)
    assert create_method("triplet", margin=0.3).margin == 0.3
    assert isinstance(create_method("group", embedding_size=4, num_classes=2), GroupLoss)
    with pytest.raises(
        ValueError, match=f"unknown loss 'no-such-loss'; known: {', '.join(METHODS)}"
    ):
        create_method("no-such-loss")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_returns_a_scalar_in_the_input_precision(loss, dtype):
    embeddings, labels = _batch(dtype=dtype)
    value = loss(embeddings, labels)
    assert value.shape == () and value.dtype == dtype and torch.isfinite(value)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(loss, dtype):
    embeddings, labels = _batch()
    half = embeddings.to(dtype)
    value = loss(half, labels)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(loss(half.float(), labels).item(), rel=1e-6)


def test_autocast_computes_in_float32(loss):
    embeddings, labels = _batch()
    expected = loss(embeddings, labels)
    embeddings.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(embeddings, labels)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    value.backward()
    assert torch.isfinite(embeddings.grad).all() and embeddings.grad.abs().sum() > 0


def test_gradcheck(loss):
    embeddings, labels = _batch(n=8, seed=1, dtype=torch.float64)
    embeddings.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: loss(x, labels), (embeddings,))


def test_integer_labels_of_any_width(loss):
    embeddings, labels = _batch()
    expected = loss(embeddings, labels).item()
    for dtype in (torch.int32, torch.uint8):
        assert loss(embeddings, labels.to(dtype)).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_equals_cpu(loss, dtype):
    embeddings, labels = _batch(n=32, dtype=dtype)
    expected = loss(embeddings, labels)
    loss.cuda()
    on_gpu = embeddings.cuda().requires_grad_()
    value = loss(on_gpu, labels.cuda())
    assert value.device.type == "cuda"
    assert value.item() == pytest.approx(expected.item(), rel=1e-4)
    value.backward()
    assert torch.isfinite(on_gpu.grad).all()
    with torch.autocast("cuda", dtype=torch.float16):
        assert loss(on_gpu, labels.cuda()).dtype == dtype


def _bad_batches():
    embeddings, labels = _batch()
    nan, inf = embeddings.clone(), embeddings.clone()
    nan[3, 1] = float("nan")
    inf[0, 0] = float("inf")
    return [
        (embeddings.tolist(), labels, "embeddings must be a torch.Tensor"),
        (embeddings, labels.tolist(), "labels must be a torch.Tensor"),
        (embeddings[0], labels, r"embeddings must have shape \(n, d\)"),
        (embeddings.long(), labels, "embeddings must be floating point"),
        (embeddings, labels[:, None], r"labels must have shape \(n,\)"),
        (embeddings, labels.float(), "labels must be integers"),
        (embeddings, labels > 1, "labels must be integers"),
        (embeddings, labels[:-1], "embeddings has 12 rows but labels has 11"),
        (embeddings[:1], labels[:1], "at least two samples"),
        (nan, labels, "NaN or inf"),
        (inf, labels, "NaN or inf"),
    ]


@pytest.mark.parametrize(("embeddings", "labels", "message"), _bad_batches())
def test_bad_input_raises(loss, embeddings, labels, message):
    with pytest.raises(ValueError, match=message):
        loss(embeddings, labels)
