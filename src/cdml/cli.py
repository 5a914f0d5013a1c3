"""The ``cdml`` command line.

Every command reports bad input as one line on stderr and exits with code 2; set the
environment variable ``CDML_DEBUG=1`` to see the full traceback instead.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from cdml import __version__
from cdml.clustering import CLUSTER_METHODS, cluster_to_folder
from cdml.data import DATASETS
from cdml.data.zero_shot import SPLITS
from cdml.export import FORMATS, export_model
from cdml.inference import embed_with_checkpoint, evaluate_embeddings
from cdml.losses import METHODS, VIEWS
from cdml.metrics import METRICS
from cdml.report import write_report
from cdml.retrieval import KINDS, index_images, search_images
from cdml.viz.embeddings_file import plot_embeddings


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit code 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cdml`` console script; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (UsageError, ValueError, OSError) as error:
        if os.environ.get("CDML_DEBUG"):
            raise
        print(f"cdml {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cdml {args.command}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as stop:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if not isinstance(stop, SIGTERMException):
            raise
        # Lightning stops at the next batch on SIGTERM; its SystemExit would exit with 0.
        print(
            f"cdml {args.command}: stopped by SIGTERM; the epochs finished before it are kept "
            "(cdml train --out RUN --resume continues)",
            file=sys.stderr,
        )
        return 143
    except Exception as error:  # a library's error on input cdml did not check, or a bug
        if os.environ.get("CDML_DEBUG"):
            raise
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(
            f"cdml {args.command}: error ({type(error).__name__}): {first} (set CDML_DEBUG=1 "
            "to see the traceback)",
            file=sys.stderr,
        )
        return 2 if _is_input_error(error) else 1


def _one_line(error: Exception) -> str:
    """The message of ``error`` on one line (YAML's messages span several)."""
    return " ".join(str(error).split())


def _is_input_error(error: Exception) -> bool:
    """Whether a library raised ``error`` on the user's settings (Lightning's configuration
    checks, YAML), not on a fault of cdml."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from yaml import YAMLError

    return isinstance(error, MisconfigurationException | YAMLError)


def _build_parser() -> argparse.ArgumentParser:
    from cdml.training.config import RunConfig
    from cdml.training.settings import add_flags

    parser = _Parser(prog="cdml", description="Clustering-aware deep metric learning.")
    parser.add_argument("--version", action="version", version=f"cdml {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND",
        parser_class=functools.partial(_Parser, formatter_class=_HelpWithDefaults),
    )  # fmt: skip

    train = commands.add_parser(
        "train",
        help="train an embedding, select it on validation classes, test it on unseen classes",
        description="Train with a config file (see configs/) or with --dataset, --data-root "
        "and --loss; flags and --set override the config. Writes config.yaml, checkpoints/, "
        "logs/ and metrics.json to --out.",
    )
    train.add_argument("--config", type=Path, help="YAML config file")
    add_flags(
        train, RunConfig, help_of={"data.dataset": _datasets_help, "loss.name": _methods_help}
    )
    _add_set_argument(train, example="optim.head_lr=1e-3")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument(
        "--no-baseline", action="store_true", help="skip testing the untrained model"
    )
    train.set_defaults(run=_run_train)

    embed = commands.add_parser(
        "embed",
        help="embed a dataset split or an image folder with a trained model",
        description="Write a .npz with 'embeddings' (and 'labels' for a dataset, 'paths' for "
        "a folder).",
    )
    _add_checkpoint_source(embed, allow_images=True)
    embed.add_argument("--out", type=Path, required=True, help="output .npz file")
    embed.set_defaults(run=_run_embed)

    evaluate = commands.add_parser(
        "evaluate",
        help="Recall@K, NMI and MAP@R of saved embeddings or of a checkpoint on a dataset",
        description="Evaluate embeddings saved in a .npz file (arrays 'embeddings' and "
        "'labels'), or a checkpoint on a dataset split, with the zero-shot protocol: Recall@K "
        "with the query excluded, NMI of k-means, MAP@R.",
    )
    evaluate.add_argument(
        "embeddings", type=Path, nargs="?", help=".npz file with 'embeddings' and 'labels'"
    )
    _add_checkpoint_source(evaluate, allow_images=False, required=False)
    evaluate.add_argument("--ks", type=_parse_ks, help="K values of Recall@K (default 1,2,4,8)")
    evaluate.add_argument(
        "--no-nmi", action="store_true", help="skip k-means and its NMI, AMI, ARI, purity"
    )
    evaluate.add_argument(
        "--nmi-runs",
        type=int,
        help="average the clustering scores over N k-means seeds and report NMI's standard "
        "deviation",
    )
    evaluate.add_argument(
        "--metric",
        choices=METRICS,
        help="what ranks neighbours: Euclidean distance (the papers'), cosine "
        "similarity or inner product",
    )
    evaluate.add_argument("--json", type=Path, metavar="OUT", help="also write the metrics as JSON")
    evaluate.set_defaults(run=_run_evaluate, **_defaults(evaluate_embeddings))

    plot = commands.add_parser(
        "plot",
        help="t-SNE map or retrieval grid of embeddings",
        description="Draw a Barnes-Hut t-SNE map of embeddings coloured by class (with "
        "--images, image thumbnails at their positions), or with --retrieval a grid of queries "
        "and their nearest neighbours framed green (same class) or red.",
    )
    plot.add_argument("--embeddings", type=Path, required=True, help=".npz written by cdml embed")
    plot.add_argument("--out", type=Path, required=True, help="PNG file to write")
    plot.add_argument("--images", action="store_true", help="draw image thumbnails")
    plot.add_argument("--retrieval", action="store_true", help="draw a retrieval grid instead")
    plot.add_argument("--queries", type=int, help="retrieval: number of queries")
    plot.add_argument("-k", type=int, help="retrieval: neighbours per query")
    plot.add_argument("--max-points", type=int, help="t-SNE: subsample to this many")
    plot.add_argument("--seed", type=int, help="seed of the samples")
    plot.set_defaults(run=_run_plot, **_defaults(plot_embeddings))

    index = commands.add_parser(
        "index",
        help="build (or extend) a faiss index of a gallery's embeddings",
        description="Embed a gallery (an image folder, or a dataset split with its labels) "
        "with a trained model and write a folder holding the faiss index, the items' paths "
        "and labels, and the checkpoint it was built with.",
    )
    _add_checkpoint_source(index, allow_images=True)
    index.add_argument("--out", type=Path, required=True, help="index folder to write")
    index.add_argument(
        "--kind",
        choices=KINDS,
        help="flat: exact; ivf / hnsw: approximate, for millions of items",
    )
    index.add_argument(
        "--metric",
        choices=METRICS,
        help="l2: Euclidean distance (default); cosine: cosine similarity; ip: inner product",
    )
    index.add_argument(
        "--extend", action="store_true", help="add the items not yet indexed to --out's index"
    )
    index.set_defaults(run=_run_index, **_defaults(index_images))

    search = commands.add_parser(
        "search",
        help="the nearest gallery items of query images",
        description="Embed the query images with the checkpoint the index was built with and "
        "print their k nearest gallery items with their distances (similarities for an "
        "index of --metric cosine or ip).",
    )
    search.add_argument("queries", type=Path, nargs="+", metavar="QUERY_IMAGE")
    search.add_argument("--index", type=Path, required=True, help="folder written by cdml index")
    search.add_argument("--checkpoint", type=Path, required=True, help="cdml checkpoint")
    search.add_argument("-k", type=int, help="neighbours per query")
    search.add_argument("--json", action="store_true", help="print JSON instead of a table")
    search.add_argument(
        "--width",
        type=int,
        help="approximate indexes only: IVF cells (nprobe, default 16) or HNSW candidates "
        "(efSearch, default 128) searched; wider recalls more and is slower",
    )
    search.set_defaults(run=_run_search, **_defaults(search_images))

    export = commands.add_parser(
        "export",
        help="export a trained embedding model to ONNX or TorchScript",
        description="Write the model of --checkpoint (images (batch, 3, S, S) -> embeddings) "
        "to --out, and beside it OUT.json: the input size, normalisation and layout, the "
        "embedding size, whether it is L2-normalised, and the checkpoint's sha256.",
    )
    export.add_argument("--checkpoint", type=Path, required=True, help="cdml checkpoint")
    export.add_argument("--out", type=Path, required=True, help="model file (.onnx or .pt)")
    export.add_argument("--format", choices=FORMATS, help="the model file's format")
    export.add_argument("--image-size", type=int, help="input size S (default: the training size)")
    export.set_defaults(run=_run_export, **_defaults(export_model))

    cluster = commands.add_parser(
        "cluster",
        help="group images into clusters by the learned embedding, with contact sheets",
        description="Cluster the embeddings of --images, of a --dataset split or of an "
        "--embeddings file into --out: assignments.csv, clusters.json (with NMI, AMI, ARI "
        "and purity where labels are known) and contact sheets of every cluster.",
    )
    _add_checkpoint_source(cluster, allow_images=True, required=False)
    cluster.add_argument("--embeddings", type=Path, help="a .npz file written by cdml embed")
    cluster.add_argument("--out", type=Path, required=True, help="output folder")
    cluster.add_argument(
        "--k", type=_cluster_count,
        help="number of clusters, or auto (default: estimated from the neighbour graph)",
    )  # fmt: skip
    cluster.add_argument("--k-max", type=int, help="largest k that auto considers")
    cluster.add_argument(
        "--method", choices=list(CLUSTER_METHODS),
        help="how to cluster (spectral: of the nearest-neighbour graph)",
    )  # fmt: skip
    cluster.add_argument("--members", type=int, help="members per contact sheet")
    cluster.add_argument("--seed", type=int, help="seed of k-means and of the samples")
    cluster.set_defaults(run=_run_cluster, **_defaults(cluster_to_folder))

    report = commands.add_parser(
        "report",
        help="one self-contained HTML page of a run: config, metrics, curves, pictures",
        description="Write the report of a run folder (see cdml.report): its config, the "
        "metrics against the untrained model, the training curves, the t-SNE map, a "
        "retrieval grid, the worst queries and, after cdml cluster --out RUN/clusters, the "
        "clusters' overview, with every image embedded.",
    )
    report.add_argument(
        "--run", dest="run_folder", type=Path, required=True, help="a cdml train run folder"
    )
    report.add_argument("--out", type=Path, help="HTML file (default RUN/report.html)")
    report.add_argument("--max-items", type=int, help="test images shown at most")
    report.set_defaults(run=_run_report, **_defaults(write_report))

    demo = commands.add_parser(
        "demo",
        help="train on a built-in dataset and compare with the untrained model",
        description="Train the facility-location loss on Fashion-MNIST (the Debian package "
        "dataset-fashion-mnist) or, without it, scikit-learn's digits; print the unseen-class "
        "test metrics beside the untrained model's and draw the t-SNE map. --loss, --dataset "
        "and --seed run any method with the same budget (the rows of docs/results.md).",
    )
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder")
    demo.add_argument("--loss", choices=list(METHODS), default="facility")
    demo.add_argument("--dataset", choices=("fashion-mnist", "digits"), help="default: see above")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--epochs", type=int, default=None, help="default 4")
    demo.add_argument("--no-plot", action="store_true", help="skip the t-SNE map")
    _add_set_argument(demo, example="loss.params.reconstruction_weight=0")
    demo.set_defaults(run=_run_demo)
    return parser


def _defaults(function: Any) -> dict[str, Any]:
    """The defaults of ``function``'s keyword arguments: a command's options take the
    defaults of the library function it calls, stated once there."""
    parameters = inspect.signature(function).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


class _Parser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line, as every other input error of cdml
    (``--help`` still shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _HelpWithDefaults(argparse.HelpFormatter):
    """Help that states each option's default (when it has one)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == []
        if not unset and action.default is not argparse.SUPPRESS and action.option_strings:
            return f"{text} (default %(default)s)" if "default" not in text else text
        return text


def _add_set_argument(parser: argparse.ArgumentParser, example: str) -> None:
    """``--set KEY=VALUE`` (repeatable): config overrides, read by :func:`_parse_sets`."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override any config value, e.g. --set {example} (repeatable)",
    )


def _add_checkpoint_source(
    parser: argparse.ArgumentParser, allow_images: bool, required: bool = True
) -> None:
    parser.add_argument("--checkpoint", type=Path, required=required, help="cdml checkpoint")
    parser.add_argument("--dataset", help="dataset name (as for cdml train)")
    parser.add_argument("--data-root", help="the dataset's folder (the CSV file for csv)")
    parser.add_argument("--split", choices=SPLITS, help="the dataset's half")
    if allow_images:
        parser.add_argument("--images", type=Path, help="embed every image under this folder")
    parser.set_defaults(**_defaults(embed_with_checkpoint))
    parser.add_argument("--batch-size", type=int, help="images per batch (default 64)")
    parser.add_argument("--workers", type=int, help="data loading processes")
    parser.add_argument("--image-size", type=int, help="default: the training image size")


def _datasets_help() -> str:
    return "; ".join(f"{name}: {info.summary}" for name, info in DATASETS.items())


def _methods_help() -> str:
    """The registered methods (those of a plugin imported after cdml's too)."""
    return (
        "supervised: "
        + ", ".join(name for name, cls in METHODS.items() if cls.batch_kind != VIEWS)
        + "; unsupervised: "
        + ", ".join(name for name, cls in METHODS.items() if cls.batch_kind == VIEWS)
        + "; or package.module:ClassName, a loss called as loss(embeddings, labels)"
    )


def _cluster_count(text: str) -> int | str:
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or auto, got {text!r}")
    return int(text)


def _parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"K values must be positive, got {text!r}")
    return ks


# train ------------------------------------------------------------------------------------
def _parse_sets(items: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` arguments as overrides, values read as YAML scalars or lists."""
    from cdml.training.config import parse_yaml

    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key] = parse_yaml(value)
        except ValueError as error:
            raise UsageError(f"--set {key}: cannot read value {value!r} ({error})") from None
    return overrides


def _run_train(args: argparse.Namespace) -> int:
    from cdml.console import console
    from cdml.training.config import RunConfig, command_config, parse_yaml
    from cdml.training.results import run_tables
    from cdml.training.run import train
    from cdml.training.settings import read_flags

    overrides = {**read_flags(args, RunConfig, parse_yaml), **_parse_sets(args.set)}
    config = command_config(args.config, overrides, resume=args.resume)
    from cdml.report import report_run

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


# embed / evaluate / plot -----------------------------------------------------------------
def _source(args: argparse.Namespace) -> dict[str, Any]:
    """The images to embed and how, as :func:`cdml.inference.embed_with_checkpoint` takes."""
    source = {"image_size": args.image_size, "batch_size": args.batch_size, "workers": args.workers}
    if getattr(args, "images", None) is not None:
        return {**source, "images": args.images}
    if args.dataset is not None:
        return {**source, "dataset": args.dataset, "data_root": args.data_root, "split": args.split}
    return source


def _run_embed(args: argparse.Namespace) -> int:
    from cdml.console import console
    from cdml.inference import embed_to_file

    arrays = embed_to_file(args.checkpoint, args.out, **_source(args))
    console.print(f"{len(arrays['embeddings'])} embeddings written to {args.out}")
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    from cdml.console import by_category, console, metrics_table
    from cdml.inference import evaluate_embeddings

    metrics, arrays, name = evaluate_embeddings(
        args.embeddings, args.checkpoint, ks=args.ks, nmi=not args.no_nmi,
        nmi_runs=args.nmi_runs, metric=args.metric, json_out=args.json, **_source(args),
    )  # fmt: skip
    title = f"{name}: {len(arrays['labels'])} embeddings"
    if "is_query" in arrays:
        queries, gallery = arrays["is_query"].sum(), arrays["is_gallery"].sum()
        title += f", {queries} queries in a gallery of {gallery}"
    console.print(metrics_table({"model": metrics}, title=title))
    if "categories" in arrays:
        console.print(metrics_table(by_category(metrics), title="per category of the queries"))
    if args.json:
        console.print(f"metrics written to {args.json}")
    return 0


def _run_plot(args: argparse.Namespace) -> int:
    from cdml.console import console
    from cdml.viz.embeddings_file import plot_embeddings

    path = plot_embeddings(
        args.embeddings, args.out, retrieval=args.retrieval, images=args.images,
        queries=args.queries, k=args.k, max_points=args.max_points, seed=args.seed,
    )  # fmt: skip
    console.print(f"figure written to {path}")
    return 0


# index / search / export -------------------------------------------------------------------
def _run_index(args: argparse.Namespace) -> int:
    from cdml.console import console
    from cdml.retrieval import index_images

    gallery, added = index_images(
        args.checkpoint,
        args.out,
        kind=args.kind,
        metric=args.metric,
        extend=args.extend,
        **_source(args),
    )
    console.print(
        f"{added} items added, {len(gallery)} in the {gallery.kind} index written to {args.out}"
    )
    return 0


def _run_search(args: argparse.Namespace) -> int:
    import json

    from cdml.console import console
    from cdml.retrieval import search_images

    results = search_images(args.index, args.checkpoint, args.queries, args.k, args.width)
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
    from cdml.console import console
    from cdml.export import export_model, sidecar_path

    sidecar = export_model(args.checkpoint, args.out, args.format, args.image_size)
    size, shape = sidecar["input"]["crop"], sidecar["output"]["shape"]
    console.print(
        f"{args.format} model written to {args.out} (images (batch, 3, {size}, {size}) -> "
        f"embeddings (batch, {shape[1]})), preprocessing in {sidecar_path(args.out)}"
    )
    return 0


# cluster / report -------------------------------------------------------------------------
def _run_cluster(args: argparse.Namespace) -> int:
    from cdml.clustering import cluster_to_folder
    from cdml.console import console, metrics_table

    result, summary = cluster_to_folder(
        args.out, embeddings=args.embeddings, checkpoint=args.checkpoint, k=args.k,
        method=args.method, members=args.members, seed=args.seed, k_max=args.k_max,
        **_source(args),
    )  # fmt: skip
    console.print(
        f"{summary['items']:,} items in {result.k} clusters ({args.method}"
        f"{', k estimated' if args.k == 'auto' else ''}) written to {args.out}"
    )
    if "scores" in summary:
        console.print(metrics_table({"against the labels": summary["scores"]}))
    return 0


def _run_report(args: argparse.Namespace) -> int:
    from cdml.console import console
    from cdml.report import write_report

    written = write_report(args.run_folder, args.out, max_items=args.max_items, progress=True)
    console.print(f"report written to {written}")
    return 0


# demo -------------------------------------------------------------------------------------
def _run_demo(args: argparse.Namespace) -> int:
    from cdml.demo import run_demo

    run_demo(
        args.out,
        loss=args.loss,
        dataset=args.dataset,
        seed=args.seed,
        epochs=args.epochs,
        plot=not args.no_plot,
        overrides=_parse_sets(args.set),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
