from __future__ import annotations

import pytest
import torch
from torch import nn

from models import SeedCNN, count_parameters


def test_parameter_count_of_the_baseline() -> None:
    # Layer by layer, so a changed layer shows up as a changed term, not just a changed total.
    conv1 = 1 * 32 * 9 + 32
    conv2 = 32 * 64 * 9 + 64
    dense = 64 * 7 * 7 * 128 + 128
    classifier = 128 * 10 + 10
    assert count_parameters(SeedCNN()) == conv1 + conv2 + dense + classifier == 421_642


def test_layer_order_matches_the_original_baseline() -> None:
    kinds = [type(m).__name__ for m in SeedCNN().modules() if not isinstance(m, nn.Sequential)]
    assert kinds == [
        "SeedCNN",
        "Conv2d",
        "ReLU",
        "MaxPool2d",
        "Conv2d",
        "ReLU",
        "MaxPool2d",
        "Flatten",
        "Linear",
        "ReLU",
        "Dropout",
        "Linear",
    ]


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize(
    ("in_channels", "num_classes", "image_size"), [(1, 10, 28), (3, 4, 32), (1, 2, 4), (2, 10, 9)]
)
def test_output_shape(
    in_channels: int, num_classes: int, image_size: int, memory_format: torch.memory_format
) -> None:
    model = SeedCNN(in_channels=in_channels, num_classes=num_classes, image_size=image_size)
    model = model.to(memory_format=memory_format)
    x = torch.randn(2, in_channels, image_size, image_size).to(memory_format=memory_format)
    assert model(x).shape == (2, num_classes)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"image_size": 3}, ValueError, "model.image_size=3 is too small .* data.image_size>=4"),
        ({"dropout": 1.5}, ValueError, r"model.dropout=1.5 .* \[0, 1\)"),
        ({"in_channels": 0}, ValueError, "model.in_channels=0"),
        ({"num_classes": 0}, ValueError, "model.num_classes=0"),
        ({"image_size": 28.0}, TypeError, "model.image_size=28.0 must be an integer"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        SeedCNN(**kwargs)  # type: ignore[arg-type]
