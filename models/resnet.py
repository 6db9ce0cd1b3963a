"""A small pre-activation ResNet (He et al. 2016, "Identity Mappings in Deep Residual Networks")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.parameters import check_dropout, check_int, check_io


class _PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3, plus an identity or 1x1-conv shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        # Every conv is followed by BN (in this block or the next), so biases would be wasted.
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        # The projection reads the pre-activated input, as in the paper's reference code;
        # the identity path carries x untouched, which is the point of pre-activation.
        residual = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + residual


def _blocks_per_stage(depth: int) -> int:
    if depth < 8 or (depth - 2) % 6:
        low = max(depth - (depth - 2) % 6, 8)
        valid = ", ".join(str(d) for d in (8, 14, 20, 26, 32, 44, 56, 110))
        raise ValueError(
            f"model.depth={depth} is not a valid pre-activation ResNet depth: it must be 6n+2 with "
            f"n>=1 blocks per stage ({valid}, ...); use model.depth={low} or {low + 6}"
        )
    return (depth - 2) // 6


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d):
        # fan_out keeps the backward signal's variance stable through ReLU networks (He et al.).
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class PreActResNet(nn.Module):
    """A small pre-activation ResNet for 28x28 inputs, CIFAR-style: depth = 6n + 2.

    Stem conv3x3(in->width), then 3 stages of ``n`` pre-activation blocks with width, 2*width,
    4*width channels and strides 1, 2, 2 (28 -> 28 -> 14 -> 7), then BN-ReLU, global average
    pool, dropout and a linear classifier. Convolutions use Kaiming-normal initialisation.

    Args:
        in_channels: Input channels (from the data config).
        num_classes: Number of classes (from the data config).
        image_size: Height = width of the input (from the data config); the global average pool
            makes the network size-agnostic, so this is only checked, not used.
        depth: 6n + 2 for n >= 1 blocks per stage: 8, 14, 20, ...
        width: Channels of the first stage, >= 1.
        dropout: Dropout probability before the classifier, in [0, 1).

    Raises:
        ValueError: If an argument is out of range or ``depth`` is not 6n + 2.
        TypeError: If an argument has the wrong type.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        depth: int = 8,
        width: int = 16,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_io(in_channels=in_channels, num_classes=num_classes, image_size=image_size)
        check_int("depth", depth, minimum=1)
        check_int("width", width, minimum=1)
        dropout = check_dropout(dropout)
        n = _blocks_per_stage(depth)

        self.in_channels = in_channels
        self.num_classes = num_classes
        self.image_size = image_size
        self.depth = depth
        self.width = width
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        blocks: list[nn.Module] = []
        prev = width
        for stage, stride in enumerate((1, 2, 2)):
            out = width * 2**stage
            for i in range(n):
                blocks.append(_PreActBlock(prev, out, stride if i == 0 else 1))
                prev = out
        self.blocks = nn.Sequential(*blocks)
        self.final_bn = nn.BatchNorm2d(prev)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(prev, num_classes)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps images (N, in_channels, image_size, image_size) to logits (N, num_classes)."""
        out = self.blocks(self.stem(x))  # (N, 4*width, s/4, s/4)
        out = F.relu(self.final_bn(out))
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)  # (N, 4*width)
        return self.fc(self.dropout(out))

    def extra_repr(self) -> str:
        return f"depth={self.depth}, width={self.width}"
