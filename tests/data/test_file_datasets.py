"""Behaviour shared by the file-based datasets (CUB, Cars, SOP, CSV) on generated mimics."""

import numpy as np
import pytest
import torch

from cdml.data import DATASETS, ImageListDataset, SplitSize, build_transforms, load_dataset

SOURCES = {"cub200": "cub_mimic", "cars196": "cars_mimic", "sop": "sop_mimic", "csv": "csv_mimic"}
BENCHMARKS = ["cub200", "cars196", "sop"]


def options(name: str) -> dict:
    """Tiny mimics cannot have the published counts."""
    return {} if name == "csv" else {"strict": False}


@pytest.fixture(params=list(SOURCES))
def source(request):
    return request.param, request.getfixturevalue(SOURCES[request.param])


@pytest.fixture(params=BENCHMARKS)
def benchmark(request):
    return request.param, request.getfixturevalue(SOURCES[request.param])


@pytest.mark.parametrize("split", ["train", "test"])
def test_split_holds_its_images_with_classes_renumbered_in_key_order(source, split):
    name, mimic = source
    dataset = load_dataset(name, mimic.root, split, **options(name))

    assert isinstance(dataset, ImageListDataset)
    assert [str(p) for p in dataset.paths] == [str(p) for p in mimic.paths[split]]
    keys = sorted(set(mimic.classes[split]))
    expected = [keys.index(k) for k in mimic.classes[split]]
    assert dataset.labels.dtype == np.int64
    assert dataset.labels.tolist() == expected
    assert dataset.num_classes == len(keys) == len(dataset.class_names)


def test_train_and_test_halves_have_disjoint_classes(source):
    name, mimic = source
    train = load_dataset(name, mimic.root, "train", **options(name))
    test = load_dataset(name, mimic.root, "test", **options(name))
    assert len(train) + len(test) == sum(len(p) for p in mimic.paths.values())
    assert set(train.class_names).isdisjoint(test.class_names)
    assert len(set(train.class_names)) == train.num_classes


def test_items_are_the_listed_images_with_their_labels(source):
    name, mimic = source
    dataset = load_dataset(name, mimic.root, "test", **options(name))
    for index, red in enumerate(mimic.reds["test"]):
        image, label = dataset[index]
        assert image.mode == "RGB"
        assert abs(np.asarray(image)[..., 0].mean() - red) <= 3
        assert label == dataset.labels[index]


def test_transform_is_applied(source):
    name, mimic = source
    transform = build_transforms(8, train=False)
    image, _ = load_dataset(name, mimic.root, "train", transform, **options(name))[0]
    assert isinstance(image, torch.Tensor)
    assert image.shape == (3, 8, 8)


def test_all_missing_images_are_reported_at_once(source):
    name, mimic = source
    gone = [mimic.paths["train"][0], mimic.paths["train"][-1]]
    for path in gone:
        path.unlink()

    with pytest.raises(FileNotFoundError) as error:
        load_dataset(name, mimic.root, "train", **options(name))
    message = str(error.value)
    assert f"2 of {len(mimic.paths['train'])} image files are missing" in message
    assert all(str(path) in message for path in gone)

    unchecked = load_dataset(name, mimic.root, "train", check_files=False, **options(name))
    assert unchecked.missing_files() == [str(p) for p in gone]
    # The other half is complete and still loads.
    load_dataset(name, mimic.root, "test", **options(name))


def test_missing_root_is_named(source, tmp_path):
    name, _ = source
    absent = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_dataset(name, absent, "train", **options(name))


@pytest.mark.parametrize("split", ["train", "test"])
def test_strict_loading_rejects_counts_other_than_the_published_ones(benchmark, split):
    name, mimic = benchmark
    published = DATASETS[name].sizes[split].images
    found = len(mimic.paths[split])
    with pytest.raises(ValueError) as error:
        load_dataset(name, mimic.root, split)
    message = str(error.value)
    assert f"{name}: expected {published:,} {split} images" in message
    assert f"found {found}" in message
    assert "strict=False" in message


def test_strict_loading_accepts_the_published_counts(benchmark, monkeypatch):
    name, mimic = benchmark
    classes = len(set(mimic.classes["train"]))
    size = SplitSize(len(mimic.paths["train"]), classes)
    monkeypatch.setitem(DATASETS[name].sizes, "train", size)
    assert len(load_dataset(name, mimic.root, "train")) == size.images

    monkeypatch.setitem(DATASETS[name].sizes, "train", size._replace(classes=classes + 1))
    with pytest.raises(ValueError, match=f"expected {classes + 1} train classes"):
        load_dataset(name, mimic.root, "train")


def test_unreadable_image_is_named_or_skipped(source):
    name, mimic = source
    bad = mimic.paths["train"][0]
    bad.write_bytes(b"not an image")

    dataset = load_dataset(name, mimic.root, "train", **options(name))
    with pytest.raises(OSError, match=str(bad)):
        dataset[0]

    lenient = load_dataset(name, mimic.root, "train", skip_bad=True, **options(name))
    with pytest.warns(RuntimeWarning, match=str(bad)):
        image, label = lenient[0]
    assert label == lenient.labels[0]
    assert list(lenient.skipped) == [str(bad)]
