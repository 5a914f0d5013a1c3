"""The embedding model of a run's settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdml.models.embedder import EmbeddingModel

if TYPE_CHECKING:
    from cdml.training.config import ModelConfig


def build_model(config: ModelConfig, pretrained: bool | None = None) -> EmbeddingModel:
    """The embedding model of a run's ``model`` settings; ``pretrained`` overrides
    ``config.pretrained``, and ``pretrained=False`` loads no weights at all (neither the
    shipped ones nor ``config.weights``: a checkpoint's own are loaded next)."""
    m = config
    return EmbeddingModel(
        backbone_name=m.backbone,
        embedding_size=m.embedding_size,
        pretrained=m.pretrained if pretrained is None else pretrained,
        weights=None if pretrained is False else m.weights,
        freeze_bn=m.freeze_bn,
        normalize=m.normalize,
    )
