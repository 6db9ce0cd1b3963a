"""Horizontal-flip test-time augmentation as a module, for validation, the test set and export."""

from __future__ import annotations

import torch
from torch import nn

# Attributes RawPixelClassifier reads from the model it wraps (its input shape).
_SHAPE_ATTRIBUTES = ("in_channels", "image_size")


class FlipTTA(nn.Module):
    """Averages a classifier's logits over the image and its horizontal mirror image.

    ``forward(x) = (net(x) + net(x.flip(-1))) / 2``: one extra forward pass, no training.
    Fashion-MNIST articles are roughly left-right symmetric, so the mirror image is a second
    opinion on the same article. The wrapped ``net`` keeps its own ``state_dict`` keys under
    ``net.``; checkpoints hold the bare network's weights, and this wrapper is added on top.

    Args:
        net: A classifier mapping images (N, C, H, W) to logits (N, num_classes).

    Raises:
        TypeError: If ``net`` is not an ``nn.Module``.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"FlipTTA wraps a torch.nn.Module, got {type(net).__name__}")
        self.net = net
        # Pass the input shape on, so RawPixelClassifier(FlipTTA(net)) checks it as for net.
        for name in _SHAPE_ATTRIBUTES:
            if hasattr(net, name):
                setattr(self, name, getattr(net, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) averaged over ``x`` (N, C, H, W) and ``x`` mirrored in W."""
        return (self.net(x) + self.net(x.flip(-1))) / 2
