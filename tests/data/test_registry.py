"""load_dataset: names, splits and options."""

import pytest

from cdml.data import DATASETS, SPLITS, SplitSize, load_dataset
from cdml.data.registry import register_dataset


def test_the_protocols_datasets_are_registered():
    expected = {"cub200", "cars196", "sop", "csv", "fashion-mnist", "digits", "glyphs", "folder"}
    assert expected | {"glyphs-shifted"} <= set(DATASETS)
    assert SPLITS == ("train", "test")


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown dataset name 'cub'; known: ") as error:
        load_dataset("cub", "somewhere", "train")
    assert all(name in str(error.value) for name in ("cub200", "cars196", "glyphs", "folder"))


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


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_dataset_takes_skip_bad_and_names_an_option_it_does_not_take(name):
    info = DATASETS[name]
    assert "skip_bad" in info.options
    with pytest.raises(ValueError, match=f"dataset '{name}' takes no option colour"):
        load_dataset(name, None, "train", colour=True)


def test_skip_bad_is_accepted_where_images_are_in_memory():
    plain, skipping = load_dataset("digits"), load_dataset("digits", skip_bad=True)
    assert len(plain) == len(skipping) and (plain.labels == skipping.labels).all()


def test_datasets_describe_themselves():
    assert DATASETS["sop"].ks == (1, 10, 100, 1000) and DATASETS["cub200"].ks == (1, 2, 4, 8)
    assert DATASETS["cub200"].sizes["test"] == SplitSize(5_924, 100)
    assert not DATASETS["folder"].labelled and DATASETS["glyphs"].mirror_sensitive
    assert {"strict", "check_files"} <= set(DATASETS["cub200"].options)
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("digits", "again")(lambda root, split, transform=None, *, skip_bad: 0)
    with pytest.raises(TypeError, match="must take the keyword option skip_bad"):
        register_dataset("mine", "no options")(lambda root, split, transform=None: 0)
    assert "mine" not in DATASETS


def test_skip_bad_works_through_the_cli_on_a_builtin_dataset(tmp_path):
    from cdml.cli import main

    out = tmp_path / "run"
    argv = [
        "train", "--dataset", "digits", "--loss", "triplet", "--image-size", "16",
        "--backbone", "test_resnet", "--set", "model.pretrained=false", "--epochs", "1",
        "--set", "trainer.limit_train_batches=2", "--set", "trainer.progress_bar=false",
        "--set", "trainer.report=false",
        "--set", "data.max_eval_per_class=20", "--set", "data.skip_bad=true",
    ]  # fmt: skip
    assert main([*argv, "--out", str(out)]) == 0
    assert (out / "metrics.json").is_file()
