"""A run's report: one self-contained HTML page (no network, images embedded as data URIs).

Sections, each an HTML ``<section>`` with an id: ``config`` (the run's ``config.yaml``),
``metrics`` (the test and validation metrics against the untrained model), ``curves`` (the
logged training loss, the loss's own scores and the validation metrics per epoch), ``tsne``
(the map of the test embeddings), ``retrieval`` (random queries and their neighbours),
``worst-queries`` (the queries of lowest average precision) and, after
``cdml cluster --out RUN/clusters``, ``clusters`` (the overview of the clusters' exemplars).
"""

from __future__ import annotations

import base64
import csv
import html
import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from cdml.inference import embed_test_sample
from cdml.io import check_output, write_text
from cdml.metrics import per_query_scores
from cdml.training.config import RunConfig
from cdml.training.results import METRICS_FILE, RUN_PARTS
from cdml.viz import plot_retrieval, plot_tsne
from cdml.viz.figures import new_figure, save_png

PAGE_START = "<!DOCTYPE html><html><head><meta charset='utf-8'><title>cdml run "
SECTIONS = ("config", "metrics", "curves", "tsne", "retrieval", "worst-queries", "clusters")
STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;"
    "text-align:right}img{max-width:100%}pre{background:#f4f4f4;padding:1em;overflow:auto}"
)


def write_report(
    run: str | Path,
    out: str | Path | None = None,
    *,
    max_items: int = 2000,
    queries: int = 8,
    progress: bool = False,
) -> Path:
    """Write the report of the run folder ``run`` to ``out`` (default ``run/report.html``).

    The test split is embedded with the run's chosen checkpoint, at most ``max_items`` of
    its images (a seeded sample), for the t-SNE map, the retrieval grid of ``queries``
    random queries and the ``queries`` worst ones. Returns the path written.

    Args:
        run: a cdml train run folder.
        out: the HTML file; default RUN/report.html.
        max_items: test images shown at most.
        queries: queries of the retrieval grid, and worst queries shown.
        progress: show progress bars.
    """
    run = Path(run)
    if not run.is_dir():
        raise ValueError(f"--run {run}: no such folder")
    if max_items < 3:
        raise ValueError(f"--max-items must be at least 3, got {max_items}")
    out = check_report_output(run / "report.html" if out is None else out)
    results = json.loads(_required(run / METRICS_FILE).read_text())
    config_text = _required(run / "config.yaml").read_text()
    parts = {
        "config": f"<pre>{html.escape(config_text)}</pre>",
        "metrics": _metrics_html(results),
        "curves": _curves_html(run),
    }
    with tempfile.TemporaryDirectory() as tmp:
        parts |= _embedding_sections(run, results, Path(tmp), max_items, queries, progress)
    overview = run / "clusters" / "sheets" / "overview.png"
    if overview.is_file():
        parts["clusters"] = _image_html(overview, "every cluster's exemplar, with its size")
    titles = {
        "config": "Config", "metrics": "Metrics", "curves": "Training curves",
        "tsne": "t-SNE map of the test embeddings", "retrieval": "Retrieval",
        "worst-queries": "Worst queries (lowest average precision)", "clusters": "Clusters",
    }  # fmt: skip
    body = "".join(
        f'<section id="{name}"><h2>{titles[name]}</h2>{parts[name]}</section>'
        for name in SECTIONS
        if name in parts
    )
    page = (
        f"{PAGE_START}{html.escape(run.name)}</title><style>{STYLE}</style></head><body>"
        f"<h1>cdml run {html.escape(run.name)}</h1>"
        f"{body}</body></html>\n"
    )
    write_text(out, page)
    return out


def report_run(config: RunConfig, results: dict[str, Any]) -> Path | None:
    """The report at the end of a training run: written to ``config.out`` by the first
    process when ``config.trainer.report`` is set and the run was tested (``results`` as
    :func:`cdml.training.run.train` returns them). Returns its path, or None."""
    from lightning.pytorch.utilities import rank_zero_only

    if not (config.trainer.report and "test" in results) or rank_zero_only.rank != 0:
        return None
    return write_report(config.out, progress=config.trainer.progress_bar)


