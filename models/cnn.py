"""A configurable plain CNN: ``depth`` blocks of conv3x3 [-BN] -ReLU (x1 or x2) + max-pool."""

from __future__ import annotations

import torch
from torch import nn

from models.parameters import (
    check_dropout,
    check_int,
    check_io,
    check_positive_float,
)


def _pooled_sizes(image_size: int) -> list[int]:
    """Sizes before the first block and after each pool that fits: 28 -> [28, 14, 7, 3, 1]."""
    sizes = [image_size]
    # A block needs at least 2x2 before its pool, or the pool would yield 0x0.
    while sizes[-1] >= 2:
        sizes.append(sizes[-1] // 2)
    return sizes


def _check_depth_fits(depth: int, image_size: int) -> None:
    sizes = _pooled_sizes(image_size)
    max_depth = len(sizes) - 1
    if depth <= max_depth:
        return
    chain = "->".join(str(s) for s in sizes)
    fix = f"use model.depth<={max_depth}" if max_depth else "use data.image_size>=2"
    raise ValueError(
        f"model.depth={depth} is too deep for {image_size}x{image_size} inputs: each block halves "
        f"the size ({chain}), so at most {max_depth} blocks fit; {fix}"
    )


def _block_channels(depth: int, width: int, width_growth: float) -> list[int]:
    channels = [round(width * width_growth**i) for i in range(depth)]
    if min(channels) < 1:
        raise ValueError(
            f"model.width={width} with model.width_growth={width_growth} gives block channels "
            f"{channels}, and every block needs >= 1 channel; raise model.width or use "
            "model.width_growth>=1"
        )
    return channels


def _conv_bn_relu(in_ch: int, out_ch: int, batch_norm: bool) -> list[nn.Module]:
    # A bias right before BN is cancelled by BN's mean subtraction: wasted parameters.
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_ch))
    layers.append(nn.ReLU(inplace=True))
    return layers


def _features(
    in_channels: int, channels: list[int], double_conv: bool, batch_norm: bool
) -> nn.Sequential:
    blocks: list[nn.Module] = []
    prev = in_channels
    for ch in channels:
        layers = _conv_bn_relu(prev, ch, batch_norm)
        if double_conv:
            layers += _conv_bn_relu(ch, ch, batch_norm)
        layers.append(nn.MaxPool2d(2))
        blocks.append(nn.Sequential(*layers))
        prev = ch
    return nn.Sequential(*blocks)


def _head(
    in_features: int, spatial: int, hidden: int, dropout: float, num_classes: int
) -> nn.Sequential:
    if hidden == 0:
        # (N, C, s, s) -> (N, C): size-agnostic and far fewer parameters than a dense layer.
        return nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(in_features, num_classes),
        )
    return nn.Sequential(
        nn.Flatten(),  # (N, C, s, s) -> (N, C*s*s); reshape, so channels_last input is fine
        nn.Dropout(dropout),
        nn.Linear(in_features * spatial * spatial, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )


class CNN(nn.Module):
    """A plain configurable CNN for small square images such as Fashion-MNIST.

    ``depth`` blocks; block ``i`` has ``round(width * width_growth**i)`` channels and is
    conv3x3 [-BN] -ReLU, optionally a second conv3x3 [-BN] -ReLU, then MaxPool2d(2). The head is
    flatten-dropout-Linear(hidden)-ReLU-dropout-Linear when ``hidden > 0``, else global average
    pool-dropout-Linear.

    Args:
        in_channels: Input channels (from the data config).
        num_classes: Number of classes, i.e. logits per sample (from the data config).
        image_size: Height = width of the input (from the data config).
        depth: Number of conv blocks, >= 1; each halves the spatial size (4 fit 28x28).
        width: Channels of the first block, >= 1.
        width_growth: Channel multiplier from one block to the next, > 0.
        double_conv: Put a second conv in every block.
        dropout: Dropout probability in the head, in [0, 1).
        batch_norm: BatchNorm after every conv (those convs then have no bias).
        hidden: Units of the dense layer before the classifier; 0 = global average pool.

    Raises:
        ValueError: If an argument is out of range, or ``depth`` does not fit ``image_size``.
        TypeError: If an argument has the wrong type.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        depth: int = 2,
        width: int = 32,
        width_growth: float = 2.0,
        double_conv: bool = False,
        dropout: float = 0.25,
        batch_norm: bool = True,
        hidden: int = 128,
    ) -> None:
        super().__init__()
        check_io(in_channels=in_channels, num_classes=num_classes, image_size=image_size)
        check_int("depth", depth, minimum=1)
        check_int("width", width, minimum=1)
        width_growth = check_positive_float("width_growth", width_growth)
        dropout = check_dropout(dropout)
        check_int("hidden", hidden, minimum=0)
        _check_depth_fits(depth, image_size)
        channels = _block_channels(depth, width, width_growth)

        self.in_channels = in_channels
        self.num_classes = num_classes
        self.image_size = image_size
        self.channels = channels
        self.double_conv = bool(double_conv)
        self.batch_norm = bool(batch_norm)
        self.hidden = hidden
        self.features = _features(in_channels, channels, self.double_conv, self.batch_norm)
        final_size = _pooled_sizes(image_size)[depth]
        self.head = _head(channels[-1], final_size, hidden, dropout, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps images (N, in_channels, image_size, image_size) to logits (N, num_classes)."""
        return self.head(self.features(x))

    def extra_repr(self) -> str:
        head = f"hidden={self.hidden}" if self.hidden else "head=global_avg_pool"
        return (
            f"channels={self.channels}, double_conv={self.double_conv}, "
            f"batch_norm={self.batch_norm}, {head}"
        )
