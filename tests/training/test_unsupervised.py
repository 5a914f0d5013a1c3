"""The unsupervised methods through the command line on tiny data."""

import csv
import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from cdml.cli import main
from cdml.data import load_dataset
from cdml.losses._schedules import CollapseWarning

TINY = [
    "--image-size", "16", "--backbone", "test_resnet", "--set", "model.pretrained=false",
    "--batch-size", "16", "--set", "data.resize_ratio=1.0", "--set", "data.max_eval_per_class=30",
    "--set", "trainer.limit_train_batches=2", "--set", "trainer.progress_bar=false",
    "--set", "trainer.report=false",
    "--set", "trainer.log_every_n_steps=1",
]  # fmt: skip
FOUR_CLUSTERS = ["--set", "loss.params.num_clusters=4"]


def logged_columns(run):
    return (run / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")


@pytest.fixture(scope="module")
def digit_images(tmp_path_factory):
    """Digits 0-9 as PNG files, 12 per class."""
    folder = tmp_path_factory.mktemp("digits")
    digits = load_digits()
    rows = []
    for label in range(10):
        for i in np.flatnonzero(digits.target == label)[:12]:
            path = folder / f"{label}_{i}.png"
            Image.fromarray((digits.images[i] * 15).astype(np.uint8)).save(path)
            rows.append((label, path.name, "train" if label < 5 else "test"))
    return folder, rows


def write_csv(path, rows):
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["label", "path", "split"])
        writer.writerows(rows)
    return path


