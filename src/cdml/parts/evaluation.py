"""The zero-shot metrics of a collection held in parts: every item queries all the others,
the gallery read a part at a time (exact), or searched in an index built from the parts
(approximate); no array of the whole collection in memory but its labels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cdml.metrics import DEFAULT_KS, check_metric, kmeans_scores
from cdml.metrics.neighbours import nearest_neighbours, unit_rows, without_own
from cdml.metrics.protocol import average_precision_at_r
from cdml.parts.store import PartsFolder
from cdml.progress import Progress

QUERY_ROWS = 4096  # queries ranked at a time


def evaluate_parts(
    parts: str | Path,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    map_at_r: bool = True,
    nmi: bool = True,
    metric: str = "l2",
    index: str | Path | None = None,
    nmi_sample: int = 100_000,
    nmi_runs: int = 1,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, float]:
    """Recall@K, MAP@R and (on a sample) NMI of the embeddings in the parts folder ``parts``,
    each item querying all the others (the papers' protocol), as :func:`cdml.metrics.evaluate`
    computes them: exact, the gallery streamed a part at a time against chunks of queries
    (``l2`` or ``cosine``), or with ``index`` (built by ``cdml index --from-parts`` from
    these parts) approximate, as fast as the index. k-means runs ``nmi_runs`` times on
    ``nmi_sample`` items drawn with ``seed`` (its scores say so: ``"nmi_sample"``)."""
    check_metric(metric)
    if metric == "ip":
        raise ValueError("evaluation over parts ranks by l2 or cosine, not ip")
    folder = PartsFolder(parts)
    folder.check_finished()
    count = folder.manifest["parts"]
    labels = np.concatenate([folder.read(p)[1].column("label").to_numpy() for p in range(count)])
    if (labels < 0).any():
        raise ValueError(f"{parts}: {int((labels < 0).sum())} items have no label to score")
    values, counts = np.unique(labels, return_counts=True)
    positives = counts[np.searchsorted(values, labels)] - 1
    ks = sorted({int(k) for k in ks})
    depth = max(max(ks), int(positives.max()) if map_at_r else 0)
    if depth > len(labels) - 1 or min(ks) < 1:
        raise ValueError(f"ks must be between 1 and the {len(labels) - 1} other items")
    searcher = _indexed(index, folder, len(labels)) if index is not None else None
    hits = {k: np.zeros(len(labels), bool) for k in ks}
    precision = np.zeros(len(labels))
    start = 0
    with Progress("neighbours", total=len(labels), enabled=progress) as bar:
        for part in range(count):
            vectors = _as_compared(folder.embeddings(part), metric)
            for offset in range(0, len(vectors), QUERY_ROWS):
                queries = vectors[offset : offset + QUERY_ROWS]
                own = np.arange(start, start + len(queries))
                found = (searcher(queries, depth, own) if searcher is not None
                         else _exact(folder, queries, depth, own, metric))  # fmt: skip
                relevant = (labels[np.maximum(found, 0)] == labels[own, None]) & (found >= 0)
                for k in ks:
                    hits[k][own] = relevant[:, :k].any(axis=1)
                if map_at_r:
                    r = positives[own]
                    precision[own] = average_precision_at_r(relevant[:, : r.max()], r)
                start += len(queries)
                bar.advance(len(queries))
    results = {f"recall@{k}": float(hits[k].mean()) for k in ks}
    if nmi:
        results |= _sampled_kmeans(folder, labels, metric, nmi_sample, nmi_runs, seed, progress)
    if map_at_r:
        results["map@r"] = float(precision.mean())
    return results


def _as_compared(vectors: np.ndarray, metric: str) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return unit_rows(vectors) if metric == "cosine" else vectors


def _exact(folder: PartsFolder, queries: np.ndarray, depth: int, own: np.ndarray,
           metric: str) -> np.ndarray:  # fmt: skip
    """The ``depth`` nearest other items ``(q, depth)`` of ``queries`` (global ``own``
    indices), over every part: each part's nearest, merged by distance, ties by the lower
    index, as :func:`cdml.metrics.evaluate` ranks them."""
    candidates, distances, start = [], [], 0
    for part in range(folder.manifest["parts"]):
        gallery = _as_compared(folder.embeddings(part), metric)
        local = own - start
        inside = np.where((local >= 0) & (local < len(gallery)), local, -1)
        width = min(depth, len(gallery) - int((inside >= 0).any()))
        if width > 0:
            found = nearest_neighbours(queries, gallery, width,
                                       own=inside if (inside >= 0).any() else None)  # fmt: skip
            difference = gallery[found] - queries[:, None]
            distances.append(np.einsum("qkd,qkd->qk", difference, difference))
            candidates.append(found + start)
        start += len(gallery)
    candidates, distances = np.hstack(candidates), np.hstack(distances)
    order = np.lexsort((candidates, distances), axis=1)[:, :depth]
    return np.take_along_axis(candidates, order, axis=1)


def _indexed(index: str | Path, folder: PartsFolder, items: int):
    from cdml.retrieval import GalleryIndex

    gallery = GalleryIndex.load(index)
    if (
        len(gallery) != items
        or gallery.meta.get("checkpoint_sha256") != folder.manifest["checkpoint_sha256"]
    ):
        raise ValueError(f"--index {index} was not built from {folder.folder}")

    def search(queries: np.ndarray, depth: int, own: np.ndarray) -> np.ndarray:
        return without_own(gallery.search(queries, depth + 1)[1], own, depth)

    return search


def _sampled_kmeans(folder: PartsFolder, labels: np.ndarray, metric: str, size: int,
                    runs: int, seed: int, progress: bool) -> dict[str, float]:  # fmt: skip
    from cdml.parts.indexing import gather_rows

    chosen = np.sort(np.random.default_rng(seed).choice(len(labels), min(size, len(labels)),
                                                        replace=False))  # fmt: skip
    sample = _as_compared(gather_rows(folder, chosen), metric)
    scores = kmeans_scores(sample, labels[chosen], seed=seed, runs=runs, progress=progress)
    return {**scores, "nmi_sample": float(len(chosen))}


def evaluate_collection(
    embeddings: str | Path | None = None, *, index: str | Path | None = None, **options: Any
) -> tuple[dict[str, float], dict[str, np.ndarray], str]:
    """``cdml evaluate``: a folder of parts by :func:`evaluate_parts` (``index``: ranked by
    that index), anything else by :func:`cdml.inference.evaluate_embeddings` (``options``).
    Returns the metrics, the items' arrays (none for parts) and what was evaluated.

    Args:
        embeddings: a .npz file with 'embeddings' and 'labels' (as cdml embed writes it),
            or a folder of parts (cdml embed --parts), evaluated a part at a time.
        index: with a folder of parts, rank with this index built from them (cdml index
            --from-parts): approximate and fast; default exact, a part at a time.
        **options: as :func:`cdml.inference.evaluate_embeddings` takes them.
    """
    from cdml.inference import evaluate_embeddings
    from cdml.io import check_output, is_json_object, write_json

    if embeddings is None or not Path(embeddings).is_dir():
        if index is not None:
            raise ValueError("--index ranks a folder of parts: give one as EMBEDDINGS")
        return evaluate_embeddings(embeddings, **options)
    unused = [f"--{name.replace('_', '-')}" for name in ("checkpoint", "rerank", "dataset")
              if options.get(name) is not None]  # fmt: skip
    if unused:
        raise ValueError(f"{', '.join(unused)}: not with a folder of parts")
    json_out = options.get("json_out")
    if json_out is not None:
        check_output(json_out, what="a metrics file", name="--json",
                     owned=lambda path: is_json_object(path, "map@r"))  # fmt: skip
    metrics = evaluate_parts(
        embeddings, options.get("ks") or DEFAULT_KS, nmi=options.get("nmi", True),
        nmi_runs=options.get("nmi_runs", 1), metric=options.get("metric", "l2"), index=index,
    )  # fmt: skip
    if json_out is not None:
        write_json(json_out, metrics)
    how = f"approximate, ranked by the index {index}" if index else "exact"
    return metrics, {}, f"{embeddings} (parts, {how})"
