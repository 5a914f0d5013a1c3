"""Terminal output: the metric tables printed by the command line."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Console
from rich.table import Table

console = Console()


def metrics_table(rows: Mapping[str, Mapping[str, float]], title: str | None = None) -> Table:
    """A table with one row per entry of ``rows`` (name -> metrics), values shown in percent.

    Columns are the union of the metric names, in first-seen order; a missing value shows "-".
    """
    columns: list[str] = []
    for metrics in rows.values():
        columns += [name for name in metrics if name not in columns]
    table = Table(title=title, caption="values in %", caption_justify="right")
    table.add_column("")
    for name in columns:
        table.add_column(_column_title(name), justify="right")
    for row_name, metrics in rows.items():
        cells = [f"{100 * metrics[name]:.2f}" if name in metrics else "-" for name in columns]
        table.add_row(row_name, *cells)
    return table


def _column_title(metric: str) -> str:
    return {"nmi": "NMI", "map@r": "MAP@R"}.get(metric, metric.replace("recall@", "R@"))
