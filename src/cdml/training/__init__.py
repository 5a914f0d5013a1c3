"""Training: configuration, the Lightning module and data module, and whole runs."""

from cdml.training.config import RunConfig, apply_overrides, load_config
from cdml.training.run import train

__all__ = ["RunConfig", "apply_overrides", "load_config", "train"]
