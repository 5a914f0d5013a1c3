"""Defaults resolved by pure functions: each returns a new config and refuses what the data or
the method cannot honour, naming the setting."""

import dataclasses

import pytest

from cdml.losses import METHODS
from cdml.training.config import (
    DataConfig,
    RunConfig,
    apply_overrides,
    resolve_batches,
    resolve_defaults,
    resolve_validation,
)


def test_an_embedding_size_of_zero_is_refused_not_replaced():
    config = apply_overrides(RunConfig(), {"model.embedding_size": 0})
    with pytest.raises(ValueError, match=r"model.embedding_size \(--embedding-size\) must be at"):
        resolve_defaults(config)


def test_an_unsupervised_run_on_few_images_batches_them_all():
    config = resolve_defaults(apply_overrides(RunConfig(), {"loss.name": "sme"}))
    resolved = resolve_batches(config.data, images=40, classes=4, method=METHODS["sme"])
    assert resolved.batch_size == 40 and config.data.batch_size is None  # a new config


def test_validation_classes_follow_the_training_classes_and_the_method():
    facility, sme = METHODS["facility"], METHODS["sme"]
    assert resolve_validation(DataConfig(), 20, facility).val_fraction == 0.2
    assert resolve_validation(DataConfig(), 10, facility).val_fraction == 0.0  # 2 < 4 classes
    assert resolve_validation(DataConfig(), 20, sme).val_fraction == 0.0
    with pytest.raises(ValueError, match="val_fraction must be 0 for the unsupervised"):
        resolve_validation(DataConfig(val_fraction=0.2), 20, sme)


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunConfig().data.image_size = 32  # type: ignore[misc]
