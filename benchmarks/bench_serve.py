"""The search service under load, against the same searches made in-process, on the CPU.

Trains a one-step checkpoint of the default backbone at 64 px (the weights do not change
the speed), indexes the 1,797 digit images with it, starts ``cdml serve`` on 127.0.0.1 and
sends searches by upload from 1, 4 and 16 concurrent clients (a bounded number of requests
each level). Prints p50 / p99 latency and queries per second of each level beside the same
searches made one after another in-process (decode, embed, search with
:class:`cdml.serving.SearchService`, no HTTP), and their ratio: the service's overhead.
Then the service's memory (resident set) with an index of ``--million`` million synthetic
64-d vectors, against the same service with the small index, and the latency of a search
by vector there.

Run: ``.venv/bin/python benchmarks/bench_serve.py [--requests 96] [--million 1]``
"""

from __future__ import annotations

import argparse
import asyncio
import io
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from cdml.cli import main as cdml
from cdml.retrieval import GalleryIndex

LEVELS = (1, 4, 16)


def start(index: Path, checkpoint: Path, threads: int) -> tuple[subprocess.Popen, str]:
    argv = [sys.executable, "-m", "cdml", "serve", "--index", str(index), "--checkpoint",
            str(checkpoint), "--port", "0", "--threads", str(threads)]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    found = re.search(r"(http://\S+/)", process.stdout.readline())
    if not found:
        raise SystemExit("cdml serve did not start")
    return process, found.group(1)


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)


