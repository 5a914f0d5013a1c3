"""Any labelled image collection described by a CSV file (open-metric-learning style)."""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from cdml.data.image_dataset import ImageListDataset
from cdml.data.registry import register_dataset
from cdml.data.zero_shot import build_image_split, check_split

COLUMNS = ("label", "path", "split")
# open-metric-learning's optional columns: which test rows query and which are searched
# (given together), and a category per row for per-category metrics.
ROLE_COLUMNS = ("is_query", "is_gallery")
CATEGORY_COLUMN = "category"
# `validation` is read as `test`, as open-metric-learning does.
SPLIT_VALUES = {"train": "train", "test": "test", "validation": "test"}
BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


class Row(NamedTuple):
    """One validated CSV row; ``split`` is ``train`` or ``test``; the optional columns are
    None where the file lacks them (and for train rows, which may leave them empty)."""

    label: str
    path: str
    split: str
    is_query: bool | None = None
    is_gallery: bool | None = None
    category: str | None = None


@register_dataset("csv", "your images listed in a CSV of label,path,split")
def load_csv(
    root: str | Path,
    split: str = "train",
    transform: Callable[[Any], Any] | None = None,
    *,
    skip_bad: bool = False,
    check_files: bool = True,
) -> ImageListDataset:
    """The ``split`` rows of a CSV with columns ``label,path,split``, labels renumbered from 0.

    Args:
        root: the CSV file. ``path`` is relative to the CSV's folder; ``split`` is
            ``train``, ``test`` or ``validation`` (read as ``test``). Optional columns, as
            open-metric-learning writes them: ``is_query`` and ``is_gallery`` (together;
            ``True``/``False`` or ``1``/``0``) make the test rows marked ``is_query`` query
            those marked ``is_gallery`` (in-shop retrieval) instead of each other, and
            ``category`` gives per-category metrics; train rows may leave them empty. Other
            columns are ignored.
        split: ``"train"`` or ``"test"``.
        transform: applied to each RGB PIL image.
        skip_bad: skip unreadable images instead of raising (see ``ImageListDataset``).
        check_files: check now that every image file of the split exists.

    The file is read as UTF-8 (a byte-order mark is dropped), with any line endings and
    quoted fields (``"a, b"``); blank lines are skipped. Column names and the label, split,
    boolean and category values are stripped of surrounding whitespace; paths are not (a
    file name may begin with a space), so a path with surrounding whitespace is refused.
    A path may be absolute, or go up out of the CSV's folder (``../images/x.jpg``, as when
    the CSV sits beside the image folder), and may be a symbolic link; with
    ``check_files`` each must lead to an existing file.

    The whole file is validated up front, whichever split is asked for: a missing column,
    an empty label or path, an unknown split or boolean value, an image listed twice (the
    paths compared once joined to the CSV's folder and normalised, so ``x.jpg`` and
    ``./x.jpg`` are one image: in one class it would be its own positive, in two it is
    contradictory), a class with fewer than two images (with query/gallery marks: a query
    without another gallery image of its class), or a label in both halves (the halves
    must hold disjoint classes) raises ``ValueError`` naming the column, line or class.
    ``class_names`` are the labels as written (stripped); the test split's marks and
    categories are its ``evaluation`` arrays.
    """
    check_split(split)
    if root is None:
        raise ValueError("dataset 'csv' needs its CSV file as root (--data-root FILE.csv)")
    rows = [row for row in read_label_csv(Path(root)) if row.split == split]
    dataset = build_image_split(
        "csv",
        split,
        Path(root).parent,
        [row.path for row in rows],
        [row.label for row in rows],
        source=str(root),
        strict=False,
        transform=transform,
        skip_bad=skip_bad,
        check_files=check_files,
    )
    if rows and split == "test":
        if rows[0].is_query is not None:
            dataset.evaluation["is_query"] = np.array([row.is_query for row in rows])
            dataset.evaluation["is_gallery"] = np.array([row.is_gallery for row in rows])
        if rows[0].category is not None:
            dataset.evaluation["categories"] = np.array([row.category for row in rows])
    return dataset


