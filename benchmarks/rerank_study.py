"""Re-ranking (alpha-QE, DBA, k-reciprocal) against none, on validation and on test classes.

For each dataset a default facility-location run is trained with the short budget of the
results scripts (``cached_run``), then its embeddings are evaluated without re-ranking and
with each re-ranker: Recall@K, MAP@R, and the milliseconds per query of
``create_reranker(spec).fit(index).search(queries, max K)`` on a flat index of the searched
items (the fit's seconds beside). Each re-ranker's parameters are chosen on the validation
classes (the training classes the run held out: ``validation_classes`` with the run's
``data.val_fraction``, ``val_split`` and seed, embedded from the training split), once by
Recall@1 and once by MAP@R (the other breaking ties); the chosen ones are then reported on
the test classes.

Datasets: ``glyphs`` (standard split); ``fashion-mnist`` (classes 0-4 train, 5-9 test; the
run holds out 2 of its 5 training classes, ``data.val_fraction=0.4``, as 0.2 would hold out
none; at most ``FASHION_PER_CLASS`` images per class are evaluated, a seeded sample, to keep
the study to minutes on a CPU); ``csv``: an open-metric-learning CSV written from the
glyphs-shifted images (digits and Latin train, Greek, Cyrillic and symbols test), each test
class split at random into halves of queries and gallery (``is_query`` / ``is_gallery``);
its validation classes are split the same way. Every item queries all the others on glyphs
and Fashion-MNIST.

Run: ``.venv/bin/python benchmarks/rerank_study.py [--out runs/rerank] [--dataset NAME ...]``
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
from cached_run import BUDGET, cached_run
from PIL import Image

from cdml.data import load_dataset, validation_classes
from cdml.inference import embed_with_checkpoint, load_checkpoint
from cdml.metrics import evaluate
from cdml.reranking import create_reranker
from cdml.retrieval import GalleryIndex

DATASETS = ("glyphs", "fashion-mnist", "csv")
FASHION_PER_CLASS = 2000
# Each re-ranker's grid, searched on the validation classes.
GRID = {
    "aqe": [f"aqe:k={k},alpha={a}" for k in (1, 2, 3, 5) for a in (0, 1, 3)],
    "dba": [f"dba:k={k},alpha={a}" for k in (1, 2, 3, 5) for a in (0, 1, 3)],
    "kreciprocal": [
        f"kreciprocal:k1={k1},k2={k2},lambda={lam}"
        for k1 in (10, 20) for k2 in (3, 6) for lam in (0.3, 0.6)
    ],
}  # fmt: skip
# Parameters are chosen on validation by each of these (the other breaking ties).
SELECT_BY = ("recall@1", "map@r")
LABELS = {"recall@1": "R@1", "map@r": "MAP@R"}


def write_csv(folder: Path, seed: int = 0) -> Path:
    """``folder/glyphs.csv``: the glyphs-shifted images as PNG files listed with their label
    and split; each test class's images split at random into queries and gallery."""
    path = folder / "glyphs.csv"
    if path.is_file():
        return path
    rows = []
    for split in ("train", "test"):
        dataset = load_dataset("glyphs-shifted", split=split)
        marks = query_gallery(dataset.labels, seed) if split == "test" else None
        for i, (image, label) in enumerate(zip(dataset.images, dataset.labels, strict=True)):
            file = Path("images") / split / f"{i}.png"
            (folder / file).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / file)
            roles = ["", ""] if marks is None else [int(marks[i]), int(not marks[i])]
            rows.append([f"{split}{label:03d}", file.as_posix(), split, *roles])
    staging = path.with_suffix(".tmp")
    with staging.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["label", "path", "split", "is_query", "is_gallery"])
        writer.writerows(rows)
    staging.replace(path)
    return path