def resident_mb(process: subprocess.Popen) -> float:
    status = Path(f"/proc/{process.pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def percentiles(seconds: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles([1000 * s for s in seconds], n=100, method="inclusive")
    return cuts[49], cuts[98]


async def load(url: str, queries: list[bytes], clients: int, requests: int) -> dict:
    """``requests`` searches by upload from ``clients`` concurrent clients."""
    latencies: list[float] = []
    todo = iter(range(requests))

    async def client(session: httpx.AsyncClient) -> None:
        for i in todo:
            started = time.perf_counter()
            files = {"file": ("q.png", queries[i % len(queries)], "image/png")}
            answer = await session.post("search", params={"k": 10}, files=files)
            answer.raise_for_status()
            latencies.append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as session:
        await client_warm_up(session, queries[0])
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        wall = time.perf_counter() - started
    p50, p99 = percentiles(latencies)
    return {"p50": p50, "p99": p99, "qps": len(latencies) / wall}


async def client_warm_up(session: httpx.AsyncClient, query: bytes) -> None:
    for _ in range(3):
        await session.post("search", files={"file": ("q.png", query, "image/png")})


def in_process(index: Path, checkpoint: Path, queries: list[bytes], requests: int) -> dict:
    """The same searches, one after another, without HTTP."""
    from cdml.serving import SearchService
    from cdml.serving.embedders import CheckpointEmbedder

    service = SearchService(CheckpointEmbedder(checkpoint, "cpu"), index)

    def search(data: bytes) -> list:
        image = service.embedder.preprocess(service.decode(data, "query"))
        return service.search(service.embedder.embed([image]), 10)

    for query in queries[:3]:
        search(query)
    latencies = []
    started = time.perf_counter()
    for i in range(requests):
        begun = time.perf_counter()
        search(queries[i % len(queries)])
        latencies.append(time.perf_counter() - begun)
    wall = time.perf_counter() - started
    p50, p99 = percentiles(latencies)
    return {"p50": p50, "p99": p99, "qps": requests / wall}


def synthetic_index(size: int, like: Path, out: Path) -> None:
    """An index of ``size`` random 64-d vectors, accepted by ``like``'s checkpoint."""
    small = GalleryIndex.load(like)
    big = GalleryIndex.create(small.dim)
    big.meta.update(checkpoint=small.meta.get("checkpoint"), image_size=small.meta["image_size"])
    rng = np.random.default_rng(0)
    digest = small.meta["checkpoint_sha256"]
    for start in range(0, size, 1 << 18):
        rows = min(1 << 18, size - start)
        vectors = rng.standard_normal((rows, small.dim), dtype=np.float32)
        paths = [f"synthetic/{i:08d}.jpg" for i in range(start, start + rows)]
        big.add(vectors, paths, checkpoint_sha256=digest)
    big.save(out)


async def vector_latency(url: str, dim: int, requests: int = 50) -> float:
    rng = np.random.default_rng(1)
    latencies = []
    async with httpx.AsyncClient(base_url=url, timeout=120) as session:
        for _ in range(requests):
            vector = rng.standard_normal(dim).tolist()
            started = time.perf_counter()
            answer = await session.post("search/vector", json={"vector": vector, "k": 10})
            answer.raise_for_status()
            latencies.append(time.perf_counter() - started)
    return percentiles(latencies)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=96, help="searches per level")
    parser.add_argument("--million", type=float, default=1.0, help="items of the big index")
    parser.add_argument("--threads", type=int, default=2, help="the service's CPU threads")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        images = folder / "images"
        images.mkdir()
        digits = load_digits()
        queries = []
        for i, pixels in enumerate(digits.images):
            image = Image.fromarray((pixels * 16).clip(0, 255).astype(np.uint8)).resize((64, 64))
            image.save(images / f"{i:04d}.png")
            if i % 15 == 0:
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
                queries.append(buffer.getvalue())
        run = folder / "run"
        train = ["train", "--dataset", "digits", "--loss", "triplet", "--epochs", "1",
                 "--image-size", "64", "--no-baseline", "--set", "trainer.limit_train_batches=1",
                 "--set", "data.max_eval_per_class=4", "--set", "trainer.progress_bar=false",
                 "--set", "trainer.report=false", "--out", str(run)]  # fmt: skip
        checkpoint = run / "checkpoints" / "last.ckpt"
        index = folder / "index"
        indexing = ["index", "--checkpoint", str(checkpoint), "--images", str(images),
                    "--out", str(index)]  # fmt: skip
        if cdml(train) != 0 or cdml(indexing) != 0:
            raise SystemExit("could not train or index")

        reference = in_process(index, checkpoint, queries, args.requests)
        process, url = start(index, checkpoint, args.threads)
        small_rss = resident_mb(process)
        levels = {n: asyncio.run(load(url, queries, n, args.requests)) for n in LEVELS}
        stop(process)

        print(f"\nsearch by upload, 64 px EfficientNet-Lite0, {len(digits.images):,} items, k = "
              f"10, {args.requests} searches a level, service threads {args.threads}")  # fmt: skip
        print(f"{'':<22}{'p50 ms':>9}{'p99 ms':>9}{'q/s':>8}{'p50 / in-process':>18}")
        rows = {"in-process, serial": reference}
        rows |= {f"service, {n} client{'s' * (n > 1)}": levels[n] for n in LEVELS}
        for name, row in rows.items():
            ratio = row["p50"] / reference["p50"]
            print(f"{name:<22}{row['p50']:>9.1f}{row['p99']:>9.1f}{row['qps']:>8.1f}{ratio:>18.2f}")

        size = int(args.million * 1e6)
        big = folder / "big-index"
        synthetic_index(size, index, big)
        process, url = start(big, checkpoint, args.threads)
        big_rss = resident_mb(process)
        latency = asyncio.run(vector_latency(url, GalleryIndex.load(index).dim))
        big_rss = max(big_rss, resident_mb(process))
        stop(process)
        on_disk = sum(f.stat().st_size for f in big.iterdir()) / 2**20
        print(f"\nmemory (resident): {small_rss:,.0f} MB with {len(digits.images):,} items, "
              f"{big_rss:,.0f} MB with {size:,} items ({big_rss - small_rss:,.0f} MB more; "
              f"the index folder holds {on_disk:,.0f} MB); search by vector there: "
              f"p50 {latency:.1f} ms (flat, exact)")  # fmt: skip


if __name__ == "__main__":
    main()
