"""Who embeds the parts: this process, several local processes (one GPU each where there
are GPUs), or Ray workers (stateful actors on a local or existing cluster)."""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator
from dataclasses import replace

import torch

from cdml.parts.worker import PartEmbedder, PartJob
from cdml.registry import Registry

# engine(job, parts, workers, address) -> the completion summaries of the parts, as they end.
Engine = Callable[[PartJob, list[int], int, str | None], Iterator[dict]]
ENGINES: Registry[Engine] = Registry("engine", setting="--engine")


def threads_per_worker(workers: int) -> int:
    """CPU threads of each of ``workers`` local workers: the cores shared out."""
    return max(1, (os.cpu_count() or 1) // workers)


@ENGINES.register("local")
def local_engine(
    job: PartJob, parts: list[int], workers: int, address: str | None
) -> Iterator[dict]:
    """Parts embedded by this process (``workers`` 1) or by ``workers`` processes, each
    loading the model once; worker i uses GPU i modulo the GPUs present."""
    if address is not None:
        raise ValueError("--address names a Ray cluster: use it with --engine ray")
    job = job if job.threads else replace(job, threads=threads_per_worker(workers))
    if workers == 1:
        yield from map(PartEmbedder(job), parts)
        return
    context = multiprocessing.get_context("spawn")  # CUDA and threads survive only spawn
    devices = context.Queue()
    gpus = torch.cuda.device_count()
    for worker in range(workers):
        devices.put(f"cuda:{worker % gpus}" if gpus else "cpu")
    with context.Pool(workers, _start_worker, (job, devices)) as pool:
        yield from pool.imap_unordered(_embed_part, parts)


_embedder: PartEmbedder | None = None


def _start_worker(job: PartJob, devices) -> None:
    global _embedder
    _embedder = PartEmbedder(job, devices.get())


def _embed_part(part: int) -> dict:
    return _embedder(part)


@ENGINES.register("ray")
def ray_engine(job: PartJob, parts: list[int], workers: int, address: str | None) -> Iterator[dict]:
    """Parts embedded by ``workers`` Ray actors (Ray Data's actor pool), each loading the
    model once and given one GPU where the cluster has GPUs; ``address`` joins an existing
    cluster (default: a local one of ``workers`` CPUs)."""
    try:
        import ray
    except ImportError:
        raise ImportError("--engine ray needs Ray: pip install 'cdml[ray]'") from None
    started = not ray.is_initialized()  # a cluster this job starts, it also stops
    if started:
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
        logging.getLogger("ray").setLevel(logging.ERROR)
        options = {"address": address} if address else {"num_cpus": workers}
        ray.init(**options, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)  # fmt: skip
    try:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        job = job if job.threads else replace(job, threads=1)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        items = [{"part": part} for part in parts]
        results = ray.data.from_items(items, override_num_blocks=len(parts)).map_batches(
            _RayPartEmbedder, fn_constructor_kwargs={"job": job}, batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=workers), num_gpus=gpus, num_cpus=1,
        )  # fmt: skip
        for row in results.iter_rows():
            yield {key: int(row[key]) for key in ("part", "rows", "skipped")}
    finally:
        if started:
            ray.shutdown()


class _RayPartEmbedder:
    """A Ray actor: the model loaded once, then whole parts."""

    def __init__(self, job: PartJob) -> None:
        self.embed = PartEmbedder(job)

    def __call__(self, batch: dict) -> dict:
        done = [self.embed(int(part)) for part in batch["part"]]
        return {key: [summary[key] for summary in done] for key in ("part", "rows", "skipped")}
