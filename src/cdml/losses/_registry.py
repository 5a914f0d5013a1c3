"""The registry of training methods, filled by :func:`register_method`, and its factory."""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

from torch import nn

from cdml.registry import Registry

from ._base import ExternalLoss
from ._method import Method, RunInfo

METHODS: Registry[type[Method]] = Registry(
    "loss", hint="or package.module:ClassName for a loss of your own"
)

M = TypeVar("M", bound=type[Method])

# ``package.module:ClassName``: the only form in which a name is imported.
_IMPORTABLE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: register a :class:`Method` subclass as ``name`` (``--loss name``).

    Example::

        @register_method("my-loss")
        class MyLoss(MetricLoss):
            def compute(self, embeddings, labels): ...
    """
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
        raise ValueError(f"a method name is lower-case letters, digits, - and _, got {name!r}")

    def add(cls: M) -> M:
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise TypeError(f"register_method({name!r}) decorates a Method subclass, got {cls!r}")
        return METHODS.register(name, cls)

    return add


def method_class(name: str) -> type[Method]:
    """The class of method ``name``: a registered name, or ``package.module:ClassName`` (a
    :class:`Method` subclass, or any ``nn.Module`` loss, trained as :class:`ExternalLoss`)."""
    cls, _ = _resolve(name)
    return cls


def _resolve(name: str) -> tuple[type[Method], type[nn.Module]]:
    """The method class of ``name`` and the class its constructor arguments are for (the
    imported loss, for :class:`ExternalLoss`)."""
    if ":" not in name:
        return METHODS[name], METHODS[name]
    target = import_loss(name)
    return (target, target) if issubclass(target, Method) else (ExternalLoss, target)


def import_loss(name: str) -> type[nn.Module]:
    """The ``nn.Module`` class ``package.module:ClassName`` names, imported."""
    if not _IMPORTABLE.fullmatch(name):
        raise ValueError(f"loss name {name!r} is not of the form package.module:ClassName")
    module_name, class_name = name.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"loss {name!r}: cannot import {module_name} ({error})") from None
    target = getattr(module, class_name, None)
    if not (isinstance(target, type) and issubclass(target, nn.Module)):
        raise ValueError(f"loss {name!r}: {module_name} has no nn.Module class {class_name}")
    return target


def create_method(name: str, run: RunInfo | None = None, **params: Any) -> Method:
    """Build method ``name`` (see :func:`method_class`) with constructor arguments ``params``.

    What the method declares in ``needs`` and ``params`` leaves out comes from ``run``; a loss
    of another library gets ``embedding_size`` / ``num_classes`` from it the same way when its
    constructor takes them. Bad arguments raise ``ValueError`` naming the method.
    """
    run = run or RunInfo()
    cls, target = _resolve(name)
    if cls is ExternalLoss:
        accepted = inspect.signature(target).parameters
        needs = [f.name for f in fields(RunInfo) if f.name in accepted and f.name != "model"]
    else:
        needs = list(cls.needs)
    for need in needs:
        if need not in params and getattr(run, need) is not None:
            params[need] = getattr(run, need)
    try:
        method = target(**params)
    except TypeError as error:  # an unknown or missing constructor argument
        raise ValueError(f"loss.params of {name!r}: {error}") from None
    return ExternalLoss(method) if cls is ExternalLoss else method
