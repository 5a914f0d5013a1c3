"""Fashion-MNIST from IDX files (generated here, and the Debian package's when installed)
and scikit-learn's digits, both split by class."""

import gzip
import struct

import numpy as np
import pytest
import sklearn.datasets

from cdml.data import load_dataset
from cdml.data.builtin import FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT, read_idx


def write_idx(path, array):
    """The IDX format written field by field: 0, 0, type 0x08, ndim, big-endian sizes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape)
    with gzip.open(path, "wb") as file:
        file.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fashion(tmp_path):
    """Four IDX files ('train': 12 images, 't10k': 6) and, concatenated in that order, the
    images and labels written."""
    rng = np.random.default_rng(0)
    parts = {"train": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 0], "t10k": [5, 4, 3, 2, 1, 0]}
    all_images, all_labels = [], []
    for prefix, labels in parts.items():
        images = rng.integers(0, 256, (len(labels), 4, 3), dtype=np.uint8)
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.array(labels))
        all_images.extend(images)
        all_labels.extend(labels)
    return tmp_path, all_images, all_labels


def test_read_idx_returns_the_stored_array(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), array)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + bytes(4), "bad magic number"),
        (bytes([0, 0, 0x08, 2, 0, 0, 0, 3]), "header truncated"),
        (bytes([0, 0, 0x08, 1, 0, 0, 0, 5, 1, 2]), "needs 13 bytes, file holds 10"),
    ],
)
def test_read_idx_rejects_bad_files_naming_them(tmp_path, content, message):
    with gzip.open(tmp_path / "bad.gz", "wb") as file:
        file.write(content)
    with pytest.raises(ValueError, match=f"bad.gz: .*{message}"):
        read_idx(tmp_path / "bad.gz")


def test_read_idx_rejects_truncated_gzip(tmp_path):
    write_idx(tmp_path / "a.gz", np.arange(4000, dtype=np.uint8) % 251)
    data = (tmp_path / "a.gz").read_bytes()
    (tmp_path / "a.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="a.gz: not a readable gzip file"):
        read_idx(tmp_path / "a.gz")


@pytest.mark.parametrize("split", ["train", "test"])
def test_fashion_mnist_combines_both_files_and_splits_by_class(fashion, split):
    root, images, labels = fashion
    dataset = load_dataset("fashion-mnist", root, split, strict=False)

    wanted = [i for i in range(len(labels)) if (labels[i] < 5) == (split == "train")]
    offset = 0 if split == "train" else 5
    assert dataset.labels.tolist() == [labels[i] - offset for i in wanted]
    assert dataset.class_names == list(FASHION_MNIST_CLASSES[offset : offset + 5])
    for position, index in enumerate(wanted):
        image, _ = dataset[position]
        assert image.mode == "L"
        np.testing.assert_array_equal(np.asarray(image), images[index])


def test_fashion_mnist_strict_checks_the_published_count(fashion):
    with pytest.raises(ValueError, match="expected 35,000 train images in the IDX files in"):
        load_dataset("fashion-mnist", fashion[0], "train")


def test_fashion_mnist_missing_file_is_named(fashion):
    (fashion[0] / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz"):
        load_dataset("fashion-mnist", fashion[0], "train", strict=False)


def test_fashion_mnist_rejects_image_and_label_counts_that_differ(fashion):
    write_idx(fashion[0] / "train-labels-idx1-ubyte.gz", np.arange(10))
    with pytest.raises(ValueError, match="holds 12 images but .*10 labels"):
        load_dataset("fashion-mnist", fashion[0], "train", strict=False)


@pytest.mark.skipif(
    not FASHION_MNIST_ROOT.is_dir(),
    reason=f"Debian package dataset-fashion-mnist not installed (no {FASHION_MNIST_ROOT})",
)
def test_fashion_mnist_reads_the_debian_files():
    dataset = load_dataset("fashion-mnist", split="train")
    assert len(dataset) == 35_000
    assert np.bincount(dataset.labels).tolist() == [7_000] * 5
    image, label = dataset[0]
    assert image.size == (28, 28)
    assert dataset.class_names[label] in FASHION_MNIST_CLASSES[:5]


@pytest.mark.parametrize("split", ["train", "test"])
def test_digits_split_by_class_with_intensities_scaled_to_bytes(split):
    bunch = sklearn.datasets.load_digits()
    dataset = load_dataset("digits", split=split)

    wanted = [i for i, t in enumerate(bunch.target) if (t < 5) == (split == "train")]
    offset = 0 if split == "train" else 5
    assert dataset.labels.tolist() == [bunch.target[i] - offset for i in wanted]
    assert dataset.class_names == [str(d) for d in range(offset, offset + 5)]
    image, _ = dataset[3]
    expected = [[int(v * 255 / 16 + 0.5) for v in row] for row in bunch.images[wanted[3]]]
    assert np.asarray(image).tolist() == expected


def test_digits_takes_no_root(tmp_path):
    with pytest.raises(ValueError, match="digits: takes no root"):
        load_dataset("digits", tmp_path, "train")
