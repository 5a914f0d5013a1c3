"""Run configuration: nested dataclasses, read from YAML, overridable from the command line.

A config file holds any subset of the sections below; what it leaves out keeps its default.
Values are read with a safe YAML loader and checked against the field types here: nothing in a
config file is executed.
"""

from __future__ import annotations

import dataclasses
import math
import os
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


@dataclass
class DataConfig:
    """Where the images come from and how batches are formed."""

    dataset: str = "digits"
    root: str | None = None
    image_size: int = 64
    resize_ratio: float = 256 / 227  # test-time resize before the centre crop, as in the papers
    # Train crop area range. cdml's default keeps at least half the image (an 8 % crop of a
    # small object or a glyph is another thing); the papers' configs use [0.08, 1].
    crop_scale: list[float] = field(default_factory=lambda: [0.5, 1.0])
    mean: list[float] | None = None  # input normalisation; None: the backbone's weights' own
    std: list[float] | None = None
    flip: bool | None = None  # train flips; None: yes, unless a mirror image is another class
    # None: 128 (64 images in two views for the unsupervised methods), at most the training
    # images.
    batch_size: int | None = None
    # None: batch_size / the loss's images per class (the papers' C/n), at most the classes.
    classes_per_batch: int | None = None
    # Share of the training classes held out for model selection; None: 0.2 when that holds
    # out at least 4 classes, else 0; always 0 for the unsupervised methods (choosing the
    # classes would read the training labels).
    val_fraction: float | None = None
    # Quick runs: at most this many images per class in validation and test (seeded sample);
    # None evaluates every image, as the papers' protocol does.
    max_eval_per_class: int | None = None
    num_workers: int = 0
    skip_bad: bool = False


@dataclass
class ModelConfig:
    """Backbone and embedding head."""

    backbone: str = "tf_efficientnet_lite0"
    pretrained: bool = True
    weights: str | None = None  # a state-dict file for backbones other than efficientnet_lite0
    embedding_size: int | None = None  # None: 64 (seed 000), 128 for the unsupervised methods
    # L2-normalise the embeddings; None: as the loss's paper (not for lifted / N-pairs).
    normalize: bool | None = None
    # Keep the pretrained BatchNorm statistics: re-estimated on the training classes they do
    # not carry to unseen ones (docs/METHODS.md, "cdml's default recipe").
    freeze_bn: bool = True


@dataclass
class LossConfig:
    """The training method and its constructor arguments.

    ``name`` is a name of ``cdml.losses.METHODS`` or ``package.module:ClassName`` (a loss of
    your own, imported: the only value of a config that is).
    """

    name: str = "facility"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    """Optimiser, learning rates per part, and step decay."""

    name: str = "rmsprop"  # rmsprop | adam | radam | sgd
    backbone_lr: float = 3e-5
    head_lr: float = 3e-4
    # Parameters owned by the method (Group Loss's classifier, CBSwR's cluster head); None:
    # the method's own default (1e-3; 1e-2 for the Group Loss's classifier).
    loss_lr: float | None = None
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    lr_milestones: list[int] = field(default_factory=list)  # epochs at which lr is multiplied
    lr_gamma: float = 0.1


@dataclass
class TrainerConfig:
    """Lightning trainer settings."""

    epochs: int = 5
    seed: int = 0
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    limit_train_batches: int | float = 1.0
    log_every_n_steps: int = 10
    progress_bar: bool = True
    # The validation metric that chooses the best checkpoint (higher is better, as every
    # metric of cdml.metrics): val/recall@K (K of 1, 2, 4, 8), val/nmi, val/ami, val/ari,
    # val/purity or val/map@r.
    monitor: str = "val/recall@1"
    # Experiment trackers (Lightning's loggers): csv, tensorboard (logs/version_N/), wandb
    # (W&B's settings, e.g. WANDB_MODE=offline), mlflow (MLFLOW_TRACKING_URI, else an SQLite
    # store, the run folder's mlflow.db).
    loggers: list[str] = field(default_factory=lambda: ["csv", "tensorboard"])
    # Multi-GPU runs: BatchNorm statistics over every device's batch (not with freeze_bn).
    sync_batchnorm: bool = False
    # Write report.html (cdml.report) into the run folder at the end of the run.
    report: bool = True


@dataclass
class EvalConfig:
    """Test protocol."""

    ks: list[int] | None = None  # None: the dataset's usual K (1,2,4,8 or 1,10,100,1000)
    nmi: bool = True


