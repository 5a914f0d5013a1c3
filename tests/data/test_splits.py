"""Validation classes carved out of the training classes."""

import numpy as np
import pytest

from cdml.data import ArrayImageDataset, cap_per_class, split_validation_classes


def dataset_of(class_sizes):
    """Class c has class_sizes[c] images; every pixel of item i equals i (identifies it)."""
    labels = np.repeat(np.arange(len(class_sizes)), class_sizes)
    images = np.stack([np.full((2, 2), i, dtype=np.uint8) for i in range(len(labels))])
    return ArrayImageDataset(images, labels, [f"class{c}" for c in range(len(class_sizes))])


def item_ids(dataset):
    return [int(np.asarray(dataset[i][0])[0, 0]) for i in range(len(dataset))]


@pytest.mark.parametrize(("fraction", "held_out"), [(0.2, 2), (0.25, 3), (0.5, 5), (0.01, 1)])
def test_holds_out_the_rounded_fraction_of_classes_with_all_their_images(fraction, held_out):
    sizes = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]
    dataset = dataset_of(sizes)
    train, validation = split_validation_classes(dataset, fraction, seed=3)

    assert validation.num_classes == held_out
    assert train.num_classes == 10 - held_out
    assert set(train.class_names).isdisjoint(validation.class_names)
    assert sorted(item_ids(train) + item_ids(validation)) == list(range(sum(sizes)))
    for part in (train, validation):
        assert sorted(set(part.labels.tolist())) == list(range(part.num_classes))
        for i, item in enumerate(item_ids(part)):
            assert part.class_names[part.labels[i]] == dataset.class_names[dataset.labels[item]]
        assert item_ids(part) == sorted(item_ids(part))


def test_same_seed_same_split_and_seeds_differ():
    dataset = dataset_of([2] * 20)
    names = {seed: split_validation_classes(dataset, 0.3, seed)[1].class_names for seed in range(4)}
    assert split_validation_classes(dataset, 0.3, 2)[1].class_names == names[2]
    assert len({tuple(n) for n in names.values()}) > 1


def test_a_contiguous_split_holds_out_the_last_classes_whatever_the_seed():
    dataset = dataset_of([2] * 10)
    for seed in range(3):
        train, validation = split_validation_classes(dataset, 0.3, seed, how="contiguous")
        assert validation.class_names == ["class7", "class8", "class9"]
        assert train.class_names == [f"class{c}" for c in range(7)]
    with pytest.raises(ValueError, match="how must be one of random, contiguous, got 'last'"):
        split_validation_classes(dataset, 0.3, how="last")


def test_always_leaves_a_class_on_each_side():
    train, validation = split_validation_classes(dataset_of([2, 2]), 0.9)
    assert (train.num_classes, validation.num_classes) == (1, 1)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_fraction_outside_0_1_is_rejected(fraction):
    with pytest.raises(ValueError, match="fraction must lie strictly between 0 and 1"):
        split_validation_classes(dataset_of([2, 2]), fraction)


def test_single_class_cannot_be_split():
    with pytest.raises(ValueError, match="at least two classes"):
        split_validation_classes(dataset_of([4]), 0.5)


def test_cap_per_class_samples_each_class_down_and_keeps_the_rest():
    labels = np.repeat([0, 1, 2], [10, 3, 6])
    dataset = ArrayImageDataset(np.zeros((19, 2, 2), np.uint8), labels, ["a", "b", "c"])
    capped = cap_per_class(dataset, 4, seed=1)
    assert np.bincount(capped.labels).tolist() == [4, 3, 4]
    assert capped.class_names == ["a", "b", "c"]
    assert cap_per_class(dataset, 4, seed=1).labels.tolist() == capped.labels.tolist()
    with pytest.raises(ValueError, match="at least 2"):
        cap_per_class(dataset, 1)
