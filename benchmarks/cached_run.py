"""One ``cdml`` run of a results script, read back from its ``metrics.json`` if it exists."""

from __future__ import annotations

import json
from pathlib import Path

from cdml.cli import main as cdml

# No progress bar and no report: the results scripts print their own tables.
QUIET = ["--set", "trainer.progress_bar=false", "--set", "trainer.report=false"]
# The short budget of the results scripts: 2 epochs of 15 batches, 20 images per class tested.
BUDGET = [
    "--epochs", "2",
    "--set", "trainer.limit_train_batches=15",
    "--set", "data.max_eval_per_class=20",
    *QUIET,
]  # fmt: skip


def gain(metrics: dict, split: str = "test", metric: str = "recall@1") -> float:
    """A run's ``metric`` on ``split`` (``test`` or ``val``) over the untrained model's, in
    points, from its ``metrics.json`` content."""
    untrained = "untrained" if split == "test" else "untrained_val"
    return 100 * (metrics[split][metric] - metrics[untrained][metric])


def cached_run(argv: list[str], out: Path) -> dict:
    """``cdml *argv --out out`` unless ``out/metrics.json`` exists; its content."""
    argv = [*argv, "--out", str(out)]
    if not (out / "metrics.json").is_file() and cdml(argv) != 0:
        raise SystemExit(f"run failed: cdml {' '.join(argv)}")
    return json.loads((out / "metrics.json").read_text())
