"""What Hydra instantiates as `cfg.data`: a dataset description that builds the splits.

`FashionMNISTData` (the real files) and `SyntheticData` (generated, no files) share one
interface: `setup()` returns the train/validation `DataSplits`, and `load_test()` returns the
test set for the final retest only; the training path never calls it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from data import fashion_mnist
from data.augment import BatchAugment
from data.fashion_mnist import CLASS_NAMES, IMAGE_SIZE, NUM_CLASSES
from data.loader import TensorBatchLoader, channel_stats
from data.splits import stratified_split
from data.synthetic import make_synthetic

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class DataSplits:
    """The train and validation tensors plus the statistics to normalise them.

    `mean` and `std` are computed on the train split only (after `train_subset`), so nothing
    about the validation images leaks into training.
    """

    train_images: torch.Tensor = field(repr=False)  # uint8 (N, 1, H, W)
    train_labels: torch.Tensor = field(repr=False)  # int64 (N,)
    val_images: torch.Tensor = field(repr=False)  # uint8 (M, 1, H, W)
    val_labels: torch.Tensor = field(repr=False)  # int64 (M,)
    mean: float
    std: float
    class_names: tuple[str, ...]

    def train_loader(
        self,
        *,
        batch_size: int,
        seed: int,
        augment: BatchAugment | None,
        device: torch.device | str,
        channels_last: bool = True,
    ) -> TensorBatchLoader:
        """A shuffled, optionally augmented loader over the train split.

        Every batch has `batch_size` images: the remainder of an epoch's permutation is left
        out (a different one each epoch, so no image is left out for good). Steps of one
        shape also suit the CPU allocator: with glibc's defaults, one smaller batch made every
        later training step of the process about 20% slower (SeedCNN, fp32 and bf16; the
        trainer now also fixes glibc's thresholds, see bench/README.md). A split smaller than
        one batch keeps its single partial batch.
        """
        return TensorBatchLoader(
            self.train_images,
            self.train_labels,
            batch_size=batch_size,
            mean=self.mean,
            std=self.std,
            shuffle=True,
            seed=seed,
            augment=augment,
            device=device,
            channels_last=channels_last,
            drop_last=len(self.train_labels) >= batch_size,
        )

    def merged(self) -> DataSplits:
        """Train and validation as one train split, for a final retrain without validation.

        Its statistics are those of all the images (the retrained model is normalised as it
        was trained), and its validation split is empty, so `val_loader` refuses it: nothing
        is left to validate on. `train_loader` over it batches exactly as over a trial's
        train split (shuffle, augmentation, full batches).
        """
        images = torch.cat([self.train_images, self.val_images])
        labels = torch.cat([self.train_labels, self.val_labels])
        mean, std = channel_stats(images)
        log.info("data: all %d training images merged, mean %.4f std %.4f", len(labels), mean, std)
        return DataSplits(
            train_images=images,
            train_labels=labels,
            val_images=self.val_images[:0],
            val_labels=self.val_labels[:0],
            mean=mean,
            std=std,
            class_names=self.class_names,
        )

    def val_loader(
        self, *, batch_size: int, device: torch.device | str, channels_last: bool = True
    ) -> TensorBatchLoader:
        """An in-order loader over the validation split, never augmented."""
        return TensorBatchLoader(
            self.val_images,
            self.val_labels,
            batch_size=batch_size,
            mean=self.mean,
            std=self.std,
            shuffle=False,
            augment=None,
            device=device,
            channels_last=channels_last,
        )


class FashionMNISTData:
    """The real Fashion-MNIST: 60k training images split into train/validation.

    Args:
        root: folder holding the four files; None = `FMNIST_DIR`, the cache, the Debian
            package folder (see `data.fashion_mnist.locate_files`).
        cache_dir: data cache (torchvision downloads and decoded arrays). A relative path is
            relative to the current working directory.
        download: let torchvision download the files into `cache_dir` when none are found.
        val_size: validation images carved out of the 60k, stratified by class.
        split_seed: seed of the split (and of the `train_subset` draw); kept apart from the
            training seed so trials with different seeds share one split.
        train_subset: keep only this many train-split images (a seeded, class-stratified
            subset), or None for all.
        num_classes: must be 10; present so model configs can interpolate it.
        in_channels: must be 1; present so model configs can interpolate it.
        image_size: must be 28; present so model configs can interpolate it.
    """

    def __init__(
        self,
        *,
        root: str | None = None,
        cache_dir: str = ".cache/fashion-mnist",
        download: bool = False,
        val_size: int = 10000,
        split_seed: int = 0,
        train_subset: int | None = None,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
    ) -> None:
        _require_equal("num_classes", num_classes, NUM_CLASSES)
        _require_equal("in_channels", in_channels, 1)
        _require_equal("image_size", image_size, IMAGE_SIZE)
        total = fashion_mnist.FILES[("train", "labels")].shape[0]
        _require_int("val_size", val_size, 1, total - 1)
        _require_int("split_seed", split_seed, 0, None)
        if train_subset is not None:
            _require_int("train_subset", train_subset, 1, total - val_size)
        if not isinstance(download, bool):
            raise TypeError(f"download must be true or false, got {download!r}")
        self.root = root
        self.cache_dir = Path(cache_dir)
        self.download = download
        self.val_size, self.split_seed, self.train_subset = val_size, split_seed, train_subset
        self.num_classes, self.in_channels, self.image_size = num_classes, in_channels, image_size

    def setup(self) -> DataSplits:
        """Load and verify the training file, then split it into train and validation."""
        images, labels = fashion_mnist.load_train_arrays(
            root=self.root, cache_dir=self.cache_dir, download=self.download
        )
        train_idx, val_idx = stratified_split(labels, self.val_size, self.split_seed)
        return _make_splits(
            images, labels, train_idx, val_idx, self.train_subset, self.split_seed, CLASS_NAMES
        )

    def load_test(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The official test set: uint8 (10000, 1, 28, 28) images and int64 labels.

        For the final retest of the best trial only; the training path never calls this.
        Normalise with the `mean`/`std` of the `DataSplits` the model was trained with.
        """
        images, labels = fashion_mnist.load_test_arrays(
            root=self.root, cache_dir=self.cache_dir, download=self.download
        )
        return images.unsqueeze(1), labels


class SyntheticData:
    """Generated images with a learnable class signal, in Fashion-MNIST's shapes; no files.

    Train, validation and test come from one `make_synthetic` draw (so they share the class
    templates) and are its first `num_train`, next `num_val` and last `num_test` samples.

    Args:
        num_train: train images, >= 1.
        num_val: validation images, >= 1.
        num_test: test images, >= 1.
        seed: seed of the generated data.
        train_subset: keep only this many train images (seeded, class-stratified), or None.
        num_classes: number of classes, >= 2.
        in_channels: must be 1 (the images are grayscale).
        image_size: height and width of the images, >= 1.
    """

    def __init__(
        self,
        *,
        num_train: int = 512,
        num_val: int = 256,
        num_test: int = 256,
        seed: int = 0,
        train_subset: int | None = None,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
    ) -> None:
        for name, value in (("num_train", num_train), ("num_val", num_val)):
            _require_int(name, value, 1, None)
        _require_int("num_test", num_test, 1, None)
        _require_int("seed", seed, 0, None)
        if train_subset is not None:
            _require_int("train_subset", train_subset, 1, num_train)
        _require_int("num_classes", num_classes, 2, None)
        _require_equal("in_channels", in_channels, 1)
        _require_int("image_size", image_size, 1, None)
        self.num_train, self.num_val, self.num_test = num_train, num_val, num_test
        self.seed, self.train_subset = seed, train_subset
        self.num_classes, self.in_channels, self.image_size = num_classes, in_channels, image_size

    def setup(self) -> DataSplits:
        """Generate the data and return the train and validation parts."""
        images, labels = self._generate()
        train_idx = torch.arange(self.num_train)
        val_idx = torch.arange(self.num_train, self.num_train + self.num_val)
        names = tuple(f"class{i}" for i in range(self.num_classes))
        return _make_splits(images, labels, train_idx, val_idx, self.train_subset, self.seed, names)

    def load_test(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The generated test part: uint8 (num_test, 1, H, W) images and int64 labels."""
        images, labels = self._generate()
        start = self.num_train + self.num_val
        return images[start:].unsqueeze(1), labels[start:]

    def _generate(self) -> tuple[torch.Tensor, torch.Tensor]:
        total = self.num_train + self.num_val + self.num_test
        return make_synthetic(
            total, seed=self.seed, num_classes=self.num_classes, image_size=self.image_size
        )


def _make_splits(
    images: torch.Tensor,
    labels: torch.Tensor,
    train_idx: torch.Tensor,
    val_idx: torch.Tensor,
    train_subset: int | None,
    seed: int,
    class_names: tuple[str, ...],
) -> DataSplits:
    """Index the (N, H, W) arrays into train/validation DataSplits with train statistics."""
    if train_subset is not None and train_subset < len(train_idx):
        # A stratified draw keeps the class balance that a plain "first N" could skew.
        _, keep = stratified_split(labels[train_idx], train_subset, seed)
        train_idx = train_idx[keep]
    train_images = images[train_idx].unsqueeze(1)  # uint8 (N, 1, H, W)
    mean, std = channel_stats(train_images)
    log.info(
        "data: %d train / %d validation images, train mean %.4f std %.4f",
        len(train_idx),
        len(val_idx),
        mean,
        std,
    )
    return DataSplits(
        train_images=train_images,
        train_labels=labels[train_idx],
        val_images=images[val_idx].unsqueeze(1),
        val_labels=labels[val_idx],
        mean=mean,
        std=std,
        class_names=class_names,
    )


def _require_int(name: str, value: object, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < low or (high is not None and value > high):
        upper = "" if high is None else f" and <= {high}"
        raise ValueError(f"{name} must be >= {low}{upper}, got {value}")


def _require_equal(name: str, value: object, expected: int) -> None:
    if value != expected:
        raise ValueError(
            f"{name} is {expected} for this dataset, got {value!r}; remove the override "
            f"data.{name}={value} (it exists so model configs can interpolate it)"
        )
