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

import numpy as np

from cdml import __version__


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

    evaluate = commands.add_parser(
        "evaluate",
        help="Recall@K, NMI and MAP@R of saved embeddings",
        description="Evaluate embeddings saved in a .npz file (arrays 'embeddings' and "
        "'labels') with the zero-shot protocol: Recall@K with the query excluded, NMI of "
        "k-means, MAP@R.",
    )
    evaluate.add_argument("embeddings", type=Path, help=".npz file with 'embeddings' and 'labels'")
    evaluate.add_argument(
        "--ks", type=_parse_ks, default=(1, 2, 4, 8), help="K values of Recall@K (default 1,2,4,8)"
    )
    evaluate.add_argument("--no-nmi", action="store_true", help="skip the k-means NMI")
    evaluate.add_argument("--json", type=Path, metavar="OUT", help="also write the metrics as JSON")
    evaluate.set_defaults(run=_run_evaluate)

    demo = commands.add_parser(
        "demo",
        help="evaluate raw-pixel embeddings of the unseen digits 5-9",
        description="Evaluate raw-pixel embeddings of scikit-learn's bundled digits on the "
        "unseen-class half (digits 5-9): the floor a learned embedding must beat.",
    )
    demo.set_defaults(run=_run_demo)
    return parser


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


def load_embeddings_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read arrays ``embeddings`` ``(n, d)`` and ``labels`` ``(n,)`` from a .npz file."""
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{path}: not a .npz archive")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in ("embeddings", "labels") if key not in archive.files]
            if missing:
                raise UsageError(
                    f"{path}: no array {missing[0]!r} (arrays in the file: "
                    f"{', '.join(archive.files) or 'none'})"
                )
            embeddings, labels = archive["embeddings"], archive["labels"]
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as error:
        raise UsageError(f"{path}: not a readable .npz archive ({error})") from None
    if len(embeddings) != len(labels):
        raise UsageError(
            f"{path}: 'embeddings' has {len(embeddings)} rows but 'labels' has {len(labels)}"
        )
    return embeddings, labels


def _run_evaluate(args: argparse.Namespace) -> int:
    from cdml.console import console, metrics_table
    from cdml.io import write_json
    from cdml.metrics import evaluate

    embeddings, labels = load_embeddings_file(args.embeddings)
    try:
        metrics = evaluate(embeddings, labels, ks=args.ks, nmi=not args.no_nmi)
    except ValueError as error:
        raise UsageError(f"{args.embeddings}: {error}") from None
    console.print(metrics_table({args.embeddings.name: metrics}, title=f"{len(labels)} embeddings"))
    if args.json:
        write_json(args.json, metrics)
        console.print(f"metrics written to {args.json}")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from sklearn.datasets import load_digits

    from cdml.console import console, metrics_table
    from cdml.metrics import evaluate

    digits = load_digits()
    unseen = digits.target >= 5
    metrics = evaluate(digits.data[unseen], digits.target[unseen])
    console.print(
        metrics_table(
            {"raw pixels": metrics},
            title=f"digits 5-9 (unseen classes), {int(unseen.sum())} images",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