def query_gallery(labels: np.ndarray, seed: int) -> np.ndarray:
    """``(n,)`` booleans, True for the queries: a random half of each class (rounded down)."""
    rng = np.random.default_rng(seed)
    is_query = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        is_query[members[: len(members) // 2]] = True
    return is_query


def embeddings(name: str, checkpoint: Path, root: Path | None, part: str) -> dict:
    """The ``part`` (``"val"`` or ``"test"``) items of the run: ``embeddings``, ``labels``
    and, for the CSV, ``is_query`` / ``is_gallery``; cached beside the run."""
    cache = checkpoint.parent.parent / f"embeddings-{part}.npz"
    if cache.is_file():
        return dict(np.load(cache))
    dataset = "glyphs-shifted" if name == "csv" else name
    split = "train" if part == "val" else "test"
    labels = load_dataset(name if name == "csv" else dataset, root, split).labels
    keep = np.ones(len(labels), bool)
    if part == "val":
        _, config = load_checkpoint(checkpoint)
        data, seed = config.data, config.trainer.seed
        keep = np.isin(labels, validation_classes(labels, data.val_fraction, seed, data.val_split))
    if name == "fashion-mnist":
        rng = np.random.default_rng(0)
        for label in np.unique(labels[keep]):
            members = np.flatnonzero(keep & (labels == label))
            keep[rng.permutation(members)[FASHION_PER_CLASS:]] = False
    if name == "csv":
        paths = load_dataset("csv", root, split).paths
    else:
        paths = [f"{name}/{split}/{i}" for i in range(len(labels))]
    skip = {str(paths[i]) for i in np.flatnonzero(~keep)}
    arrays = embed_with_checkpoint(
        checkpoint, dataset=name, data_root=root, split=split, skip=skip, progress=False
    )
    out = {"embeddings": arrays["embeddings"], "labels": arrays["labels"]}
    if name == "csv":
        if part == "test":
            out |= {"is_query": arrays["is_query"], "is_gallery": arrays["is_gallery"]}
        else:
            out["is_query"] = query_gallery(out["labels"], seed=1)
            out["is_gallery"] = ~out["is_query"]
    np.savez(cache, **out)
    return out


def measure(items: dict, spec: str | None, ks: tuple[int, ...]) -> dict[str, float]:
    """Recall@K and MAP@R of ``items`` re-ranked by ``spec``, and the cost per query."""
    marks = {key: items[key] for key in ("is_query", "is_gallery") if key in items}
    metrics = evaluate(items["embeddings"], items["labels"], ks, nmi=False, rerank=spec, **marks)
    queries, gallery = items["embeddings"], items["embeddings"]
    if marks:
        queries, gallery = queries[marks["is_query"]], gallery[marks["is_gallery"]]
    index = GalleryIndex.create(gallery.shape[1])
    index.add(gallery, [str(i) for i in range(len(gallery))])
    start = time.perf_counter()
    reranker = create_reranker(spec)
    searcher = index if reranker is None else reranker.fit(index)
    fitted = time.perf_counter()
    searcher.search(queries, max(ks))
    done = time.perf_counter()
    cost = {"fit_s": fitted - start, "ms_per_query": 1000 * (done - fitted) / len(queries)}
    return metrics | cost


def study(name: str, out: Path) -> list[str]:
    """The table rows of dataset ``name``."""
    root = None
    train = ["train", "--dataset", name, "--loss", "facility", *BUDGET]
    if name == "fashion-mnist":
        train += ["--set", "data.val_fraction=0.4"]
    if name == "csv":
        root = write_csv(out / "csv-data")
        train[2:3] = ["csv", "--data-root", str(root)]
    cached_run(train, out / name)
    checkpoint = out / name / "checkpoints" / "best.ckpt"
    ks = (1, 4)
    val, test = (embeddings(name, checkpoint, root, part) for part in ("val", "test"))
    rows = []
    for method, grid in [("none", [None]), *GRID.items()]:
        scored = {spec: measure(val, spec, ks) for spec in grid}
        chosen: dict[str | None, list[str]] = {}
        for criterion in SELECT_BY:
            ranked = (criterion, *(c for c in SELECT_BY if c != criterion))
            best = max(grid, key=lambda spec: tuple(scored[spec][c] for c in ranked))
            chosen.setdefault(best, []).append(LABELS[criterion])
        for spec, criteria in chosen.items():
            on_test = measure(test, spec, ks)
            cells = [name, method, spec or "-", "-" if spec is None else ", ".join(criteria)]
            for metrics in (scored[spec], on_test):
                cells += [f"{100 * metrics[f'recall@{k}']:.1f}" for k in ks]
                cells += [f"{100 * metrics['map@r']:.1f}", f"{metrics['ms_per_query']:.3f}"]
            rows.append("| " + " | ".join(cells) + f" | {on_test['fit_s']:.2f} |")
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/rerank"))
    parser.add_argument("--dataset", nargs="+", choices=DATASETS, default=list(DATASETS))
    args = parser.parse_args()
    print(
        "| dataset | re-ranking | parameters | chosen on val by | val R@1 | val R@4 | val MAP@R | "
        "val ms/query | test R@1 | test R@4 | test MAP@R | test ms/query | test fit s |"
    )
    print("|" + "---|" * 13, flush=True)
    for name in args.dataset:
        study(name, args.out)


if __name__ == "__main__":
    main()
