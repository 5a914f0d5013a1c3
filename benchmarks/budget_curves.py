"""Gain against training steps for each supervised method, on glyphs-shifted.

Each method trains with its defaults for 4 epochs of 60 batches of 128 (8 times the short
budget of the other glyphs tables), seed 0, validation classes drawn at random (the
default). The table gives the validation Recall@1 gain over the untrained model after each
epoch (read from the run's ``logs/version_0/metrics.csv``), the epoch the run selected on
validation, and the test gains (Recall@1, MAP@R) of that epoch on the unseen scripts.

Runs whose ``metrics.json`` exists are read, not repeated.

Run: ``.venv/bin/python benchmarks/budget_curves.py [--out runs/budget] [--losses ...]``
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from cached_run import BUDGET, cached_run

STEPS = ["--epochs", "4", "--set", "trainer.limit_train_batches=60"]


def validation_curve(run: Path, epochs: int, metric: str = "val/recall@1") -> list[float]:
    """``metric`` after each of the ``epochs``, in points over the untrained model
    (validated at step 0, before them; the selected model is validated again after them):
    the first start's CSV log of run folder ``run``."""
    with open(run / "logs" / "version_0" / "metrics.csv", newline="") as file:
        values = [float(row[metric]) for row in csv.DictReader(file) if row.get(metric)]
    untrained, *trained = values[: epochs + 1]
    return [100 * (value - untrained) for value in trained]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/budget"))
    parser.add_argument("--losses", default="facility,triplet,lifted,npairs,group")
    args = parser.parse_args()
    rows = []
    for loss in args.losses.split(","):
        run = args.out / "glyphs-shifted" / loss
        argv = ["train", "--dataset", "glyphs-shifted", "--loss", loss, *BUDGET, *STEPS]
        metrics = cached_run(argv, run)
        rows.append((loss, metrics, validation_curve(run, metrics["epochs"])))
    epochs = max(len(curve) for _, _, curve in rows)
    header = " | ".join(f"val R@1, {60 * (e + 1)} steps" for e in range(epochs))
    print(f"| method | {header} | selected epoch | test R@1 | test MAP@R |")
    print(f"|---|{'---:|' * epochs}---:|---:|---:|")
    for loss, metrics, curve in rows:
        test = [
            100 * (metrics["test"][metric] - metrics["untrained"][metric])
            for metric in ("recall@1", "map@r")
        ]
        cells = " | ".join(f"{gain:+.1f}" for gain in curve)
        print(f"| {loss} | {cells} | {metrics['best_epoch']} | {test[0]:+.1f} | {test[1]:+.1f} |")


if __name__ == "__main__":
    main()
