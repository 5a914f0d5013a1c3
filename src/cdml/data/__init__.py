"""Datasets read from their distributed files, zero-shot splits, samplers and transforms."""

import importlib
import pkgutil

from cdml.data.array_dataset import ArrayImageDataset
from cdml.data.base import LabelledDataset
from cdml.data.image_dataset import ImageListDataset
from cdml.data.registry import DATASETS, DatasetInfo, SplitSize, dataset_info, load_dataset
from cdml.data.samplers import ClassBalancedBatchSampler
from cdml.data.splits import cap_per_class, split_validation_classes, validation_classes
from cdml.data.transforms import build_transforms, transforms_of
from cdml.data.zero_shot import SPLITS

# Every module of the package registers its datasets when imported: a new dataset is one file.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "DATASETS",
    "SPLITS",
    "ArrayImageDataset",
    "ClassBalancedBatchSampler",
    "DatasetInfo",
    "ImageListDataset",
    "LabelledDataset",
    "SplitSize",
    "build_transforms",
    "transforms_of",
    "cap_per_class",
    "dataset_info",
    "load_dataset",
    "split_validation_classes",
    "validation_classes",
]
