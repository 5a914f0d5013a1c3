"""Datasets read from their distributed files, zero-shot splits, samplers and transforms."""

from cdml.data.array_dataset import ArrayImageDataset
from cdml.data.base import LabelledDataset
from cdml.data.image_dataset import ImageListDataset
from cdml.data.registry import DATASETS, load_dataset
from cdml.data.samplers import ClassBalancedBatchSampler, DistributedClassBalancedBatchSampler
from cdml.data.splits import cap_per_class, split_validation_classes
from cdml.data.transforms import build_transforms
from cdml.data.zero_shot import EXPECTED_SIZES, SPLITS

__all__ = [
    "DATASETS",
    "EXPECTED_SIZES",
    "SPLITS",
    "ArrayImageDataset",
    "ClassBalancedBatchSampler",
    "DistributedClassBalancedBatchSampler",
    "ImageListDataset",
    "LabelledDataset",
    "build_transforms",
    "cap_per_class",
    "load_dataset",
    "split_validation_classes",
]
