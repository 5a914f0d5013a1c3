"""Run configuration: nested dataclasses, read from YAML, overridable from the command line.

A config file holds any subset of the sections below; what it leaves out keeps its default.
Values are read with a safe YAML loader and checked against the field types here: nothing in a
config file is executed.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cdml.checks import MAX_SEED, MIN_IMAGE_SIZE
from cdml.metrics import CLUSTERING_SCORES, DEFAULT_KS
from cdml.training.settings import flags, setting


def _in_unit_interval(value: float) -> str | None:
    return None if 0 <= value < 1 else "in [0, 1)"


def _in_open_unit_interval(value: float) -> str | None:
    return None if 0 < value < 1 else "in (0, 1)"


def _in_closed_unit_interval(value: float) -> str | None:
    return None if 0 <= value <= 1 else "in [0, 1]"


def _layer_decay(value: float) -> str | None:
    return None if 0 < value <= 1 else "in (0, 1]"


def _crop_scale(value: list[float]) -> str | None:
    good = len(value) == 2 and 0 < value[0] <= value[1] <= 1
    return None if good else "[low, high] with 0 < low <= high <= 1"


def _channels(value: list[float]) -> str | None:
    good = len(value) == 3 and all(math.isfinite(v) for v in value)
    return None if good else "3 finite numbers (one per RGB channel) or null"


def _std(value: list[float]) -> str | None:
    return _channels(value) or (None if min(value) > 0 else "positive")


def _seed(value: int) -> str | None:
    return None if 0 <= value <= MAX_SEED else f"an integer in 0..{MAX_SEED}"


def _devices(devices: int | str) -> str | None:
    """Lightning's forms: a count (-1: all), ``"auto"``, or device indices ``"0,1"``."""
    text = str(devices).strip()
    indices = re.fullmatch(r"\d+(,\d+)*,?", text) and "," in text
    count = re.fullmatch(r"-?\d+", text) and (int(text) >= 1 or int(text) == -1)
    ok = text == "auto" or indices or count
    return None if ok else "a positive number, -1 (all), a list or 'auto'"


def _batches(limit: int | float) -> str | None:
    ok = limit > 0 and (isinstance(limit, int) or limit <= 1)
    return None if ok else "a count >= 1 or a share in (0, 1]"


def _monitored(name: str) -> str | None:
    return None if name in MONITORED else f"one of {', '.join(MONITORED)}"


def _optimiser(name: str) -> str | None:
    from cdml.training.optimizers import OPTIMIZERS

    return None if name in OPTIMIZERS else f"one of {', '.join(OPTIMIZERS)}"


def _datasets() -> str:
    from cdml.data import DATASETS

    return "; ".join(f"{name}: {info.summary}" for name, info in DATASETS.items())


def _methods() -> str:
    """The registered methods (those of a plugin imported after cdml's too)."""
    from cdml.losses import METHODS, VIEWS

    kinds = {
        kind: [n for n, m in METHODS.items() if (m.batch_kind == VIEWS) == kind]
        for kind in (False, True)
    }
    return (
        f"supervised: {', '.join(kinds[False])}; unsupervised: {', '.join(kinds[True])}; or "
        "package.module:ClassName, a loss called as loss(embeddings, labels)"
    )


def _validation_split(how: str) -> str | None:
    from cdml.data.splits import VALIDATION_SPLITS

    return None if how in VALIDATION_SPLITS else f"one of {', '.join(VALIDATION_SPLITS)}"


