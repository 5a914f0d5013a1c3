"""The layout of a run's results: ``metrics.json`` and ``untrained.json``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.table import Table

from cdml.console import by_category, metrics_table

METRICS_FILE = "metrics.json"
UNTRAINED_FILE = "untrained.json"  # the untrained model's metrics, written before training
# The parts of metrics.json: (trained metrics, untrained metrics, what they measure).
RUN_PARTS = (
    ("test", "untrained", "unseen test classes"),
    ("val", "untrained_val", "validation classes (held-out training classes)"),
)


def read_untrained(path: Path) -> dict[str, Any]:
    """The untrained model's metrics of a run (``{"val": ..., "test": ...}``), if recorded."""
    if not path.is_file():
        return {}
    try:
        untrained = json.loads(path.read_text())
        if not isinstance(untrained, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path}: unreadable ({error}); delete it to resume without the untrained "
            "model's metrics"
        ) from None
    if "recall@1" in untrained:  # written before validation was recorded: test only
        untrained = {"test": untrained}
    return untrained


def run_tables(results: Mapping[str, Any], method: str, dataset: str) -> list[Table]:
    """The tables of a run's ``metrics.json`` content: the unseen test classes and the
    validation classes, each with the untrained model, the trained one and the change in
    points (where the run measured both), and the trained model's per-category metrics."""
    tables = []
    for trained_key, untrained_key, part in RUN_PARTS:
        if trained_key not in results:
            continue
        title = f"{dataset}: {part}"
        rows = {f"trained ({method})": results[trained_key]}
        if untrained_key in results:
            before, after = results[untrained_key], results[trained_key]
            rows = {"untrained": before, **rows}
            rows["change (points)"] = {k: after[k] - before[k] for k in after if k in before}
        tables.append(metrics_table(rows, title=title))
        categories = by_category(results[trained_key])
        if categories:
            tables.append(metrics_table(categories, title=f"{title}, trained, per category"))
    return tables
