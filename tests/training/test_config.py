from pathlib import Path

import pytest

from cdml.training.config import (
    RunConfig,
    apply_overrides,
    load_config,
    parse_yaml,
)
from cdml.training.resolve import resolve

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


def test_defaults_round_trip_through_yaml(tmp_path):
    config = RunConfig()
    path = tmp_path / "config.yaml"
    path.write_text(config.to_yaml())
    assert load_config(path) == config


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_load(path):
    config = load_config(path)
    method, dataset = path.stem.split("_", 1)
    assert config.loss.name == method
    assert config.data.dataset == dataset
    assert config.data.classes_per_batch is None or (
        config.data.classes_per_batch <= config.data.batch_size
    )
    # The papers' own training, not cdml's recommendation for a user's data.
    assert config.model.freeze_bn is False
    assert config.data.crop_scale == [0.08, 1.0]


def test_every_method_and_benchmark_has_a_config():
    names = {p.stem for p in CONFIGS}
    for method in ("facility", "group", "triplet", "lifted", "npairs"):
        for dataset in ("cub200", "cars196", "sop"):
            assert f"{method}_{dataset}" in names
    for method in ("cbswr", "sme", "mom"):
        for dataset in ("cub200", "cars196"):
            assert f"{method}_{dataset}" in names


def test_released_settings_of_seed_001():
    config = load_config(Path(__file__).parents[2] / "configs" / "cbswr_cub200.yaml")
    assert config.loss.params == {
        "num_clusters": 32,
        "temperature": 0.1,
        "metric_weight": 0.9,
        "rim_weight": 0.3,
        "reconstruction_weight": 0.001,
        "neighbour_pairs": True,
    }
    assert config.model.embedding_size == 128 and config.data.batch_size == 64
    assert (config.optim.name, config.optim.backbone_lr, config.trainer.epochs) == ("sgd", 1e-3, 30)
    # The released code: plain SGD, a constant learning rate.
    assert config.optim.momentum == 0 and config.optim.lr_milestones == []


@pytest.mark.parametrize("dataset", ["cub200", "cars196", "sop"])
def test_group_loss_schedule_divides_the_rate_once_as_released(dataset):
    # Released: lr / 10 at epoch 31 and lr / 10 (the same value) at 51, after 10 warm-up
    # epochs; the rate ends at a tenth, not a hundredth.
    config = load_config(Path(__file__).parents[2] / "configs" / f"group_{dataset}.yaml")
    optim = config.optim
    rates = [
        optim.backbone_lr * optim.lr_gamma ** sum(epoch >= m for m in optim.lr_milestones)
        for epoch in range(config.trainer.epochs)
    ]
    assert config.loss.params["warmup_epochs"] == 10
    assert rates[40] == optim.backbone_lr
    assert rates[41] == rates[-1] == pytest.approx(optim.backbone_lr / 10)


def test_method_dependent_defaults():
    supervised = resolve(RunConfig())
    # The validation share and the batches depend on the data: filled when it is loaded.
    assert supervised.model.embedding_size == 64 and supervised.data.val_fraction is None
    assert supervised.data.batch_size is None and supervised.data.flip is True
    assert supervised.model.normalize is True
    for loss in ("lifted", "npairs", "group"):  # trained on unnormalised embeddings
        assert not resolve(apply_overrides(RunConfig(), {"loss.name": loss})).model.normalize
    glyphs = resolve(apply_overrides(RunConfig(), {"data.dataset": "glyphs"}))
    assert glyphs.data.flip is False  # a mirrored character is another character
    unsupervised = resolve(apply_overrides(RunConfig(), {"loss.name": "cbswr"}))
    assert unsupervised.model.embedding_size == 128 and unsupervised.data.val_fraction == 0.0
    assert unsupervised.data.batch_size is None  # 64, at most the images: with the data
    explicit = apply_overrides(RunConfig(), {"loss.name": "sme", "model.embedding_size": 32})
    assert resolve(explicit).model.embedding_size == 32
    # The parameters a method owns: the Group Loss's classifier faster than the others.
    assert supervised.optim.loss_lr == unsupervised.optim.loss_lr == 1e-3
    group = resolve(apply_overrides(RunConfig(), {"loss.name": "group"}))
    assert group.optim.loss_lr == 1e-2
    slow = apply_overrides(RunConfig(), {"loss.name": "group", "optim.loss_lr": 1e-4})
    assert resolve(slow).optim.loss_lr == 1e-4


def test_paper_settings_of_seed_000():
    config = load_config(Path(__file__).parents[2] / "configs" / "facility_cub200.yaml")
    assert config.data.batch_size == 128
    assert config.data.classes_per_batch / config.data.batch_size == 0.25
    assert config.model.embedding_size == 64
    assert config.optim.name == "rmsprop"
    assert config.loss.params["margin_decay"] == 0.94


def test_overrides_take_natural_types():
    config = apply_overrides(
        RunConfig(), {"optim.head_lr": 0.5, "trainer.epochs": 3, "loss.params.pam_iters": 0}
    )
    assert config.optim.head_lr == 0.5
    assert config.trainer.epochs == 3
    assert config.loss.params == {"pam_iters": 0}


@pytest.mark.parametrize(
    ("text", "value"),
    [("3e-5", 3e-5), ("1E+3", 1e3), ("-2.5e-1", -0.25), ("1.0e-5", 1e-5), ("12", 12), ("e5", "e5")],
)
def test_exponent_floats_are_read_as_numbers(text, value):
    # YAML 1.1 (PyYAML's default) would read "3e-5" as a string.
    assert parse_yaml(text) == value
    assert type(parse_yaml(text)) is type(value)


def test_int_is_accepted_for_float():
    assert apply_overrides(RunConfig(), {"optim.head_lr": 1}).optim.head_lr == 1.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"optim.nope": 1}, "unknown setting 'optim.nope'"),
        ({"nope.x": 1}, "unknown setting 'nope.x'"),
        ({"trainer.epochs": "many"}, "trainer.epochs must be int"),
        ({"trainer.epochs": True}, "trainer.epochs must be int"),
        ({"optim.lr_milestones": [1, "x"]}, r"optim.lr_milestones\[1\] must be int"),
        ({"data": 3}, "data must be a mapping"),
    ],
)
def test_bad_overrides_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(RunConfig(), overrides)


def test_bad_file_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  batch_size: [1\n")
    with pytest.raises(ValueError, match="bad.yaml: not valid YAML"):
        load_config(path)
    path.write_text("data:\n  colour: red\n")
    with pytest.raises(ValueError, match="bad.yaml: unknown setting 'data.colour'"):
        load_config(path)


def test_yaml_tags_are_not_executed(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("out: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(path)
