"""The models a service embeds images with: a training checkpoint (PyTorch) or an exported
ONNX model (onnxruntime), each with the test-time preprocessing it was trained with."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cdml.data.transforms import build_transforms, transforms_of
from cdml.export import sidecar_path
from cdml.inference import checkpoint_digest, load_checkpoint


class Embedder(ABC):
    """An image embedding model: :meth:`preprocess` one RGB image to ``(3, S, S)`` float32,
    :meth:`embed` a list of those to ``(n, d)`` float32. ``checkpoint_sha256`` names the
    embedding (an index built with another is refused), ``image_size`` is ``S``."""

    checkpoint_sha256: str
    image_size: int
    source: str

    def __init__(self, transform: Any) -> None:
        self.transform = transform

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self.transform(image)

    @abstractmethod
    def embed(self, images: list[torch.Tensor]) -> np.ndarray: ...


class CheckpointEmbedder(Embedder):
    """The model of a cdml training checkpoint (read with ``weights_only=True``), in eval
    mode on ``device``."""

    def __init__(self, checkpoint: str | Path, device: str = "cpu") -> None:
        model, config = load_checkpoint(checkpoint, device)
        super().__init__(transforms_of(config.data, train=False))
        self.model, self.device = model, torch.device(device)
        self.checkpoint_sha256 = checkpoint_digest(checkpoint)
        self.image_size = config.data.image_size
        self.source = f"checkpoint {Path(checkpoint).name}"

    @torch.inference_mode()
    def embed(self, images: list[torch.Tensor]) -> np.ndarray:
        batch = torch.stack(images).to(self.device, non_blocking=True)
        return self.model(batch).float().cpu().numpy()


class OnnxEmbedder(Embedder):
    """A model exported by ``cdml export --format onnx``, run by onnxruntime (its CUDA
    provider where present), preprocessed as its sidecar (``model.onnx.json``) says."""

    def __init__(self, model: str | Path, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError("serving an ONNX model needs onnxruntime: pip install "
                              "'cdml[export]'") from None  # fmt: skip
        model, sidecar_file = Path(model), sidecar_path(model)
        if not model.is_file():
            raise FileNotFoundError(f"--model {model}: no such file")
        try:
            sidecar = json.loads(sidecar_file.read_text(encoding="utf-8"))
            spec = sidecar["input"]
            size, resize = int(spec["crop"]), int(spec["resize"])
            mean, std = [float(v) for v in spec["mean"]], [float(v) for v in spec["std"]]
            self.checkpoint_sha256 = str(sidecar["checkpoint_sha256"])
            self.input_name = str(spec["name"])
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{sidecar_file}: missing; an exported model is served with the sidecar "
                "cdml export wrote beside it"
            ) from None
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{sidecar_file}: not an export sidecar ({error})") from None
        super().__init__(
            build_transforms(size, train=False, mean=mean, std=std, resize_ratio=resize / size)
        )
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in ort.get_available_providers()]  # fmt: skip
        try:
            self.session = ort.InferenceSession(str(model), options, providers=providers)
        except Exception as error:  # onnxruntime raises its own types for foreign files
            raise ValueError(f"--model {model}: not an ONNX model ({error})") from None
        self.image_size = size
        self.source = f"ONNX model {model.name}"

    def embed(self, images: list[torch.Tensor]) -> np.ndarray:
        batch = torch.stack(images).numpy()
        return np.asarray(self.session.run(None, {self.input_name: batch})[0], dtype=np.float32)


def open_embedder(
    checkpoint: str | Path | None = None,
    model: str | Path | None = None,
    device: str | None = None,
    threads: int | None = None,
) -> Embedder:
    """The embedder of a checkpoint or of an exported ONNX model (exactly one of them);
    ``device`` defaults to CUDA where available."""
    if (checkpoint is None) == (model is None):
        raise ValueError("give either --checkpoint or --model (an exported ONNX model)")
    if model is not None:
        return OnnxEmbedder(model, threads)
    return CheckpointEmbedder(
        checkpoint, device or ("cuda" if torch.cuda.is_available() else "cpu")
    )
