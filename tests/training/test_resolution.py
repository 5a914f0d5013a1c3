"""One resolution step: a pure function returns a new, complete config and refuses what the
data or the method cannot honour, naming the setting."""

import dataclasses

import numpy as np
import pytest

from cdml.training.config import RunConfig, apply_overrides
from cdml.training.resolve import Facts, resolve

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def facts(classes: int, images_per_class: int = 10) -> Facts:
    return Facts(np.repeat(np.arange(classes), images_per_class), *IMAGENET)


def config_of(**settings) -> RunConfig:
    return apply_overrides(RunConfig(), settings)


def test_an_embedding_size_of_zero_is_refused_not_replaced():
    config = config_of(**{"model.embedding_size": 0})
    with pytest.raises(ValueError, match=r"model.embedding_size \(--embedding-size\) must be at"):
        resolve(config)


def test_an_unsupervised_run_on_few_images_batches_them_all():
    config = resolve(config_of(**{"loss.name": "sme"}))
    resolved = resolve(config, facts(4))
    assert resolved.data.batch_size == 40 and config.data.batch_size is None  # a new config


def test_validation_classes_follow_the_training_classes_and_the_method():
    facility, sme = config_of(), config_of(**{"loss.name": "sme"})
    assert resolve(facility, facts(20)).data.val_fraction == 0.2
    assert resolve(facility, facts(10)).data.val_fraction == 0.0  # 2 < 4 classes
    assert resolve(sme, facts(20)).data.val_fraction == 0.0  # reads no label unless asked
    # Asked (model selection on labelled classes, as cdml tune does): 4 classes held out.
    asked = resolve(config_of(**{"loss.name": "sme", "data.val_fraction": 0.2}), facts(20))
    assert (asked.data.val_fraction, asked.data.batch_size) == (0.2, 64)


def test_the_complete_config_is_resolved_once_and_records_the_weights():
    complete = resolve(config_of(), facts(20))
    data = complete.data
    # 16 training classes are left after holding out 4: batches of 128 from 32 classes need
    # more than there are, so all 16 are drawn.
    assert (data.val_fraction, data.batch_size, data.classes_per_batch) == (0.2, 128, 16)
    assert (tuple(data.mean), tuple(data.std)) == IMAGENET
    assert resolve(complete, facts(20)) == complete  # a fixed point
    assert resolve(complete) == complete


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunConfig().data.image_size = 32  # type: ignore[misc]
