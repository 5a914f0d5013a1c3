"""Cars196 (Krause et al., 2013): 16,185 photographs of 196 car models.

The loader reads the original release: ``cars_annos.mat`` plus the images of
``car_ims.tgz`` extracted to ``car_ims/``. The official download links
(ai.stanford.edu/~jkrause/car196/ and imagenet.stanford.edu/internal/car196/) are dead;
copies of those two files are kept by deep-metric-learning projects and web archives.
The more common Kaggle copy ("stanford-cars-dataset") has the classification devkit
layout instead (``cars_train/``, ``cars_test/``, ``devkit/*.mat``): turn it into a CSV
(``label,path,split``, classes 1-98 ``train``, 99-196 ``test``) and load it as ``"csv"``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cdml.data.files import require_dir, require_file
from cdml.data.image_dataset import ImageListDataset
from cdml.data.registry import SplitSize, register_dataset
from cdml.data.zero_shot import build_image_split, check_split

NUM_CLASSES = 196
TRAIN_CLASSES = 98  # classes 1..98 train, 99..196 test


@register_dataset(
    "cars196",
    "Cars196 (a folder)",
    sizes={"train": SplitSize(8_054, 98), "test": SplitSize(8_131, 98)},
)
def load_cars196(
    root: str | Path,
    split: str = "train",
    transform: Callable[[Any], Any] | None = None,
    *,
    strict: bool = True,
    skip_bad: bool = False,
    check_files: bool = True,
) -> ImageListDataset:
    """One zero-shot half of Cars196: classes 1-98 (``"train"``, 8,054 images) or 99-196
    (``"test"``, 8,131 images), renumbered 0..97.

    Args:
        root: folder holding ``cars_annos.mat`` (struct array ``annotations`` with
            ``relative_im_path`` such as ``car_ims/000001.jpg`` and ``class`` 1..196) and
            ``car_ims/``. The ``test`` flag of the annotations is the classification split
            and is ignored.
        split: ``"train"`` or ``"test"``.
        transform: applied to each RGB PIL image.
        strict: require the published image and class counts.
        skip_bad: skip unreadable images instead of raising (see ``ImageListDataset``).
        check_files: check now that every image file exists.

    ``class_names`` come from the file's ``class_names`` (e.g. ``"AM General Hummer SUV
    2000"``) when present, else the class numbers.
    """
    check_split(split)
    root = require_dir(root, "cars196", "the folder with cars_annos.mat and car_ims/")
    annos_file = require_file(root / "cars_annos.mat", "cars196")
    relpaths, class_ids, names = _read_annotations(annos_file)
    keep = np.flatnonzero((class_ids <= TRAIN_CLASSES) == (split == "train"))
    return build_image_split(
        "cars196",
        split,
        root,
        [relpaths[i] for i in keep],
        class_ids[keep],
        names,
        source=str(annos_file),
        strict=strict,
        transform=transform,
        skip_bad=skip_bad,
        check_files=check_files,
    )


def _read_annotations(path: Path) -> tuple[list[str], np.ndarray, dict[int, str] | None]:
    """``(relative paths, class ids 1..196, {class id: name} or None)`` from the .mat file."""
    from scipy.io import loadmat  # imported here to keep `import cdml.data` light
    from scipy.io.matlab import MatReadError

    try:
        mat = loadmat(path, squeeze_me=True)
    except (MatReadError, OSError, TypeError, ValueError) as err:
        raise ValueError(f"cars196: cannot read {path}: {err}") from err
    if "annotations" not in mat:
        raise ValueError(f"cars196: {path} has no 'annotations' variable")
    annotations = np.atleast_1d(mat["annotations"])
    for field in ("relative_im_path", "class"):
        if field not in (annotations.dtype.names or ()):
            raise ValueError(f"cars196: the annotations in {path} have no '{field}' field")
    relpaths = [str(p) for p in annotations["relative_im_path"]]
    class_ids = annotations["class"].astype(np.int64)
    bad = np.flatnonzero((class_ids < 1) | (class_ids > NUM_CLASSES))
    if bad.size:
        raise ValueError(
            f"cars196: annotation {bad[0] + 1} in {path} ({relpaths[bad[0]]}) has class "
            f"{class_ids[bad[0]]}, outside 1..{NUM_CLASSES}"
        )
    if "class_names" not in mat:
        return relpaths, class_ids, None
    names = [str(n) for n in np.atleast_1d(mat["class_names"])]
    if len(names) < class_ids.max():
        raise ValueError(
            f"cars196: {path} has {len(names)} class_names but classes up to {class_ids.max()}"
        )
    return relpaths, class_ids, {i + 1: name for i, name in enumerate(names)}
