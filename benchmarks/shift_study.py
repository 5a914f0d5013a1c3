"""How well a validation gain predicts the gain on unseen classes, per validation split.

Every config of ``CONFIGS`` is trained on glyphs (whose halves interleave every script) and
on glyphs-shifted (whose unseen classes are other scripts), once with validation classes
drawn at random from the training classes (``data.val_split=random``) and once with the
last block of the sorted training classes held out (``contiguous``, cut as the test half
is). Each run reports its validation gain (the selected epoch's Recall@1 over the untrained
model's, on the validation classes) and its test gain (the same on the unseen classes).
Per dataset and split the table gives the rank correlation of the two over the configs
(Spearman), the mean of validation minus test gain (the selection's optimism), and whether
the config chosen on validation is the best on test.

``--generality`` trains the settings that aim to keep the pretrained model's generality
(``GENERALITY``) on glyphs-shifted, each selecting its epoch on validation classes
(``--val-split``, default contiguous), and prints their validation and test gains side by
side; ``--long`` trains those of ``LONG`` at 8 times the steps.

Runs whose ``metrics.json`` exists are read, not repeated.

Run: ``.venv/bin/python benchmarks/shift_study.py [--out runs/shift] [--generality [--long]
[--val-split random]]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cached_run import BUDGET, cached_run, gain
from scipy.stats import spearmanr

# config name -> its flags. Appended, never reordered.
CONFIGS: dict[str, list[str]] = {
    "facility": ["--loss", "facility"],
    "facility, rates x3": ["--loss", "facility", "--set", "optim.backbone_lr=1e-4",
                           "--set", "optim.head_lr=1e-3"],
    "facility, rates /3": ["--loss", "facility", "--set", "optim.backbone_lr=1e-5",
                           "--set", "optim.head_lr=1e-4"],
    "triplet": ["--loss", "triplet"],
    "group": ["--loss", "group"],
    "lifted": ["--loss", "lifted"],
    "npairs": ["--loss", "npairs"],
    "facility, rates x10": ["--loss", "facility", "--set", "optim.backbone_lr=3e-4",
                            "--set", "optim.head_lr=3e-3"],
    "facility, frozen backbone": ["--loss", "facility", "--set", "optim.backbone_lr=0"],
}  # fmt: skip

DATASETS = ("glyphs", "glyphs-shifted")
SPLITS = ("random", "contiguous")

# 8 times the steps: 4 epochs of 60 batches, where fine-tuning has time to specialise.
LONG_BUDGET = [*BUDGET, "--epochs", "4", "--set", "trainer.limit_train_batches=60"]

# setting name -> its flags on top of the default facility-location run.
GENERALITY: dict[str, list[str]] = {
    "default": [],
    "backbone rate /10 (3e-6)": ["--set", "optim.backbone_lr=3e-6"],
    "backbone rate x0 (frozen backbone)": ["--set", "optim.backbone_lr=0"],
    "EMA of the weights, decay 0.9": ["--set", "trainer.ema_decay=0.9"],
    "WiSE-FT, alpha 0.5": ["--set", "trainer.backbone_interpolation=0.5"],
    "WiSE-FT, alpha 0.75": ["--set", "trainer.backbone_interpolation=0.75"],
    "EMA of the weights, decay 0.98": ["--set", "trainer.ema_decay=0.98"],
    "rates x3 (1e-4 / 1e-3)": ["--set", "optim.backbone_lr=1e-4", "--set", "optim.head_lr=1e-3"],
    "layer-wise rate decay 0.8": ["--set", "optim.layer_decay=0.8"],
    "layer-wise rate decay 0.8, rates x3": ["--set", "optim.layer_decay=0.8",
                                            "--set", "optim.backbone_lr=1e-4",
                                            "--set", "optim.head_lr=1e-3"],
    "linear probe for 1 epoch, then fine-tuning": ["--set", "optim.probe_epochs=1"],
}  # fmt: skip
# those trained with the long budget too
LONG = (
    "default", "backbone rate /10 (3e-6)", "EMA of the weights, decay 0.98", "WiSE-FT, alpha 0.5",
    "rates x3 (1e-4 / 1e-3)", "layer-wise rate decay 0.8", "layer-wise rate decay 0.8, rates x3",
    "linear probe for 1 epoch, then fine-tuning",
)  # fmt: skip


def gains(metrics: dict, metric: str = "recall@1") -> tuple[float, float]:
    """(validation gain, test gain) of a run's ``metrics.json``, in points."""
    return gain(metrics, "val", metric), gain(metrics, "test", metric)


