"""Throughput of an exported model: images/s of onnxruntime against PyTorch on CPU, one run.

Trains a one-step checkpoint of the default backbone (the weights do not change the
speed), exports it to ONNX with ``cdml export``, and embeds the same batches of random
images with the PyTorch model (``torch.inference_mode``, channels-last as ``cdml embed``)
and with an onnxruntime session, each after a warm-up. Prints images/s of both and their
ratio.

Run: ``.venv/bin/python benchmarks/bench_export.py [--image-size 64] [--batch 64]
[--batches 20]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cdml.cli import main as cdml
from cdml.inference import load_checkpoint


def images_per_second(embed, batch: np.ndarray, batches: int) -> float:
    embed(batch)  # warm-up
    start = time.perf_counter()
    for _ in range(batches):
        embed(batch)
    return batches * len(batch) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as folder:
        run, model_file = Path(folder) / "run", Path(folder) / "model.onnx"
        train = ["train", "--dataset", "digits", "--loss", "triplet", "--epochs", "1",
                 "--image-size", str(args.image_size), "--no-baseline",
                 "--set", "trainer.limit_train_batches=1", "--set", "data.max_eval_per_class=4",
                 "--set", "trainer.progress_bar=false", "--out", str(run)]  # fmt: skip
        checkpoint = run / "checkpoints" / "last.ckpt"
        export = ["export", "--checkpoint", str(checkpoint), "--out", str(model_file)]
        if cdml(train) != 0 or cdml(export) != 0:
            raise SystemExit("training or export failed")
        model, _ = load_checkpoint(checkpoint)
        session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
        size = args.image_size
        batch = np.random.default_rng(0).normal(size=(args.batch, 3, size, size))
        batch = batch.astype(np.float32)

        def torch_embed(images: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model(torch.from_numpy(images)).numpy()

        def onnx_embed(images: np.ndarray) -> np.ndarray:
            return session.run(["embeddings"], {"images": images})[0]

        difference = float(np.abs(torch_embed(batch) - onnx_embed(batch)).max())
        pytorch = images_per_second(torch_embed, batch, args.batches)
        onnx = images_per_second(onnx_embed, batch, args.batches)
    print(f"tf_efficientnet_lite0 at {size} px, batches of {args.batch}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print(f"PyTorch      {pytorch:8.1f} images/s")
    print(f"onnxruntime  {onnx:8.1f} images/s")
    print(f"ratio onnxruntime / PyTorch: {onnx / pytorch:.2f}x (max |difference| {difference:.1e})")


if __name__ == "__main__":
    main()
