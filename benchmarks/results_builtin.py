"""The results tables on the built-in datasets: every method, 3 seeds.

Fashion-MNIST and digits: each run is ``cdml demo --dataset D --loss L --seed S --no-plot
[settings]`` (5 training classes, 4 epochs of 60-image batches at 32 pixels, tested on the 5
unseen classes), with the settings of its row in ``METHODS``. Glyphs: each run is ``cdml train
--dataset glyphs --loss L --seed S`` with cdml's default recipe and the budget
``GLYPHS_BUDGET`` (2 epochs of 15 batches of 128, 20 images per class evaluated), tested on the
133 unseen characters. The table gives mean +- standard deviation over the seeds of NMI,
Recall@1/2/4/8 and MAP@R, with the untrained model (pretrained backbone, random head) as the
floor, and for glyphs the validation gain beside the test one. Runs whose ``metrics.json``
already exists are read, not repeated (delete the folder to redo them).

Run: ``.venv/bin/python benchmarks/results_builtin.py [--datasets glyphs] [--methods sme]
[--markdown FILE]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from cached_run import cached_run

from cdml.io import write_text

# The unsupervised methods learn from augmentations: they crop (the supervised rows only flip).
UNSUPERVISED = ["--set", "data.crop_scale=[0.3,1.0]"]
# row name -> (loss, extra demo arguments)
METHODS: dict[str, tuple[str, list[str]]] = {
    "facility": ("facility", []),
    "triplet": ("triplet", []),
    "lifted": ("lifted", []),
    "npairs": ("npairs", []),
    "group": ("group", []),
    "cbswr": ("cbswr", UNSUPERVISED),
    "cbs": ("cbswr", [*UNSUPERVISED, "--set", "loss.params.reconstruction_weight=0"]),
    "sme": ("sme", UNSUPERVISED),
    "mom": ("mom", UNSUPERVISED),
}
# The glyphs rows use cdml's defaults (which already crop): only the CBS ablation sets a value.
GLYPHS_METHODS: dict[str, tuple[str, list[str]]] = {
    name: (
        loss,
        extra[len(UNSUPERVISED) :] if extra[: len(UNSUPERVISED)] == UNSUPERVISED else extra,
    )
    for name, (loss, extra) in METHODS.items()
}
GLYPHS_BUDGET = ["--epochs", "2", "--set", "trainer.limit_train_batches=15",
                 "--set", "data.max_eval_per_class=20"]  # fmt: skip
COLUMNS = ("nmi", "recall@1", "recall@2", "recall@4", "recall@8", "map@r")


def command(dataset: str, method: str, seed: str) -> list[str]:
    """The ``cdml`` arguments of one row's run (``seed`` may be a placeholder)."""
    if dataset == "glyphs":
        loss, extra = GLYPHS_METHODS[method]
        return ["train", "--dataset", dataset, "--loss", loss, "--seed", seed, *GLYPHS_BUDGET,
                *extra]  # fmt: skip
    loss, extra = METHODS[method]
    return ["demo", "--dataset", dataset, "--loss", loss, "--seed", seed, "--no-plot", *extra]


def run(dataset: str, method: str, seed: int, root: Path) -> dict:
    """Metrics of one run: ``{"test": ..., "untrained": ...}`` (and ``val``,
    ``untrained_val`` where the dataset has validation classes)."""
    argv = command(dataset, method, str(seed))
    if dataset == "glyphs":
        argv += ["--set", "trainer.progress_bar=false"]
    return cached_run(argv, root / dataset / f"{method}-{seed}")


def cell(values: list[float]) -> str:
    values = 100 * np.asarray(values)
    if len(values) == 1:  # no spread to show
        return f"{values[0]:.1f}"
    return f"{values.mean():.1f} ± {values.std(ddof=1):.1f}"


def row(name: str, metrics: list[dict], extra: str = "") -> str:
    cells = " | ".join(cell([m[c] for m in metrics]) for c in COLUMNS)
    return f"| {name} | {cells} |{extra}"


def gains(runs: list[dict], part: str, floor: str) -> str:
    """Mean gain in points over the untrained model of ``part`` (R@1 / NMI / MAP@R)."""
    cells = [
        f"{np.mean([100 * (r[part][c] - r[floor][c]) for r in runs]):+.1f}"
        for c in ("recall@1", "nmi", "map@r")
    ]
    return " / ".join(cells)


def table(dataset: str, runs: dict[str, list[dict]], seeds: list[int]) -> str:
    validated = all("untrained_val" in r for method_runs in runs.values() for r in method_runs)
    gain_columns = " test gain | val gain |" if validated else ""
    header = "| method | " + " | ".join(c.replace("recall", "R") for c in COLUMNS) + " |"
    header += gain_columns
    columns = len(COLUMNS) + 1 + (2 if validated else 0)
    untrained = [r["untrained"] for method_runs in runs.values() for r in method_runs]
    blank = " - | - |" if validated else ""
    lines = [header, "|" + "---|" * columns, row("untrained (floor)", untrained, blank)]
    for method, method_runs in runs.items():
        extra = ""
        if validated:
            test_gain = gains(method_runs, "test", "untrained")
            extra = f" {test_gain} | {gains(method_runs, 'val', 'untrained_val')} |"
        lines.append(row(method, [r["test"] for r in method_runs], extra))
    lines += ["", f"Seeds {','.join(map(str, seeds))} (S below); the rows' commands:", ""]
    for method in runs:
        lines.append(f"- {method}: `cdml {' '.join(command(dataset, method, 'S'))}`")
    lines += ["", "The untrained floor averages every run's own untrained model."]
    if validated:
        lines += [
            "Gains: mean change in points of R@1 / NMI / MAP@R over each run's own untrained "
            "model, on the test classes and on the validation classes (held-out training "
            "classes) that chose the checkpoint."
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="fashion-mnist,digits")
    parser.add_argument("--methods", default=",".join(METHODS), help="rows of METHODS")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=Path("runs/results"))
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    sections = []
    for dataset in args.datasets.split(","):
        runs = {
            method: [run(dataset, method, seed, args.out) for seed in seeds]
            for method in args.methods.split(",")
        }
        sections.append(f"### {dataset}\n\n" + table(dataset, runs, seeds))
    text = "\n\n".join(sections) + "\n"
    print(text)
    if args.markdown:
        write_text(args.markdown, text)


if __name__ == "__main__":
    main()
