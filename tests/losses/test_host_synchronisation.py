"""No method reads a tensor's values on the host in its forward and backward pass, so on an
accelerator the host never waits for the device in the loss.

On CUDA, ``torch.cuda.set_sync_debug_mode("error")`` makes every synchronising call fail. On
the CPU, :func:`cdml.losses.as_on_accelerator` runs the losses as on an accelerator and a
guard makes every call that reads values (or has a shape that depends on them, which on CUDA
reads them too) raise for the duration.
"""

import contextlib

import pytest
import torch
import torch.nn.functional as F

from cdml.losses import (
    LABELLED,
    METHODS,
    RunInfo,
    as_on_accelerator,
    create_method,
    facility_location,
)
from cdml.models.build import build_model
from cdml.training.config import ModelConfig

N, CLASSES, DIM, SIZE = 24, 6, 8, 16

# Each of these reads values on the host, or returns a tensor whose shape depends on them.
_TENSOR_READS = (
    "item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__",
    "nonzero", "unique", "unique_consecutive", "masked_select", "argwhere", "bincount",
)  # fmt: skip
_TORCH_READS = (
    "nonzero", "unique", "unique_consecutive", "masked_select", "argwhere", "bincount",
    "equal", "allclose", "is_nonzero",
)  # fmt: skip


class HostRead(AssertionError):
    pass


@contextlib.contextmanager
def no_host_reads(monkeypatch):
    def forbid(name):
        def call(*args, **kwargs):
            raise HostRead(f"{name} reads values on the host")

        return call

    def checked_index(original):
        def index(self, key, *rest):
            keys = key if isinstance(key, tuple) else (key,)
            if any(isinstance(k, torch.Tensor) and k.dtype == torch.bool for k in keys):
                raise HostRead("indexing with a boolean mask reads it on the host")
            return original(self, key, *rest)

        return index

    def checked_repeat(original):
        def repeat(*args, **kwargs):
            repeats = args[1] if len(args) > 1 else kwargs.get("repeats")
            if isinstance(repeats, torch.Tensor) and kwargs.get("output_size") is None:
                raise HostRead("repeat_interleave by a tensor without output_size reads it")
            return original(*args, **kwargs)

        return repeat

    with monkeypatch.context() as patch, as_on_accelerator():
        patch.setattr(torch, "repeat_interleave", checked_repeat(torch.repeat_interleave))
        patch.setattr(
            torch.Tensor, "repeat_interleave", checked_repeat(torch.Tensor.repeat_interleave)
        )
        for name in _TENSOR_READS:
            patch.setattr(torch.Tensor, name, forbid(f"Tensor.{name}"))
        for name in _TORCH_READS:
            patch.setattr(torch, name, forbid(f"torch.{name}"))
        for name in ("__getitem__", "__setitem__"):
            patch.setattr(torch.Tensor, name, checked_index(getattr(torch.Tensor, name)))
        yield


def _method(name):
    torch.manual_seed(0)
    cls = METHODS[name]
    if cls.batch_kind == LABELLED:
        return create_method(name, RunInfo(embedding_size=DIM, num_classes=CLASSES)), None
    model = build_model(
        ModelConfig(backbone="test_resnet", pretrained=False, embedding_size=DIM), pretrained=False
    )
    run = RunInfo(
        model=model, embedding_size=DIM, num_classes=0, image_size=SIZE,
        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
    )  # fmt: skip
    return create_method(name, run), model


def _batch(name, device="cpu"):
    """A small batch of ``name``'s kind on ``device``: embeddings and labels (on the host, as a
    loader gives them), or views and their indices."""
    generator = torch.Generator().manual_seed(1)
    if METHODS[name].batch_kind == LABELLED:
        embeddings = F.normalize(torch.randn(N, DIM, generator=generator), dim=1).to(device)
        return embeddings.requires_grad_(), torch.arange(N) % CLASSES
    # MOM's batches hold an anchor, a positive and a negative; the others two views.
    views = [torch.rand(N // 2, 3, SIZE, SIZE, generator=generator) for _ in range(3)]
    return tuple(v.to(device) for v in views[: 3 if name == "mom" else 2]), torch.arange(N // 2)


def _step(method, model, batch):
    """One forward and backward pass of ``method`` on ``batch`` -> a gradient."""
    if model is None:
        embeddings, labels = batch
        method(embeddings, labels).backward()
        return embeddings.grad
    loss, _ = method.batch_loss(model, batch)
    loss.backward()
    return next(model.parameters()).grad


def test_the_guard_catches_reads(monkeypatch):
    with no_host_reads(monkeypatch):
        with pytest.raises(HostRead):
            bool(torch.ones(1) > 0)
        with pytest.raises(HostRead):
            torch.arange(3)[torch.arange(3) > 0]
        with pytest.raises(HostRead):
            torch.unique(torch.arange(3))
    assert bool(torch.ones(1) > 0)  # restored


@pytest.mark.parametrize("name", list(METHODS))
def test_no_method_reads_values_on_the_host(name, monkeypatch):
    method, model = _method(name)
    expected = _step(method, model, _batch(name))
    if name == "facility":
        # Labels reach the loss on the host, as data loaders give them: their classes are
        # counted there, where it costs the device nothing (the CUDA test below includes it).
        structure = facility_location._class_structure(torch.arange(N) % CLASSES)
        monkeypatch.setattr(facility_location, "_class_structure", lambda labels: structure)
    method, model = _method(name)
    batch = _batch(name)
    with no_host_reads(monkeypatch):
        gradient = _step(method, model, batch)
    assert torch.allclose(gradient, expected, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", list(METHODS))
def test_no_method_synchronises_on_cuda(name):
    method, model = _method(name)
    method = method.cuda()
    model = None if model is None else model.cuda()
    batch = _batch(name, "cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        _step(method, model, batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