def _positive_ks(ks: list[int]) -> str | None:
    return None if all(k >= 1 for k in ks) else "positive"


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how batches are formed."""

    dataset: str = setting("digits", flag="--dataset", help=_datasets)
    root: str | None = setting(
        None, flag="--data-root", help="the dataset's folder (the CSV file for csv)"
    )
    image_size: int = setting(
        64,
        flag="--image-size",
        at_least=MIN_IMAGE_SIZE,
        help="the side of the square input, in pixels",
    )
    resize_ratio: float = setting(
        256 / 227,
        finite=True,
        at_least=1,
        help="test-time resize before the centre crop, as in the papers",
    )
    crop_scale: list[float] = setting(
        factory=lambda: [0.5, 1.0],
        check=_crop_scale,
        help="the train crops' area range; cdml's default keeps at least half the image (an "
        "8 % crop of a small object or a glyph is another thing), the papers' use [0.08, 1]",
    )
    mean: list[float] | None = setting(
        None, check=_channels, help="input normalisation; null: the backbone's weights' own"
    )
    std: list[float] | None = setting(None, check=_std, help="as mean")
    flip: bool | None = setting(
        None, help="train flips; null: yes, unless a mirror image is another class"
    )
    batch_size: int | None = setting(
        None,
        flag="--batch-size",
        at_least=2,
        help="images per batch; null: 128 (64 images in two views for the unsupervised "
        "methods), at most the training images",
    )
    classes_per_batch: int | None = setting(
        None,
        flag="--classes-per-batch",
        at_least=2,
        help="null: the batch size / the loss's images per class (the papers' C/n), at most "
        "the classes",
    )
    val_fraction: float | None = setting(
        None,
        check=_in_unit_interval,
        help="share of the training classes held out for model selection; null: 0.2 when "
        "that holds out at least 4 classes, else 0; 0 for the unsupervised methods unless "
        "given (the held-out classes are labelled: selecting on them reads labels, as the "
        "papers' reported numbers and cdml tune do)",
    )
    val_split: str = setting(
        "random",
        flag="--val-split",
        check=_validation_split,
        help="which training classes are held out: random (a seeded sample) or contiguous "
        "(the last block of the sorted classes, cut as the test half is)",
    )
    max_eval_per_class: int | None = setting(
        None,
        at_least=2,
        help="quick runs: at most this many images per class in validation and test (a "
        "seeded sample); null evaluates every image, as the papers' protocol does",
    )
    num_workers: int | None = setting(
        None,
        flag="--workers",
        at_least=0,
        help="processes decoding and augmenting images; null: from the machine (its usable "
        "cores less one per training process, at most 8)",
    )
    skip_bad: bool = setting(False, help="skip unreadable images, reporting them")


@dataclass(frozen=True)
class ModelConfig:
    """Backbone and embedding head."""

    backbone: str = setting("tf_efficientnet_lite0", flag="--backbone", help="any timm model name")
    pretrained: bool = setting(True, help="start from the backbone's ImageNet weights")
    weights: str | None = setting(
        None, help="a state-dict file for backbones other than efficientnet_lite0"
    )
    embedding_size: int | None = setting(
        None,
        flag="--embedding-size",
        at_least=1,
        help="null: 64 (seed 000), 128 for the unsupervised methods",
    )
    normalize: bool | None = setting(
        None,
        help="L2-normalise the embeddings; null: as the loss's paper (not for lifted / N-pairs)",
    )
    freeze_bn: bool = setting(
        True,
        help="keep the pretrained BatchNorm statistics: re-estimated on the training "
        "classes they do not carry to unseen ones (docs/METHODS.md, cdml's default recipe)",
    )


@dataclass(frozen=True)
class LossConfig:
    """The training method and its constructor arguments.

    ``name`` is a name of ``cdml.losses.METHODS`` or ``package.module:ClassName`` (a loss of
    your own, imported: the only value of a config that is).
    """

    name: str = setting("facility", flag="--loss", help=_methods)
    params: dict[str, Any] = setting(factory=dict, help="the method's constructor arguments")


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser, learning rates per part, and step decay."""

    name: str = setting("rmsprop", check=_optimiser, help="rmsprop, adam, radam or sgd")
    backbone_lr: float = setting(3e-5, finite=True, at_least=0, help="the backbone's rate")
    head_lr: float = setting(3e-4, finite=True, at_least=0, help="the embedding head's rate")
    loss_lr: float | None = setting(
        None,
        finite=True,
        at_least=0,
        help="parameters owned by the method (Group Loss's classifier, CBSwR's cluster "
        "head); null: the method's own default (1e-3; 1e-2 for the Group Loss's classifier)",
    )
    weight_decay: float = setting(0.0, finite=True, at_least=0, help="L2 weight decay")
    layer_decay: float = setting(
        1.0,
        check=_layer_decay,
        help="layer-wise rate decay: the backbone's last layer group (timm's) learns at "
        "backbone_lr, each one below at layer_decay times the rate above; 1: one rate",
    )
    probe_epochs: int = setting(
        0,
        at_least=0,
        help="epochs at the start in which the backbone's weights do not change (a linear probe "
        "before fine-tuning): its gradients are dropped before each optimiser step",
    )
    momentum: float = setting(0.9, finite=True, at_least=0, help="sgd only")
    lr_milestones: list[int] = setting(
        factory=list, help="epochs at which the rates are multiplied by lr_gamma"
    )
    lr_gamma: float = setting(0.1, finite=True, at_least=0, help="the step decay's factor")


