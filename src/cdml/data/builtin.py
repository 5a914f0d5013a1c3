"""Small datasets that need no download: Fashion-MNIST from its IDX files, scikit-learn digits.

Both are split by class for zero-shot work: classes 0-4 train, 5-9 test.
"""

from __future__ import annotations

import gzip
import math
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cdml.data.array_dataset import ArrayImageDataset
from cdml.data.files import require_dir, require_file
from cdml.data.registry import SplitSize, register_dataset
from cdml.data.zero_shot import check_expected_size, check_split

# Where the Debian/Ubuntu package `dataset-fashion-mnist` installs the files.
FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "t10k": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
TRAIN_CLASSES = 5  # digits 0..4 train, 5..9 test
_IDX_UBYTE = 0x08


def read_idx(path: Path) -> np.ndarray:
    """A gzip-compressed IDX file of unsigned bytes as a uint8 array of its stored shape.

    Format: two zero bytes, type code 0x08 (ubyte), number of dimensions d, d big-endian
    uint32 sizes, then the data. Raises ``ValueError`` naming the file when it is not
    readable gzip, has a bad header, or holds too few or too many bytes.
    """
    try:
        with gzip.open(path, "rb") as file:
            data = file.read()
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: not a readable gzip file ({err})") from err
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != _IDX_UBYTE:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: IDX header truncated")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + math.prod(shape)
    if len(data) != expected:
        raise ValueError(
            f"{path}: IDX shape {shape} needs {expected:,} bytes, file holds {len(data):,} "
            "(truncated or corrupt?)"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


@register_dataset(
    "fashion-mnist",
    "Fashion-MNIST (apt-get install dataset-fashion-mnist)",
    sizes={"train": SplitSize(35_000, 5), "test": SplitSize(35_000, 5)},
)
def load_fashion_mnist(
    root: str | Path | None = None,
    split: str = "train",
    transform: Callable[[Any], Any] | None = None,
    *,
    strict: bool = True,
    skip_bad: bool = False,
) -> ArrayImageDataset:
    """Fashion-MNIST (Xiao et al., 2017) split by class, 28x28 grayscale PIL images.

    The official train and test files are combined (70,000 images) and split by class:
    ``"train"`` holds classes 0-4 (T-shirt/top ... Coat, 35,000 images), ``"test"`` classes
    5-9 (Sandal ... Ankle boot, 35,000 images), renumbered 0..4.

    Args:
        root: folder holding the four IDX files ``{train,t10k}-{images-idx3,labels-idx1}
            -ubyte.gz``; default ``FASHION_MNIST_ROOT``, where the Debian package
            ``dataset-fashion-mnist`` installs them.
        split: ``"train"`` or ``"test"``.
        transform: applied to each PIL image (mode ``"L"``).
        strict: require 35,000 images in the split.
        skip_bad: accepted for every dataset; images in memory have nothing to skip.
    """
    check_split(split)
    root = require_dir(
        FASHION_MNIST_ROOT if root is None else root,
        "fashion-mnist",
        "the folder of the four IDX .gz files; on Debian/Ubuntu: "
        "apt-get install dataset-fashion-mnist",
    )
    images, labels = [], []
    for image_name, label_name in FASHION_MNIST_FILES.values():
        image_file = require_file(root / image_name, "fashion-mnist")
        label_file = require_file(root / label_name, "fashion-mnist")
        part_images, part_labels = read_idx(image_file), read_idx(label_file)
        if part_images.ndim != 3 or part_labels.ndim != 1:
            raise ValueError(
                f"fashion-mnist: expected (n, H, W) images in {image_file} and (n,) labels in "
                f"{label_file}, got {part_images.shape} and {part_labels.shape}"
            )
        if len(part_images) != len(part_labels):
            raise ValueError(
                f"fashion-mnist: {image_file} holds {len(part_images):,} images but "
                f"{label_file} {len(part_labels):,} labels"
            )
        if part_labels.size and part_labels.max() >= len(FASHION_MNIST_CLASSES):
            raise ValueError(f"fashion-mnist: {label_file} holds labels above 9")
        images.append(part_images)
        labels.append(part_labels)
    if images[0].shape[1:] != images[1].shape[1:]:
        raise ValueError(f"fashion-mnist: image sizes differ between the files in {root}")
    dataset = _class_split(
        np.concatenate(images), np.concatenate(labels), FASHION_MNIST_CLASSES, split, transform
    )
    if strict:
        check_expected_size(
            "fashion-mnist", split, len(dataset), dataset.num_classes, f"the IDX files in {root}"
        )
    return dataset


@register_dataset("digits", "scikit-learn's handwritten digits")
def load_digits(
    root: str | Path | None = None,
    split: str = "train",
    transform: Callable[[Any], Any] | None = None,
    *,
    skip_bad: bool = False,
) -> ArrayImageDataset:
    """scikit-learn's bundled handwritten digits (1,797 images, 8x8), split by class:
    ``"train"`` digits 0-4, ``"test"`` digits 5-9, renumbered 0..4; grayscale PIL images
    with the 0-16 intensities scaled to 0-255. Takes no ``root``; ``skip_bad`` is accepted
    for every dataset (images in memory have nothing to skip).
    """
    check_split(split)
    if root is not None:
        raise ValueError(f"digits: takes no root (it ships with scikit-learn), got {root}")
    from sklearn.datasets import load_digits as sklearn_digits  # heavy import, only here

    bunch = sklearn_digits()
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)
    names = tuple(str(d) for d in range(10))
    return _class_split(images, bunch.target, names, split, transform)


def _class_split(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: tuple[str, ...],
    split: str,
    transform: Callable[[Any], Any] | None,
) -> ArrayImageDataset:
    """Classes ``0..TRAIN_CLASSES-1`` for ``"train"``, the rest for ``"test"``, renumbered."""
    offset = 0 if split == "train" else TRAIN_CLASSES
    names = class_names[:TRAIN_CLASSES] if split == "train" else class_names[TRAIN_CLASSES:]
    keep = np.flatnonzero((labels < TRAIN_CLASSES) == (split == "train"))
    return ArrayImageDataset(images[keep], labels[keep].astype(np.int64) - offset, names, transform)
