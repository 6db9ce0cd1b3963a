"""Synthetic data: shapes, determinism, balance and a learnable class signal."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from data.synthetic import make_synthetic


@pytest.mark.parametrize(
    ("n", "classes", "size"), [(1, 10, 28), (10, 10, 28), (97, 7, 16), (256, 2, 5)]
)
def test_shapes_dtypes_and_balance(n: int, classes: int, size: int) -> None:
    images, labels = make_synthetic(n, seed=0, num_classes=classes, image_size=size)
    assert images.shape == (n, size, size) and images.dtype == torch.uint8
    assert labels.shape == (n,) and labels.dtype == torch.int64
    counts = torch.bincount(labels, minlength=classes)
    assert len(counts) == classes
    assert int(counts.max() - counts.min()) <= 1


def test_deterministic_for_a_seed() -> None:
    a, b, c = (make_synthetic(50, seed=s) for s in (4, 4, 5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_labels_are_shuffled_and_images_use_the_range() -> None:
    images, labels = make_synthetic(200, seed=0)
    assert not torch.equal(labels, torch.arange(200) % 10)
    assert int(images.max()) > 200 and int(images.min()) < 30


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nearest_centroid_separates_classes(seed: int) -> None:
    images, labels = make_synthetic(1000, seed=seed)
    x = images.flatten(1).float()
    fit_x, fit_y, test_x, test_y = x[:500], labels[:500], x[500:], labels[500:]
    centroids = torch.stack([fit_x[fit_y == k].mean(0) for k in range(10)])
    predicted = torch.cdist(test_x, centroids).argmin(1)
    assert float((predicted == test_y).float().mean()) > 0.8


def test_small_cnn_learns_it_in_one_epoch() -> None:
    images, labels = make_synthetic(640, seed=0)
    x = (images.unsqueeze(1).float() / 255 - 0.4) / 0.3
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(4),
            nn.Flatten(),
            nn.Linear(8 * 7 * 7, 10),
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        for start in range(0, 512, 32):
            loss = F.cross_entropy(model(x[start : start + 32]), labels[start : start + 32])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        accuracy = (model(x[512:]).argmax(1) == labels[512:]).float().mean()
    assert float(accuracy) > 0.5  # chance is 0.1


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"num_samples": 0, "seed": 0}, ValueError),
        ({"num_samples": 10, "seed": 0, "num_classes": 1}, ValueError),
        ({"num_samples": 10, "seed": 0, "image_size": 0}, ValueError),
        ({"num_samples": 10.0, "seed": 0}, ValueError),
        ({"num_samples": 10, "seed": "0"}, TypeError),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        make_synthetic(**kwargs)  # type: ignore[arg-type]
