"""One worker's side of a parts job: the model loaded once, then whole parts embedded and
written, each the same whichever process, machine or engine runs it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader, Dataset

from cdml.data.image_dataset import open_rgb
from cdml.parts.store import PartsFolder


@dataclass(frozen=True)
class PartJob:
    """What a worker needs to embed any part of ``folder`` (plain values: it is sent to other
    processes and machines). ``source`` is the manifest's; ``threads`` the CPU threads of a
    worker's model (None: the library's)."""

    folder: str
    checkpoint: str
    source: dict[str, Any] = field(hash=False)
    image_size: int
    batch_size: int
    loader_workers: int = 0
    skip_bad: bool = False
    threads: int | None = None


class PartEmbedder:
    """Embeds parts of a job with the model loaded once (a worker's state: a process's, or
    a Ray actor's). ``device`` None: CUDA where available."""

    def __init__(self, job: PartJob, device: str | None = None) -> None:
        from cdml.data import load_dataset, transforms_of
        from cdml.inference import load_checkpoint

        if job.threads:
            torch.set_num_threads(job.threads)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model, config = load_checkpoint(job.checkpoint, device)
        data = replace(config.data, image_size=job.image_size)
        self.transform = transforms_of(data, train=False)
        self.job, self.device, self.parts = job, torch.device(device), PartsFolder(job.folder)
        source = job.source
        self.dataset = None
        if source.get("dataset") is not None:
            self.dataset = load_dataset(source["dataset"], source.get("data_root"),
                                        source["split"], transform=self.transform)  # fmt: skip

    @torch.inference_mode()
    def __call__(self, part: int) -> dict[str, Any]:
        """Embed and write ``part``; its completion record."""
        started, began = time.perf_counter(), time.time()
        items = self.parts.items(part)
        images = _PartImages(self, items, self.job.skip_bad)
        loader = DataLoader(images, batch_size=self.job.batch_size,
                            num_workers=self.job.loader_workers)  # fmt: skip
        embeddings, errors = [], []
        for batch, batch_errors in loader:
            embeddings.append(self.model(batch.to(self.device)).float().cpu().numpy())
            errors += list(batch_errors)
        embeddings = np.concatenate(embeddings) if embeddings else np.empty((0, 0), np.float32)
        good = np.array([not error for error in errors], dtype=bool)
        paths = items.column("path").to_pylist()
        skipped = [{"path": paths[i], "error": errors[i]} for i in np.flatnonzero(~good)]
        record = {"skipped": skipped, "started": round(began, 3),
                  "seconds": round(time.perf_counter() - started, 3),
                  "embedding_size": int(embeddings.shape[1])}  # fmt: skip
        self.parts.write_part(part, embeddings[good], items.filter(pa.array(good)), record)
        return {"part": part, "rows": int(good.sum()), "skipped": len(skipped)}


class _PartImages(Dataset):
    """The items of a part as ``(image (3, S, S), error)``; with ``skip_bad`` an unreadable
    item is zeros and its error (kept in the batch, so every batch is the same), else it
    raises ``OSError`` naming the file."""

    def __init__(self, embedder: PartEmbedder, items: pa.Table, skip_bad: bool) -> None:
        self.dataset, self.transform = embedder.dataset, embedder.transform
        self.indices = items.column("index").to_numpy()
        self.paths = items.column("path").to_pylist()
        self.skip_bad, self.size = skip_bad, embedder.job.image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        try:
            if self.dataset is not None:
                return self.dataset[int(self.indices[i])][0], ""
            return self.transform(open_rgb(self.paths[i])), ""
        except OSError as error:
            if not self.skip_bad:
                raise
            return torch.zeros(3, self.size, self.size), str(error) or type(error).__name__
