"""``cdml embed`` into parts: plan the items once, embed the unfinished parts with an engine,
so that a rerun after a kill redoes only the part that was in progress."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdml.checks import check_image_size
from cdml.parts.engines import ENGINES
from cdml.parts.listing import item_batches
from cdml.parts.store import PartsFolder
from cdml.parts.worker import PartJob
from cdml.progress import Progress

PART_SIZE = 10_000  # items a part; 64-d embeddings: 2.5 MB, 2048-d: 80 MB


@dataclass
class PartsSummary:
    """What a parts job did: ``parts`` in all, ``ran`` of them now (the others were finished
    before), ``items`` embedded in all, ``skipped`` unreadable ones, the folder."""

    folder: Path
    parts: int
    ran: int
    items: int
    skipped: int

    def __str__(self) -> str:
        skipped = f", {self.skipped} unreadable left out (listed in the parts' records)"
        return (f"{self.items:,} embeddings in {self.parts} parts in {self.folder} ({self.ran} "
                f"embedded now{skipped if self.skipped else ''})")  # fmt: skip


def embed_to_parts(
    checkpoint: str | Path,
    out: str | Path,
    *,
    images: str | Path | None = None,
    dataset: str | None = None,
    data_root: str | Path | None = None,
    split: str = "test",
    image_size: int | None = None,
    batch_size: int | None = None,
    workers: int = 0,
    part_size: int = PART_SIZE,
    engine: str = "local",
    processes: int = 1,
    threads: int | None = None,
    address: str | None = None,
    skip_bad: bool = False,
    progress: bool = True,
) -> PartsSummary:
    """Embed the images under a folder (or listed in a text file, or a dataset's split) into
    the parts folder ``out``: ``part-NNNNN.npy`` ``(rows, d)`` float32 and ``.parquet``
    (``index``, ``path``, ``label`` and the split's marks) of ``part_size`` items each, in
    the source's order, and ``manifest.json`` with the checkpoint's sha256. Memory holds
    one part per worker. A rerun with the same arguments continues: finished parts are
    kept, the unfinished ones embedded.

    Args:
        checkpoint: a cdml training checkpoint.
        out: the parts folder (new, or one this job began).
        images: embed every image under this folder (or every path of this text file, one
            a line).
        dataset: the dataset's name (as for cdml train).
        data_root: the dataset's folder (the CSV file for csv).
        split: the dataset's half.
        image_size: the input size; default the training image size.
        batch_size: images per batch; default 64.
        workers: data loading processes of each embedding process.
        part_size: items a part.
        engine: local: this process, or --processes local processes (a GPU each where
            there are GPUs); ray: Ray workers (pip install 'cdml[ray]').
        processes: embedding processes (local) or actors (ray).
        threads: CPU threads of each process; default the cores shared out (local), 1 (a
            Ray actor). Parts are the same bit for bit whichever engine writes them when
            each process has the same count; otherwise to float rounding (1e-7).
        address: the Ray cluster to join (default: a local one).
        skip_bad: leave out unreadable images, listed in each part's record, instead of
            stopping.
        progress: show a progress bar.
    """
    from cdml.inference import check_embedding_options, checkpoint_digest, read_checkpoint
    from cdml.training.config import EVAL_BATCH_SIZE, checkpoint_config

    check_embedding_options(images, dataset, [
        ("--part-size", part_size, 1), ("--processes", processes, 1),
        ("--batch-size", batch_size, 1), ("--workers", workers, 0), ("--threads", threads, 1),
    ])  # fmt: skip
    engine_run = ENGINES[engine]
    config = checkpoint_config(checkpoint, read_checkpoint(checkpoint, mmap=True).get(
        "hyper_parameters", {}))  # fmt: skip
    size = config.data.image_size if image_size is None else check_image_size(image_size)
    source: dict[str, Any] = (
        {"images": str(Path(images).resolve())} if images is not None
        else {"dataset": dataset, "data_root": str(data_root or "") or None, "split": split}
    )  # fmt: skip
    plan = {"checkpoint": str(checkpoint), "checkpoint_sha256": checkpoint_digest(checkpoint),
            "image_size": size, "source": source, "part_size": part_size}  # fmt: skip
    parts = PartsFolder(out)
    inputs = {"--checkpoint": checkpoint, "--images": images}
    manifest = parts.plan(plan, item_batches(source, part_size), inputs)
    todo = parts.todo()
    job = PartJob(str(parts.folder), str(checkpoint), source, size,
                  batch_size or EVAL_BATCH_SIZE, workers, skip_bad, threads)  # fmt: skip
    if todo:
        with Progress("embedding parts", total=len(todo), enabled=progress) as bar:
            for _ in engine_run(job, todo, processes, address):
                bar.advance(1)
    records = [parts.record(part) for part in range(manifest["parts"])]
    return PartsSummary(
        parts.folder, manifest["parts"], len(todo), sum(r["rows"] for r in records),
        sum(len(r.get("skipped", [])) for r in records),
    )  # fmt: skip


def embed_collection(
    checkpoint: str | Path, out: str | Path, parts: bool = False, **options: Any
) -> dict[str, Any] | PartsSummary:
    """``cdml embed``: into the one ``.npz`` file ``out`` (small sets: one array in memory;
    :func:`cdml.inference.embed_to_file`), or with ``parts`` into the parts folder ``out``
    (:func:`embed_to_parts`, whose ``options`` the file does not take).

    Args:
        checkpoint: a cdml training checkpoint.
        out: the .npz file to write (with --parts, the folder of parts).
        parts: write resumable parts into the folder --out (a rerun continues it), memory
            bounded by a part, instead of one .npz written at the end.
        **options: the images and settings, as :func:`embed_to_parts` takes them.
    """
    from cdml.inference import embed_to_file

    if parts:
        return embed_to_parts(checkpoint, out, **options)
    defaults = {name: value for name, value in _PARTS_DEFAULTS.items() if name in options}
    given = [name for name, value in defaults.items() if options.pop(name) != value]
    if given:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in given)
        raise ValueError(f"{flags}: only for parts (add --parts)")
    return embed_to_file(checkpoint, out, **options)


_PARTS_DEFAULTS = {
    name: parameter.default
    for name, parameter in inspect.signature(embed_to_parts).parameters.items()
    if name in ("part_size", "engine", "processes", "threads", "address", "skip_bad")
}
