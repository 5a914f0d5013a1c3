"""cdml.metrics.evaluate against pytorch-metric-learning's AccuracyCalculator at SOP scale.

Synthetic clustered embeddings shaped like Stanford Online Products' test set (about 60,000 x 128,
about 11,000 classes of 2-9 images). Both libraries evaluate the same arrays in this one run;
the script checks that they agree on Recall@1 and MAP@R (exactly) and NMI (within 0.01), and
prints the time ratio. pytorch-metric-learning is needed only here:
``.venv/bin/pip install pytorch-metric-learning``.

Run: ``.venv/bin/python benchmarks/bench_evaluate.py [--classes 11316]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from cdml.metrics import evaluate


def sop_like(num_classes: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Clustered, L2-normalised embeddings with 2-9 items per class (mean ~5.5, as in SOP)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 10, size=num_classes)
    labels = np.repeat(np.arange(num_classes), sizes)
    centres = rng.normal(size=(num_classes, dim)) / np.sqrt(dim)
    embeddings = centres[labels] + 0.09 * rng.normal(size=(len(labels), dim))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings.astype(np.float32), labels


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=11316)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    embeddings, labels = sop_like(args.classes, args.dim, args.seed)
    print(
        f"{len(labels)} embeddings x {args.dim}, {args.classes} classes, "
        f"{torch.get_num_threads()} threads"
    )

    calculator = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r", "NMI"),
        k="max_bin_count",
        device=torch.device("cpu"),
    )
    tensor_embeddings, tensor_labels = torch.from_numpy(embeddings), torch.from_numpy(labels)

    rows = []
    cdml_retrieval, cdml_retrieval_s = timed(
        lambda: evaluate(embeddings, labels, ks=(1,), nmi=False)
    )
    pml_retrieval, pml_retrieval_s = timed(
        lambda: calculator.get_accuracy(
            tensor_embeddings,
            tensor_labels,
            include=("precision_at_1", "mean_average_precision_at_r"),
        )
    )
    rows.append(("Recall@1 + MAP@R", cdml_retrieval_s, pml_retrieval_s))
    cdml_nmi, cdml_nmi_s = timed(lambda: evaluate(embeddings, labels, ks=(), map_at_r=False))
    pml_nmi, pml_nmi_s = timed(
        lambda: calculator.get_accuracy(tensor_embeddings, tensor_labels, include=("NMI",))
    )
    rows.append(("NMI (k-means)", cdml_nmi_s, pml_nmi_s))
    rows.append(("all three", cdml_retrieval_s + cdml_nmi_s, pml_retrieval_s + pml_nmi_s))
    _, sop_protocol_s = timed(lambda: evaluate(embeddings, labels, ks=(1, 10, 100, 1000)))

    print(f"\n{'':<18}{'cdml s':>9}{'pml s':>9}{'pml / cdml':>12}")
    for name, ours, theirs in rows:
        print(f"{name:<18}{ours:>9.2f}{theirs:>9.2f}{theirs / ours:>11.2f}x")
    print(f"cdml full SOP protocol (R@1,10,100,1000 + NMI + MAP@R): {sop_protocol_s:.2f} s")

    checks = {
        "recall@1": (cdml_retrieval["recall@1"], pml_retrieval["precision_at_1"], 1e-6),
        "map@r": (cdml_retrieval["map@r"], pml_retrieval["mean_average_precision_at_r"], 1e-6),
        "nmi": (cdml_nmi["nmi"], pml_nmi["NMI"], 0.01),
    }
    print()
    agree = True
    for name, (ours, theirs, tolerance) in checks.items():
        ok = abs(ours - theirs) <= tolerance
        agree &= ok
        print(f"{name:<9} cdml {ours:.6f}  pml {theirs:.6f}  {'agree' if ok else 'DIFFER'}")
    if not agree:
        raise SystemExit("cdml and pytorch-metric-learning disagree")


if __name__ == "__main__":
    main()
