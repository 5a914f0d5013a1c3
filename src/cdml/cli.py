"""The ``cdml`` command line.

Every command reports bad input as one line on stderr and exits with code 2; set the
environment variable ``CDML_DEBUG=1`` to see the full traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cdml import __version__

LOSS_NAMES = ("facility", "group", "triplet", "lifted", "npairs", "cbswr", "sme", "mom")

# Command-line flags of `cdml train` and the config keys they set.
TRAIN_FLAGS = {
    "dataset": "data.dataset",
    "data_root": "data.root",
    "loss": "loss.name",
    "epochs": "trainer.epochs",
    "image_size": "data.image_size",
    "batch_size": "data.batch_size",
    "classes_per_batch": "data.classes_per_batch",
    "backbone": "model.backbone",
    "embedding_size": "model.embedding_size",
    "seed": "trainer.seed",
    "workers": "data.num_workers",
    "devices": "trainer.devices",
    "num_nodes": "trainer.num_nodes",
    "strategy": "trainer.strategy",
    "precision": "trainer.precision",
    "out": "out",
}


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
        print(f"cdml {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cdml {args.command}: interrupted", file=sys.stderr)
        return 130


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cdml", description="Clustering-aware deep metric learning."
    )
    parser.add_argument("--version", action="version", version=f"cdml {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="train an embedding, select it on validation classes, test it on unseen classes",
        description="Train with a config file (see configs/) or with --dataset, --data-root "
        "and --loss; flags and --set override the config. Writes config.yaml, checkpoints/, "
        "logs/ and metrics.json to --out.",
    )
    train.add_argument("--config", type=Path, help="YAML config file")
    train.add_argument(
        "--dataset", help="cub200, cars196, sop, csv, fashion-mnist, digits, folder (unlabelled)"
    )
    train.add_argument("--data-root", help="the dataset's folder (the CSV file for csv)")
    train.add_argument("--loss", choices=LOSS_NAMES)
    train.add_argument("--epochs", type=int)
    train.add_argument("--image-size", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--classes-per-batch", type=int)
    train.add_argument("--backbone", help="any timm model name")
    train.add_argument("--embedding-size", type=int)
    train.add_argument("--seed", type=int)
    train.add_argument("--workers", type=int, help="data loading processes")
    train.add_argument("--devices", type=_devices)
    train.add_argument("--num-nodes", type=int)
    train.add_argument("--strategy", help="e.g. ddp")
    train.add_argument("--precision", help="32-true, bf16-mixed, 16-mixed")
    train.add_argument("--out", help="run folder (default runs/cdml)")
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
    evaluate.add_argument("--no-nmi", action="store_true", help="skip the k-means NMI")
    evaluate.add_argument("--json", type=Path, metavar="OUT", help="also write the metrics as JSON")
    evaluate.set_defaults(run=_run_evaluate)

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
    plot.add_argument("--queries", type=int, default=8, help="retrieval: number of queries")
    plot.add_argument("-k", type=int, default=5, help="retrieval: neighbours per query")
    plot.add_argument("--max-points", type=int, default=3000, help="t-SNE: subsample to this many")
    plot.add_argument("--seed", type=int, default=0)
    plot.set_defaults(run=_run_plot)

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
        choices=("flat", "ivf", "hnsw"),
        default="flat",
        help="flat: exact (default); ivf / hnsw: approximate, for millions of items",
    )
    index.add_argument(
        "--extend", action="store_true", help="add the items not yet indexed to --out's index"
    )
    index.set_defaults(run=_run_index)

    search = commands.add_parser(
        "search",
        help="the nearest gallery items of query images",
        description="Embed the query images with the checkpoint the index was built with and "
        "print their k nearest gallery items with Euclidean distances.",
    )
    search.add_argument("queries", type=Path, nargs="+", metavar="QUERY_IMAGE")
    search.add_argument("--index", type=Path, required=True, help="folder written by cdml index")
    search.add_argument("--checkpoint", type=Path, required=True, help="cdml checkpoint")
    search.add_argument("-k", type=int, default=10, help="neighbours per query (default 10)")
    search.add_argument("--json", action="store_true", help="print JSON instead of a table")
    search.add_argument(
        "--width",
        type=int,
        help="approximate indexes only: IVF cells (nprobe, default 16) or HNSW candidates "
        "(efSearch, default 128) searched; wider recalls more and is slower",
    )
    search.set_defaults(run=_run_search)

    demo = commands.add_parser(
        "demo",
        help="train on a built-in dataset and compare with the untrained model",
        description="Train the facility-location loss on Fashion-MNIST (the Debian package "
        "dataset-fashion-mnist) or, without it, scikit-learn's digits; print the unseen-class "
        "test metrics beside the untrained model's and draw the t-SNE map. --loss, --dataset "
        "and --seed run any method with the same budget (the rows of docs/results.md).",
    )
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder")
    demo.add_argument("--loss", choices=LOSS_NAMES, default="facility")
    demo.add_argument("--dataset", choices=("fashion-mnist", "digits"), help="default: see above")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--epochs", type=int, default=None, help="default 4")
    demo.add_argument("--no-plot", action="store_true", help="skip the t-SNE map")
    _add_set_argument(demo, example="loss.params.reconstruction_weight=0")
    demo.set_defaults(run=_run_demo)
    return parser


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
    parser.add_argument("--split", choices=("train", "test"), default="test")
    if allow_images:
        parser.add_argument("--images", type=Path, help="embed every image under this folder")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=0, help="data loading processes")
    parser.add_argument("--image-size", type=int, help="default: the training image size")


def _devices(text: str) -> int | str:
    return int(text) if text.isdigit() else text


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
        except ValueError:
            raise UsageError(f"--set {key}: cannot read value {value!r}") from None
    return overrides


def _run_train(args: argparse.Namespace) -> int:
    from cdml.console import console, run_tables
    from cdml.training import RunConfig, apply_overrides, load_config, train

    overrides = {key: getattr(args, flag) for flag, key in TRAIN_FLAGS.items()}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    overrides.update(_parse_sets(args.set))
    if args.resume:
        out = Path(overrides.get("out", RunConfig().out))
        config = load_config(_existing(out / "config.yaml", "--resume: no run to resume at"))
    elif args.config:
        config = load_config(_existing(args.config, "--config: no such file"))
    else:
        missing = [flag for flag in ("dataset", "loss") if getattr(args, flag) is None]
        if missing:
            raise UsageError(
                "give --config FILE, or --dataset, --data-root and --loss "
                f"(missing: {', '.join('--' + m for m in missing)})"
            )
        config = RunConfig()
    config = apply_overrides(config, overrides)
    console.print(f"run folder: {Path(config.out).resolve()}")
    results = train(config, resume=args.resume, baseline=not args.no_baseline)
    for table in run_tables(results, config.loss.name, config.data.dataset):
        console.print(table)
    console.print(
        f"outputs in {Path(config.out).resolve()}: metrics.json, config.yaml, "
        f"checkpoints/, logs/ (best checkpoint: {results['checkpoint']})"
    )
    return 0


def _existing(path: Path, message: str) -> Path:
    if not path.is_file():
        raise UsageError(f"{message} {path}")
    return path


# embed / evaluate -------------------------------------------------------------------------
def _embed_from_checkpoint(
    args: argparse.Namespace, skip: frozenset[str] = frozenset()
) -> dict[str, np.ndarray]:
    """Embed the --images folder or the --dataset split with --checkpoint; items whose path
    is in ``skip`` are left out before embedding."""
    from torch.utils.data import Subset

    from cdml.data import load_dataset
    from cdml.data.folder import unlabelled_images
    from cdml.inference import embed, find_images, load_checkpoint
    from cdml.training.datamodule import transforms_of

    images_dir = getattr(args, "images", None)
    if (args.dataset is None) == (images_dir is None):
        raise UsageError("give either --dataset (with --data-root and --split) or --images DIR")
    model, config = load_checkpoint(args.checkpoint)
    if args.image_size:
        config.data.image_size = args.image_size
    transform = transforms_of(config.data, train=False)
    if images_dir is not None:
        paths = [str(p) for p in find_images(images_dir) if str(p) not in skip]
        dataset: Any = unlabelled_images(paths, transform)
        arrays: dict[str, np.ndarray] = {}
    else:
        dataset = load_dataset(args.dataset, args.data_root, args.split, transform=transform)
        # File datasets know their paths; in-memory ones (digits, Fashion-MNIST) get names.
        paths = getattr(dataset, "paths", None)
        if paths is None:
            paths = [f"{args.dataset}/{args.split}/{i}" for i in range(len(dataset))]
        keep = [i for i, path in enumerate(paths) if str(path) not in skip]
        dataset, paths = Subset(dataset, keep), [str(paths[i]) for i in keep]
        source = {"dataset": args.dataset, "split": args.split, "data_root": args.data_root or ""}
        arrays = {k: np.array(v) for k, v in source.items()}
    if not paths:
        return {"embeddings": np.empty((0, 0), np.float32), "paths": np.empty(0, np.str_)}
    embeddings, labels = embed(model, dataset, args.batch_size, args.workers)
    arrays.update(embeddings=embeddings, paths=np.asarray(paths, dtype=np.str_))
    if args.dataset is not None:
        arrays["labels"] = labels
    return arrays


def _run_embed(args: argparse.Namespace) -> int:
    from cdml.console import console
    from cdml.io import atomic_path

    _check_writable(args.out)
    arrays = _embed_from_checkpoint(args)
    with atomic_path(args.out) as tmp:
        np.savez(tmp, **arrays)
    console.print(f"{len(arrays['embeddings'])} embeddings written to {args.out}")
    return 0


def load_embeddings_file(path: Path, need_labels: bool = True) -> dict[str, np.ndarray]:
    """Read the arrays of a .npz file: ``embeddings`` ``(n, d)``, ``labels`` ``(n,)`` and any
    others (``paths``, ``dataset``, ``split``, ``data_root`` as written by ``cdml embed``)."""
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{path}: not a .npz archive")
    try:
        with np.load(path, allow_pickle=False) as archive:
            required = ("embeddings", "labels") if need_labels else ("embeddings",)
            missing = [key for key in required if key not in archive.files]
            if missing:
                raise UsageError(
                    f"{path}: no array {missing[0]!r} (arrays in the file: "
                    f"{', '.join(archive.files) or 'none'})"
                )
            arrays = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as error:
        raise UsageError(f"{path}: not a readable .npz archive ({error})") from None
    if "labels" in arrays and len(arrays["embeddings"]) != len(arrays["labels"]):
        raise UsageError(
            f"{path}: 'embeddings' has {len(arrays['embeddings'])} rows but 'labels' has "
            f"{len(arrays['labels'])}"
        )
    return arrays


def _run_evaluate(args: argparse.Namespace) -> int:
    from cdml.console import console, metrics_table
    from cdml.io import write_json
    from cdml.metrics import evaluate

    if (args.embeddings is None) == (args.checkpoint is None):
        raise UsageError("give either an EMBEDDINGS.npz file or --checkpoint with --dataset")
    if args.json:
        _check_writable(args.json)
    if args.embeddings is not None:
        arrays, source = load_embeddings_file(args.embeddings), str(args.embeddings)
        ks = args.ks or (1, 2, 4, 8)
    else:
        from cdml.training.run import dataset_ks

        arrays, source = _embed_from_checkpoint(args), f"{args.checkpoint} on {args.dataset}"
        ks = args.ks or dataset_ks(args.dataset)
    try:
        metrics = evaluate(arrays["embeddings"], arrays["labels"], ks=ks, nmi=not args.no_nmi)
    except ValueError as error:
        raise UsageError(f"{source}: {error}") from None
    title = f"{source}: {len(arrays['labels'])} embeddings"
    console.print(metrics_table({"model": metrics}, title=title))
    if args.json:
        write_json(args.json, metrics)
        console.print(f"metrics written to {args.json}")
    return 0


# plot -------------------------------------------------------------------------------------
def _run_plot(args: argparse.Namespace) -> int:
    from cdml.console import console
    from cdml.viz import plot_retrieval, plot_tsne
    from cdml.viz.inputs import sample_indices

    _check_writable(args.out)
    arrays = load_embeddings_file(args.embeddings)
    embeddings, labels = arrays["embeddings"], arrays["labels"]
    if args.retrieval:
        images = _images_for(arrays, np.arange(len(labels)), args.embeddings)
        path = plot_retrieval(
            embeddings,
            labels,
            images,
            args.out,
            num_queries=args.queries,
            k=args.k,
            seed=args.seed,
        )
    else:
        keep = sample_indices(len(labels), args.max_points, args.seed)
        images = _images_for(arrays, keep, args.embeddings) if args.images else None
        path = plot_tsne(
            embeddings[keep],
            labels[keep],
            args.out,
            images=images,
            max_points=args.max_points,
            seed=args.seed,
            title=f"t-SNE of {args.embeddings.name}",
        )
    console.print(f"figure written to {path}")
    return 0


def _images_for(arrays: dict[str, np.ndarray], indices: np.ndarray, source: Path) -> list:
    """uint8 images of the items at ``indices``, from the files or dataset the .npz names."""
    from PIL import Image

    from cdml.data import load_dataset

    if "dataset" in arrays:
        dataset = load_dataset(
            str(arrays["dataset"]), str(arrays["data_root"]) or None, str(arrays["split"])
        )
        images = [dataset[int(i)][0] for i in indices]
        return [
            np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
            for image in images
        ]
    if "paths" in arrays:
        from cdml.data.image_dataset import open_rgb

        return [np.asarray(open_rgb(str(arrays["paths"][i]))) for i in indices]
    raise UsageError(
        f"{source}: has no 'paths' or 'dataset' entry to find the images (write it with cdml embed)"
    )


def _check_writable(path: Path) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"{path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{path}: folder {folder} is not writable")


# index and search --------------------------------------------------------------------------
def _checkpoint_digest(path: Path) -> str:
    import hashlib

    if not path.is_file():
        raise UsageError(f"{path}: no such checkpoint file")
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run_index(args: argparse.Namespace) -> int:
    from cdml.console import console
    from cdml.retrieval import GalleryIndex

    digest = _checkpoint_digest(args.checkpoint)
    if args.extend:
        gallery = GalleryIndex.load(args.out)
        if gallery.meta.get("checkpoint_sha256") != digest:
            raise UsageError(
                f"--extend: {args.out} was built with another checkpoint "
                f"({gallery.meta.get('checkpoint')}); embeddings would not be comparable"
            )
    else:
        if args.out.exists():
            raise UsageError(
                f"{args.out} exists; pass --extend to add to it or choose another --out"
            )
        _check_writable(args.out)
    arrays = _embed_from_checkpoint(
        args, skip=frozenset(gallery.paths) if args.extend else frozenset()
    )
    paths, labels = arrays["paths"].tolist(), arrays.get("labels")
    if not args.extend:
        gallery = GalleryIndex.create(arrays["embeddings"].shape[1], kind=args.kind)
        gallery.meta.update(checkpoint=str(args.checkpoint), checkpoint_sha256=digest)
    if paths:
        gallery.add(arrays["embeddings"], paths, labels)
    gallery.save(args.out)
    console.print(
        f"{len(paths)} items added, {len(gallery)} in the {gallery.kind} index written to "
        f"{args.out}"
    )
    return 0


def _run_search(args: argparse.Namespace) -> int:
    import json

    from cdml.console import console
    from cdml.data.folder import unlabelled_images
    from cdml.inference import embed, load_checkpoint
    from cdml.retrieval import GalleryIndex
    from cdml.training.datamodule import transforms_of

    gallery = GalleryIndex.load(args.index)
    if gallery.meta.get("checkpoint_sha256") != _checkpoint_digest(args.checkpoint):
        raise UsageError(
            f"{args.index} was built with another checkpoint ({gallery.meta.get('checkpoint')})"
        )
    if args.width is not None:
        try:
            gallery.search_width = args.width
        except ValueError as error:
            raise UsageError(f"--width: {error}") from None
    missing = [str(q) for q in args.queries if not q.is_file()]
    if missing:
        raise UsageError(f"no such query image: {', '.join(missing)}")
    model, config = load_checkpoint(args.checkpoint)
    queries = unlabelled_images(args.queries, transforms_of(config.data, train=False))
    embeddings, _ = embed(model, queries, progress=False)
    distances, indices = gallery.search(embeddings, args.k)
    results = [
        {
            "query": str(query),
            "neighbours": [
                {
                    "rank": rank + 1,
                    "path": gallery.paths[i],
                    "label": int(gallery.labels[i]),
                    "distance": float(d),
                }  # fmt: skip
                for rank, (i, d) in enumerate(zip(row_indices, row_distances, strict=True))
                if i >= 0
            ],
        }
        for query, row_indices, row_distances in zip(args.queries, indices, distances, strict=True)
    ]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for result in results:
        console.print(f"[bold]{result['query']}[/bold]")
        for n in result["neighbours"]:
            label = "" if n["label"] < 0 else f"  label {n['label']}"
            console.print(f"  {n['rank']:>3}  {n['distance']:.4f}  {n['path']}{label}")
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
