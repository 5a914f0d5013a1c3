"""CONTRIBUTING.md's example method, as written there: one file in cdml.losses, and it trains."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from cdml.cli import main
from cdml.losses import METHODS, create_method

GUIDE = Path(__file__).parents[1] / "CONTRIBUTING.md"


@pytest.fixture
def contrastive(tmp_path):
    """The guide's ``src/cdml/losses/contrastive.py``, imported as a module of cdml.losses
    (its relative imports as in the package) from a copy in ``tmp_path``."""
    section = GUIDE.read_text().split("## Adding a method", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    path = tmp_path / "contrastive.py"
    path.write_text("\n".join(line.removeprefix("   ") for line in code.splitlines()))
    spec = importlib.util.spec_from_file_location("cdml.losses.contrastive", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    METHODS.unregister("contrastive")
    del sys.modules[spec.name]


def test_the_guides_example_loss_registers_and_trains(contrastive, tiny_run, tmp_path, capsys):
    assert METHODS["contrastive"] is contrastive.ContrastiveLoss
    assert create_method("contrastive", margin=0.5).margin == 0.5
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "contrastive" in capsys.readouterr().out
    out = tmp_path / "run"
    argv = [*tiny_run, "--loss", "contrastive", "--set", "loss.params.margin=0.5"]
    assert main(["train", *argv, "--out", str(out)]) == 0
    assert "name: contrastive" in (out / "config.yaml").read_text()
