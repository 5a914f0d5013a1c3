"""Stanford Online Products (Oh Song et al., 2016): 120,053 photographs of 22,634 products.

Distributed as ``Stanford_Online_Products.zip``; the loader reads the extracted folder as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cdml.data.files import read_table, require_dir, require_file
from cdml.data.image_dataset import ImageListDataset
from cdml.data.registry import SplitSize, register_dataset
from cdml.data.zero_shot import build_image_split, check_split

FIELDS = ("image_id", "class_id", "super_class_id", "path")


@register_dataset(
    "sop",
    "Stanford Online Products (a folder)",
    ks=(1, 10, 100, 1000),
    sizes={"train": SplitSize(59_551, 11_318), "test": SplitSize(60_502, 11_316)},
)
def load_sop(
    root: str | Path,
    split: str = "train",
    transform: Callable[[Any], Any] | None = None,
    *,
    strict: bool = True,
    skip_bad: bool = False,
    check_files: bool = True,
) -> ImageListDataset:
    """One zero-shot half of Stanford Online Products as listed by its own split files:
    ``"train"`` (``Ebay_train.txt``, 11,318 classes, 59,551 images) or ``"test"``
    (``Ebay_test.txt``, 11,316 classes, 60,502 images), classes renumbered from 0.

    Args:
        root: folder holding ``Ebay_train.txt`` / ``Ebay_test.txt`` (header
            ``image_id class_id super_class_id path``, paths relative to ``root``) and the
            image folders (``bicycle_final/`` ...).
        split: ``"train"`` or ``"test"``.
        transform: applied to each RGB PIL image.
        strict: require the published image and class counts.
        skip_bad: skip unreadable images instead of raising (see ``ImageListDataset``).
        check_files: check now that every image file exists.

    ``class_names`` are the original class ids as strings.
    """
    check_split(split)
    root = require_dir(root, "sop", "the Stanford_Online_Products folder with Ebay_train.txt")
    list_file = require_file(root / f"Ebay_{split}.txt", "sop")
    rows = read_table(list_file, FIELDS, header=True, integers=FIELDS[:3])
    return build_image_split(
        "sop",
        split,
        root,
        [row[3] for row in rows],
        [row[1] for row in rows],
        source=str(list_file),
        strict=strict,
        transform=transform,
        skip_bad=skip_bad,
        check_files=check_files,
    )