@dataclass
class RunConfig:
    """Everything a training run needs; ``out`` is the run's folder."""

    out: str = "runs/cdml"
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


# The command-line flag of a setting, named beside it in errors.
FLAGS = {
    "data.dataset": "--dataset", "loss.name": "--loss",
    "trainer.epochs": "--epochs", "data.image_size": "--image-size",
    "data.batch_size": "--batch-size", "data.classes_per_batch": "--classes-per-batch",
    "model.embedding_size": "--embedding-size", "data.num_workers": "--workers",
    "trainer.devices": "--devices", "trainer.num_nodes": "--num-nodes",
    "trainer.seed": "--seed", "trainer.precision": "--precision",
}  # fmt: skip
# The validation metrics a run logs (validation always uses Recall@1, 2, 4, 8).
# The validation metrics (all higher-is-better) that can choose the best checkpoint.
MONITORED = tuple(
    f"val/{name}" for name in (*(f"recall@{k}" for k in DEFAULT_KS), *CLUSTERING_SCORES, "map@r")
)
# A batch's float32 images, and at least as much again for the first layer's activations:
# a lower bound of what a step needs, so a refusal is certain, never a guess.
MIN_BYTES_PER_INPUT_VALUE = 2 * 4


def check_batch_fits(batch_size: int, image_size: int, name: str) -> None:
    """``ValueError`` when ``batch_size`` images of ``image_size`` pixels squared cannot fit
    in this machine's memory even at :data:`MIN_BYTES_PER_INPUT_VALUE` bytes per input
    value; ``name`` says which settings give the batch, for the message."""
    needed = batch_size * 3 * image_size**2 * MIN_BYTES_PER_INPUT_VALUE
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > memory:
        raise ValueError(
            f"{name}: a batch of {batch_size} images of {image_size} x {image_size} pixels "
            f"needs at least {needed / 2**30:,.0f} GiB, and this machine has "
            f"{memory / 2**30:,.0f} GiB; use smaller images or batches"
        )


def runs_on_cpu(accelerator: str) -> bool:
    """Whether a run of ``trainer.accelerator`` runs on the CPU here."""
    if accelerator == "cpu":
        return True
    if accelerator != "auto":
        return False
    import torch

    return not (torch.cuda.is_available() or torch.backends.mps.is_available())


