"""Parts folders of synthetic embeddings (no model), as ``cdml embed`` writes them."""

from pathlib import Path

import numpy as np
import pyarrow as pa

from cdml.parts import PartsFolder


def synthetic_parts(folder: Path, items: int, dim: int = 32, part_size: int = 5000,
                    classes: int = 400, seed: int = 0) -> np.ndarray:  # fmt: skip
    """Write ``items`` clustered ``dim``-d embeddings as parts; returns them all."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)).astype(np.float32)
    labels = rng.integers(0, classes, items)
    vectors = centres[labels] + 0.3 * rng.normal(size=(items, dim)).astype(np.float32)
    parts = PartsFolder(folder)

    def batches():
        for start in range(0, items, part_size):
            stop = min(start + part_size, items)
            paths = [f"img/{i}.jpg" for i in range(start, stop)]
            yield pa.record_batch(
                {"index": np.arange(start, stop), "path": paths, "label": labels[start:stop]}
            )

    plan = {"checkpoint": "synthetic.ckpt", "checkpoint_sha256": "0" * 64, "image_size": 32,
            "source": {"images": "synthetic"}, "part_size": part_size}  # fmt: skip
    manifest = parts.plan(plan, batches(), {})
    for part in range(manifest["parts"]):
        rows = slice(part * part_size, min((part + 1) * part_size, items))
        parts.write_part(part, vectors[rows], parts.items(part), {"embedding_size": dim})
    return vectors
