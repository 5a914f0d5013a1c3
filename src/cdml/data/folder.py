"""Unlabelled images: every image file under a folder."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cdml.data.image_dataset import ImageListDataset
from cdml.data.registry import register_dataset
from cdml.data.zero_shot import check_split

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
UNLABELLED = "unlabelled"


def find_images(folder: str | Path) -> list[Path]:
    """Every image file under ``folder`` (recursively, sorted); ``FileNotFoundError`` for a
    missing folder, ``ValueError`` when it holds no image.

    A file is an image by its suffix; a folder named like one is searched, not listed.
    Symbolic links to files are listed, broken ones included, so that reading one names
    it (or skips it, with ``skip_bad``); links to folders are not followed (no loops)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    paths = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir()
    )
    if not paths:
        raise ValueError(f"{folder}: no image files found ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return paths


@register_dataset("folder", "a folder of unlabelled images", labelled=False)
def load_folder(
    root: str | Path | None,
    split: str = "train",
    transform: Callable[[Any], Any] | None = None,
    *,
    skip_bad: bool = False,
) -> ImageListDataset:
    """Every image under the folder ``root``, for unsupervised training.

    The images carry no labels: the dataset has the one class ``"unlabelled"`` (every label
    0). A folder has no test split, so ``split`` must be ``"train"``; evaluate on a labelled
    dataset instead.
    """
    check_split(split)
    if root is None:
        raise ValueError("dataset 'folder' needs --data-root: the folder of images")
    if split != "train":
        raise ValueError(
            f"dataset 'folder' ({root}) is unlabelled and has no {split!r} split; "
            "evaluate on a labelled dataset"
        )
    return unlabelled_images(find_images(root), transform, skip_bad)


def unlabelled_images(
    paths: Sequence[str | Path],
    transform: Callable[[Any], Any] | None = None,
    skip_bad: bool = False,
) -> ImageListDataset:
    """Image files without labels: one class ``"unlabelled"``, every label 0."""
    return ImageListDataset(
        [str(p) for p in paths],
        np.zeros(len(paths), dtype=np.int64),
        [UNLABELLED],
        transform,
        skip_bad,
    )
