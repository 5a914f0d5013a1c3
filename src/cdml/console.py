"""Terminal output: the metric tables printed by the command line."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Console
from rich.table import Table

console = Console()


def metrics_table(columns: Mapping[str, Mapping[str, float]], title: str | None = None) -> Table:
    """A table with one column per entry of ``columns`` (a model or category -> its
    metrics) and one row per metric, values shown in percent, so that any number of metrics
    fits a terminal.

    Rows are the union of the metric names, in first-seen order; a missing value shows "-".
    Per-category metrics (``"recall@1/shoes"``) are left out: see :func:`by_category`.
    A column named ``change ...`` shows signed values.
    """
    names: list[str] = []
    for metrics in columns.values():
        names += [name for name in metrics if name not in names and "/" not in name]
    table = Table(title=title, caption="values in %", caption_justify="right")
    table.add_column("")
    for column in columns:
        table.add_column(column, justify="right")
    for name in names:
        cells = [
            f"{100 * metrics[name]:{'+' if column.startswith('change') else ''}.2f}"
            if name in metrics
            else "-"
            for column, metrics in columns.items()
        ]
        table.add_row(_metric_title(name), *cells)
    return table


def by_category(metrics: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """The per-category entries of :func:`cdml.metrics.evaluate`'s result, one entry per
    category (``{"shoes": {"recall@1": ...}}``), for :func:`metrics_table`."""
    rows: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        name, _, category = key.partition("/")
        if category:
            rows.setdefault(category, {})[name] = value
    return rows


def _metric_title(metric: str) -> str:
    titles = {"nmi": "NMI", "ami": "AMI", "ari": "ARI", "nmi_std": "NMI sd", "map@r": "MAP@R"}
    return titles.get(metric, metric.replace("recall@", "R@"))
