"""cdml's default recipe against the one it replaced, on the three built-in datasets.

Both train the facility-location loss with the same budget (2 epochs of 15 batches) and the
batches resolved from the data; "before" sets the former defaults (BatchNorm statistics
re-estimated, RMSprop at 1e-4 backbone / 1e-3 head, random crops of 8-100 % of the image),
"after" leaves every setting at today's default. Printed: test Recall@1, NMI and MAP@R of
each, beside the untrained model's. Runs whose ``metrics.json`` exists are read.

Run: ``.venv/bin/python benchmarks/defaults_before_after.py [--datasets digits]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cached_run import cached_run

BUDGET = ["--epochs", "2", "--set", "trainer.limit_train_batches=15",
          "--set", "trainer.progress_bar=false"]  # fmt: skip
# Images evaluated per class: all of glyphs' unseen classes at the results table's 20, and
# 200 of each of the 5 unseen classes of the others.
EVAL_PER_CLASS = {"glyphs": 20, "fashion-mnist": 200, "digits": 200}
FORMER = ["--set", "model.freeze_bn=false", "--set", "optim.backbone_lr=1e-4",
          "--set", "optim.head_lr=1e-3", "--set", "data.crop_scale=[0.08,1]"]  # fmt: skip
COLUMNS = ("recall@1", "nmi", "map@r")


def run(dataset: str, recipe: str, seed: int, root: Path) -> dict:
    argv = ["train", "--dataset", dataset, "--loss", "facility", "--seed", str(seed), *BUDGET]
    argv += ["--set", f"data.max_eval_per_class={EVAL_PER_CLASS[dataset]}"]
    argv += FORMER if recipe == "before" else []
    return cached_run(argv, root / dataset / f"{recipe}-{seed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="glyphs,fashion-mnist,digits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/before_after"))
    args = parser.parse_args()
    lines = ["| dataset | untrained | before | after |", "|---|---|---|---|"]
    for dataset in args.datasets.split(","):
        before = run(dataset, "before", args.seed, args.out)
        after = run(dataset, "after", args.seed, args.out)

        def cells(metrics: dict) -> str:
            return " / ".join(f"{100 * metrics[c]:.1f}" for c in COLUMNS)

        row = [cells(before["untrained"]), cells(before["test"]), cells(after["test"])]
        lines.append(f"| {dataset} | " + " | ".join(row) + " |")
        print("\n".join(lines), flush=True)
    print("\nCells: test Recall@1 / NMI / MAP@R in %.")


if __name__ == "__main__":
    main()
