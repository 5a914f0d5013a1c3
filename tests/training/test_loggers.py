"""Experiment trackers by name: the default CSV and TensorBoard logs, MLflow's local store and
W&B's offline mode (where installed), refusals by name; SyncBatchNorm reaches the trainer."""

import pytest

from cdml.cli import main
from cdml.training import RunConfig, apply_overrides
from cdml.training.loggers import LOGGERS, check_loggers, register_logger


def test_unknown_or_uninstalled_loggers_are_refused_by_name():
    with pytest.raises(ValueError, match="trainer.loggers: unknown logger 'neptune'"):
        check_loggers(["csv", "neptune"])
    register_logger("absent", package="no_such_package_here")(lambda out, version: None)
    try:
        with pytest.raises(ValueError, match="absent needs the package no_such_package_here"):
            check_loggers(["absent"])
    finally:
        LOGGERS.unregister("absent")


def test_mlflow_without_a_store_it_can_open_is_refused_before_any_work(monkeypatch, tmp_path):
    import importlib.util

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: object() if name == "mlflow" else
        (None if name == "sqlalchemy" else real(name))
    )  # fmt: skip
    with pytest.raises(ValueError, match="mlflow's default store"):
        check_loggers(["mlflow"])


def test_the_csv_logger_alone(tiny_run, tmp_path):
    out = tmp_path / "run"
    assert main(["train", *tiny_run, "--set", "trainer.loggers=[csv]", "--out", str(out)]) == 0
    assert (out / "logs" / "version_0" / "metrics.csv").is_file()
    assert not list((out / "logs" / "version_0").glob("events.out.tfevents.*"))


def test_mlflow_local_store(tiny_run, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed")
    out = tmp_path / "run"
    store = (tmp_path / "mlruns").as_uri()  # a file store: mlflow-skinny has no SQLite one
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    assert main(["train", *tiny_run, "--set", "trainer.loggers=[mlflow]", "--out", str(out)]) == 0
    client = mlflow.tracking.MlflowClient(tracking_uri=store)
    (run,) = client.search_runs([client.get_experiment_by_name("cdml").experiment_id])
    assert "train/loss_epoch" in run.data.metrics and run.info.run_name == "run-version_0"


def test_wandb_offline(tiny_run, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    assert main(["train", *tiny_run, "--set", "trainer.loggers=[wandb]", "--out", str(out)]) == 0
    assert list((out / "wandb").glob("offline-run-*"))


def test_sync_batchnorm_reaches_the_trainer(tmp_path):
    from cdml.training.run import _trainer

    config = apply_overrides(RunConfig(), {"trainer.sync_batchnorm": True})
    trainer = _trainer(config, tmp_path, callbacks=[])
    assert trainer._accelerator_connector._layer_sync is not None  # Lightning's TorchSyncBatchNorm
