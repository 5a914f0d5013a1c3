"""Embedding models: timm backbones with offline weights and an L2-normalised linear head."""

from cdml.models.backbones import (
    DEFAULT_BACKBONE,
    backbone_data_config,
    create_backbone,
    load_weights_file,
)
from cdml.models.build import build_model
from cdml.models.embedder import EmbeddingModel
from cdml.models.heads import EmbeddingHead

__all__ = [
    "DEFAULT_BACKBONE",
    "EmbeddingHead",
    "EmbeddingModel",
    "backbone_data_config",
    "build_model",
    "create_backbone",
    "load_weights_file",
]
