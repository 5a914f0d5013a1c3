"""The fair comparison: every method with the config its own search chose, trained at the full
budget on several seeds, tested on the unseen classes.

Each method's config is the ``best.yaml`` of its ``cdml tune`` study in ``--studies``
(``benchmarks/tuned_comparison.py`` runs them: the same number of trials for every method,
scored on validation classes only), with its epochs and batches raised to the full budget:
``--epochs`` (default 5) epochs of every training image. A method without a study trains
with its defaults, and the table says so. CBS is CBSwR without its reconstruction term.

The table gives, per dataset and method, the validation Recall@1 gain and the test gains over
the untrained model (Recall@1, MAP@R, NMI, in points) as mean ± standard deviation over
``--seeds``, then whether each seed paper's ordering holds: a pair holds where the first
method's mean test Recall@1 gain is the higher.

Runs whose ``metrics.json`` exists are read, not repeated.

Run: ``.venv/bin/python benchmarks/fair_comparison.py [--datasets glyphs-shifted,glyphs]
[--seeds 0,1,2] [--losses ...] [--studies runs/tuned] [--out runs/fair]``
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from cached_run import QUIET, cached_run, gain

from cdml.losses import METHODS as LOSSES
from cdml.losses import VIEWS

# method -> the flags naming it
METHODS: dict[str, list[str]] = {
    "facility": ["--loss", "facility"],
    "triplet": ["--loss", "triplet"],
    "lifted": ["--loss", "lifted"],
    "npairs": ["--loss", "npairs"],
    "group": ["--loss", "group"],
    "cbswr": ["--loss", "cbswr"],
    "cbs": ["--loss", "cbswr", "--set", "loss.params.reconstruction_weight=0"],
    "sme": ["--loss", "sme"],
    "mom": ["--loss", "mom"],
}
# Each seed paper's ordering, as pairs (expected ahead, expected behind).
ORDERINGS: dict[str, list[tuple[str, str]]] = {
    "seed 000 (facility location first)": [
        ("facility", "lifted"), ("facility", "npairs"), ("facility", "triplet")
    ],
    "seed 002 (the Group Loss first)": [
        ("group", "facility"), ("group", "lifted"), ("group", "npairs"), ("group", "triplet")
    ],
    "seed 001 (CBSwR > CBS > SME)": [("cbswr", "cbs"), ("cbs", "sme"), ("cbswr", "sme")],
}  # fmt: skip
METRICS = ("recall@1", "map@r", "nmi")


def full_budget(epochs: int) -> list[str]:
    """Every training image each epoch, every test and validation image evaluated."""
    return [
        "--epochs", str(epochs), "--set", "trainer.limit_train_batches=1.0",
        "--set", "data.max_eval_per_class=null", *QUIET,
    ]  # fmt: skip


def method_argv(dataset: str, method: str, studies: Path) -> tuple[list[str], str]:
    """The method's train flags on ``dataset`` (its study's best config, else its defaults)
    and where they come from."""
    best = studies / dataset / method / "tune" / "best.yaml"
    if best.is_file():
        return ["--config", str(best)], f"tuned ({best.parent})"
    flags = METHODS[method]
    # an unsupervised method holds out labelled validation classes, as its study did
    unlabelled = LOSSES[flags[flags.index("--loss") + 1]].batch_kind == VIEWS
    held_out = ["--set", "data.val_fraction=0.2"] if unlabelled else []
    return ["--dataset", dataset, *flags, *held_out], "defaults (no study)"


def mean_sd(values: list[float]) -> str:
    """``mean ± sd``, or the value alone for one seed."""
    if len(values) == 1:
        return f"{values[0]:+.1f}"
    return f"{statistics.mean(values):+.1f} ± {statistics.stdev(values):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="glyphs-shifted,glyphs")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--losses", default=",".join(METHODS))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--studies", type=Path, default=Path("runs/tuned"))
    parser.add_argument("--out", type=Path, default=Path("runs/fair"))
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    for dataset in args.datasets.split(","):
        gains: dict[str, dict[str, list[float]]] = {}
        print(f"\n{dataset}, {args.epochs} full epochs, seeds {args.seeds}: gains in points")
        print("| method | config | val R@1 | R@1 | MAP@R | NMI |")
        print("|---|---|---:|---:|---:|---:|")
        for method in args.losses.split(","):
            flags, source = method_argv(dataset, method, args.studies)
            runs = [
                cached_run(
                    ["train", *flags, "--seed", str(seed), *full_budget(args.epochs)],
                    args.out / dataset / method / f"seed{seed}",
                )
                for seed in seeds
            ]
            gains[method] = {m: [gain(run, "test", m) for run in runs] for m in METRICS}
            val = mean_sd([gain(run, "val") for run in runs])
            cells = " | ".join(mean_sd(gains[method][m]) for m in METRICS)
            print(f"| {method} | {source} | {val} | {cells} |")
        print("\n| ordering | pair | R@1 difference | holds |")
        print("|---|---|---:|---|")
        for ordering, pairs in ORDERINGS.items():
            for ahead, behind in pairs:
                if ahead in gains and behind in gains:
                    difference = statistics.mean(gains[ahead]["recall@1"]) - statistics.mean(
                        gains[behind]["recall@1"]
                    )
                    holds = "yes" if difference > 0 else "no"
                    print(f"| {ordering} | {ahead} > {behind} | {difference:+.1f} | {holds} |")


if __name__ == "__main__":
    main()
