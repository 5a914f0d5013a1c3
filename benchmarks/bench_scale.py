"""Scale: evaluation and search over a million synthetic 128-d embeddings, in one run.

Stages, each in its own process so that its peak memory (resident set, including the
embeddings it holds) is measured alone:

1. ``cdml.metrics.evaluate`` (Recall@1/10/100 and MAP@R, exact kNN; NMI with ``--nmi``) of
   ``--eval-n`` embeddings of an SOP-like labelling (classes of 2-12 items).
2. Exact search: ``--queries`` queries, k = 10, over a flat index of ``--n`` items.
3. Approximate search over the same gallery, IVF and HNSW: build time, then for several
   search widths (IVF's ``nprobe`` cells, HNSW's ``efSearch`` candidates) the search time
   (all queries in one batch, and one query at a time), the speed-up over exact search and
   recall@10 against the exact neighbours.

Run: ``.venv/bin/python benchmarks/bench_scale.py [--n 1000000] [--eval-n 100000] [--nmi]``
(the default evaluates 100,000 embeddings: a 1M evaluation is an exact 1M x 1M neighbour
search, which grows as n^2: 49 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

import numpy as np

DIM = 128


def embeddings(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` clustered unit vectors with labels: classes of 2-12 items, as in SOP."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 13, size=n // 2)
    labels = np.repeat(np.arange(len(sizes)), sizes)[:n]
    centres = rng.standard_normal((labels[-1] + 1, DIM), dtype=np.float32)
    points = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):  # bounded temporaries
        part = slice(start, start + 100_000)
        noise = rng.standard_normal((len(labels[part]), DIM), dtype=np.float32)
        points[part] = centres[labels[part]] + 0.9 * noise
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points, labels


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def stage_evaluate(n: int, nmi: bool) -> dict:
    from cdml.metrics import evaluate

    points, labels = embeddings(n)
    start = time.perf_counter()
    metrics = evaluate(points, labels, ks=(1, 10, 100), nmi=nmi, map_at_r=True)
    return {"seconds": time.perf_counter() - start, "peak_gib": peak_gib(), "metrics": metrics}


# search widths tried: IVF's nprobe, HNSW's efSearch
WIDTHS = {"flat": [None], "ivf": [16, 64, 256, 1024], "hnsw": [64, 256, 1024]}
# queries also searched one at a time (as `cdml search` of one image does), for the latency
SINGLE_QUERIES = 200


def stage_search(n: int, queries: int, kind: str) -> dict:
    from cdml.retrieval import GalleryIndex

    points, _ = embeddings(n)
    probe = points[np.random.default_rng(1).choice(n, queries, replace=False)]
    probe = probe + 0.05 * np.random.default_rng(2).standard_normal(probe.shape, dtype=np.float32)
    start = time.perf_counter()
    index = GalleryIndex.create(DIM, kind=kind)
    index.add(points, [""] * n)
    built = time.perf_counter() - start
    searches = []
    for width in WIDTHS[kind]:
        if width is not None:
            index.search_width = width
        start = time.perf_counter()
        _, found = index.search(probe, 10)
        batched = time.perf_counter() - start
        start = time.perf_counter()
        for query in probe[:SINGLE_QUERIES]:
            index.search(query[None], 10)
        single_ms = 1000 * (time.perf_counter() - start) / SINGLE_QUERIES
        searches.append((width, batched, single_ms, found))
    return {"build": built, "searches": searches, "peak_gib": peak_gib()}


def run(stage, *args) -> dict:
    with mp.get_context("fork").Pool(1) as pool:
        return pool.apply(stage, args)


def main() -> None:
    from cdml.retrieval import neighbour_recall

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="gallery size")
    parser.add_argument(
        "--eval-n", type=int, default=100_000, help="evaluated embeddings (1,000,000: ~50 minutes)"
    )
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--nmi", action="store_true", help="also k-means NMI in the evaluation")
    parser.add_argument("--skip-eval", action="store_true")
    args = parser.parse_args()

    print(f"{args.n:,} x {DIM} gallery, {args.queries:,} queries, k = 10")
    if not args.skip_eval:
        result = run(stage_evaluate, args.eval_n, args.nmi)
        shown = ", ".join(f"{k} {v:.3f}" for k, v in result["metrics"].items())
        print(
            f"evaluate {args.eval_n:,}: {result['seconds']:.1f} s, peak {result['peak_gib']:.2f} "
            f"GiB ({shown})"
        )
    exact = run(stage_search, args.n, args.queries, "flat")
    ((_, exact_seconds, exact_ms, truth),) = exact["searches"]
    print(
        f"exact flat: search {exact_seconds:.1f} s ({args.queries / exact_seconds:,.0f} "
        f"queries/s), one query at a time {exact_ms:.1f} ms/query, peak "
        f"{exact['peak_gib']:.2f} GiB"
    )
    for kind, width_name in (("ivf", "nprobe"), ("hnsw", "efSearch")):
        result = run(stage_search, args.n, args.queries, kind)
        print(f"{kind}: build {result['build']:.1f} s, peak {result['peak_gib']:.2f} GiB")
        for width, seconds, single_ms, found in result["searches"]:
            print(
                f"  {width_name} {width:>4}: search {seconds:.2f} s ({exact_seconds / seconds:.1f}x"
                f" faster than exact), one at a time {single_ms:.2f} ms/query "
                f"({exact_ms / single_ms:.0f}x), recall@10 {neighbour_recall(found, truth):.3f}"
            )


if __name__ == "__main__":
    main()