def test_cbswr_trains_logs_its_terms_and_is_tested(tmp_path):
    out = tmp_path / "run"
    argv = [
        "train",
        "--dataset",
        "digits",
        "--loss",
        "cbswr",
        *TINY,
        *FOUR_CLUSTERS,
        "--epochs",
        "1",
    ]
    assert main([*argv, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"test", "untrained", "epochs"} and "val" not in metrics
    columns = logged_columns(out)
    for term in ("metric", "rim", "reconstruction", "non_empty_clusters", "cluster_entropy"):
        assert f"train/{term}_step" in columns, term
    config = (out / "config.yaml").read_text()
    assert "embedding_size: 128" in config and "val_fraction: 0.0" in config


def test_testing_the_untrained_model_first_leaves_training_unchanged(tmp_path):
    """A tuner's trial tests nothing, the run of its best config tests the untrained model
    first: CBSwR's cluster head draws dropout from the global random state, which evaluation
    must not move, or the retrained config is another model than the trial's."""
    argv = ["train", "--dataset", "digits", "--loss", "cbswr", *TINY, *FOUR_CLUSTERS]
    states = []
    for run, extra in (("tested", []), ("untested", ["--no-baseline"])):
        assert main([*argv, "--epochs", "1", *extra, "--out", str(tmp_path / run)]) == 0
        last = tmp_path / run / "checkpoints" / "last.ckpt"
        states.append(torch.load(last, weights_only=True)["state_dict"])
    assert states[0].keys() == states[1].keys()
    for name, tensor in states[0].items():
        assert torch.equal(tensor, states[1][name]), name


@pytest.mark.parametrize("loss", ["sme", "mom"])
def test_baselines_train_and_resume(loss, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--dataset", "digits", "--loss", loss, *TINY, "--no-baseline"]
    assert main([*argv, "--epochs", "1", "--out", str(out)]) == 0
    mined = capsys.readouterr().out.count("anchors in")
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2"]) == 0
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2
    # MOM mines (and says so) once; the resumed run reuses its tuples
    assert (mined, capsys.readouterr().out.count("anchors in")) == (
        (1, 0) if loss == "mom" else (0, 0)
    )
    if loss == "mom":  # the mined tuples travel in the checkpoint
        state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        train_images = len(load_dataset("digits", None, "train"))
        tuples = state["method._extra_state"]
        assert tuples["images"] == train_images  # fewer than 8192: all are anchors
        assert tuples["positives"].shape[0] == len(tuples["anchors"]) == train_images


def test_training_never_reads_the_training_labels(digit_images, tmp_path):
    folder, rows = digit_images
    rng = np.random.default_rng(0)
    train_labels = [label for label, _, split in rows if split == "train"]
    shuffled = iter(rng.permutation(train_labels))
    variants = {
        "true": rows,
        "shuffled": [(next(shuffled), p, s) if s == "train" else (y, p, s) for y, p, s in rows],
        "absent": [("x", p, s) if s == "train" else (y, p, s) for y, p, s in rows],
    }
    states, results = {}, {}
    for name, variant in variants.items():
        table = write_csv(folder / f"{name}.csv", variant)
        out = tmp_path / name
        argv = ["train", "--dataset", "csv", "--data-root", str(table), "--loss", "cbswr"]
        argv += [*TINY, *FOUR_CLUSTERS, "--set", "loss.params.neighbour_pairs=true"]
        assert main([*argv, "--epochs", "2", "--no-baseline", "--out", str(out)]) == 0
        states[name] = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
        results[name] = json.loads((out / "metrics.json").read_text())["test"]
    for name in ("shuffled", "absent"):
        for key, value in states["true"]["state_dict"].items():
            assert torch.equal(states[name]["state_dict"][key], value), (name, key)
        assert results[name] == results["true"]


def test_an_unlabelled_folder_trains_without_evaluation(digit_images, tmp_path, capsys):
    folder, _ = digit_images
    out = tmp_path / "run"
    argv = ["train", "--dataset", "folder", "--data-root", str(folder), "--loss", "sme", *TINY]
    assert main([*argv, "--epochs", "1", "--out", str(out)]) == 0
    assert "no labelled test split" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert "test" not in metrics and metrics["epochs"] == 1
    assert (out / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--val-split", "last"], "--val-split"),
        (["--set", "loss.params.colour=1"], "loss.params of 'cbswr'"),
        (["--set", "loss.params.rim_weight=-1"], "rim_weight must be finite"),
    ],
)
def test_bad_settings_are_named(extra, message, tmp_path, capsys):
    argv = ["train", "--dataset", "digits", "--loss", "cbswr", *TINY, *extra]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err


def test_a_collapsed_clustering_is_reported():
    warning = CollapseWarning(num_clusters=8)
    trainer = SimpleNamespace(current_epoch=0)
    for used in (1.0, 2.0):
        warning.on_train_batch_end(trainer, None, {"non_empty_clusters": torch.tensor(used)},
                                   None, 0)  # fmt: skip
    with pytest.warns(UserWarning, match="collapsed, batches used 1.5 of 8 clusters"):
        warning.on_train_epoch_end(trainer, None)
    warning.on_train_batch_end(trainer, None, {"non_empty_clusters": torch.tensor(6.0)}, None, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warning.on_train_epoch_end(trainer, None)


def test_a_sigterm_during_repairing_stops_the_run_as_lightning_does():
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from cdml.losses._schedules import Repairing

    class Mining:
        def pairing(self, features, images, report, stop):
            assert stop()  # the trainer received SIGTERM
            raise InterruptedError("stopped")

    data = SimpleNamespace(pairing_dataloader=lambda indices=None: [], train_set=[], sampler=None)
    trainer = SimpleNamespace(datamodule=data, received_sigterm=True)
    with pytest.raises(SIGTERMException):
        Repairing(Mining()).on_train_epoch_start(trainer, SimpleNamespace(print=print))


def test_neighbour_pairs_follow_cosine_similarity_as_the_released_code():
    from cdml.losses.cbswr import _nearest_other

    # Row 0's nearest by Euclidean distance is row 2, by cosine similarity row 1.
    features = torch.tensor([[1.0, 0.0], [5.0, 0.3], [0.7, 0.7]])
    assert _nearest_other(features).tolist() == [1, 0, 1]