def check_ranges(config: RunConfig) -> None:
    """``ValueError`` naming the first setting out of its range (and its flag), so that a bad
    value is reported before any data is read or any training starts."""

    def bad(key: str, value: Any, wanted: str) -> ValueError:
        flag = f" ({FLAGS[key]})" if key in FLAGS else ""
        return ValueError(f"{key}{flag} must be {wanted}, got {value!r}")

    d, m, o, t = config.data, config.model, config.optim, config.trainer
    at_least = [
        ("trainer.epochs", t.epochs, 1), ("data.image_size", d.image_size, MIN_IMAGE_SIZE),
        ("data.batch_size", d.batch_size, 2), ("data.classes_per_batch", d.classes_per_batch, 2),
        ("model.embedding_size", m.embedding_size, 1), ("data.num_workers", d.num_workers, 0),
        ("trainer.num_nodes", t.num_nodes, 1), ("trainer.log_every_n_steps",
        t.log_every_n_steps, 1), ("data.max_eval_per_class", d.max_eval_per_class, 2),
    ]  # fmt: skip
    for key, value, least in at_least:
        if value is not None and value < least:
            raise bad(key, value, f"at least {least}")
    for key, value in (("optim.backbone_lr", o.backbone_lr), ("optim.head_lr", o.head_lr),
                       ("optim.loss_lr", o.loss_lr), ("optim.weight_decay", o.weight_decay),
                       ("optim.momentum", o.momentum), ("optim.lr_gamma", o.lr_gamma)):  # fmt: skip
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise bad(key, value, "finite and >= 0")
    if d.val_fraction is not None and not 0 <= d.val_fraction < 1:
        raise bad("data.val_fraction", d.val_fraction, "in [0, 1)")
    if len(d.crop_scale) != 2 or not 0 < d.crop_scale[0] <= d.crop_scale[1] <= 1:
        raise bad("data.crop_scale", d.crop_scale, "[low, high] with 0 < low <= high <= 1")
    if d.resize_ratio < 1 or not math.isfinite(d.resize_ratio):
        raise bad("data.resize_ratio", d.resize_ratio, "finite and at least 1")
    limit = t.limit_train_batches
    if not (limit > 0 and (isinstance(limit, int) or limit <= 1)):
        raise bad("trainer.limit_train_batches", limit, "a count >= 1 or a share in (0, 1]")
    if not _devices_ok(t.devices):
        raise bad("trainer.devices", t.devices, "a positive number, -1 (all), a list or 'auto'")
    if not 0 <= t.seed <= MAX_SEED:
        raise bad("trainer.seed", t.seed, f"an integer in 0..{MAX_SEED}")
    # The smallest batch at this size (the data's size gives the full check, when loaded).
    check_batch_fits(
        max(d.batch_size or 2, 2),
        d.image_size,
        "data.batch_size (--batch-size) with data.image_size (--image-size)",
    )
    for key, values in (("data.mean", d.mean), ("data.std", d.std)):
        if values is not None and (len(values) != 3 or not all(math.isfinite(v) for v in values)):
            raise bad(key, values, "3 finite numbers (one per RGB channel) or null")
    if d.std is not None and min(d.std) <= 0:
        raise bad("data.std", d.std, "positive")
    if runs_on_cpu(t.accelerator):
        if str(t.devices).strip() == "-1":
            raise bad(
                "trainer.devices",
                t.devices,
                "a number of processes on the CPU (-1 "
                "means every GPU, and this run has none), e.g. 2 with --strategy ddp",
            )
        if t.precision.startswith("16"):
            raise bad(
                "trainer.precision",
                t.precision,
                "32-true, bf16-mixed or bf16-true on "
                "the CPU (16-bit floats need a GPU; Lightning would run bf16 instead)",
            )
    if t.num_nodes > 1:
        from cdml.distributed import launched_on_nodes

        if not launched_on_nodes():
            raise bad(
                "trainer.num_nodes",
                t.num_nodes,
                "1 without a launcher that starts "
                "the run on every node (srun, torchrun, or NODE_RANK, MASTER_ADDR and "
                "MASTER_PORT set); without one the run would wait for nodes forever",
            )
    if t.accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise bad("trainer.accelerator", t.accelerator, "'cpu' or 'auto' here: no CUDA device")
    if any(k < 1 for k in config.eval.ks or ()):
        raise bad("eval.ks", config.eval.ks, "positive")
    from cdml.training.optimizers import OPTIMIZERS

    OPTIMIZERS.check(o.name)
    if t.monitor not in MONITORED:
        raise bad("trainer.monitor", t.monitor, f"one of {', '.join(MONITORED)}")
    from cdml.training.loggers import check_loggers

    check_loggers(t.loggers)


def _devices_ok(devices: int | str) -> bool:
    """Lightning's forms: a count (-1: all), ``"auto"``, or device indices ``"0,1"``."""
    text = str(devices).strip()
    if text == "auto" or re.fullmatch(r"\d+(,\d+)*,?", text) and "," in text:
        return True
    return bool(re.fullmatch(r"-?\d+", text)) and (int(text) >= 1 or int(text) == -1)


def resolve_defaults(config: RunConfig) -> RunConfig:
    """Fill the settings whose default depends on the method or the dataset's name (see their
    comments); those that depend on the data's size are filled when it is loaded
    (:class:`cdml.training.datamodule.MetricLearningDataModule`)."""
    from cdml.data import dataset_info
    from cdml.losses import VIEWS, method_class

    try:
        method = method_class(config.loss.name)
    except ValueError as error:
        raise ValueError(f"loss.name (--loss): {error}") from None
    try:
        info = dataset_info(config.data.dataset)
    except ValueError as error:
        raise ValueError(f"data.dataset (--dataset): {error}") from None
    unsupervised = method.batch_kind == VIEWS
    if config.model.normalize is None:
        config.model.normalize = method.normalize_embeddings
    if config.model.embedding_size is None:
        config.model.embedding_size = method.default_embedding_size
    if config.optim.loss_lr is None:
        config.optim.loss_lr = method.default_loss_lr
    if unsupervised and config.data.val_fraction is None:
        config.data.val_fraction = 0.0
    if unsupervised and config.data.batch_size is None:
        config.data.batch_size = 64
    if config.data.flip is None:
        config.data.flip = not info.mirror_sensitive
    check_ranges(config)
    return config


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
            flag = FLAGS.get(key)
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
