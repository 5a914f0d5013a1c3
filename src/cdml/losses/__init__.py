"""Supervised losses of cdml, each called as ``loss(embeddings, labels)`` -> scalar tensor.

- :class:`FacilityLocationLoss`: structured clustering loss (Song et al., CVPR 2017).
- :class:`GroupLoss`: label propagation + cross-entropy (Elezi et al., ECCV 2020).
- :class:`TripletSemihardLoss`, :class:`LiftedStructLoss`, :class:`NPairsLoss`: the baselines
  of Song et al. (2017), with TensorFlow's semantics.

``build_loss(name, **kwargs)`` builds one by its name in :data:`LOSSES`.
"""

from __future__ import annotations

from typing import Any

from ._base import MetricLoss
from .clustering_scores import clustering_score
from .facility_location import FacilityLocationLoss
from .group_loss import GroupLoss
from .lifted_struct import LiftedStructLoss
from .npairs import NPairsLoss
from .triplet import TripletSemihardLoss

LOSSES: dict[str, type[MetricLoss]] = {
    "facility": FacilityLocationLoss,
    "group": GroupLoss,
    "triplet": TripletSemihardLoss,
    "lifted": LiftedStructLoss,
    "npairs": NPairsLoss,
}


def build_loss(name: str, **kwargs: Any) -> MetricLoss:
    """The loss registered as ``name`` in :data:`LOSSES`, built with ``kwargs``."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(LOSSES)}")
    return LOSSES[name](**kwargs)


__all__ = [
    "LOSSES",
    "FacilityLocationLoss",
    "GroupLoss",
    "LiftedStructLoss",
    "MetricLoss",
    "NPairsLoss",
    "TripletSemihardLoss",
    "build_loss",
    "clustering_score",
]