def split_table(out: Path) -> None:
    print("| dataset | validation split | config | val gain R@1 | test gain R@1 | "
          "val gain MAP@R | test gain MAP@R |")  # fmt: skip
    print("|---|---|---|---:|---:|---:|---:|")
    summary = []
    for dataset in DATASETS:
        for split in SPLITS:
            runs = {}
            for index, (name, flags) in enumerate(CONFIGS.items()):
                argv = ["train", "--dataset", dataset, "--val-split", split, *flags, *BUDGET]
                runs[name] = metrics = cached_run(argv, out / dataset / split / str(index))
                (r1, t1), (rm, tm) = gains(metrics), gains(metrics, "map@r")
                print(f"| {dataset} | {split} | {name} | {r1:+.1f} | {t1:+.1f} | {rm:+.1f} | "
                      f"{tm:+.1f} |")  # fmt: skip
            for metric in ("recall@1", "map@r"):
                pairs = {name: gains(metrics, metric) for name, metrics in runs.items()}
                val, test = [p[0] for p in pairs.values()], [p[1] for p in pairs.values()]
                chosen = max(pairs, key=lambda name: pairs[name][0])
                summary.append((
                    dataset, split, metric, spearmanr(val, test).statistic,
                    (sum(val) - sum(test)) / len(val), chosen,
                    pairs[chosen][1], max(test),
                ))  # fmt: skip
    print()
    print("| dataset | validation split | metric | Spearman (val, test gain) | "
          "mean val - test gain | chosen on val | its test gain | best test gain |")  # fmt: skip
    print("|---|---|---|---:|---:|---|---:|---:|")
    for dataset, split, metric, rho, optimism, chosen, chosen_test, best_test in summary:
        print(f"| {dataset} | {split} | {metric} | {rho:+.2f} | {optimism:+.1f} | {chosen} | "
              f"{chosen_test:+.1f} | {best_test:+.1f} |")  # fmt: skip


def generality_table(out: Path, long: bool, split: str) -> None:
    budget, folder = (LONG_BUDGET, "generality-long") if long else (BUDGET, "generality")
    folder += "" if split == "contiguous" else f"-{split}"
    print(f"budget: {' '.join(budget)}; validation split: {split}")
    print("| glyphs-shifted, facility location | val gain R@1 | test gain R@1 | "
          "val gain MAP@R | test gain MAP@R |")  # fmt: skip
    print("|---|---:|---:|---:|---:|")
    for index, (name, flags) in enumerate(GENERALITY.items()):
        if long and name not in LONG:
            continue
        argv = ["train", "--dataset", "glyphs-shifted", "--val-split", split,
                "--loss", "facility", *flags, *budget]  # fmt: skip
        metrics = cached_run(argv, out / folder / str(index))
        (r1, t1), (rm, tm) = gains(metrics), gains(metrics, "map@r")
        print(f"| {name} | {r1:+.1f} | {t1:+.1f} | {rm:+.1f} | {tm:+.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/shift"))
    parser.add_argument("--generality", action="store_true")
    parser.add_argument("--long", action="store_true", help="--generality at 8x the steps")
    parser.add_argument("--val-split", choices=SPLITS, default="contiguous", help="--generality's")
    args = parser.parse_args()
    if args.generality:
        generality_table(args.out, args.long, args.val_split)
    else:
        split_table(args.out)


if __name__ == "__main__":
    main()