def read_label_csv(path: Path) -> list[Row]:
    """The validated rows of the CSV file at ``path``."""
    if not path.is_file():
        raise FileNotFoundError(f"csv: no such file {path}")
    try:
        return _read_rows(path)
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{path}: not a UTF-8 CSV file ({error})") from None


def _read_rows(path: Path) -> list[Row]:
    rows = []
    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        header = [name.strip() for name in reader.fieldnames or ()]
        reader.fieldnames = header
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {', '.join(missing)} "
                f"(header must contain {','.join(COLUMNS)}, found {reader.fieldnames})"
            )
        roles = [c for c in ROLE_COLUMNS if c in header]
        if len(roles) == 1:
            other = next(c for c in ROLE_COLUMNS if c not in header)
            raise ValueError(f"{path}: column {roles[0]} needs column {other} beside it")
        seen: dict[str, tuple[int, str]] = {}  # normalised path -> first line, label
        for row in reader:
            where = f"{path} line {reader.line_num}"
            label, image, split = (row[c] or "" for c in COLUMNS)
            label, split = label.strip(), split.strip()
            if not label or not image.strip():
                raise ValueError(f"{where}: empty label or path")
            if image != image.strip():
                raise ValueError(f"{where}: path {image!r} begins or ends with whitespace")
            key = os.path.normpath(os.path.join(path.parent, image))
            if key in seen:
                line, first = seen[key]
                why = (
                    "in the same class (it would be its own positive)"
                    if first == label
                    else f"in class {first!r}, here in {label!r} (an image has one class)"
                )
                raise ValueError(f"{where}: image {image} is already listed on line {line} {why}")
            seen[key] = reader.line_num, label
            if split not in SPLIT_VALUES:
                raise ValueError(
                    f"{where}: unknown split {split!r} (expected one of {sorted(SPLIT_VALUES)})"
                )
            split = SPLIT_VALUES[split]
            optional = {}
            if split == "test":
                for column in roles:
                    optional[column] = _boolean(row[column] or "", f"{where}: {column}")
                if CATEGORY_COLUMN in header:
                    category = (row[CATEGORY_COLUMN] or "").strip()
                    if not category:
                        raise ValueError(f"{where}: empty category")
                    optional["category"] = category
            rows.append(Row(label, image, split, **optional))
    if not rows:
        raise ValueError(f"{path}: no data rows")
    _check_classes(path, rows)
    return rows


def _boolean(value: str, where: str) -> bool:
    try:
        return BOOLEANS[value.strip().lower()]
    except KeyError:
        raise ValueError(f"{where} must be True or False (or 1 or 0), got {value!r}") from None


def _check_classes(path: Path, rows: list[Row]) -> None:
    counts = Counter((row.label, row.split) for row in rows)
    marked = any(row.is_query is not None for row in rows)
    for (label, split), count in counts.items():
        if count < 2 and not (marked and split == "test"):
            raise ValueError(
                f"{path}: class {label!r} has {count} image in split {split!r}; "
                "every class needs at least two (a query needs a positive)"
            )
    if marked:
        _check_queries(path, [row for row in rows if row.split == "test"])
    halves = {split: {label for label, s in counts if s == split} for split in ("train", "test")}
    shared = sorted(halves["train"] & halves["test"])
    if shared:
        raise ValueError(
            f"{path}: label(s) {shared[:5]} appear in both train and test; zero-shot "
            "evaluation needs disjoint classes"
        )


def _check_queries(path: Path, rows: list[Row]) -> None:
    """Every test query has a gallery image of its class other than itself."""
    if not any(row.is_query for row in rows) or not any(row.is_gallery for row in rows):
        raise ValueError(f"{path}: the test rows need at least one is_query and one is_gallery")
    gallery = Counter(row.label for row in rows if row.is_gallery)
    for row in rows:
        if row.is_query and gallery[row.label] - int(row.is_gallery) < 1:
            raise ValueError(
                f"{path}: query {row.path} of class {row.label!r} has no other is_gallery "
                "image of its class to retrieve"
            )
