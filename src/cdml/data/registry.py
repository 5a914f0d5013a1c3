"""Datasets by name: one description per dataset, filled by :func:`register_dataset`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from cdml.data.base import LabelledDataset
from cdml.metrics import DEFAULT_KS
from cdml.registry import Registry


class SplitSize(NamedTuple):
    images: int
    classes: int


@dataclass(frozen=True)
class DatasetInfo:
    """What cdml knows about a dataset.

    ``load(root, split, transform=None, *, skip_bad=False, **options)`` reads one zero-shot
    half; its keyword-only parameters are the options the dataset accepts (:attr:`options`).
    """

    name: str
    load: Callable[..., LabelledDataset]
    summary: str  # a phrase for ``--dataset``'s help
    labelled: bool = True  # labels and a test split (False: unsupervised training only)
    ks: tuple[int, ...] = DEFAULT_KS  # the Recall@K values its papers report
    sizes: dict[str, SplitSize] = field(default_factory=dict)  # published sizes per split
    mirror_sensitive: bool = False  # a mirror image is another class (trained without flips)

    @property
    def options(self) -> tuple[str, ...]:
        parameters = inspect.signature(self.load).parameters.values()
        return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


DATASETS: Registry[DatasetInfo] = Registry("dataset name")


def register_dataset(name: str, summary: str, **facts: Any) -> Callable[[Callable], Callable]:
    """Decorator of a loader: register it as dataset ``name`` with the facts of
    :class:`DatasetInfo`. The loader must take ``skip_bad`` (a no-op for images in memory)."""

    def add(load: Callable[..., LabelledDataset]) -> Callable[..., LabelledDataset]:
        info = DatasetInfo(name, load, summary, **facts)
        if "skip_bad" not in info.options:
            raise TypeError(f"the loader of {name!r} must take the keyword option skip_bad")
        if name not in DATASETS or DATASETS[name].load is not load:  # another loader: refused
            DATASETS.register(name, info)
        return load

    return add


def dataset_info(name: str) -> DatasetInfo:
    """The description of dataset ``name``; ``ValueError`` listing the known ones."""
    return DATASETS[name]


def load_dataset(
    name: str,
    root: str | Path | None = None,
    split: str = "train",
    transform: Callable[[Any], Any] | None = None,
    **options: Any,
) -> LabelledDataset:
    """One zero-shot half (``split`` = ``"train"`` or ``"test"``) of the dataset ``name``.

    Returns a dataset of ``(image, label)`` with ``labels`` (int64, renumbered 0..C-1
    within the split) and ``class_names``. ``root`` is what the dataset's loader expects (a
    folder, or the CSV file for ``"csv"``; ``None`` for ``"digits"`` and for the default
    Fashion-MNIST and glyphs locations). ``options`` are the dataset's
    :attr:`DatasetInfo.options` (every dataset takes ``skip_bad``; ``strict`` checks the
    published counts, ``check_files`` that every file exists); another is a ``ValueError``
    naming it.
    """
    info = dataset_info(name)
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        raise ValueError(
            f"dataset {name!r} takes no option {', '.join(unknown)} "
            f"(its options: {', '.join(info.options)})"
        )
    return info.load(root, split, transform, **options)
