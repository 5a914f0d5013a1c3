"""Training: configuration (``config``), the Lightning module and data module, and whole runs
(``run.train``). The package imports only its configuration, so that reading a config or a
checkpoint loads no trainer."""

from cdml.training.config import RunConfig, apply_overrides, load_config

__all__ = ["RunConfig", "apply_overrides", "load_config"]
