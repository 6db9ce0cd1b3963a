"""Fashion-MNIST data: verified file loading, seeded splits, in-memory batches, augmentation.

Plain PyTorch and numpy; this package never imports Hydra, Optuna or MLflow.
"""

from __future__ import annotations

from data.augment import BatchAugment
from data.datamodule import DataSplits, FashionMNISTData, SyntheticData
from data.dataset import FashionMNISTDataset
from data.fashion_mnist import CLASS_NAMES
from data.idx import DatasetFileError
from data.loader import TensorBatchLoader, channel_stats
from data.splits import stratified_split
from data.synthetic import make_synthetic

__all__ = [
    "CLASS_NAMES",
    "BatchAugment",
    "DataSplits",
    "DatasetFileError",
    "FashionMNISTData",
    "FashionMNISTDataset",
    "SyntheticData",
    "TensorBatchLoader",
    "channel_stats",
    "make_synthetic",
    "stratified_split",
]
