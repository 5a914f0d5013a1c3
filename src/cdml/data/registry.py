"""Datasets by name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cdml.data.base import LabelledDataset
from cdml.data.builtin import load_digits, load_fashion_mnist
from cdml.data.cars import load_cars196
from cdml.data.csv_list import load_csv
from cdml.data.cub import load_cub200
from cdml.data.folder import load_folder
from cdml.data.glyphs import load_glyphs
from cdml.data.sop import load_sop

DATASETS: dict[str, Callable[..., LabelledDataset]] = {
    "cub200": load_cub200,
    "cars196": load_cars196,
    "sop": load_sop,
    "csv": load_csv,
    "fashion-mnist": load_fashion_mnist,
    "digits": load_digits,
    "glyphs": load_glyphs,
    "folder": load_folder,
}

# Datasets whose mirror images belong to another class (b / d): trained without flips.
MIRROR_SENSITIVE = frozenset({"glyphs"})


def load_dataset(
    name: str,
    root: str | Path | None = None,
    split: str = "train",
    transform: Callable[[Any], Any] | None = None,
    **options: Any,
) -> LabelledDataset:
    """One zero-shot half (``split`` = ``"train"`` or ``"test"``) of the dataset ``name``.

    Returns a dataset of ``(image, label)`` with ``labels`` (int64, renumbered 0..C-1
    within the split) and ``class_names``. ``root`` is what the loader in ``DATASETS``
    expects (a folder, or the CSV file for ``"csv"``; ``None`` for ``"digits"`` and for the
    default Fashion-MNIST location). ``options`` go to the loader: ``strict`` (benchmarks
    and Fashion-MNIST: check the published counts), ``skip_bad`` and ``check_files`` (file
    datasets).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset name {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name](root, split, transform, **options)
