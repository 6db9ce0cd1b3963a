"""TensorBatchLoader (batches, order, normalisation, seeding) and channel_stats."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch

from data.augment import BatchAugment
from data.loader import TensorBatchLoader, channel_stats
from data.synthetic import make_synthetic


def _data(n: int = 100, c: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    shape = (n, 8, 8) if c is None else (n, c, 8, 8)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=g), torch.arange(n)


def _loader(images: torch.Tensor, labels: torch.Tensor, **kwargs: Any) -> TensorBatchLoader:
    settings: dict[str, Any] = {"batch_size": 16, "mean": 0.5, "std": 0.25, "shuffle": False}
    return TensorBatchLoader(images, labels, **{**settings, **kwargs})


def _epoch_labels(loader: TensorBatchLoader) -> torch.Tensor:
    return torch.cat([y for _, y in loader])


@pytest.mark.parametrize(
    ("n", "batch_size", "drop_last", "expected"),
    [
        (100, 16, False, 7),
        (100, 16, True, 6),
        (96, 16, False, 6),
        (96, 16, True, 6),
        (5, 8, False, 1),
    ],
)
def test_len_matches_batches_yielded(
    n: int, batch_size: int, drop_last: bool, expected: int
) -> None:
    loader = _loader(*_data(n), batch_size=batch_size, drop_last=drop_last, shuffle=True)
    batches = list(loader)
    assert len(loader) == len(batches) == expected
    assert all(len(y) == batch_size for _, y in batches[: n // batch_size])
    assert loader.num_samples == n and loader.batch_size == batch_size


def test_unshuffled_batches_are_normalised_in_order() -> None:
    images, labels = _data(40)
    loader = _loader(images, labels, mean=0.3, std=0.2, batch_size=16)
    xs, ys = zip(*loader, strict=True)
    assert torch.equal(torch.cat(ys), labels)
    x = torch.cat(xs)
    assert x.dtype == torch.float32 and x.shape == (40, 1, 8, 8)
    expected = (images.unsqueeze(1).double() / 255 - 0.3) / 0.2
    torch.testing.assert_close(x.double(), expected, rtol=0, atol=1e-5)
    assert all(y.dtype == torch.int64 for y in ys)


def test_epoch_statistics_are_standardised() -> None:
    images, labels = make_synthetic(300, seed=1, image_size=12)
    mean, std = channel_stats(images)
    loader = _loader(images, labels, mean=mean, std=std, shuffle=True)
    x = torch.cat([x for x, _ in loader]).double()
    assert abs(float(x.mean())) < 1e-5
    assert abs(float(x.std(unbiased=False)) - 1.0) < 1e-5


def test_each_epoch_is_a_new_permutation() -> None:
    loader = _loader(*_data(64), shuffle=True)
    first, second = _epoch_labels(loader), _epoch_labels(loader)
    assert torch.equal(first.sort().values, torch.arange(64))
    assert torch.equal(second.sort().values, torch.arange(64))
    assert not torch.equal(first, second)
    assert not torch.equal(first, torch.arange(64))


def test_same_seed_reproduces_every_epoch() -> None:
    aug = BatchAugment(flip=True, crop_padding=1, erase_prob=0.5)
    a, b = (_loader(*_data(64), shuffle=True, seed=5, augment=aug) for _ in range(2))
    for _ in range(2):  # two epochs: the generator state carries over identically
        for (xa, ya), (xb, yb) in zip(a, b, strict=True):
            assert torch.equal(ya, yb) and torch.equal(xa, xb)
    c = _loader(*_data(64), shuffle=True, seed=6)
    assert not torch.equal(
        _epoch_labels(c), _epoch_labels(_loader(*_data(64), shuffle=True, seed=5))
    )


def test_augmentation_does_not_change_batch_order() -> None:
    plain = _loader(*_data(64), shuffle=True, seed=3)
    augmented = _loader(*_data(64), shuffle=True, seed=3, augment=BatchAugment(flip=True))
    for _ in range(2):
        assert torch.equal(_epoch_labels(plain), _epoch_labels(augmented))


def test_augmentation_applies_only_when_enabled() -> None:
    images, labels = _data(64)
    reference = torch.cat([x for x, _ in _loader(images, labels)])
    identity = _loader(images, labels, augment=BatchAugment())
    assert identity.augment is None
    assert torch.equal(torch.cat([x for x, _ in identity]), reference)
    flipped = torch.cat([x for x, _ in _loader(images, labels, augment=BatchAugment(flip=True))])
    changed = (flipped != reference).flatten(1).any(1)
    assert torch.equal(flipped[changed], reference[changed].flip(-1))
    assert 0 < int(changed.sum()) < 64


def _flipped_per_label(loader: TensorBatchLoader, reference: torch.Tensor) -> torch.Tensor:
    """One epoch: whether each image (indexed by its label, = its position) came flipped."""
    flipped = torch.zeros(len(reference), dtype=torch.bool)
    for x, y in loader:
        is_flipped = (x != reference[y]).flatten(1).any(1)
        assert torch.equal(x[is_flipped], reference[y][is_flipped].flip(-1))
        flipped[y] = is_flipped
    return flipped


@pytest.mark.parametrize("shuffle", [True, False])
def test_alternating_flip_flips_each_image_every_other_epoch(shuffle: bool) -> None:
    # Images unchanged by a flip would hide it: random pixels are never symmetric here.
    images, labels = _data(64)
    reference = torch.cat([x for x, _ in _loader(images, labels, batch_size=64)])
    augment = BatchAugment(flip=True, alternate_flip=True)
    loader = _loader(images, labels, shuffle=shuffle, seed=4, augment=augment)
    epochs = [_flipped_per_label(loader, reference) for _ in range(4)]
    assert loader.epochs == 4
    assert 16 < int(epochs[0].sum()) < 48  # a random start, about half flipped
    for previous, current in itertools.pairwise(epochs):
        assert torch.equal(current, ~previous)
    # The same seed gives the same start; random flips would not alternate.
    again = _loader(images, labels, shuffle=shuffle, seed=4, augment=augment)
    assert torch.equal(_flipped_per_label(again, reference), epochs[0])
    random = _loader(images, labels, shuffle=shuffle, seed=4, augment=BatchAugment(flip=True))
    first, second = (_flipped_per_label(random, reference) for _ in range(2))
    assert not torch.equal(second, ~first)


@pytest.mark.parametrize("channels_last", [True, False])
def test_memory_format(channels_last: bool) -> None:
    loader = _loader(*_data(20, c=3), channels_last=channels_last)
    x, _ = next(iter(loader))
    assert x.is_contiguous(memory_format=torch.channels_last) is channels_last
    assert x.is_contiguous() is not channels_last


@pytest.mark.parametrize("layout", ["NHW", "N1HW"])
def test_accepts_both_image_layouts(layout: str) -> None:
    images, labels = _data(10)
    if layout == "N1HW":
        images = images.unsqueeze(1)
    x, _ = next(iter(_loader(images, labels)))
    assert x.shape == (10, 1, 8, 8)


@pytest.mark.parametrize(
    ("images", "labels", "kwargs", "error"),
    [
        (torch.zeros(4, 8, 8), torch.arange(4), {}, TypeError),
        (torch.zeros(4, 8, dtype=torch.uint8), torch.arange(4), {}, ValueError),
        (torch.zeros(4, 8, 8, dtype=torch.uint8), torch.arange(5), {}, ValueError),
        (torch.zeros(4, 8, 8, dtype=torch.uint8), torch.zeros(4), {}, TypeError),
        (torch.zeros(0, 8, 8, dtype=torch.uint8), torch.arange(0), {}, ValueError),
        (torch.zeros(4, 8, 8, dtype=torch.uint8), torch.arange(4), {"batch_size": 0}, ValueError),
        (torch.zeros(4, 8, 8, dtype=torch.uint8), torch.arange(4), {"std": 0.0}, ValueError),
        (
            torch.zeros(4, 8, 8, dtype=torch.uint8),
            torch.arange(4),
            {"mean": float("nan")},
            ValueError,
        ),
        (torch.zeros(4, 8, 8, dtype=torch.uint8), torch.arange(4), {"seed": -1}, ValueError),
        (
            torch.zeros(4, 8, 8, dtype=torch.uint8),
            torch.arange(4),
            {"batch_size": 8, "drop_last": True},
            ValueError,
        ),
        (torch.zeros(4, 8, 8, dtype=torch.uint8), torch.arange(4), {"augment": "flip"}, TypeError),
    ],
)
def test_invalid_inputs(
    images: torch.Tensor, labels: torch.Tensor, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        _loader(images, labels, **kwargs)


@pytest.mark.parametrize(
    ("values", "mean", "std"),
    [
        ([0, 0, 0, 0], 0.0, 0.0),
        ([255, 255], 1.0, 0.0),
        ([0, 255], 0.5, 0.5),
        ([0, 0, 0, 255], 0.25, 0.4330127018922193),
        ([51, 102], 0.3, 0.1),
    ],
)
def test_channel_stats_table(values: list[int], mean: float, std: float) -> None:
    got_mean, got_std = channel_stats(torch.tensor(values, dtype=torch.uint8).view(-1, 1, 1))
    assert got_mean == pytest.approx(mean, abs=1e-12)
    assert got_std == pytest.approx(std, abs=1e-12)


def test_channel_stats_match_float64_reference_across_chunks() -> None:
    images, _ = make_synthetic(9000, seed=0, image_size=4)  # more images than one chunk
    x = images.double() / 255
    mean, std = channel_stats(images.unsqueeze(1))
    assert mean == pytest.approx(float(x.mean()), abs=1e-12)
    assert std == pytest.approx(float(x.std(unbiased=False)), abs=1e-12)


@pytest.mark.parametrize("bad", [torch.zeros(3), torch.zeros(0, dtype=torch.uint8)])
def test_channel_stats_rejects_bad_input(bad: torch.Tensor) -> None:
    with pytest.raises((TypeError, ValueError)):
        channel_stats(bad)
