"""The methods compared after each has had its own search: ``cdml tune`` per method on the
validation classes of a benchmark, then its best config trained and tested on the unseen
classes (``--train-best``), beside the same method with cdml's defaults.

An unsupervised method holds out labelled validation classes for both runs (20 %), as ``cdml
tune`` needs. Every method gets the same budget: ``--trials`` trials of at most the budget's
epochs and batches, each scored on the validation classes only; the first trial is the
method's defaults. A study in progress continues where it stopped (its folder holds the
SQLite study), a finished one is read, and one run again with more ``--trials`` goes on from
its trials and trains its best config again. The table gives each study's best trial and its
three most important knobs (fANOVA over the complete trials).

Run: ``.venv/bin/python benchmarks/tuned_comparison.py [--dataset glyphs-shifted]
[--losses facility,triplet,lifted,npairs,group] [--trials 5] [--out runs/tuned]``
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import optuna
from cached_run import BUDGET, cached_run, gain

from cdml.cli import main as cdml
from cdml.losses import METHODS, VIEWS
from cdml.tuning.study import STUDY_FILE, STUDY_NAME, knob_importance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="glyphs-shifted")
    parser.add_argument("--losses", default="facility,triplet,lifted,npairs,group")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("runs/tuned"))
    args = parser.parse_args()
    rows = []
    for loss in args.losses.split(","):
        base = ["--dataset", args.dataset, "--loss", loss, "--val-split", "contiguous", *BUDGET]
        if METHODS[loss].batch_kind == VIEWS:  # scored on labelled validation classes too
            base += ["--set", "data.val_fraction=0.2"]
        default = cached_run(["train", *base], args.out / args.dataset / loss / "default")
        folder = args.out / args.dataset / loss / "tune"
        if finished(folder) < args.trials or not (folder / "best" / "metrics.json").is_file():
            shutil.rmtree(folder / "best", ignore_errors=True)  # trained again from the study
            argv = ["tune", *base, "--trials", str(args.trials), "--train-best"]
            if cdml([*argv, "--out", str(folder)]) != 0:
                raise SystemExit(f"tune failed: cdml {' '.join(argv)}")
        tuned = json.loads((folder / "best" / "metrics.json").read_text())
        study = json.loads((folder / "tune.json").read_text())
        storage = f"sqlite:///{folder / STUDY_FILE}"
        importance = knob_importance(optuna.load_study(study_name=STUDY_NAME, storage=storage))
        rows.append((loss, default, tuned, study, importance or {}))
    print(f"{args.dataset}, {args.trials} trials a method; gains in points of Recall@1 "
          "(MAP@R) over the untrained model")  # fmt: skip
    print("| method | default: val | default: test | tuned: val | tuned: test | best trial | "
          "tuned settings | most important knobs (fANOVA) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---|---|")
    for loss, default, tuned, study, importance in rows:
        cells = [
            f"{gain(m, split):+.1f} ({gain(m, split, 'map@r'):+.1f})"
            for m in (default, tuned)
            for split in ("val", "test")
        ]
        settings = ", ".join(
            f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}"
            for key, value in study["overrides"].items()
        )
        knobs = ", ".join(f"{key} {share:.2f}" for key, share in list(importance.items())[:3])
        print(f"| {loss} | {' | '.join(cells)} | {study['best_trial']} | {settings} | {knobs} |")


def finished(folder: Path) -> int:
    """The complete and pruned trials of the study in tune folder ``folder``."""
    if not (folder / "tune.json").is_file():
        return 0
    states = json.loads((folder / "tune.json").read_text())["states"]
    return states.get("complete", 0) + states.get("pruned", 0)


if __name__ == "__main__":
    main()
