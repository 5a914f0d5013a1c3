"""One registry for every method: registering, creating, and user losses through the CLI."""

import json
from types import SimpleNamespace

import pytest
import torch
import yaml
from torch import nn

from cdml.cli import main
from cdml.losses import (
    METHODS,
    ExternalLoss,
    GroupLoss,
    MetricLoss,
    RunInfo,
    create_method,
    method_class,
    register_method,
)
from cdml.training.config import load_config, migrate
from cdml.training.module import MetricLearningModule

TINY = [
    "--dataset", "digits", "--image-size", "16",
    "--backbone", "test_resnet", "--set", "model.pretrained=false",
    "--batch-size", "12", "--classes-per-batch", "3", "--epochs", "1",
    "--set", "data.resize_ratio=1.0", "--set", "data.max_eval_per_class=20",
    "--set", "trainer.limit_train_batches=3", "--set", "trainer.progress_bar=false",
    "--set", "trainer.report=false",
    "--set", "trainer.log_every_n_steps=1",
]  # fmt: skip


class ContrastiveLoss(nn.Module):
    """A plain ``loss(embeddings, labels)`` module, as a user writes one."""

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        distances = torch.cdist(embeddings, embeddings)
        same = labels[:, None] == labels[None, :]
        apart = torch.relu(self.margin - distances)
        return torch.where(same, distances, apart).pow(2).mean()


class MarginAsLoss(nn.Module):
    """Returns its margin: shows which constructor arguments reached it."""

    def __init__(self, margin: float, num_classes: int, embedding_size: int) -> None:
        super().__init__()
        self.margin, self.num_classes, self.embedding_size = margin, num_classes, embedding_size

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return embeddings.sum() * 0 + self.margin


@pytest.fixture
def registered_loss():
    """A method defined in this file, registered for the duration of a test."""

    @register_method("toy-contrastive")
    class ToyContrastive(MetricLoss):
        def __init__(self, margin: float = 1.0) -> None:
            super().__init__()
            self.loss = ContrastiveLoss(margin)

        def compute(self, embeddings, labels):
            return self.loss(embeddings, labels)

    yield ToyContrastive
    METHODS.unregister("toy-contrastive")


def metrics_of(out):
    return json.loads((out / "metrics.json").read_text())