def check_report_output(out: str | Path, name: str = "--out") -> Path:
    """``ValueError`` unless ``out`` can take a report: new, or a report cdml wrote
    (:func:`is_report`); ``name`` is its flag or argument. Returns it as a ``Path``."""
    return check_output(out, what="a run report", owned=is_report, name=name)


def is_report(path: str | Path) -> bool:
    """Whether ``path`` is a page that :func:`write_report` wrote."""
    try:
        with open(path, "rb") as file:
            return file.read(len(PAGE_START)) == PAGE_START.encode()
    except OSError:
        return False


def _required(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (is {path.parent} a cdml run folder?)")
    return path


def _metrics_html(results: dict[str, Any]) -> str:
    tables = []
    for trained, untrained, title in RUN_PARTS:
        if trained not in results:
            continue
        columns = {"untrained": results.get(untrained), "trained": results[trained]}
        columns = {name: values for name, values in columns.items() if values}
        names = [name for name in results[trained] if "/" not in name]
        header = "".join(f"<th>{c}</th>" for c in columns)
        rows = "".join(
            f"<tr><th>{name}</th>"
            + "".join(
                f"<td>{100 * v[name]:.2f}</td>" if name in v else "<td>-</td>"
                for v in columns.values()
            )  # fmt: skip
            + "</tr>"
            for name in names
        )
        tables.append(f"<h3>{title} (%)</h3><table><tr><th></th>{header}</tr>{rows}</table>")
    return "".join(tables) or "<p>No metrics recorded.</p>"


def _curves_html(run: Path) -> str:
    """The per-epoch values logged to ``logs/version_*/metrics.csv``, one panel each."""
    series: dict[str, dict[int, float]] = defaultdict(dict)
    for log in sorted(run.glob("logs/version_*/metrics.csv")):
        with log.open(newline="") as file:
            for row in csv.DictReader(file):
                for name, value in row.items():
                    epoch_level = name.endswith("_epoch") or name.startswith("val/")
                    if value and epoch_level and row.get("epoch"):
                        series[name.removesuffix("_epoch")][int(row["epoch"])] = float(value)
    if not series:
        return "<p>No per-epoch values were logged.</p>"
    names = sorted(series, key=lambda name: (not name.startswith("train/loss"), name))
    columns = 3
    rows = -(-len(names) // columns)
    figure = new_figure(4.0 * columns, 2.6 * rows, 100)
    for i, name in enumerate(names):
        axes = figure.add_subplot(rows, columns, i + 1)
        epochs = sorted(series[name])
        axes.plot(epochs, [series[name][e] for e in epochs], marker="o")
        axes.set_title(name, fontsize=9)
        axes.set_xlabel("epoch", fontsize=8)
    figure.tight_layout()
    with tempfile.TemporaryDirectory() as tmp:
        return _image_html(save_png(figure, Path(tmp) / "curves.png"), "per epoch")


def _embedding_sections(
    run: Path, results: dict[str, Any], tmp: Path, max_items: int, queries: int, progress: bool
) -> dict[str, str]:
    checkpoint = run / results.get("checkpoint", "checkpoints/last.ckpt")
    if not checkpoint.is_file():
        return {}
    test = embed_test_sample(checkpoint, max_items, progress=progress)
    if test is None:  # no test split to show
        return {}
    embeddings, labels, images, names = test.embeddings, test.labels, test.images, test.class_names
    plot_tsne(embeddings, labels, tmp / "tsne.png", images=images, class_names=names)
    plot_retrieval(embeddings, labels, images, tmp / "retrieval.png", num_queries=queries,
                   class_names=names)  # fmt: skip
    precision = per_query_scores(embeddings, labels, ks=(1,))["map@r"]
    worst = np.argsort(precision, kind="stable")[:queries]
    plot_retrieval(embeddings, labels, images, tmp / "worst.png", class_names=names,
                   queries=worst)  # fmt: skip
    sample = f"{len(labels):,} of the {test.total:,} test images"
    return {
        "tsne": _image_html(tmp / "tsne.png", sample),
        "retrieval": _image_html(tmp / "retrieval.png", f"random queries among {sample}"),
        "worst-queries": _image_html(
            tmp / "worst.png", "AP@R " + ", ".join(f"{precision[i]:.2f}" for i in worst)
        ),
    }


def _image_html(path: Path, caption: str) -> str:
    encoded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{encoded}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )
