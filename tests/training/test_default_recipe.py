"""The guard of the default recipe: a few default steps on glyphs improve unseen classes.

A change of a default that hurts real data (BatchNorm statistics, learning rates, optimiser,
augmentation, image size) makes this fail: the pretrained backbone with the shipped ImageNet
weights trains 8 steps of the facility-location loss with every other setting at its default,
and its test Recall@1, NMI and MAP@R on the 133 unseen characters must beat the untrained
model's by a margin.
"""

import os

import pytest

from cdml.data.glyphs import FONT_ROOT, find_fonts
from cdml.training import RunConfig, apply_overrides
from cdml.training.run import train

STANDARD_FONTS = FONT_ROOT.is_dir() and len(find_fonts()) >= 100
# Gains measured with the defaults at 8 steps (seed 0): R@1 +9.3, NMI +4.6, MAP@R +9.9 points;
# the former defaults (BatchNorm statistics re-estimated, 1e-4 / 1e-3) lost on every validation
# metric in the sweep of docs/results.md.
MIN_GAIN = 0.02


@pytest.mark.skipif(
    not STANDARD_FONTS and not os.environ.get("CI"),
    reason="needs the standard font set (make datasets); CI installs it",
)
def test_default_steps_improve_the_unseen_glyphs(tmp_path):
    budget = {
        "out": str(tmp_path / "run"),
        "data.dataset": "glyphs",
        "loss.name": "facility",
        "trainer.epochs": 1,
        "trainer.limit_train_batches": 8,
        "data.max_eval_per_class": 10,
        "trainer.progress_bar": False,
    }
    results = train(apply_overrides(RunConfig(), budget))
    for metric in ("recall@1", "nmi", "map@r"):
        gain = results["test"][metric] - results["untrained"][metric]
        assert gain > MIN_GAIN, f"test {metric}: {gain:+.4f} over the untrained model"
    assert results["best_epoch"] == 0  # the trained epoch beat the untrained model
