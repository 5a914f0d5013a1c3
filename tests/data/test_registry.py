"""load_dataset: names, splits and options."""

import pytest

from cdml.data import DATASETS, SPLITS, load_dataset


def test_every_dataset_of_the_issue_is_registered():
    expected = {"cub200", "cars196", "sop", "csv", "fashion-mnist", "digits", "glyphs", "folder"}
    assert set(DATASETS) == expected
    assert SPLITS == ("train", "test")


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown dataset name 'cub'; known: cub200, cars196"):
        load_dataset("cub", "somewhere", "train")


@pytest.mark.parametrize("name", list(DATASETS))
def test_split_other_than_train_or_test_is_rejected(name, tmp_path):
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'test'\), got 'val'"):
        load_dataset(name, None if name == "digits" else tmp_path, "val")


def test_options_reach_the_loader(cub_mimic):
    dataset = load_dataset("cub200", cub_mimic.root, "train", strict=False, skip_bad=True)
    assert dataset.skip_bad
    with pytest.raises(ValueError, match="cub200: expected"):
        load_dataset("cub200", cub_mimic.root, "train", strict=True)


def test_root_is_required_for_file_datasets():
    with pytest.raises(ValueError, match="cub200: root is required"):
        load_dataset("cub200", split="train")
