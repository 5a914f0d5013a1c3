"""The weights a run validates, checkpoints and tests with under trainer.ema_decay and
trainer.backbone_interpolation (WiSE-FT)."""

import json

import pytest
import torch

from cdml.cli import main
from cdml.inference import evaluate_embeddings

RUN = [
    "--dataset", "digits", "--loss", "facility", "--image-size", "16",
    "--backbone", "test_resnet", "--set", "model.pretrained=false", "--batch-size", "12",
    "--classes-per-batch", "3",
    "--epochs", "2", "--no-baseline", "--set", "data.val_fraction=0.4",
    "--set", "trainer.limit_train_batches=3",
    "--set", "trainer.progress_bar=false", "--set", "trainer.report=false",
    "--set", "optim.backbone_lr=1e-2",
]  # fmt: skip


def train(out, *extra):
    assert main(["train", *RUN, "--out", str(out), *extra]) == 0
    return torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)


def backbone(state):
    return {k: v for k, v in state.items() if k.startswith("model.backbone.")}


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """The weights the runs start from: those of a run interpolated all the way back."""
    out = tmp_path_factory.mktemp("alpha0")
    return train(out, "--set", "trainer.backbone_interpolation=0")


def test_wise_ft_interpolates_the_backbone_only(start, tmp_path):
    half = train(tmp_path / "half", "--set", "trainer.backbone_interpolation=0.5")
    saved, trained = half["state_dict"], half["current_model_state"]
    start_backbone = backbone(start["state_dict"])
    moved = 0
    for name, value in backbone(saved).items():
        if value.is_floating_point():
            expected = torch.lerp(start_backbone[name], trained[name], 0.5)
            torch.testing.assert_close(value, expected)
            moved += not torch.equal(start_backbone[name], trained[name])
    assert moved > 0, "training moved no backbone weight: the test shows nothing"
    head = [name for name in saved if name.startswith("model.head.")]
    assert head and all(torch.equal(saved[name], trained[name]) for name in head)


def test_alpha_one_is_the_trained_model(tmp_path):
    run = train(tmp_path, "--set", "trainer.backbone_interpolation=1")
    for name, value in run["state_dict"].items():
        torch.testing.assert_close(value, run["current_model_state"][name])


def test_a_moving_average_is_what_is_tested(tmp_path):
    out = tmp_path / "ema"
    # No validation classes: the last checkpoint, saved with both sets of weights, is tested.
    run = train(out, "--set", "trainer.ema_decay=0.5", "--set", "data.val_fraction=0")
    saved, trained = run["state_dict"], run["current_model_state"]
    assert any(not torch.equal(saved[k], trained[k]) for k in backbone(saved))
    results = json.loads((out / "metrics.json").read_text())
    tested, _, _ = evaluate_embeddings(
        checkpoint=out / results["checkpoint"], dataset="digits", split="test", progress=False
    )
    assert tested["recall@1"] == pytest.approx(results["test"]["recall@1"])


def test_one_way_of_averaging_at_a_time(tmp_path, capsys):
    code = main(["train", *RUN, "--out", str(tmp_path), "--set", "trainer.ema_decay=0.9",
                 "--set", "trainer.backbone_interpolation=0.5"])  # fmt: skip
    assert code == 2
    assert "trainer.backbone_interpolation" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
