import json

import pytest

from cdml.cli import main
from cdml.demo import DEMO_MARK, demo_config, fashion_mnist_available, prepare_demo_folder
from cdml.training.resolve import resolve


def test_demo_budget_is_the_same_for_every_loss(tmp_path):
    configs = {
        loss: demo_config(tmp_path, loss=loss, dataset="digits", seed=3)
        for loss in ("facility", "triplet", "lifted", "npairs", "group")
    }
    configs = {loss: resolve(config) for loss, config in configs.items()}
    for config in configs.values():
        assert (config.data.batch_size, config.data.classes_per_batch) == (60, 5)
        assert (config.trainer.epochs, config.trainer.seed) == (4, 3)
        assert config.trainer.limit_train_batches == 15
    assert not configs["lifted"].model.normalize and not configs["npairs"].model.normalize
    assert configs["facility"].model.normalize and configs["group"].model.normalize


def test_demo_prefers_fashion_mnist_when_present(tmp_path):
    expected = "fashion-mnist" if fashion_mnist_available() else "digits"
    assert demo_config(tmp_path).data.dataset == expected


@pytest.mark.slow
def test_demo_runs_and_draws(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--dataset", "digits", "--epochs", "1", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"test", "untrained"}
    assert (out / "tsne.png").is_file()


def test_demo_refuses_a_folder_it_did_not_write(tmp_path, capsys, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    assert main(["demo", "--dataset", "digits", "--out", str(mine)]) == 2
    assert "is not a demo's run folder" in capsys.readouterr().err
    assert (mine / "thesis.tex").read_text() == "years of work"
    monkeypatch.chdir(mine)
    for here in (".", str(tmp_path)):
        assert main(["demo", "--dataset", "digits", "--out", here]) == 2
        assert "current folder" in capsys.readouterr().err
    assert (mine / "thesis.tex").is_file()


def test_a_demo_folder_is_replaced_by_the_next_demo(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / DEMO_MARK).touch()
    (out / "metrics.json").write_text("{}")
    prepare_demo_folder(out)
    assert out.is_dir() and not any(out.iterdir())
    prepare_demo_folder(tmp_path / "new" / "demo")  # a new folder is created
    assert (tmp_path / "new" / "demo").is_dir()
