"""CUB-200-2011 (Wah et al., 2011): 11,788 photographs of 200 bird species.

Distributed as ``CUB_200_2011.tgz`` (Caltech); the loader reads the extracted
``CUB_200_2011/`` folder as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from cdml.data.files import read_table, require_dir, require_file
from cdml.data.image_dataset import ImageListDataset
from cdml.data.registry import SplitSize, register_dataset
from cdml.data.zero_shot import build_image_split, check_split

NUM_CLASSES = 200
TRAIN_CLASSES = 100  # classes 1..100 train, 101..200 test
INTEGER_FIELDS = ("image_id", "class_id")


@register_dataset(
    "cub200",
    "CUB-200-2011 (a folder)",
    sizes={"train": SplitSize(5_864, 100), "test": SplitSize(5_924, 100)},
)
def load_cub200(
    root: str | Path,
    split: str = "train",
    transform: Callable[[Any], Any] | None = None,
    *,
    strict: bool = True,
    skip_bad: bool = False,
    check_files: bool = True,
) -> ImageListDataset:
    """One zero-shot half of CUB-200-2011: classes 1-100 (``"train"``, 5,864 images) or
    101-200 (``"test"``, 5,924 images), renumbered 0..99.

    Args:
        root: the ``CUB_200_2011`` folder: ``images.txt`` (``<id> <relpath>``),
            ``image_class_labels.txt`` (``<id> <class>``) and ``images/<relpath>``.
        split: ``"train"`` or ``"test"``.
        transform: applied to each RGB PIL image.
        strict: require the published image and class counts.
        skip_bad: skip unreadable images instead of raising (see ``ImageListDataset``).
        check_files: check now that every image file exists.

    ``class_names`` are the image folders' names, e.g. ``"001.Black_footed_Albatross"``.
    """
    check_split(split)
    root = require_dir(
        root, "cub200", "the CUB_200_2011 folder with images.txt, image_class_labels.txt, images/"
    )
    images_file = require_file(root / "images.txt", "cub200")
    labels_file = require_file(root / "image_class_labels.txt", "cub200")
    paths = _by_image_id(images_file, "path")
    classes = _by_image_id(labels_file, "class_id")
    if paths.keys() != classes.keys():
        unmatched = sorted(paths.keys() ^ classes.keys())
        raise ValueError(
            f"cub200: {images_file.name} and {labels_file.name} list different image ids "
            f"({len(unmatched)} unmatched, first {unmatched[:5]})"
        )
    for image_id, class_id in classes.items():
        if not 1 <= class_id <= NUM_CLASSES:
            raise ValueError(
                f"cub200: {labels_file} gives image {image_id} the class {class_id}, "
                f"outside 1..{NUM_CLASSES}"
            )
    ids = [i for i in paths if (classes[i] <= TRAIN_CLASSES) == (split == "train")]
    folder_names = {classes[i]: PurePosixPath(paths[i]).parent.name for i in ids}
    return build_image_split(
        "cub200",
        split,
        root / "images",
        [paths[i] for i in ids],
        [classes[i] for i in ids],
        {k: name or str(k) for k, name in folder_names.items()},
        source=str(labels_file),
        strict=strict,
        transform=transform,
        skip_bad=skip_bad,
        check_files=check_files,
    )


def _by_image_id(path: Path, field: str) -> dict[int, Any]:
    """``{image_id: value}`` from a two-column ``<id> <value>`` file."""
    table: dict[int, Any] = {}
    for image_id, value in read_table(path, ("image_id", field), integers=INTEGER_FIELDS):
        if image_id in table:
            raise ValueError(f"cub200: {path} lists image {image_id} twice")
        table[image_id] = value
    return table
