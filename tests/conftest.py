"""Shared by the command-line tests: a one-step training run of timm's small test network on
digits, and its checkpoint."""

import pytest

from cdml.cli import main

# `cdml train` arguments of a run of seconds (16 px, one batch of 12, 20 test images a class).
TINY_RUN = [
    "--dataset", "digits", "--loss", "facility", "--image-size", "16",
    "--backbone", "test_resnet", "--set", "model.pretrained=false",
    "--batch-size", "12", "--classes-per-batch", "3", "--epochs", "1", "--no-baseline",
    "--set", "data.val_fraction=0", "--set", "data.max_eval_per_class=20",
    "--set", "trainer.limit_train_batches=1", "--set", "trainer.progress_bar=false",
    "--set", "trainer.report=false",
]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_run():
    """The arguments of :data:`TINY_RUN` (a copy)."""
    return list(TINY_RUN)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """``checkpoints/last.ckpt`` of a finished tiny run (its folder is the run's)."""
    out = tmp_path_factory.mktemp("tiny-run")
    assert main(["train", *TINY_RUN, "--out", str(out)]) == 0
    return out / "checkpoints" / "last.ckpt"
