"""The ``cdml`` command line.

Every command reports bad input as one line on stderr and exits with code 2; set the
environment variable ``CDML_DEBUG=1`` to see the full traceback instead.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cdml import __version__
from cdml.clustering import CLUSTER_METHODS, cluster_to_folder
from cdml.command_line import (
    HelpWithDefaults,
    Parser,
    add_options,
    add_set_option,
    keywords,
    read_sets,
    run_command,
)
from cdml.console import by_category, console, metrics_table
from cdml.data.zero_shot import SPLITS
from cdml.demo import run_demo
from cdml.export import FORMATS, export_model, sidecar_path
from cdml.inference import embed_with_checkpoint, evaluate_embeddings
from cdml.losses import METHODS
from cdml.metrics import METRICS
from cdml.parts import ENGINES, build_index, embed_collection, embed_to_parts
from cdml.parts.evaluation import evaluate_collection
from cdml.report import report_run, write_report
from cdml.retrieval import search_images
from cdml.serving import serve
from cdml.training.config import RunConfig, command_config, parse_yaml
from cdml.training.results import run_tables
from cdml.training.settings import add_flags, read_flags
from cdml.tuning.study import tune
from cdml.viz.embeddings_file import plot_embeddings


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cdml`` console script; returns the exit code."""
    args = _build_parser().parse_args(argv)
    return run_command(args.command, lambda: args.handler(args) or 0)


