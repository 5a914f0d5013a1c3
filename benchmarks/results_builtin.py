"""The results table on the built-in datasets: every method with the demo's budget, 3 seeds.

Each run is ``cdml demo --dataset D --loss L --seed S --no-plot [settings]`` (5 training
classes, 4 epochs of 60-image batches at 32 pixels, tested on the 5 unseen classes), with the
settings of its row in ``METHODS``. The table gives mean +- standard deviation over the seeds
of NMI, Recall@1/2/4/8 and MAP@R, with the untrained model (pretrained backbone, random head)
as the floor. Runs whose ``metrics.json`` already exists are read, not repeated (delete the
folder to redo them).

Run: ``.venv/bin/python benchmarks/results_builtin.py [--datasets digits] [--methods sme]
[--markdown FILE]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cdml.cli import main as cdml
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
COLUMNS = ("nmi", "recall@1", "recall@2", "recall@4", "recall@8", "map@r")


def run(dataset: str, method: str, seed: int, root: Path) -> dict:
    """Metrics of one run: ``{"test": ..., "untrained": ...}``."""
    loss, extra = METHODS[method]
    out = root / dataset / f"{method}-{seed}"
    argv = ["demo", "--dataset", dataset, "--loss", loss, "--seed", str(seed), "--no-plot"]
    argv += [*extra, "--out", str(out)]
    if not (out / "metrics.json").is_file() and cdml(argv) != 0:
        raise SystemExit(f"run failed: cdml {' '.join(argv)}")
    return json.loads((out / "metrics.json").read_text())


def cell(values: list[float]) -> str:
    values = 100 * np.asarray(values)
    spread = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.1f} ± {spread:.1f}"


def row(name: str, metrics: list[dict]) -> str:
    return f"| {name} | " + " | ".join(cell([m[c] for m in metrics]) for c in COLUMNS) + " |"


def table(dataset: str, runs: dict[str, list[dict]], seeds: list[int]) -> str:
    header = "| method | " + " | ".join(c.replace("recall", "R") for c in COLUMNS) + " |"
    untrained = [r["untrained"] for method_runs in runs.values() for r in method_runs]
    lines = [header, "|" + "---|" * (len(COLUMNS) + 1), row("untrained (floor)", untrained)]
    lines += [row(method, [r["test"] for r in method_runs]) for method, method_runs in runs.items()]
    lines += ["", f"Seeds {','.join(map(str, seeds))} (S below); the rows' commands:", ""]
    for method in runs:
        loss, extra = METHODS[method]
        command = f"cdml demo --dataset {dataset} --loss {loss} --seed S --no-plot"
        lines.append(f"- {method}: `{command}{''.join(f' {a}' for a in extra)}`")
    lines += ["", "The untrained floor averages every run's own untrained model."]
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
