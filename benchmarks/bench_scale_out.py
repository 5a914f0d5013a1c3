"""Embedding and indexing beyond one process, measured on this machine's CPU.

1. Images per second of ``cdml embed`` into parts with 1 local process (all cores), 2 local
   processes (a core each) and Ray's local cluster of 2 workers, on ``--images`` real
   images (Fashion-MNIST pictures written as PNG files, 64 px, the default backbone), and
   each one's ratio to the single process. The parts of the three are compared.
2. The cost of a kill: the same job killed once half its parts are written, then run again,
   against the uninterrupted job.
3. Peak memory of ``cdml embed`` against the collection's size: 100,000 and 1,000,000
   items (a file list repeating the real images) with a small model (timm's test network
   at 16 px: the model's weights do not grow with the collection), so that only what grows
   with the collection shows.
4. ``cdml index --from-parts --kind IVF4096,PQ32`` over 1,000,000 synthetic 64-d
   embeddings: build time, peak memory and the recall@10 against exact search it stores.

Prints a table of each. Run: ``.venv/bin/python benchmarks/bench_scale_out.py [--images
2000] [--million 1]`` (about half an hour on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from cdml.cli import main as cdml
from cdml.data import load_dataset
from cdml.parts import PartsFolder


def run(argv: list[str]) -> tuple[float, float]:
    """Seconds and peak resident MB of ``cdml argv`` in its own process (its VmHWM, read
    while it runs: a forked child's rusage would count this process's pages too)."""
    started, peak = time.perf_counter(), 0
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen([sys.executable, "-m", "cdml", *argv],
                                   stdout=subprocess.DEVNULL, stderr=errors)  # fmt: skip
        status = Path(f"/proc/{process.pid}/status")
        while process.poll() is None:
            try:
                found = re.search(r"VmHWM:\s+(\d+) kB", status.read_text())
                peak = max(peak, int(found.group(1))) if found else peak
            except OSError:  # it ended between the two calls
                pass
            time.sleep(0.05)
        if process.returncode:
            errors.seek(0)
            raise SystemExit(f"cdml {' '.join(argv)} failed: {errors.read()[-2000:]}")
    return time.perf_counter() - started, peak / 1024


def train(out: Path, *options: str) -> Path:
    argv = ["train", "--dataset", "digits", "--loss", "triplet", "--epochs", "1", "--no-baseline",
            "--set", "trainer.limit_train_batches=1", "--set", "data.max_eval_per_class=4",
            "--set", "trainer.progress_bar=false", "--set", "trainer.report=false",
            "--out", str(out), *options]  # fmt: skip
    if cdml(argv) != 0:
        raise SystemExit("training failed")
    return out / "checkpoints" / "last.ckpt"


def write_images(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True)
    items = load_dataset("fashion-mnist", split="test")
    for i in range(count):
        items[i % len(items)][0].convert("RGB").resize((64, 64)).save(folder / f"{i:06d}.png")
    return folder


def embedding_span(folder: Path) -> float:
    """Seconds from the first part's start to the last part's end (process starts left out)."""
    records = [json.loads(p.read_text()) for p in folder.glob("part-*.json")]
    return max(r["started"] + r["seconds"] for r in records) - min(r["started"] for r in records)


def same_parts(one: Path, other: Path) -> bool:
    pairs = zip(PartsFolder(one).parts(), PartsFolder(other).parts(), strict=True)
    return all(np.array_equal(a, b) and ia.equals(ib) for (a, ia), (b, ib) in pairs)


def engines(checkpoint: Path, images: Path, folder: Path, count: int) -> None:
    embed = ["embed", "--checkpoint", str(checkpoint), "--images", str(images), "--parts",
             "--part-size", "250"]  # fmt: skip
    rows = {
        "1 process, 2 threads": [],
        "2 local processes, 1 thread each": ["--processes", "2"],
        "Ray local cluster, 2 workers": ["--engine", "ray", "--processes", "2"],
    }
    times, spans = {}, {}
    for i, (name, options) in enumerate(rows.items()):
        times[name] = run([*embed, "--out", str(folder / f"engine{i}"), *options])[0]
        spans[name] = embedding_span(folder / f"engine{i}")
    reference, steady = times["1 process, 2 threads"], spans["1 process, 2 threads"]
    print(f"\nembedding {count:,} PNG images (64 px, EfficientNet-Lite0) into parts of 250; "
          "the command, then the embedding alone (first part begun to last written)")  # fmt: skip
    print(f"{'':<36}{'seconds':>9}{'images/s':>10}{'ratio':>8}{'embedding s':>13}"
          f"{'images/s':>10}{'ratio':>8}")  # fmt: skip
    for name, seconds in times.items():
        span = spans[name]
        print(f"{name:<36}{seconds:>9.1f}{count / seconds:>10.1f}{reference / seconds:>8.2f}"
              f"{span:>13.1f}{count / span:>10.1f}{steady / span:>8.2f}")  # fmt: skip
    same = same_parts(folder / "engine1", folder / "engine2")
    print(f"2 local processes and Ray wrote the same parts bit for bit: {same} (both 1 thread "
          "per process; the 2-thread process differs by float rounding only)")  # fmt: skip

    whole = run([*embed, "--out", str(folder / "whole"), "--threads", "2"])[0]
    killed = folder / "killed"
    argv = [sys.executable, "-m", "cdml", *embed, "--out", str(killed), "--threads", "2"]
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = -(-count // 250)
    while len(list(killed.glob("part-*.json"))) < parts // 2:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = time.perf_counter() - started
    resumed = run([*embed, "--out", str(killed), "--threads", "2"])[0]
    print(f"\nkilled at {parts // 2} of {parts} parts after {before:.1f} s, resumed in "
          f"{resumed:.1f} s: {before + resumed:.1f} s against {whole:.1f} s uninterrupted "
          f"(+{before + resumed - whole:.1f} s: a second start and at most one part redone); "
          f"same parts: {same_parts(killed, folder / 'whole')}")  # fmt: skip


def memory(checkpoint: Path, images: Path, folder: Path, million: float) -> None:
    files = sorted(str(p) for p in images.iterdir())
    print("\npeak memory of cdml embed (timm test network, 16 px, parts of 10,000, 2 threads)")
    print(f"{'items':>12}{'seconds':>9}{'images/s':>10}{'peak MB':>9}")
    for count in (100_000, int(million * 1_000_000)):
        listing = folder / f"list{count}.txt"
        listing.write_text("\n".join(files[i % len(files)] for i in range(count)) + "\n")
        argv = ["embed", "--checkpoint", str(checkpoint), "--images", str(listing), "--parts",
                "--out", str(folder / f"memory{count}"), "--batch-size", "256"]  # fmt: skip
        seconds, peak = run(argv)
        print(f"{count:>12,}{seconds:>9.1f}{count / seconds:>10.1f}{peak:>9.0f}")


def synthetic_parts(folder: Path, items: int, dim: int = 64, part_size: int = 100_000) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(items // 5, dim)).astype(np.float32)
    parts = PartsFolder(folder)

    def batches():
        for start in range(0, items, part_size):
            stop = min(start + part_size, items)
            paths = [f"synthetic/{i:08d}.jpg" for i in range(start, stop)]
            yield pa.record_batch({"index": np.arange(start, stop), "path": paths,
                                   "label": np.arange(start, stop) // 5})  # fmt: skip

    plan = {"checkpoint": "synthetic.ckpt", "checkpoint_sha256": "0" * 64, "image_size": 64,
            "source": {"images": "synthetic"}, "part_size": part_size}  # fmt: skip
    for part in range(parts.plan(plan, batches(), {})["parts"]):
        rows = np.arange(part * part_size, min((part + 1) * part_size, items))
        vectors = centres[rows // 5] + 0.5 * rng.normal(size=(len(rows), dim)).astype(np.float32)
        parts.write_part(part, vectors, parts.items(part), {"embedding_size": dim})


def indexing(folder: Path, million: float) -> None:
    items = int(million * 1_000_000)
    synthetic_parts(folder / "synthetic", items)
    vectors_mb = items * 64 * 4 / 2**20
    print(f"\nindex from parts: {items:,} synthetic 64-d embeddings ({vectors_mb:,.0f} MB)")
    print(f"{'kind':<16}{'seconds':>9}{'peak MB':>9}{'recall@10':>11}{'index MB':>10}")
    for kind in ("IVF4096,PQ32", "IVF4096,Flat"):
        out = folder / kind.replace(",", "-")
        argv = ["index", "--from-parts", str(folder / "synthetic"), "--kind", kind,
                "--out", str(out)]  # fmt: skip
        seconds, peak = run(argv)
        meta = json.loads((out / "meta.json").read_text())
        size = (out / "index.faiss").stat().st_size / 2**20
        print(f"{kind:<16}{seconds:>9.1f}{peak:>9.0f}{meta['recall@10']:>11.3f}{size:>10.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="images of the engine runs")
    parser.add_argument("--million", type=float, default=1.0, help="the largest collection")
    parser.add_argument("--skip", nargs="*", default=[], choices=["engines", "memory", "index"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        images = write_images(folder / "images", args.images)
        if "engines" not in args.skip:
            engines(train(folder / "run", "--image-size", "64"), images, folder, args.images)
        if "memory" not in args.skip:
            small = train(folder / "tiny", "--image-size", "16", "--backbone", "test_resnet",
                          "--set", "model.pretrained=false")  # fmt: skip
            memory(small, images, folder, args.million)
        if "index" not in args.skip:
            indexing(folder, args.million)


if __name__ == "__main__":
    main()