def _build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="cdml", description="Clustering-aware deep metric learning.")
    parser.add_argument("--version", action="version", version=f"cdml {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND",
        parser_class=functools.partial(Parser, formatter_class=HelpWithDefaults),
    )  # fmt: skip

    def command(name: str, handler: Any, summary: str, more: str = "") -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary, description=f"{summary[0].upper()}"
                                  f"{summary[1:]}. {more}".strip())  # fmt: skip
        sub.set_defaults(handler=handler)
        return sub

    train = command(
        "train", _run_train,
        "train an embedding, select it on validation classes, test it on unseen classes",
        "Train with a config file (see configs/) or with --dataset, --data-root and --loss; "
        "flags and --set override the config. Writes config.yaml, checkpoints/, logs/ and "
        "metrics.json to --out.",
    )  # fmt: skip
    tune_ = command(
        "tune", _run_tune, "search a method's settings on validation classes (Optuna)",
        "Writes study.db (a rerun continues it), trials/, tune.json and best.yaml to --out.",
    )  # fmt: skip
    for sub in (train, tune_):
        sub.add_argument("--config", type=Path, help="YAML config file")
        add_flags(sub, RunConfig)
        add_set_option(sub, example="optim.head_lr=1e-3")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--no-baseline", action="store_true", help="no test of the untrained model")
    add_options(tune_, tune, ["trials", "timeout", "train_best"])

    embed = command("embed", _run_embed, "embed a dataset split or an image folder", "Into "
                    "one .npz, or with --parts into resumable parts.")  # fmt: skip
    add_options(embed, embed_collection, ["checkpoint", "out", "parts"])
    add_options(embed, embed_to_parts, ["part_size", "engine", "processes", "threads", "address",
                                        "skip_bad"], choices={"engine": ENGINES})  # fmt: skip
    _add_source(embed)

    evaluate = command(
        "evaluate", _run_evaluate,
        "Recall@K, NMI and MAP@R of saved embeddings or of a checkpoint on a dataset",
        "The zero-shot protocol: Recall@K with the query excluded, NMI of k-means, MAP@R.",
    )  # fmt: skip
    add_options(evaluate, evaluate_collection, ["embeddings", "index"], positional={"embeddings"})
    add_options(
        evaluate, evaluate_embeddings,
        ["checkpoint", "ks", "nmi", "nmi_runs", "metric", "rerank", "json_out"],
        flags={"json_out": "--json"}, choices={"metric": METRICS},
    )  # fmt: skip
    _add_source(evaluate, images=False)

    plot = command(
        "plot", _writes("figure", plot_embeddings), "t-SNE map or retrieval grid of embeddings",
        "A Barnes-Hut t-SNE map coloured by class (with --images, thumbnails), or with "
        "--retrieval a grid of queries and their neighbours framed green (same class) or red.",
    )  # fmt: skip
    add_options(plot, plot_embeddings)

    index = command(
        "index", _run_index, "build (or extend) a faiss index of a gallery's embeddings",
        "Writes a folder holding the faiss index, the items' paths and labels, and the "
        "checkpoint it was built with.",
    )  # fmt: skip
    add_options(index, build_index, ["checkpoint", "from_parts", "out", "kind", "metric", "extend",
                                     "shards", "sample"], choices={"metric": METRICS})  # fmt: skip
    _add_source(index)

    search = command(
        "search", _run_search, "the nearest gallery items of query images",
        "The queries are embedded with the checkpoint the index was built with; prints "
        "distances (similarities for an index of --metric cosine or ip).",
    )  # fmt: skip
    add_options(search, search_images, positional={"queries"})
    search.add_argument("--json", action="store_true", help="print JSON instead of a table")

    serve_ = command(
        "serve", lambda args: serve(**keywords(args)), "an HTTP search service and web "
        "page over an index", "Search by image, vector or item id; a page at /, API at /docs.",
    )  # fmt: skip
    add_options(serve_, serve)

    export = command(
        "export", _run_export, "export a trained embedding model to ONNX or TorchScript",
        "Writes --out and beside it OUT.json: the input size, normalisation and layout, the "
        "embedding size, whether it is L2-normalised, and the checkpoint's sha256.",
    )  # fmt: skip
    add_options(export, export_model, choices={"format": FORMATS})

    cluster = command(
        "cluster", _run_cluster,
        "group images into clusters by the learned embedding, with contact sheets",
        "Writes assignments.csv, clusters.json (with NMI, AMI, ARI and purity where labels "
        "are known) and contact sheets of every cluster.",
    )  # fmt: skip
    add_options(
        cluster, cluster_to_folder, flags={"k": "--k"}, choices={"method": CLUSTER_METHODS}
    )  # fmt: skip
    _add_source(cluster)

    report = command(
        "report", _writes("report", write_report, progress=True),
        "one self-contained HTML page of a run: config, metrics, curves, pictures",
        "With the t-SNE map, a retrieval grid, the worst queries and, after cdml cluster "
        "--out RUN/clusters, the clusters' overview.",
    )  # fmt: skip
    add_options(report, write_report, ["run", "out", "max_items"])

    demo = command(
        "demo", _run_demo, "train on a built-in dataset and compare with the untrained model",
        "Prints the unseen-class test metrics beside the untrained model's; --loss, --dataset "
        "and --seed run any method with the same budget (the rows of docs/results.md).",
    )  # fmt: skip
    add_options(
        demo, run_demo, but={"overrides"},
        choices={"loss": METHODS, "dataset": ("fashion-mnist", "digits")},
    )  # fmt: skip
    add_set_option(demo, example="loss.params.reconstruction_weight=0")
    return parser


def _add_source(parser: argparse.ArgumentParser, images: bool = True) -> None:
    """The options of the images a checkpoint embeds (:func:`embed_with_checkpoint`'s)."""
    names = ["dataset", "data_root", "split", *(["images"] if images else [])]
    add_options(
        parser, embed_with_checkpoint, [*names, "batch_size", "workers", "image_size"],
        choices={"split": SPLITS},
    )  # fmt: skip


