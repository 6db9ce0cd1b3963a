"""FashionMNISTDataset for per-sample transforms with a torch DataLoader."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from data.dataset import FashionMNISTDataset
from data.fashion_mnist import CLASS_NAMES


def _arrays(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.arange(n * 28 * 28, dtype=torch.int64).remainder(251).to(torch.uint8)
    return images.view(n, 28, 28), torch.arange(n) % 10


@pytest.mark.parametrize("layout", ["NHW", "N1HW"])
def test_without_transform_returns_uint8_tensor(layout: str) -> None:
    images, labels = _arrays()
    ds = FashionMNISTDataset(images if layout == "NHW" else images.unsqueeze(1), labels)
    image, label = ds[3]
    assert len(ds) == 6
    assert isinstance(image, torch.Tensor) and image.dtype == torch.uint8
    assert image.shape == (1, 28, 28) and torch.equal(image[0], images[3])
    assert label == 3 and isinstance(label, int)
    assert ds.classes == CLASS_NAMES


def test_transform_receives_a_grayscale_pil_image() -> None:
    images, labels = _arrays()
    seen: list[Any] = []

    def to_array(img: Any) -> np.ndarray:
        seen.append(img)
        return np.asarray(img)

    ds = FashionMNISTDataset(images, labels, transform=to_array, target_transform=lambda y: -y)
    image, label = ds[2]
    assert isinstance(seen[0], Image.Image) and seen[0].mode == "L"
    np.testing.assert_array_equal(image, images[2].numpy())
    assert label == -2


def test_works_with_a_dataloader() -> None:
    images, labels = _arrays(8)
    x, y = next(iter(DataLoader(FashionMNISTDataset(images, labels), batch_size=4)))
    assert x.shape == (4, 1, 28, 28) and torch.equal(y, labels[:4])


@pytest.mark.parametrize(
    ("images", "labels", "error"),
    [
        (torch.zeros(4, 28, 28), torch.arange(4), TypeError),
        (torch.zeros(4, 3, 28, 28, dtype=torch.uint8), torch.arange(4), ValueError),
        (torch.zeros(4, 28, 28, dtype=torch.uint8), torch.arange(5), ValueError),
    ],
)
def test_rejects_bad_arrays(
    images: torch.Tensor, labels: torch.Tensor, error: type[Exception]
) -> None:
    with pytest.raises(error):
        FashionMNISTDataset(images, labels)
