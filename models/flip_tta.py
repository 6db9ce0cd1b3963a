"""Flip (and translate) test-time augmentation as a module, for validation, the test set and
export."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Attributes RawPixelClassifier reads from the model it wraps (its input shape).
SHAPE_ATTRIBUTES = ("in_channels", "image_size")


class FlipTTA(nn.Module):
    """Averages a classifier's logits over the image and its horizontal mirror image.

    ``forward(x) = (net(x) + net(x.flip(-1))) / 2``: one extra forward pass, no training.
    Fashion-MNIST articles are roughly left-right symmetric, so the mirror image is a second
    opinion on the same article. The wrapped ``net`` keeps its own ``state_dict`` keys under
    ``net.``; checkpoints hold the bare network's weights, and this wrapper is added on top.

    With ``translate=t > 0`` (airbench's multi-view TTA, level 2), the image shifted by ``t``
    pixels down-right and up-left (reflect-padded, then cropped) are two more views, each
    with its mirror image: ``0.5 * flip_avg(x) + 0.25 * flip_avg(x shifted +t) + 0.25 *
    flip_avg(x shifted -t)``, six forward passes in all.

    Args:
        net: A classifier mapping images (N, C, H, W) to logits (N, num_classes).
        translate: Pixels of the two shifted views; 0 = the mirror image only.

    Raises:
        TypeError: If ``net`` is not an ``nn.Module``.
        ValueError: If ``translate`` is negative.
    """

    def __init__(self, net: nn.Module, translate: int = 0) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"FlipTTA wraps a torch.nn.Module, got {type(net).__name__}")
        if isinstance(translate, bool) or not isinstance(translate, int) or translate < 0:
            raise ValueError(f"translate must be an int >= 0 (pixels), got {translate!r}")
        self.net = net
        self.translate = translate
        # Pass the input shape on, so RawPixelClassifier(FlipTTA(net)) checks it as for net.
        for name in SHAPE_ATTRIBUTES:
            if hasattr(net, name):
                setattr(self, name, getattr(net, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) averaged over the views of ``x`` (N, C, H, W)."""
        logits = self._mirrored(x)
        t = self.translate
        if t == 0:
            return logits
        height, width = x.shape[-2:]
        padded = F.pad(x, (t, t, t, t), mode="reflect")
        down_right = padded[..., :height, :width]
        up_left = padded[..., 2 * t :, 2 * t :]
        return 0.5 * logits + 0.25 * (self._mirrored(down_right) + self._mirrored(up_left))

    def _mirrored(self, x: torch.Tensor) -> torch.Tensor:
        return (self.net(x) + self.net(x.flip(-1))) / 2