@dataclass(frozen=True)
class TrainerConfig:
    """Lightning trainer settings."""

    epochs: int = setting(
        5, flag="--epochs", at_least=1, lightning="max_epochs", help="training epochs"
    )
    seed: int = setting(0, flag="--seed", check=_seed, help="seed of everything random")
    accelerator: str = setting("auto", lightning="accelerator", help="cpu, gpu or auto")
    devices: int | str = setting(
        1,
        flag="--devices",
        check=_devices,
        lightning="devices",
        help="processes or GPUs per node, -1 for every GPU",
    )
    num_nodes: int = setting(
        1,
        flag="--num-nodes",
        at_least=1,
        lightning="num_nodes",
        help="machines, each started by a launcher (srun, torchrun)",
    )
    strategy: str = setting("auto", flag="--strategy", lightning="strategy", help="e.g. ddp")
    precision: str = setting(
        "32-true",
        flag="--precision",
        lightning="precision",
        help="32-true, bf16-mixed, 16-mixed (GPU)",
    )
    limit_train_batches: int | float = setting(
        1.0,
        check=_batches,
        lightning="limit_train_batches",
        help="batches per epoch: a count, or a share of the epoch",
    )
    log_every_n_steps: int = setting(
        10, at_least=1, lightning="log_every_n_steps", help="steps between logged values"
    )
    progress_bar: bool = setting(
        True,
        lightning="enable_progress_bar",
        help="progress bars on a terminal, a line every 30 s in a log",
    )
    monitor: str = setting(
        "val/recall@1",
        check=_monitored,
        help="the validation metric that chooses the best checkpoint (higher is better, as "
        "every metric of cdml.metrics): val/recall@K (K of 1, 2, 4, 8), val/nmi, val/ami, "
        "val/ari, val/purity or val/map@r",
    )
    loggers: list[str] = setting(
        factory=lambda: ["csv", "tensorboard"],
        help="experiment trackers (Lightning's loggers): csv, tensorboard (logs/version_N/), "
        "wandb (W&B's settings, e.g. WANDB_MODE=offline), mlflow (MLFLOW_TRACKING_URI, else "
        "an SQLite store, the run folder's mlflow.db)",
    )
    ema_decay: float | None = setting(
        None,
        check=_in_open_unit_interval,
        help="validate, checkpoint and finish with an exponential moving average of the "
        "weights with this decay (e.g. 0.9); null: the latest weights",
    )
    backbone_interpolation: float | None = setting(
        None,
        check=_in_closed_unit_interval,
        help="WiSE-FT: validate, checkpoint and finish with the backbone at pretrained + "
        "alpha x (trained - pretrained), alpha in [0, 1]; null: the trained backbone",
    )
    sync_batchnorm: bool = setting(
        False,
        lightning="sync_batchnorm",
        help="multi-GPU runs: BatchNorm statistics over every device's batch (not with freeze_bn)",
    )
    report: bool = setting(
        True, help="cdml train writes report.html into the run folder at the end"
    )


@dataclass(frozen=True)
class EvalConfig:
    """Test protocol."""

    ks: list[int] | None = setting(
        None,
        check=_positive_ks,
        help="K of Recall@K; null: the dataset's usual K (1,2,4,8 or 1,10,100,1000)",
    )
    nmi: bool = setting(True, help="k-means and its NMI, AMI, ARI, purity")


@dataclass(frozen=True)
class RunConfig:
    """Everything a training run needs; ``out`` is the run's folder."""

    out: str = setting("runs/cdml", flag="--out", help="the run folder")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


MAX_YAML_DEPTH = 32


