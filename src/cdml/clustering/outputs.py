"""Writing a clustering: assignments.csv, clusters.json and contact sheets of its clusters."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cdml.checks import check_seed
from cdml.clustering.methods import Clustering, cluster
from cdml.inference import source_images
from cdml.io import atomic_path, check_output_folder, is_json_object, write_json
from cdml.metrics import partition_scores
from cdml.progress import Progress
from cdml.viz.contact_sheet import contact_sheet


def write_clusters(
    out: str | Path,
    clustering: Clustering,
    arrays: dict[str, np.ndarray],
    *,
    members: int = 35,
    progress: bool = False,
) -> dict[str, Any]:
    """Write a clustering of the items of ``arrays`` (as ``cdml embed`` writes them:
    ``paths``, and ``labels`` where known) to the folder ``out``:

    - ``assignments.csv``: path, cluster, distance (to the medoid or centroid), label;
    - ``clusters.json``: the method, k, per cluster its size, exemplar's path and mean
      distance, and with labels the scores against them (NMI, AMI, ARI, purity);
    - ``sheets/cluster_NNN.png``: the exemplar (framed) and up to ``members`` members,
      nearest first; ``sheets/overview.png``: every exemplar, with its cluster and size.

    ``out`` must be new, empty or a clustering cdml wrote (:func:`check_clusters_output`),
    and the items' images known (``paths`` or ``dataset``), else ``ValueError`` before
    anything is written. Returns the content of ``clusters.json``."""
    out = check_clusters_output(out)
    _check_images_known(arrays, "the items")
    (out / "sheets").mkdir(parents=True, exist_ok=True)
    n = len(clustering.assignment)
    paths = arrays.get("paths", np.array([f"item {i}" for i in range(n)]))
    labels = arrays.get("labels")
    rows = [["path", "cluster", "distance", "label"]]
    for i in range(n):
        label = "" if labels is None else int(labels[i])
        rows.append([str(paths[i]), int(clustering.assignment[i]),
                     f"{clustering.distances[i]:.6g}", label])  # fmt: skip
    with atomic_path(out / "assignments.csv") as tmp, tmp.open("w", newline="") as file:
        csv.writer(file).writerows(rows)
    clusters = []
    for c, exemplar in enumerate(clustering.exemplars):
        chosen = clustering.assignment == c
        clusters.append({
            "cluster": c,
            "size": int(chosen.sum()),
            "exemplar": str(paths[exemplar]),
            "mean_distance": float(clustering.distances[chosen].mean()),
        })  # fmt: skip
    summary: dict[str, Any] = {"method": clustering.method, "k": clustering.k, "items": n}
    if labels is not None:
        summary["scores"] = partition_scores(labels, clustering.assignment)
    summary["clusters"] = clusters
    write_json(out / "clusters.json", summary)
    _write_sheets(out / "sheets", clustering, arrays, members, progress)
    return summary


def cluster_to_folder(
    out: str | Path,
    *,
    embeddings: str | Path | None = None,
    checkpoint: str | Path | None = None,
    k: int | Literal["auto"] = "auto",
    method: str = "spectral",
    members: int = 35,
    seed: int = 0,
    k_max: int | None = None,
    progress: bool = True,
    **source: Any,
) -> tuple[Clustering, dict[str, Any]]:
    """``cdml cluster``: cluster the items of an ``embeddings`` file, or of ``checkpoint``'s
    embedding of ``source`` (:func:`cdml.inference.embed_with_checkpoint`'s arguments), with
    :func:`cdml.clustering.cluster` (``k``, ``method``, ``seed``, ``k_max``) and write them to
    ``out`` (:func:`write_clusters`, ``members`` per contact sheet). Every argument and the
    folder are checked before any work. Returns the clustering and ``clusters.json``.

    Args:
        out: the output folder.
        embeddings: a .npz file written by cdml embed.
        checkpoint: a cdml checkpoint, to embed images or a dataset's split instead.
        k: the number of clusters, or auto (estimated from the neighbour graph).
        method: how to cluster (spectral: of the nearest-neighbour graph).
        members: members per contact sheet.
        seed: seed of k-means and of the samples.
        k_max: the largest k that auto considers.
        progress: show progress bars.
        **source: the images, as :func:`cdml.inference.embed_with_checkpoint` takes them.
    """
    from cdml.inference import embed_with_checkpoint, load_embeddings

    if (embeddings is None) == (checkpoint is None):
        raise ValueError("give either --embeddings FILE.npz or --checkpoint with the images")
    if members < 0:
        raise ValueError(f"--members must be 0 or more, got {members}")
    check_seed(seed, "--seed")
    inputs = {
        "--embeddings": embeddings,
        "--checkpoint": checkpoint,
        "--images": source.get("images"),
    }
    check_clusters_output(out, inputs=inputs)
    if embeddings is not None:
        arrays = load_embeddings(embeddings, need_labels=False)
        _check_images_known(arrays, str(embeddings))
    else:
        arrays = embed_with_checkpoint(checkpoint, progress=progress, **source)
    result = cluster(arrays["embeddings"], k, method, seed=seed, k_max=k_max, progress=progress)
    return result, write_clusters(out, result, arrays, members=members, progress=progress)


def _check_images_known(arrays: dict[str, np.ndarray], source: str) -> None:
    """``ValueError`` naming ``source`` unless its items' images can be found (for the
    contact sheets)."""
    if "paths" not in arrays and "dataset" not in arrays:
        raise ValueError(
            f"{source}: has no 'paths' or 'dataset' entry to find the images of the contact "
            "sheets (write it with cdml embed)"
        )


def check_clusters_output(
    out: str | Path, name: str = "--out", inputs: dict[str, Any] | None = None
) -> Path:
    """``ValueError`` unless the folder ``out`` can take a clustering: new, empty, or one
    that :func:`write_clusters` wrote, and none of ``inputs`` (``{flag: path}``) lies in it;
    ``name`` is its flag. Returns it."""
    return check_output_folder(
        out, what="a clustering", owned=is_clustering, name=name, inputs=inputs
    )


def is_clustering(folder: Path) -> bool:
    """Whether ``folder`` holds a clustering that :func:`write_clusters` wrote."""
    return is_json_object(folder / "clusters.json", "method", "clusters")


def _write_sheets(
    folder: Path, clustering: Clustering, arrays: dict[str, np.ndarray], members: int,
    progress: bool,
) -> None:  # fmt: skip
    for stale in folder.glob("cluster_*.png"):  # of an earlier clustering into this folder
        stale.unlink()
    sizes = np.bincount(clustering.assignment, minlength=clustering.k)
    images = source_images(arrays, clustering.exemplars)
    captions = [f"{c}: {sizes[c]}" for c in range(clustering.k)]
    contact_sheet(images, folder / "overview.png", captions=captions, frame_first=False)
    with Progress("contact sheets", total=clustering.k, enabled=progress) as bar:
        for c, exemplar in enumerate(clustering.exemplars):
            others = np.flatnonzero(clustering.assignment == c)
            others = others[others != exemplar]
            nearest = others[np.argsort(clustering.distances[others], kind="stable")[:members]]
            sheet = source_images(arrays, [exemplar, *nearest])
            contact_sheet(sheet, folder / f"cluster_{c:03d}.png")
            bar.advance(1)
