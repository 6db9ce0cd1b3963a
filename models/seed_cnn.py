"""The classic 2-conv + 2-dense baseline this project started from (421,642 parameters)."""

from __future__ import annotations

import torch
from torch import nn

from models.parameters import check_dropout, check_io


class SeedCNN(nn.Module):
    """The project's starting-point CNN, kept unchanged as the baseline to beat.

    conv3x3(in->32, pad 1)-ReLU-MaxPool2, conv3x3(32->64, pad 1)-ReLU-MaxPool2, flatten,
    Linear(64*(s//4)**2 -> 128)-ReLU-Dropout, Linear(128 -> num_classes). For 1x28x28 inputs and
    10 classes that is 421,642 parameters.

    Args:
        in_channels: Input channels (from the data config).
        num_classes: Number of classes (from the data config).
        image_size: Height = width of the input, >= 4 (from the data config).
        dropout: Dropout probability after the hidden dense layer, in [0, 1).

    Raises:
        ValueError: If an argument is out of range.
        TypeError: If an argument has the wrong type.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        check_io(in_channels=in_channels, num_classes=num_classes, image_size=image_size)
        dropout = check_dropout(dropout)
        if image_size < 4:
            raise ValueError(
                f"model.image_size={image_size} is too small for SeedCNN: its two 2x2 pools need "
                "inputs of at least 4x4; use data.image_size>=4 or another model"
            )
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.image_size = image_size
        final = image_size // 4  # two floor-halving pools: 28 -> 14 -> 7
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),  # (N, 64, 7, 7) -> (N, 3136)
            nn.Linear(64 * final * final, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps images (N, in_channels, image_size, image_size) to logits (N, num_classes)."""
        return self.head(self.features(x))
