"""Defaults that run everywhere: batches and validation classes resolved from the data."""

import os

import pytest
import torch

from cdml.cli import main
from cdml.data.glyphs import FONT_ROOT, find_fonts
from cdml.demo import fashion_mnist_available
from cdml.losses import METHODS, VIEWS, create_method
from cdml.training import RunConfig, apply_overrides
from cdml.training.datamodule import MetricLearningDataModule, load_data
from cdml.training.resolve import resolve

UNSUPERVISED = [name for name, cls in METHODS.items() if cls.batch_kind == VIEWS]

STANDARD_FONTS = FONT_ROOT.is_dir() and len(find_fonts()) >= 100
BUILTIN = [
    "digits",
    pytest.param(
        "fashion-mnist",
        marks=pytest.mark.skipif(
            not fashion_mnist_available() and not os.environ.get("CI"),
            reason="needs dataset-fashion-mnist (make datasets); CI installs it",
        ),
    ),
    pytest.param(
        "glyphs",
        marks=pytest.mark.skipif(
            not STANDARD_FONTS and not os.environ.get("CI"),
            reason="needs the standard font set (make datasets); CI installs it",
        ),
    ),
]


def data_of(dataset: str, loss: str, **settings) -> MetricLearningDataModule:
    settings = {"data.dataset": dataset, "loss.name": loss, "data.image_size": 16, **settings}
    config = resolve(apply_overrides(RunConfig(), settings))  # checked before any data loads
    return load_data(config, mean=(0.5,) * 3, std=(0.5,) * 3)[1]


@pytest.mark.parametrize("dataset", BUILTIN)
@pytest.mark.parametrize("loss", list(METHODS))
def test_every_builtin_dataset_and_loss_gets_batches(dataset, loss):
    data = data_of(dataset, loss)
    config = data.config
    assert config.batch_size in (128, 64)
    batch = next(iter(data.train_dataloader()))
    if loss in UNSUPERVISED:
        assert config.val_fraction == 0 and data.val_set is None
        return
    images, labels = batch
    assert images.shape == (config.batch_size, 3, 16, 16)
    assert len(labels.unique()) == config.classes_per_batch
    # The paper's C/n where the classes allow it; all the classes where they are fewer.
    wanted = config.batch_size // METHODS[loss].images_per_class
    assert config.classes_per_batch == min(wanted, data.num_train_classes)
    if dataset == "glyphs":  # many classes: some are held out for model selection
        assert config.val_fraction == 0.2 and data.val_set.num_classes >= 20
    else:  # five training classes: too few to hold out any
        assert config.val_fraction == 0 and data.val_set is None
    params = {"embedding_size": 8, "num_classes": data.num_train_classes} if loss == "group" else {}
    embeddings = torch.nn.functional.normalize(torch.randn(len(labels), 8), dim=1)
    assert torch.isfinite(create_method(loss, **params)(embeddings, labels))


def test_a_contiguous_validation_split_holds_out_the_last_training_classes():
    settings = {"data.val_fraction": 0.4, "data.val_split": "contiguous"}
    data = data_of("digits", "facility", **settings)  # training digits 0-4
    assert data.val_set.class_names == ["3", "4"]
    assert "(contiguous)" in data.describe()


def test_an_unsupervised_run_says_whether_it_reads_labels():
    assert "labels not read" in data_of("digits", "sme").describe()
    asked = data_of("digits", "sme", **{"data.val_fraction": 0.4}).describe()
    assert "labels only to hold out validation classes" in asked


def test_a_value_the_data_cannot_satisfy_names_its_flag():
    with pytest.raises(ValueError, match=r"--classes-per-batch\) is 16.*holds 5 classes"):
        data_of("digits", "triplet", **{"data.classes_per_batch": 16})
    with pytest.raises(ValueError, match=r"--classes-per-batch, 4\) exceeds.*--batch-size, 3"):
        data_of("digits", "triplet", **{"data.classes_per_batch": 4, "data.batch_size": 3})


def test_train_with_no_batch_flags(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--dataset", "digits", "--loss", "triplet", "--epochs", "1",
            "--image-size", "16", "--backbone", "test_resnet", "--set", "model.pretrained=false",
            "--set", "trainer.limit_train_batches=2", "--set", "trainer.progress_bar=false",
            "--set", "trainer.report=false",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "batches of 128 from 5 classes" in printed
    written = (out / "config.yaml").read_text()
    assert "batch_size: 128" in written and "classes_per_batch: 5" in written
    assert main([*argv[:-1], str(tmp_path / "bad"), "--classes-per-batch", "9"]) == 2
    assert "--classes-per-batch" in capsys.readouterr().err


def test_a_validation_split_of_one_class_is_refused():
    with pytest.raises(ValueError, match=r"val_fraction 0.2 holds out 1 of the 5 training"):
        data_of("digits", "triplet", **{"data.val_fraction": 0.2})


@pytest.mark.parametrize("loss", ["facility", "sme"])
def test_lightning_gives_every_training_loader_a_new_epoch(loss):
    # The views batches once replayed epoch 0: Lightning's set_epoch did not reach them.
    from lightning.fabric.utilities.data import _set_sampler_epoch  # what the fit loop calls

    loader = data_of("digits", loss).train_dataloader()
    epochs = []
    for epoch in (0, 1, 0):
        _set_sampler_epoch(loader, epoch)
        epochs.append(next(iter(loader.batch_sampler)))
    assert epochs[0] == epochs[2] and epochs[0] != epochs[1]


def test_loading_workers_come_from_the_machine_unless_given(monkeypatch):
    from cdml.data import loading

    monkeypatch.setattr(loading, "usable_cores", lambda: 5)
    loader = data_of("digits", "facility").train_dataloader()
    assert (loader.num_workers, loader.persistent_workers, loader.pin_memory) == (4, True, False)
    given = data_of("digits", "facility", **{"data.num_workers": 0})
    assert given.train_dataloader().num_workers == 0
    assert given.test_dataloader().num_workers == 0
