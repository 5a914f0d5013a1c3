"""Terminal output: the metric tables printed by the command line."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()


def metrics_table(rows: Mapping[str, Mapping[str, float]], title: str | None = None) -> Table:
    """A table with one row per entry of ``rows`` (name -> metrics), values shown in percent.

    Columns are the union of the metric names, in first-seen order; a missing value shows "-".
    Per-category metrics (``"recall@1/shoes"``) are left out: see :func:`by_category`.
    """
    columns: list[str] = []
    for metrics in rows.values():
        columns += [name for name in metrics if name not in columns and "/" not in name]
    table = Table(title=title, caption="values in %", caption_justify="right")
    table.add_column("")
    for name in columns:
        table.add_column(_column_title(name), justify="right")
    for row_name, metrics in rows.items():
        signed = "+" if row_name.startswith("change") else ""
        cells = [
            f"{100 * metrics[name]:{signed}.2f}" if name in metrics else "-" for name in columns
        ]
        table.add_row(row_name, *cells)
    return table


def by_category(metrics: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """The per-category entries of :func:`cdml.metrics.evaluate`'s result, one row per
    category (``{"shoes": {"recall@1": ...}}``), for :func:`metrics_table`."""
    rows: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        name, _, category = key.partition("/")
        if category:
            rows.setdefault(category, {})[name] = value
    return rows


def run_tables(results: Mapping[str, Any], method: str, dataset: str) -> list[Table]:
    """The tables of a run's ``metrics.json`` content: the unseen test classes and the
    validation classes, each with the untrained model, the trained one and the change in
    points (where the run measured both), and the trained model's per-category metrics."""
    parts = (
        ("test", "untrained", f"{dataset}: unseen test classes"),
        ("val", "untrained_val", f"{dataset}: validation classes (held-out training classes)"),
    )
    tables = []
    for trained_key, untrained_key, title in parts:
        if trained_key not in results:
            continue
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


def _column_title(metric: str) -> str:
    return {"nmi": "NMI", "map@r": "MAP@R"}.get(metric, metric.replace("recall@", "R@"))