# train ------------------------------------------------------------------------------------
def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config overrides of ``cdml train``'s and ``cdml tune``'s flags and ``--set``."""
    return {**read_flags(args, RunConfig, parse_yaml), **read_sets(args.set)}


def _run_train(args: argparse.Namespace) -> int:
    from cdml.training.run import train

    config = command_config(args.config, _overrides(args), resume=args.resume)
    console.print(f"run folder: {Path(config.out).resolve()}")
    results = train(config, resume=args.resume, baseline=not args.no_baseline)
    for table in run_tables(results, config.loss.name, config.data.dataset):
        console.print(table)
    report = report_run(config, results)  # after the results are shown, should it fail
    console.print(
        f"outputs in {Path(config.out).resolve()}: metrics.json, config.yaml, "
        f"checkpoints/, logs/ (best checkpoint: {results['checkpoint']})"
        + (f", {report.name}" if report else "")
    )
    return 0


def _run_tune(args: argparse.Namespace) -> int:
    config = command_config(args.config, _overrides(args))
    result = tune(config, **keywords(args))
    console.print(
        f"best: trial {result.trial} of {sum(result.states.values())} ({result.states}), "
        f"{result.metric} {100 * result.value:.2f} %; its config: {result.config} "
        f"(cdml train --config {result.config})"
    )
    for table in run_tables(result.trained or {}, config.loss.name, config.data.dataset):
        console.print(table)
    return 0


# the other commands: each calls one library function and prints ---------------------------
def _run_embed(args: argparse.Namespace) -> int:
    done = embed_collection(**keywords(args))
    written = f"{len(done['embeddings'])} embeddings written to" if isinstance(done, dict) else ""
    console.print(f"{written} {args.out}" if written else str(done))
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    metrics, arrays, name = evaluate_collection(**keywords(args))
    title = f"{name}: {len(arrays['labels'])} embeddings" if arrays else name
    if "is_query" in arrays:
        queries, gallery = arrays["is_query"].sum(), arrays["is_gallery"].sum()
        title += f", {queries} queries in a gallery of {gallery}"
    console.print(metrics_table({"model": metrics}, title=title))
    if "categories" in arrays:
        console.print(metrics_table(by_category(metrics), title="per category of the queries"))
    if args.json_out:
        console.print(f"metrics written to {args.json_out}")
    return 0


def _writes(what: str, function: Any, **fixed: Any) -> Any:
    """The handler of a command that calls ``function`` and says where it wrote ``what``."""
    return lambda args: console.print(f"{what} written to {function(**keywords(args), **fixed)}")


def _run_index(args: argparse.Namespace) -> int:
    gallery, added = build_index(**keywords(args))
    console.print(
        f"{added} items added, {len(gallery)} in the {gallery.kind} index written to {args.out}"
    )
    return 0


def _run_search(args: argparse.Namespace) -> int:
    results = search_images(**keywords(args))
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for result in results:
        console.print(f"[bold]{result['query']}[/bold]")
        for n in result["neighbours"]:
            label = "" if n["label"] < 0 else f"  label {n['label']}"
            score = n.get("distance", n.get("similarity"))
            console.print(f"  {n['rank']:>3}  {score:.4f}  {n['path']}{label}")
    return 0


def _run_export(args: argparse.Namespace) -> int:
    sidecar = export_model(**keywords(args))
    size, shape = sidecar["input"]["crop"], sidecar["output"]["shape"]
    console.print(
        f"{args.format} model written to {args.out} (images (batch, 3, {size}, {size}) -> "
        f"embeddings (batch, {shape[1]})), preprocessing in {sidecar_path(args.out)}"
    )
    return 0


def _run_cluster(args: argparse.Namespace) -> int:
    result, summary = cluster_to_folder(**keywords(args))
    console.print(
        f"{summary['items']:,} items in {result.k} clusters ({args.method}"
        f"{', k estimated' if args.k == 'auto' else ''}) written to {args.out}"
    )
    if "scores" in summary:
        console.print(metrics_table({"against the labels": summary["scores"]}))
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    run_demo(**keywords(args), overrides=read_sets(args.set))
    return 0


if __name__ == "__main__":
    sys.exit(main())
