"""Any labelled image collection described by a CSV file (open-metric-learning style)."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cdml.data.image_dataset import ImageListDataset
from cdml.data.registry import register_dataset
from cdml.data.zero_shot import build_image_split, check_split

COLUMNS = ("label", "path", "split")
# `validation` is read as `test`, as open-metric-learning does.
SPLIT_VALUES = {"train": "train", "test": "test", "validation": "test"}


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
        root: the CSV file. Other columns are ignored; ``path`` is relative to the CSV's
            folder; ``split`` is ``train``, ``test`` or ``validation`` (read as ``test``).
        split: ``"train"`` or ``"test"``.
        transform: applied to each RGB PIL image.
        skip_bad: skip unreadable images instead of raising (see ``ImageListDataset``).
        check_files: check now that every image file of the split exists.

    The whole file is validated up front, whichever split is asked for: a missing column,
    an empty label or path, an unknown split value, a class with fewer than two images,
    or a label in both halves (the halves must hold disjoint classes) raises ``ValueError``
    naming the column, line or class. ``class_names`` are the labels as written.
    """
    check_split(split)
    if root is None:
        raise ValueError("dataset 'csv' needs its CSV file as root (--data-root FILE.csv)")
    rows = read_label_csv(Path(root))
    chosen = [(label, path) for label, path, row_split in rows if row_split == split]
    return build_image_split(
        "csv",
        split,
        Path(root).parent,
        [path for _, path in chosen],
        [label for label, _ in chosen],
        source=str(root),
        strict=False,
        transform=transform,
        skip_bad=skip_bad,
        check_files=check_files,
    )


def read_label_csv(path: Path) -> list[tuple[str, str, str]]:
    """Validated ``(label, path, split)`` rows, split mapped to ``train``/``test``."""
    if not path.is_file():
        raise FileNotFoundError(f"csv: no such file {path}")
    try:
        return _read_rows(path)
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{path}: not a UTF-8 CSV file ({error})") from None


def _read_rows(path: Path) -> list[tuple[str, str, str]]:
    rows = []
    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {', '.join(missing)} "
                f"(header must contain {','.join(COLUMNS)}, found {reader.fieldnames})"
            )
        for row in reader:
            where = f"{path} line {reader.line_num}"
            label, image, split = (row[c] if row[c] is not None else "" for c in COLUMNS)
            if not label.strip() or not image.strip():
                raise ValueError(f"{where}: empty label or path")
            if split not in SPLIT_VALUES:
                raise ValueError(
                    f"{where}: unknown split {split!r} (expected one of {sorted(SPLIT_VALUES)})"
                )
            rows.append((label, image, SPLIT_VALUES[split]))
    if not rows:
        raise ValueError(f"{path}: no data rows")
    _check_classes(path, rows)
    return rows


def _check_classes(path: Path, rows: list[tuple[str, str, str]]) -> None:
    counts = Counter((label, split) for label, _, split in rows)
    for (label, split), count in counts.items():
        if count < 2:
            raise ValueError(
                f"{path}: class {label!r} has {count} image in split {split!r}; "
                "every class needs at least two (a query needs a positive)"
            )
    halves = {split: {label for label, s in counts if s == split} for split in ("train", "test")}
    shared = sorted(halves["train"] & halves["test"])
    if shared:
        raise ValueError(
            f"{path}: label(s) {shared[:5]} appear in both train and test; zero-shot "
            "evaluation needs disjoint classes"
        )
