"""Hyper-parameter search on validation classes (:func:`cdml.tuning.study.tune`, Optuna), and
the ranges searched: :class:`Knob`, declared by each method for its own settings
(``Method.search_space``) and by :mod:`cdml.tuning.space` for those every run has."""

from cdml.tuning.knob import Knob

__all__ = ["Knob"]
