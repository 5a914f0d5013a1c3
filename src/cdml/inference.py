"""Using a trained model: load it from a checkpoint, embed datasets and image folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cdml.data.folder import find_images
from cdml.models import EmbeddingModel
from cdml.training.config import RunConfig, from_dict

__all__ = ["embed", "find_images", "load_checkpoint"]


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[EmbeddingModel, RunConfig]:
    """The embedding model saved in a cdml training checkpoint, in eval mode, and its config.

    The file is read with ``torch.load(weights_only=True)``: tensors and plain data only.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for foreign or corrupt files
        raise ValueError(
            f"{path}: not a readable cdml checkpoint ({type(error).__name__})"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{path}: not a cdml training checkpoint (no 'state_dict')")
    config = from_dict(RunConfig, checkpoint.get("hyper_parameters", {}))
    m = config.model
    model = EmbeddingModel(
        m.backbone, m.embedding_size, pretrained=False, freeze_bn=m.freeze_bn, normalize=m.normalize
    )
    prefix = "model."
    state = {
        k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)
    }
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{path}: weights do not fit the model of its config ({error})") from None
    return model.to(device).eval(), config


@torch.inference_mode()
def embed(
    model: torch.nn.Module,
    dataset: Dataset,
    batch_size: int = 256,
    num_workers: int = 0,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings ``(n, d)`` float32 and labels ``(n,)`` of a dataset of ``(image, label)``."""
    device = next(model.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    embeddings, labels = [], []
    batches = _progress(loader, "embedding") if progress else loader
    for images, batch_labels in batches:
        embeddings.append(model(images.to(device)).float().cpu())
        labels.append(torch.as_tensor(batch_labels))
    return torch.cat(embeddings).numpy(), torch.cat(labels).numpy()


def _progress(iterable: Any, description: str) -> Any:
    from rich.progress import track

    return track(iterable, description=description, transient=True)
