"""The items of a large collection, listed in a fixed order without holding them all: a
folder walked depth-first (names sorted at each level, as :func:`find_images` sorts them),
a text file of paths, or a dataset's split."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from cdml.data.folder import IMAGE_SUFFIXES

# The columns of an item table: ``index`` is the item's position in its source, ``path`` its
# file (a dataset's in-memory items are named ``dataset/split/i``), ``label`` its class (-1
# unknown); a dataset's split may add ``is_query``, ``is_gallery`` and ``categories``.
ITEM_COLUMNS = ("index", "path", "label")


def walk_images(folder: Path) -> Iterator[str]:
    """Every image file under ``folder``, in ``sorted(find_images(folder))``'s order, one
    folder's names in memory at a time. Links to folders are not followed (no loops)."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as error:
        raise OSError(f"cannot list {folder}: {error.strerror}") from None
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from walk_images(Path(entry.path))
        elif Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
            yield entry.path


def listed_paths(file: Path) -> Iterator[str]:
    """The paths of a text file, one a line (blank lines and ``#`` comments skipped);
    relative ones are relative to the file's folder."""
    with open(file, encoding="utf-8") as lines:
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                yield line if os.path.isabs(line) else str(file.parent / line)


def item_batches(source: dict[str, Any], rows: int) -> Iterator[pa.RecordBatch]:
    """The items of ``source`` (``{"images": folder or list file}`` or ``{"dataset", "data_root",
    "split"}``) as tables of ``rows`` items (the last may be shorter), in their fixed order."""
    if source.get("images") is not None:
        images = Path(source["images"])
        if images.is_dir():
            paths = walk_images(images)
        elif images.is_file():
            paths = listed_paths(images)
        else:
            raise FileNotFoundError(f"--images {images}: no such folder or file list")
        yield from _path_batches(paths, rows)
        return
    from cdml.data import load_dataset

    dataset = load_dataset(source["dataset"], source.get("data_root"), source["split"])
    paths = getattr(dataset, "paths", None)
    for start in range(0, len(dataset), rows):
        stop = min(start + rows, len(dataset))
        columns: dict[str, Any] = {
            "index": np.arange(start, stop, dtype=np.int64),
            "path": [str(paths[i]) if paths is not None
                     else f"{source['dataset']}/{source['split']}/{i}" for i in range(start, stop)],
            "label": dataset.labels[start:stop].astype(np.int64),
        }  # fmt: skip
        for name, values in dataset.evaluation.items():
            columns[name] = (
                values[start:stop] if name != "categories" else values[start:stop].astype(str)
            )
        yield pa.record_batch(columns)


def _path_batches(paths: Iterator[str], rows: int) -> Iterator[pa.RecordBatch]:
    batch: list[str] = []
    start = 0
    for path in paths:
        batch.append(path)
        if len(batch) == rows:
            yield _unlabelled(batch, start)
            start, batch = start + rows, []
    if batch:
        yield _unlabelled(batch, start)


def _unlabelled(paths: list[str], start: int) -> pa.RecordBatch:
    return pa.record_batch({
        "index": np.arange(start, start + len(paths), dtype=np.int64),
        "path": paths,
        "label": np.full(len(paths), -1, dtype=np.int64),
    })  # fmt: skip
