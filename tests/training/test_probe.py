"""optim.probe_epochs: a linear probe before fine-tuning."""

import pytest
import torch

from cdml.cli import main
from cdml.training.probe import LinearProbe
from tests.training.test_averaging import backbone, start, train  # noqa: F401 (a fixture)


def test_the_backbone_stays_while_probing_and_trains_after(start, tmp_path):  # noqa: F811
    probed = train(tmp_path, "--set", "optim.probe_epochs=1", "--epochs", "1")["state_dict"]
    started = start["state_dict"]
    for name, tensor in backbone(started).items():
        assert torch.equal(probed[name], tensor), name
    head = [name for name in started if name.startswith("model.head.")]
    assert any(not torch.equal(probed[name], started[name]) for name in head)
    # resumed past the probe, the backbone fine-tunes
    assert main(["train", "--out", str(tmp_path), "--resume", "--epochs", "2"]) == 0
    tuned = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert any(not torch.equal(tuned[k], v) for k, v in backbone(started).items())


def test_a_probe_takes_at_least_one_epoch(tmp_path, capsys):
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        LinearProbe(0)
    run = ["train", "--dataset", "digits", "--loss", "facility", "--out", str(tmp_path / "run")]
    for bad in ("optim.probe_epochs=-1", "optim.layer_decay=0", "optim.layer_decay=1.5"):
        assert main([*run, "--set", bad]) == 2
        assert bad.split("=")[0] in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
