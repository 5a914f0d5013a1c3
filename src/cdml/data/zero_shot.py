"""The zero-shot splits: split names, published sizes, and building one split from annotations."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from cdml.data.base import encode_labels
from cdml.data.image_dataset import ImageListDataset

SPLITS = ("train", "test")


class SplitSize(NamedTuple):
    images: int
    classes: int


# METHODS.md section 6, plus Fashion-MNIST's 70,000 images split 5 classes / 5 classes.
EXPECTED_SIZES: dict[tuple[str, str], SplitSize] = {
    ("cub200", "train"): SplitSize(5_864, 100),
    ("cub200", "test"): SplitSize(5_924, 100),
    ("cars196", "train"): SplitSize(8_054, 98),
    ("cars196", "test"): SplitSize(8_131, 98),
    ("sop", "train"): SplitSize(59_551, 11_318),
    ("sop", "test"): SplitSize(60_502, 11_316),
    ("fashion-mnist", "train"): SplitSize(35_000, 5),
    ("fashion-mnist", "test"): SplitSize(35_000, 5),
}


def check_split(split: str) -> None:
    """Raise ``ValueError`` unless ``split`` is ``"train"`` or ``"test"``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def check_expected_size(name: str, split: str, images: int, classes: int, source: str) -> None:
    """Raise ``ValueError`` when a benchmark split's image or class count differs from
    the published one; ``source`` names the file the counts were read from."""
    expected = EXPECTED_SIZES[name, split]
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
    ``str(key)``). With ``strict`` the counts must match ``EXPECTED_SIZES[name, split]``
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
