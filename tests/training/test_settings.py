"""A setting is declared once, with its field: a new one is found in --help, taken by --set
and by its flag, range-checked with a message naming both, and recorded in config.yaml."""

from dataclasses import dataclass, field

import pytest
import yaml

from cdml import cli
from cdml.cli import main
from cdml.training import config as config_module
from cdml.training.config import DataConfig, RunConfig, TrainerConfig
from cdml.training.settings import described, flags, lightning_arguments, setting


@dataclass(frozen=True)
class DataWithJitter(DataConfig):
    """The data section with one setting more, written as a contributor would."""

    jitter: float = setting(0.0, flag="--jitter", finite=True, at_least=0,
                            help="colour jitter strength of the train crops")  # fmt: skip


@dataclass(frozen=True)
class RunWithJitter(RunConfig):
    data: DataWithJitter = field(default_factory=DataWithJitter)


@pytest.fixture
def jitter(monkeypatch):
    monkeypatch.setattr(config_module, "RunConfig", RunWithJitter)
    monkeypatch.setattr(cli, "RunConfig", RunWithJitter)


def test_a_new_setting_is_in_the_help_the_flags_the_checks_and_config_yaml(
    jitter, tiny_run, tmp_path, capsys
):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--jitter JITTER" in capsys.readouterr().out.replace("\n", " ")
    assert main(["train", *tiny_run, "--jitter", "-1", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "data.jitter (--jitter) must be finite and >= 0, got -1.0" in err
    nan = ["--set", "data.jitter=.nan"]
    assert main(["train", *tiny_run, *nan, "--out", str(tmp_path / "n")]) == 2
    assert "data.jitter (--jitter) must be finite" in capsys.readouterr().err
    out = tmp_path / "run"
    assert main(["train", *tiny_run, "--set", "data.jitter=0.25", "--out", str(out)]) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["data"]["jitter"] == 0.25


def test_flags_checks_and_the_trainers_arguments_come_from_the_declarations():
    assert flags(RunConfig)["data.image_size"] == "--image-size"
    assert described("trainer.epochs", RunConfig) == "trainer.epochs (--epochs)"
    assert described("optim.head_lr", RunConfig) == "optim.head_lr"
    arguments = lightning_arguments(TrainerConfig(epochs=3))
    assert arguments["max_epochs"] == 3 and arguments["enable_progress_bar"] is True
    assert "seed" not in arguments and "monitor" not in arguments


def test_a_flag_and_set_read_a_value_alike(tiny_run, tmp_path, capsys):
    for argv in (["--epochs", "x"], ["--set", "trainer.epochs=x"]):
        assert main(["train", *tiny_run, *argv, "--out", str(tmp_path / "r")]) == 2
        assert "trainer.epochs must be int, got 'x'" in capsys.readouterr().err
