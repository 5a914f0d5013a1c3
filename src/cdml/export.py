"""Export a trained embedding model to ONNX or TorchScript, with a JSON sidecar that says
how to feed it."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from cdml.checks import check_image_size
from cdml.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from cdml.inference import checkpoint_digest, load_checkpoint
from cdml.io import atomic_path, check_output, is_json_object, write_json

FORMATS = ("onnx", "torchscript")
INPUT_NAME, OUTPUT_NAME = "images", "embeddings"


def export_model(
    checkpoint: str | Path,
    out: str | Path,
    format: str = "onnx",
    image_size: int | None = None,
) -> dict[str, Any]:
    """Write the embedding model of ``checkpoint`` to ``out`` and its sidecar to
    ``out + ".json"``; return the sidecar.

    The model maps ``images`` ``(batch, 3, S, S)`` float32 (NCHW, any batch size) to
    ``embeddings`` ``(batch, d)``. Its input is the test-time preprocessing of ``cdml embed``,
    which the sidecar spells out: RGB, shorter side resized to ``resize`` pixels (bilinear,
    antialiased), centre crop of ``S``, values ``(x / 255 - mean) / std`` per channel.

    Args:
        checkpoint: a cdml training checkpoint (read with ``weights_only=True``).
        out: the ``.onnx`` (opset of ``torch.onnx``'s exporter) or TorchScript ``.pt`` file.
        format: ``"onnx"`` or ``"torchscript"`` (traced; PyTorch deprecates TorchScript in
            favour of ``torch.export``, but ``torch.jit.load`` still reads it).
        image_size: ``S``; default the checkpoint's training size.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    out = check_export_output(out, checkpoint)
    if image_size is not None:
        check_image_size(image_size, "--image-size")
    model, config = load_checkpoint(checkpoint)
    size = config.data.image_size if image_size is None else image_size
    example = torch.zeros(2, 3, size, size)
    with atomic_path(out) as tmp:
        if format == "onnx":
            _export_onnx(model, example, tmp)
        else:
            _export_torchscript(model, example, tmp)
    with torch.no_grad():
        embedding_size = int(model(example[:1]).shape[1])
    sidecar = {
        "format": format,
        "file": out.name,
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", 3, size, size],
            "dtype": "float32",
            "layout": "NCHW, RGB",
            "resize": round(size * config.data.resize_ratio),
            "crop": size,
            "scale": "x / 255, then (x - mean) / std per channel",
            # As cdml.data.transforms_of: the run's, else ImageNet's.
            "mean": list(config.data.mean or IMAGENET_MEAN),
            "std": list(config.data.std or IMAGENET_STD),
        },
        "output": {
            "name": OUTPUT_NAME,
            "shape": ["batch", embedding_size],
            "l2_normalized": bool(config.model.normalize),
        },
        "backbone": config.model.backbone,
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": checkpoint_digest(checkpoint),
    }
    write_json(sidecar_path(out), sidecar)
    return sidecar


def check_export_output(out: str | Path, checkpoint: str | Path, name: str = "--out") -> Path:
    """``ValueError`` unless ``out`` and its sidecar can be written: neither is
    ``checkpoint``, and each is new or an exported model (and its sidecar) that cdml wrote.
    ``name`` is the output's flag or argument, for the messages. Returns ``out``."""
    inputs = {"--checkpoint": checkpoint}
    out = check_output(
        out, what="an exported model", owned=is_exported_model, inputs=inputs, name=name
    )
    check_output(
        sidecar_path(out),
        what="an exported model's sidecar",
        owned=_is_sidecar,
        inputs=inputs,
        name=f"{name}'s sidecar",
    )
    return out


def is_exported_model(path: str | Path) -> bool:
    """Whether ``path`` is a model file that :func:`export_model` wrote: its sidecar names it."""
    sidecar = sidecar_path(path)
    if not _is_sidecar(sidecar):
        return False
    return json.loads(sidecar.read_text(encoding="utf-8")).get("file") == Path(path).name


def _is_sidecar(path: Path) -> bool:
    return is_json_object(path, "format", "file", "input", "output", "checkpoint_sha256")


def sidecar_path(model_file: str | Path) -> Path:
    """The JSON sidecar of an exported model file: ``model.onnx`` -> ``model.onnx.json``."""
    model_file = Path(model_file)
    return model_file.with_name(model_file.name + ".json")


def _export_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"ONNX export needs the package(s) {', '.join(missing)}: pip install 'cdml[export]'"
        )
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        program = torch.onnx.export(
            model,
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            dynamo=True,
            verbose=False,
        )
    program.save(str(path))


def _export_torchscript(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice
        traced = torch.jit.trace(model, example)
    traced.save(str(path))
