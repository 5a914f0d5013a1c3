"""The zero-shot splits: split names, the published sizes check, and building one split."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cdml.data.base import encode_labels
from cdml.data.image_dataset import ImageListDataset

SPLITS = ("train", "test")


def check_split(split: str) -> None:
    """Raise ``ValueError`` unless ``split`` is ``"train"`` or ``"test"``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def check_expected_size(name: str, split: str, images: int, classes: int, source: str) -> None:
    """Raise ``ValueError`` when a benchmark split's image or class count differs from
    the published one; ``source`` names the file the counts were read from."""
    from cdml.data.registry import DATASETS

    expected = DATASETS[name].sizes[split]
    for what, want, found in (
        ("images", expected.images, images),
        ("classes", expected.classes, classes),
    ):
        if found != want:
            raise ValueError(
                f"{name}: expected {want:,} {split} {what} in {source}, found {found:,} "
                "(incomplete download or modified files?); pass strict=False to use "
                "the files as they are"
            )


def build_image_split(
    name: str,
    split: str,
    root: Path,
    relpaths: Sequence[str],
    class_keys: Sequence[Hashable],
    class_names: Mapping[Hashable, str] | None = None,
    *,
    source: str,
    strict: bool,
    transform: Callable[[Any], Any] | None,
    skip_bad: bool,
    check_files: bool,
) -> ImageListDataset:
    """One split of a file-based dataset, classes renumbered ``0..C-1`` in key order.

    Images are ``root / relpath``; ``class_names`` maps a class key to its name (default
    ``str(key)``). With ``strict`` the counts must match the registered ``sizes`` of ``name``
    (``source`` names the annotation file in the error); with ``check_files`` every image
    must exist (all missing files are reported at once).
    """
    codes, keys = encode_labels(class_keys)
    names = [str(k) if class_names is None else class_names[k] for k in keys.tolist()]
    dataset = ImageListDataset(
        [root / p for p in relpaths], codes, names, transform=transform, skip_bad=skip_bad
    )
    if strict:
        check_expected_size(name, split, len(dataset), dataset.num_classes, source)
    if check_files:
        dataset.check_files()
    return dataset
