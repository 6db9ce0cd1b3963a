"""FashionMNISTData / SyntheticData: splits, statistics, loaders, validation, config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.utils import instantiate

from data import (
    CLASS_NAMES,
    BatchAugment,
    DataSplits,
    FashionMNISTData,
    SyntheticData,
    channel_stats,
)
from data import fashion_mnist as fm
from tests.data.fakes import FakeFashionMNIST


def _check_splits(splits: DataSplits, n_train: int, n_val: int) -> None:
    assert splits.train_images.shape == (n_train, 1, 28, 28)
    assert splits.val_images.shape == (n_val, 1, 28, 28)
    assert splits.train_images.dtype == splits.val_images.dtype == torch.uint8
    assert splits.train_labels.dtype == splits.val_labels.dtype == torch.int64
    assert len(splits.train_labels) == n_train and len(splits.val_labels) == n_val
    assert (splits.mean, splits.std) == channel_stats(splits.train_images)


def test_synthetic_setup_and_test_set() -> None:
    data = SyntheticData(num_train=120, num_val=40, num_test=30, seed=3)
    splits = data.setup()
    _check_splits(splits, 120, 40)
    assert splits.class_names == tuple(f"class{i}" for i in range(10))
    test_images, test_labels = data.load_test()
    assert test_images.shape == (30, 1, 28, 28) and test_labels.shape == (30,)
    again = SyntheticData(num_train=120, num_val=40, num_test=30, seed=3).setup()
    assert torch.equal(again.train_images, splits.train_images)
    # The three parts are disjoint slices of one draw: no test image is a train image.
    pool = torch.cat([splits.train_images, splits.val_images]).flatten(1)
    assert not (test_images.flatten(1)[:, None] == pool[None]).all(-1).any()


def test_train_subset_is_stratified_and_sets_statistics() -> None:
    full = SyntheticData(num_train=200, num_val=50, seed=0).setup()
    splits = SyntheticData(num_train=200, num_val=50, seed=0, train_subset=50).setup()
    _check_splits(splits, 50, 50)
    assert torch.equal(splits.val_images, full.val_images)
    counts = torch.bincount(splits.train_labels, minlength=10)
    share = torch.bincount(full.train_labels, minlength=10) * 50 / 200
    assert bool(((counts - share).abs() < 1).all()), "class proportions of the full split kept"
    # Every kept image is one of the full train split's images, with its label.
    match = (splits.train_images.flatten(1)[:, None] == full.train_images.flatten(1)[None]).all(-1)
    assert bool(match.any(1).all())
    assert torch.equal(full.train_labels[match.int().argmax(1)], splits.train_labels)


def test_loaders_from_splits() -> None:
    splits = SyntheticData(num_train=64, num_val=32).setup()
    aug = BatchAugment(flip=True)
    train = splits.train_loader(batch_size=16, seed=1, augment=aug, device="cpu")
    val = splits.val_loader(batch_size=16, device="cpu", channels_last=False)
    assert train.shuffle and train.augment is aug and len(train) == 4
    assert not val.shuffle and val.augment is None and len(val) == 2
    assert torch.equal(torch.cat([y for _, y in val]), splits.val_labels)
    x, _ = next(iter(val))
    expected = (splits.val_images[:16].float() / 255 - splits.mean) / splits.std
    torch.testing.assert_close(x, expected)


@pytest.mark.parametrize(
    ("num_train", "batch_size", "sizes"),
    [(70, 16, [16, 16, 16, 16]), (64, 16, [16, 16, 16, 16]), (10, 16, [10])],
)
def test_train_batches_are_full_unless_the_split_is_smaller(num_train, batch_size, sizes) -> None:
    splits = SyntheticData(num_train=num_train, num_val=20).setup()
    train = splits.train_loader(batch_size=batch_size, seed=1, augment=None, device="cpu")
    epochs = [[y.shape[0] for _, y in train] for _ in range(3)]
    assert epochs == [sizes] * 3
    # Each epoch leaves out a different remainder, so over epochs every image is seen.
    seen = torch.cat([torch.cat([x.flatten(1) for x, _ in train]) for _ in range(8)])
    assert torch.unique(seen, dim=0).shape[0] == len(
        torch.unique(splits.train_images.flatten(1), dim=0)
    )


def test_merged_splits_train_on_every_image_normalised_with_their_own_statistics() -> None:
    splits = SyntheticData(num_train=100, num_val=40, train_subset=60).setup()
    merged = splits.merged()
    assert torch.equal(merged.train_images, torch.cat([splits.train_images, splits.val_images]))
    assert torch.equal(merged.train_labels, torch.cat([splits.train_labels, splits.val_labels]))
    assert (merged.mean, merged.std) == channel_stats(merged.train_images)
    assert (merged.mean, merged.std) != (splits.mean, splits.std)
    assert merged.class_names == splits.class_names
    assert merged.val_images.shape == (0, 1, 28, 28) and merged.val_labels.shape == (0,)
    with pytest.raises(ValueError, match="at least one sample"):
        merged.val_loader(batch_size=16, device="cpu")  # nothing is left to validate on
    # The trial's loader code: full batches of 100 images out of 60 + 40, all normalised
    # with the merged statistics.
    train = merged.train_loader(batch_size=32, seed=1, augment=None, device="cpu")
    batches = list(train)
    assert [y.shape[0] for _, y in batches] == [32, 32, 32]
    pool = (merged.train_images.flatten(1).float() / 255 - merged.mean) / merged.std
    for x, _ in batches:
        assert (x.flatten(1)[:, None] - pool[None]).abs().amax(-1).min(1).values.max() < 1e-5


@pytest.mark.parametrize(
    ("cls", "kwargs", "error"),
    [
        (FashionMNISTData, {"num_classes": 5}, ValueError),
        (FashionMNISTData, {"in_channels": 3}, ValueError),
        (FashionMNISTData, {"image_size": 32}, ValueError),
        (FashionMNISTData, {"val_size": 0}, ValueError),
        (FashionMNISTData, {"val_size": 60000}, ValueError),
        (FashionMNISTData, {"val_size": 10000.0}, TypeError),
        (FashionMNISTData, {"train_subset": 0}, ValueError),
        (FashionMNISTData, {"train_subset": 50001}, ValueError),
        (FashionMNISTData, {"download": "yes"}, TypeError),
        (FashionMNISTData, {"split_seed": -1}, ValueError),
        (SyntheticData, {"num_train": 0}, ValueError),
        (SyntheticData, {"num_val": 0}, ValueError),
        (SyntheticData, {"train_subset": 513}, ValueError),
        (SyntheticData, {"num_classes": 1}, ValueError),
        (SyntheticData, {"in_channels": 3}, ValueError),
    ],
)
def test_invalid_settings_fail_at_construction(
    cls: type[Any], kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error, match=next(iter(kwargs))):
        cls(**kwargs)


def test_fashion_mnist_setup_never_reads_the_test_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_fmnist: FakeFashionMNIST
) -> None:
    def forbidden(**kwargs: Any) -> None:
        raise AssertionError("the training path must not load the test set")

    root = fake_fmnist.write(tmp_path / "root")
    monkeypatch.setattr(fm, "load_test_arrays", forbidden)
    data = FashionMNISTData(root=str(root), cache_dir=str(tmp_path / "c"), val_size=50)
    splits = data.setup()
    _check_splits(splits, 150, 50)
    assert splits.class_names == CLASS_NAMES
    assert torch.bincount(splits.val_labels).tolist() == [5] * 10
    with pytest.raises(AssertionError, match="must not load the test set"):
        data.load_test()


def test_fashion_mnist_load_test(tmp_path: Path, fake_fmnist: FakeFashionMNIST) -> None:
    root = fake_fmnist.write(tmp_path / "root")
    data = FashionMNISTData(root=str(root), cache_dir=str(tmp_path / "c"), val_size=50)
    images, labels = data.load_test()
    assert images.shape == (50, 1, 28, 28) and images.dtype == torch.uint8
    assert torch.equal(labels, torch.from_numpy(fake_fmnist.arrays[("test", "labels")]).long())


@pytest.mark.parametrize("augmentation", ["none", "flip_crop", "flip_crop_erase"])
def test_yaml_configs_instantiate(compose_cfg: Any, augmentation: str) -> None:
    # The config is written against these signatures; a renamed argument fails here.
    cfg = compose_cfg(f"augmentation={augmentation}")
    assert isinstance(instantiate(cfg.data), SyntheticData)
    assert isinstance(instantiate(cfg.augmentation), BatchAugment)
    real = compose_cfg("data=fashion_mnist", tiny=False)
    data = instantiate(real.data)
    assert isinstance(data, FashionMNISTData) and data.val_size == 10000


@pytest.mark.slow
def test_real_fashion_mnist_split(tmp_path: Path) -> None:
    if not all((fm.DEBIAN_DIR / f.name).is_file() for f in fm.FILES.values()):
        pytest.skip(f"the real files are not in {fm.DEBIAN_DIR}")
    data = FashionMNISTData(root=str(fm.DEBIAN_DIR), cache_dir=str(tmp_path))
    splits = data.setup()
    _check_splits(splits, 50000, 10000)
    assert torch.bincount(splits.val_labels).tolist() == [1000] * 10
    assert torch.bincount(splits.train_labels).tolist() == [5000] * 10
    assert splits.mean == pytest.approx(0.286, abs=2e-3)
    assert splits.std == pytest.approx(0.353, abs=2e-3)
    images, labels = data.load_test()
    assert images.shape == (10000, 1, 28, 28)
    assert torch.bincount(labels).tolist() == [1000] * 10