class _SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-5`` as a float (YAML 1.1 wants ``1.0e-5``),
    and refuses aliases and nesting deeper than :data:`MAX_YAML_DEPTH` (a few hundred bytes
    of nested aliases expand to billions of items)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.YAMLError(
                f"aliases (*name) are not accepted in cdml configs (line {mark.line + 1}, "
                f"column {mark.column + 1})"
            )
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.YAMLError(f"nested deeper than {MAX_YAML_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """Plain data (mappings, lists, scalars) from YAML ``text``; no object is constructed.
    Invalid YAML raises ``ValueError``."""
    try:
        return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        raise ValueError(f"not valid YAML ({error})") from None


# The validation metrics (all higher-is-better) that can choose the best checkpoint
# (validation always uses Recall@1, 2, 4, 8).
MONITORED = tuple(
    f"val/{name}" for name in (*(f"recall@{k}" for k in DEFAULT_KS), *CLUSTERING_SCORES, "map@r")
)
# Images per evaluation batch: the fastest of 16-256 for EfficientNet-Lite0 on CPU (cache-bound).
EVAL_BATCH_SIZE = 64


def load_config(path: str | Path, require: Sequence[str] = ()) -> RunConfig:
    """Read a YAML config file into a :class:`RunConfig` (unknown keys are errors); the
    dotted keys of ``require`` (e.g. ``"data.dataset"``) must be in the file."""
    path = Path(path)
    try:
        data = parse_yaml(path.read_text(encoding="utf-8")) or {}
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of sections at the top level")
    for key in require:
        section, _, name = key.partition(".")
        if not isinstance(data.get(section), dict) or name not in data[section]:
            flag = flags(RunConfig).get(key)
            raise ValueError(
                f"{path}: names no {key}"
                + (f" (give it there or with {flag})" if flag else "")
                + ("; the file is empty" if not data else "")
            )
    try:
        return from_dict(RunConfig, migrate(data))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def checkpoint_config(path: str | Path, hyper_parameters: Any) -> RunConfig:
    """The run config saved in the checkpoint at ``path``; ``ValueError`` naming the file
    when it does not read as one (e.g. a setting of another version of cdml)."""
    try:
        if not isinstance(hyper_parameters, dict):
            raise ValueError("no config mapping")
        return from_dict(RunConfig, migrate(hyper_parameters))
    except ValueError as error:
        raise ValueError(
            f"{path}: the config saved in the checkpoint: {error} (written by another version "
            "of cdml?)"
        ) from None


def command_config(
    config_file: str | Path | None, overrides: dict[str, Any], resume: bool = False
) -> RunConfig:
    """The config of a training command: ``config_file`` (``--config``) with ``overrides``
    (dotted keys: the flags and ``--set``) applied. To ``resume``, the base is
    ``config_file`` or else the run's own ``config.yaml`` (the folder ``out`` of the
    overrides or of ``config_file``); otherwise a config names its dataset and method, in the
    file or in the overrides. Each missing piece is a ``ValueError`` naming its flag."""
    base = _read_config_file(config_file) if config_file is not None else None
    if resume:
        out = Path(overrides.get("out", base.out if base else RunConfig().out))
        recorded = out / "config.yaml"
        if not recorded.is_file():
            raise ValueError(f"--resume: no run to resume at {recorded}")
        base = base or load_config(recorded)
    elif config_file is not None:
        require = [key for key in ("data.dataset", "loss.name") if key not in overrides]
        base = load_config(config_file, require)
    else:
        missing = [flags(RunConfig)[k] for k in ("data.dataset", "loss.name") if k not in overrides]
        if missing:
            raise ValueError(
                f"give --config FILE, or --dataset, --data-root and --loss (missing: "
                f"{', '.join(missing)})"
            )
        base = RunConfig()
    return apply_overrides(base, overrides)


def _read_config_file(path: str | Path) -> RunConfig:
    if not Path(path).is_file():
        raise ValueError(f"--config: no such file {path}")
    return load_config(path)


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """A config mapping written by an earlier cdml, in today's layout: ``loss.margin_decay``
    and ``optim.warmup_epochs`` became the facility-location and Group Loss constructor
    arguments ``loss.params.margin_decay`` and ``loss.params.warmup_epochs``."""
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in data.items()}
    loss, optim = data.get("loss"), data.get("optim")
    name = loss.get("name", LossConfig.name) if isinstance(loss, dict) else None
    moved = (("facility", loss, "margin_decay"), ("group", optim, "warmup_epochs"))
    for method, section, key in moved:
        if isinstance(section, dict) and key in section:
            value = section.pop(key)
            if name == method and isinstance(loss.get("params", {}), dict):
                loss["params"] = {key: value, **loss.get("params", {})}
    return data


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, checking every key and value type."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in fields:
            raise ValueError(f"unknown setting {name!r} (known: {', '.join(fields)})")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ValueError(f"{name} must be a mapping")
            values[key] = from_dict(hint, value, prefix=f"{name}.")
        else:
            values[key] = _check_type(value, hint, name)
    return cls(**values)


def apply_overrides(config: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Return ``config`` with dotted keys replaced, e.g. ``{"optim.head_lr": 1e-3}``.

    Keys under ``loss.params`` may be new (they are the loss's constructor arguments); any
    other unknown key, or a value of the wrong type, raises ``ValueError``.
    """
    data = config.to_dict()
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = data
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ValueError(f"unknown setting {dotted!r}")
            node = node[part]
        if leaf not in node and not (parents and parents[-1] == "params"):
            raise ValueError(f"unknown setting {dotted!r}")
        node[leaf] = value
    return from_dict(RunConfig, data)


def _check_type(value: Any, hint: Any, name: str) -> Any:
    """Return ``value`` if it fits ``hint`` (ints are accepted for floats), else raise."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _check_type(value, option, name)
            except ValueError:
                continue
        raise ValueError(f"{name} must be {_describe(hint)}, got {value!r}")
    if hint is Any:
        return value
    if hint is type(None):
        if value is None:
            return None
    elif origin is list:
        if isinstance(value, list):
            (item,) = typing.get_args(hint)
            return [_check_type(v, item, f"{name}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return dict(value)
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, hint):
        return value
    raise ValueError(f"{name} must be {_describe(hint)}, got {value!r}")


def _describe(hint: Any) -> str:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))
