"""`cdml cluster` on 100,000 images: time and peak memory of each stage, in one run.

The images are real: Fashion-MNIST's 70,000 (both zero-shot halves) and 30,000 of them
mirrored, written as PNG files to a temporary folder. A checkpoint is trained here in seconds
(timm's small test network at 32 px, one step) unless ``--checkpoint`` names one: the
benchmark measures cdml's machinery at this scale, not the quality of an embedding. Stages,
each in its own process so that its peak resident memory is its own:

1. ``cdml embed --images DIR`` of the 100,000 files;
2. ``cdml cluster --embeddings`` with k = 10 (spectral, the default), with ``--k auto``,
   and with ``--method kmeans`` and ``--method medoids`` at k = 10, each writing
   assignments, clusters and contact sheets.

Run: ``.venv/bin/python benchmarks/bench_cluster.py [--n 100000] [--checkpoint CKPT]``
(needs ``apt-get install dataset-fashion-mnist``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

STAGE = """
import resource, sys
from cdml.cli import main
code = main(sys.argv[1:])
print("PEAK_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(code)
"""


def run_stage(name: str, argv: list[str]) -> dict[str, float]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", STAGE, *argv], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-2000:]}")
    peak = next(int(line.split()[1]) for line in done.stdout.splitlines() if "PEAK_KIB" in line)
    print(f"{name:<28} {seconds:8.1f} s   peak memory {peak / 2**20:6.2f} GiB", flush=True)
    return {"seconds": seconds, "peak_gib": peak / 2**20}


def write_images(folder: Path, n: int) -> None:
    from cdml.data import load_dataset

    halves = [load_dataset("fashion-mnist", split=split) for split in ("train", "test")]
    pixels = np.concatenate([half.images for half in halves])
    for i in range(n):
        image = pixels[i % len(pixels)]
        if i >= len(pixels):
            image = image[:, ::-1]
        Image.fromarray(np.ascontiguousarray(image)).save(folder / f"{i:06d}.png")


def tiny_checkpoint(folder: Path) -> Path:
    argv = [
        "train", "--dataset", "digits", "--loss", "facility", "--image-size", "32",
        "--backbone", "test_resnet", "--set", "model.pretrained=false", "--batch-size", "12",
        "--classes-per-batch", "3", "--epochs", "1", "--no-baseline",
        "--set", "data.val_fraction=0", "--set", "trainer.limit_train_batches=1",
        "--set", "trainer.progress_bar=false", "--out", str(folder),
    ]  # fmt: skip
    run_stage("train a tiny checkpoint", argv)
    return folder / "checkpoints" / "last.ckpt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--checkpoint", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = tmp / "images"
        images.mkdir()
        start = time.perf_counter()
        write_images(images, args.n)
        print(f"{args.n:,} PNG files written in {time.perf_counter() - start:.1f} s")
        checkpoint = args.checkpoint or tiny_checkpoint(tmp / "run")
        embedded = tmp / "embedded.npz"
        results = {
            "embed": run_stage(
                f"embed {args.n:,} images",
                [
                    "embed",
                    "--checkpoint",
                    str(checkpoint),
                    "--images",
                    str(images),
                    "--batch-size",
                    "256",
                    "--out",
                    str(embedded),
                ],
            )  # fmt: skip
        }
        for name, extra in (
            ("spectral, k = 10", ["--k", "10"]),
            ("spectral, k auto", ["--k", "auto"]),
            ("k-means, k = 10", ["--k", "10", "--method", "kmeans"]),
            ("medoids, k = 10", ["--k", "10", "--method", "medoids"]),
        ):
            out = tmp / name.replace(" ", "").replace(",", "_").replace("=", "")
            argv = ["cluster", "--embeddings", str(embedded), "--out", str(out), *extra]
            results[name] = run_stage(f"cluster: {name}", argv)
            chosen = json.loads((out / "clusters.json").read_text())["k"]
            results[name]["k"] = chosen
            print(f"{'':<28} k = {chosen}, {len(list((out / 'sheets').iterdir()))} sheets")
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
