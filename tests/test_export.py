"""Exported models (ONNX under onnxruntime, TorchScript under torch.jit.load) reproduce
`cdml embed` on the digits test images, fed as their sidecar says."""

import json
import warnings

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from cdml.cli import main
from cdml.data import load_dataset


@pytest.fixture(scope="module")
def embedded(tiny_checkpoint, tmp_path_factory):
    """A trained checkpoint and `cdml embed`'s embeddings of the digits test images."""
    checkpoint = tiny_checkpoint
    npz = tmp_path_factory.mktemp("export") / "test.npz"
    argv = ["embed", "--checkpoint", checkpoint, "--dataset", "digits", "--out", npz]
    assert main([str(a) for a in argv]) == 0
    with np.load(npz) as arrays:
        return checkpoint, arrays["embeddings"]


def images_as_the_sidecar_says(sidecar):
    """The digits test images preprocessed from the sidecar's description alone."""
    spec = sidecar["input"]
    preprocess = v2.Compose([
        v2.ToImage(), v2.RGB(), v2.Resize(spec["resize"]), v2.CenterCrop(spec["crop"]),
        v2.ToDtype(torch.float32, scale=True), v2.Normalize(spec["mean"], spec["std"]),
    ])  # fmt: skip
    dataset = load_dataset("digits", split="test")
    return torch.stack([preprocess(dataset[i][0]) for i in range(len(dataset))]).numpy()


def export(checkpoint, out, fmt, capsys):
    argv = ["export", "--checkpoint", checkpoint, "--out", out, "--format", fmt]
    assert main([str(a) for a in argv]) == 0
    assert f"{fmt} model written to {out}" in " ".join(capsys.readouterr().out.split())
    sidecar = json.loads(out.with_name(out.name + ".json").read_text())
    assert sidecar["input"]["shape"] == ["batch", 3, 16, 16] and sidecar["format"] == fmt
    output = {"name": "embeddings", "shape": ["batch", 64], "l2_normalized": True}
    assert sidecar["output"] == output
    assert len(sidecar["checkpoint_sha256"]) == 64
    return sidecar


def test_onnx_under_onnxruntime_reproduces_cdml_embed(embedded, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    checkpoint, expected = embedded
    out = tmp_path / "model.onnx"
    images = images_as_the_sidecar_says(export(checkpoint, out, "onnx", capsys))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (embeddings,) = session.run(["embeddings"], {"images": images})
    np.testing.assert_allclose(embeddings, expected, atol=1e-4, rtol=0)
    (one,) = session.run(["embeddings"], {"images": images[:1]})  # any batch size
    np.testing.assert_allclose(one, expected[:1], atol=1e-4, rtol=0)


def test_torchscript_reproduces_cdml_embed(embedded, tmp_path, capsys):
    checkpoint, expected = embedded
    out = tmp_path / "model.pt"
    images = images_as_the_sidecar_says(export(checkpoint, out, "torchscript", capsys))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = torch.jit.load(str(out))
    with torch.no_grad():
        embeddings = model(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(embeddings, expected, atol=1e-4, rtol=0)


def test_export_refuses_bad_input_by_name(embedded, tmp_path, capsys):
    checkpoint, _ = embedded
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    for argv, culprit in (
        (["--checkpoint", bad, "--out", tmp_path / "m.onnx"], bad),
        (["--checkpoint", checkpoint, "--out", tmp_path / "absent" / "m.onnx"], "absent"),
        (["--checkpoint", checkpoint, "--out", tmp_path / "m.onnx", "--image-size", "4"],
         "--image-size"),
    ):  # fmt: skip
        assert main(["export", *map(str, argv)]) == 2
        err = capsys.readouterr().err
        assert str(culprit) in err and "Traceback" not in err
    assert not list(tmp_path.glob("m.onnx*"))