def test_a_loss_registered_in_a_test_file_trains_through_the_cli(registered_loss, tmp_path):
    out = tmp_path / "run"
    argv = ["train", *TINY, "--loss", "toy-contrastive", "--set", "loss.params.margin=0.5"]
    assert main([*argv, "--out", str(out)]) == 0
    assert set(metrics_of(out)["test"]) >= {"recall@1", "nmi", "map@r"}
    assert load_config(out / "config.yaml").loss.params == {"margin": 0.5}
    header = (out / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert "train/loss_step" in header.split(",")


def test_a_users_module_trains_by_its_import_name(tmp_path):
    out = tmp_path / "run"
    argv = ["train", *TINY, "--loss", f"{__name__}:ContrastiveLoss"]
    assert main([*argv, "--set", "loss.params.margin=0.5", "--out", str(out)]) == 0
    assert metrics_of(out)["test"]["recall@1"] > 0
    assert yaml.safe_load((out / "config.yaml").read_text())["loss"]["name"].endswith(
        ":ContrastiveLoss"
    )


def test_pytorch_metric_learning_losses_train_and_evaluate(tmp_path):
    pytest.importorskip("pytorch_metric_learning", reason="pytorch-metric-learning not installed")
    out = tmp_path / "run"
    argv = ["train", *TINY, "--loss", "pytorch_metric_learning.losses:MultiSimilarityLoss"]
    assert main([*argv, "--set", "loss.params.alpha=2.0", "--out", str(out)]) == 0
    metrics = metrics_of(out)
    assert 0 < metrics["test"]["recall@1"] <= 1 and "untrained" in metrics


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no-such-loss", "unknown loss 'no-such-loss'; known: cbswr, facility, "),
        ("no_such_package.losses:Loss", "cannot import no_such_package.losses"),
        ("os:path", "os has no nn.Module class path"),
        (f"{__name__}:metrics_of", "has no nn.Module class metrics_of"),
        ("os.system('true'):x", "not of the form package.module:ClassName"),
    ],
)
def test_bad_loss_names_are_one_line_errors(name, message, tmp_path, capsys):
    assert main(["train", *TINY, "--loss", name, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_register_method_refuses_clashes_and_non_methods():
    with pytest.raises(ValueError, match="'facility' is already registered"):
        register_method("facility")(type("Other", (MetricLoss,), {}))
    with pytest.raises(TypeError, match="decorates a Method subclass"):
        register_method("plain")(ContrastiveLoss)
    with pytest.raises(ValueError, match="lower-case letters"):
        register_method("Bad Name")
    assert "plain" not in METHODS


def test_create_method_gives_what_a_method_needs_from_the_run():
    run = RunInfo(embedding_size=8, num_classes=5)
    group = create_method("group", run, temperature=2.0)
    assert isinstance(group, GroupLoss)
    assert (group.classifier.in_features, group.classifier.out_features) == (8, 5)
    assert create_method("group", run, num_classes=3).classifier.out_features == 3
    with pytest.raises(ValueError, match="loss.params of 'group'.*num_classes"):
        create_method("group", RunInfo(embedding_size=8))
    # A loss of another library gets the run's sizes where its constructor takes them.
    external = create_method(f"{__name__}:MarginAsLoss", run, margin=0.25)
    assert (
        isinstance(external, ExternalLoss)
        and method_class(f"{__name__}:MarginAsLoss") is ExternalLoss
    )
    assert (external.loss.num_classes, external.loss.embedding_size) == (5, 8)
    value, logged = external.batch_loss(nn.Identity(), (torch.randn(4, 8), torch.arange(4)))
    assert value.item() == 0.25 and logged == {}


def test_methods_declare_their_batches_and_schedules():
    assert all(METHODS[name].batch_kind == "views" for name in ("cbswr", "sme", "mom"))
    facility = create_method("facility", margin_multiplier=2.0, margin_decay=0.5)
    (decay,) = facility.callbacks()
    logged = {}
    module = SimpleNamespace(log=lambda name, value: logged.update({name: value}))
    decay.on_train_epoch_start(SimpleNamespace(current_epoch=2), module)
    assert facility.margin_multiplier == logged["train/margin_multiplier"] == 2.0 * 0.5**2
    run = RunInfo(embedding_size=4, num_classes=2)
    (warmup,) = create_method("group", run, warmup_epochs=1).callbacks()
    assert warmup.epochs == 1
    assert create_method("group", run).callbacks() == []


def test_configs_of_an_earlier_layout_still_load():
    old = {
        "loss": {"name": "facility", "margin_decay": 0.9, "params": {"pam_iters": 2}},
        "optim": {"warmup_epochs": 0, "head_lr": 0.1},
    }
    assert migrate(old) == {
        "loss": {"name": "facility", "params": {"margin_decay": 0.9, "pam_iters": 2}},
        "optim": {"head_lr": 0.1},
    }
    group = migrate(
        {"loss": {"name": "group", "margin_decay": 0.94}, "optim": {"warmup_epochs": 3}}
    )
    assert group == {"loss": {"name": "group", "params": {"warmup_epochs": 3}}, "optim": {}}


def test_checkpoints_naming_the_method_loss_still_load():
    module = MetricLearningModule(
        nn.Linear(2, 2), create_method("group", RunInfo(embedding_size=2, num_classes=3)), None
    )
    state = {f"loss.{k}": v for k, v in module.method.state_dict().items()}
    checkpoint = {"state_dict": state}
    module.on_load_checkpoint(checkpoint)
    assert set(checkpoint["state_dict"]) == {"method.classifier.weight", "method.classifier.bias"}
