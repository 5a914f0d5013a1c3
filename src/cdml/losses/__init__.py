"""Training methods of cdml: supervised losses called as ``loss(embeddings, labels)`` -> scalar
tensor, and unsupervised objectives, in one registry.

Supervised:

- :class:`FacilityLocationLoss`: structured clustering loss (Song et al., CVPR 2017).
- :class:`GroupLoss`: label propagation + cross-entropy (Elezi et al., ECCV 2020).
- :class:`TripletSemihardLoss`, :class:`LiftedStructLoss`, :class:`NPairsLoss`: the baselines
  of Song et al. (2017), with TensorFlow's semantics.

Unsupervised (seed 001): :class:`CBSwRObjective` (and its ablations), :class:`SMEObjective`,
:class:`MOMObjective`.

``create_method(name, **kwargs)`` builds one by its name in :data:`METHODS`, which
``@register_method(name)`` fills: every module of this package registers its methods when
the package is imported, so a new method is one new file.
"""

from __future__ import annotations

import importlib
import pkgutil

from ._base import ExternalLoss, MetricLoss
from ._host import as_on_accelerator, reads_are_free
from ._method import LABELLED, VIEWS, Method, RunInfo, ViewsMethod
from ._registry import METHODS, create_method, method_class, register_method
from .cbswr import CBSwRObjective
from .centre_softmax import CentreSoftmaxLoss
from .clustering_scores import clustering_score
from .facility_location import FacilityLocationLoss
from .group_loss import GroupLoss
from .lifted_struct import LiftedStructLoss
from .mom import MOMObjective, MOMTripletLoss
from .npairs import NPairsLoss
from .rim import RIMClusteringLoss
from .sme import InstanceSoftmaxLoss, SMEObjective
from .triplet import TripletSemihardLoss

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "LABELLED",
    "METHODS",
    "VIEWS",
    "CBSwRObjective",
    "CentreSoftmaxLoss",
    "ExternalLoss",
    "FacilityLocationLoss",
    "GroupLoss",
    "InstanceSoftmaxLoss",
    "LiftedStructLoss",
    "MOMObjective",
    "MOMTripletLoss",
    "Method",
    "MetricLoss",
    "NPairsLoss",
    "RIMClusteringLoss",
    "RunInfo",
    "SMEObjective",
    "TripletSemihardLoss",
    "ViewsMethod",
    "as_on_accelerator",
    "clustering_score",
    "create_method",
    "method_class",
    "reads_are_free",
    "register_method",
]
