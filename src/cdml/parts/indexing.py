"""An index built from embedding parts in bounded memory: trained on a sample, the parts
added one at a time, optionally into shards; its recall against exact search measured."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from cdml.io import write_json
from cdml.parts.store import PartsFolder
from cdml.progress import Progress
from cdml.retrieval import SHARDS_FILE, GalleryIndex, neighbour_recall

RECALL_K = 10


def index_parts(
    parts: str | Path,
    out: str | Path,
    *,
    kind: str = "flat",
    metric: str = "l2",
    sample: int = 100_000,
    shards: int = 1,
    recall_queries: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> GalleryIndex:
    """Index every embedding of the parts folder ``parts`` in the new folder ``out``: an
    index of ``kind`` trained on ``sample`` embeddings drawn evenly from the parts (for the
    kinds that learn), the parts added one at a time (memory: the index, a part, the
    sample, every item's path), in ``shards`` sub-indexes of consecutive parts when
    ``shards`` > 1 (one in memory at a time; searched together, each memory-mapped). The
    index's recall@10 against exact search, over ``recall_queries`` sampled items, is
    stored in its meta (``"recall@10"``). Returns the index (as loaded from ``out``).

    Args:
        parts: a folder of parts written by cdml embed.
        out: the index folder to write (new).
        kind: flat, ivf, hnsw, ivfpq, or a faiss factory string such as IVF4096,PQ32.
        metric: l2, cosine or ip.
        sample: embeddings the index is trained on.
        shards: sub-indexes of consecutive parts, searched together.
        recall_queries: items whose exact neighbours measure the index's recall (0: none).
        seed: the sample's seed.
        progress: show progress bars.
    """
    folder, out = PartsFolder(parts), Path(out)
    manifest = folder.manifest
    if out.exists():
        raise ValueError(f"{out} exists; choose another --out")
    if sample < 1:
        raise ValueError(f"--sample must be at least 1, got {sample}")
    if shards < 1 or shards > manifest["parts"]:
        raise ValueError(f"--shards must be between 1 and the {manifest['parts']} parts")
    finished = [part for part in range(manifest["parts"]) if folder.done(part)]
    dim = int(folder.record(finished[0])["embedding_size"]) if finished else 1
    items = int(manifest["items"])
    empty = GalleryIndex.create(dim, kind=kind, metric=metric,
                                nlist=_nlist(items, min(sample, items)))  # fmt: skip
    folder.check_finished()
    rows = np.array([folder.record(part)["rows"] for part in range(manifest["parts"])])
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(rows.sum(), min(sample, rows.sum()), replace=False))
    train = gather_rows(folder, chosen)
    if empty.index is None:  # a kind that learns from data
        empty.train(train, progress=progress)
    meta = {"checkpoint": manifest["checkpoint"], "image_size": manifest["image_size"],
            "parts": str(folder.folder)}  # fmt: skip
    groups = np.array_split(np.arange(manifest["parts"]), shards)
    queries = train[rng.choice(len(train), min(recall_queries, len(train)), replace=False)]
    with Progress("indexing parts", total=manifest["parts"], enabled=progress) as bar:

        def built(parts: np.ndarray) -> GalleryIndex:
            index = empty.empty_copy()
            index.meta.update(meta)
            for part in parts:
                embeddings, items = folder.read(int(part))
                index.add(np.asarray(embeddings), items.column("path").to_pylist(),
                          items.column("label").to_numpy(),
                          checkpoint_sha256=manifest["checkpoint_sha256"])  # fmt: skip
                bar.advance(1)
            return index

        if shards == 1:
            index = built(groups[0])
            index.meta.update(_recall(index, folder, queries, metric))
            index.save(out)
            return GalleryIndex.load(out)
        out.mkdir(parents=True)
        names = [f"shard-{i:03d}" for i in range(shards)]
        for name, group in zip(names, groups, strict=True):
            built(group).save(out / name)  # one shard in memory at a time
    write_json(out / SHARDS_FILE, {"shards": names, "meta": {}})
    recall = _recall(GalleryIndex.load(out), folder, queries, metric)
    write_json(out / SHARDS_FILE, {"shards": names, "meta": recall})
    return GalleryIndex.load(out)


def _nlist(items: int, sample: int) -> int:
    """IVF cells: 4 sqrt(n) of the items, with at least 39 sample points a cell."""
    return max(1, min(int(4 * math.sqrt(items)), sample // 39))


def gather_rows(folder: PartsFolder, chosen: np.ndarray) -> np.ndarray:
    """The embeddings ``(len(chosen), d)`` at the sorted global rows ``chosen``, read a part
    at a time."""
    rows = [folder.record(part)["rows"] for part in range(folder.manifest["parts"])]
    starts = np.concatenate([[0], np.cumsum(rows)])
    taken = []
    for part in range(len(rows)):
        inside = chosen[(chosen >= starts[part]) & (chosen < starts[part + 1])] - starts[part]
        if inside.size:
            taken.append(np.asarray(folder.embeddings(part)[inside]))
    return np.ascontiguousarray(np.concatenate(taken), dtype=np.float32)


def _recall(index: GalleryIndex, folder: PartsFolder, queries: np.ndarray,
            metric: str) -> dict[str, float]:  # fmt: skip
    """Recall@10 of ``index`` against exact search over the parts, for ``queries``."""
    if not len(queries):
        return {}
    exact, sizes = [], []
    for part in range(folder.manifest["parts"]):
        embeddings = np.ascontiguousarray(folder.embeddings(part), dtype=np.float32)
        flat = GalleryIndex.create(embeddings.shape[1], metric=metric)
        flat.add(embeddings, [""] * len(embeddings))
        exact.append(flat.search(queries, RECALL_K))
        sizes.append(len(embeddings))
    truth = _merged(exact, sizes, metric)
    found = index.search(queries, RECALL_K)[1]
    return {f"recall@{RECALL_K}": neighbour_recall(found, truth), "recall_queries": len(queries)}


def _merged(results: list[tuple[np.ndarray, np.ndarray]], sizes: list[int],
            metric: str) -> np.ndarray:  # fmt: skip
    """The ``RECALL_K`` best global ids of ``(scores, ids)`` searched in consecutive parts
    of ``sizes`` items."""
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    scores = np.hstack([s for s, _ in results])
    ids = np.hstack([np.where(i >= 0, i + offset, -1)
                     for (_, i), offset in zip(results, offsets, strict=False)])  # fmt: skip
    scores = np.where(ids >= 0, scores, np.inf if metric == "l2" else -np.inf)
    order = np.argsort(scores if metric == "l2" else -scores, axis=1, kind="stable")
    return np.take_along_axis(ids, order[:, :RECALL_K], axis=1)


def build_index(
    out: str | Path,
    checkpoint: str | Path | None = None,
    *,
    from_parts: str | Path | None = None,
    kind: str = "flat",
    metric: str | None = None,
    extend: bool = False,
    shards: int = 1,
    sample: int = 100_000,
    progress: bool = True,
    **source: Any,
) -> tuple[GalleryIndex, int]:
    """``cdml index``: images embedded with ``checkpoint`` (:func:`cdml.retrieval.index_images`)
    or the embeddings of a parts folder (:func:`index_parts`) into the index folder ``out``.
    Returns the index and the number of items added.

    Args:
        out: the index folder to write.
        checkpoint: a cdml training checkpoint (not with --from-parts: the parts name theirs).
        from_parts: index the embeddings of this folder of parts (written by cdml embed).
        kind: flat: exact; ivf, hnsw, ivfpq (IVF with product quantisation) or a faiss
            factory string such as IVF4096,PQ32: approximate, for millions of items.
        metric: l2: Euclidean distance (default); cosine: cosine similarity; ip: inner
            product.
        extend: add the items not yet indexed to the index at out.
        shards: with --from-parts, sub-indexes of consecutive parts searched together.
        sample: with --from-parts, embeddings the index is trained on.
        progress: show progress bars.
        **source: the images, as :func:`cdml.inference.embed_with_checkpoint` takes them.
    """
    if from_parts is None:
        if checkpoint is None:
            raise ValueError("give --checkpoint with the images, or --from-parts")
        given = [flag for flag, value, default in (("--shards", shards, 1),
                 ("--sample", sample, 100_000)) if value != default]  # fmt: skip
        if given:
            raise ValueError(f"{', '.join(given)}: only with --from-parts")
        from cdml.retrieval import index_images

        return index_images(checkpoint, out, kind=kind, metric=metric, extend=extend,
                            progress=progress, **source)  # fmt: skip
    named = {"--checkpoint": checkpoint, "--extend": extend, "--images": source.get("images"),
             "--dataset": source.get("dataset")}  # fmt: skip
    chosen = [flag for flag, value in named.items() if value]
    if chosen:
        raise ValueError(f"--from-parts indexes the parts' embeddings: no {', '.join(chosen)}")
    index = index_parts(from_parts, out, kind=kind, metric=metric or "l2", sample=sample,
                        shards=shards, progress=progress)  # fmt: skip
    return index, len(index)
