"""A wrapper that bakes input normalisation into a trained model, for export and serving."""

from __future__ import annotations

import math

import torch
from torch import nn


def _check_stat(name: str, value: object, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"RawPixelClassifier {name}={value!r} must be a number (the dataset's {name} on the "
            f"0-1 pixel scale), got {type(value).__name__}"
        )
    if not math.isfinite(value) or (positive and value <= 0):
        rule = "a finite number > 0" if positive else "a finite number"
        raise ValueError(
            f"RawPixelClassifier {name}={value} is invalid: it must be {rule}; pass the "
            "statistic the model was trained with (Fashion-MNIST: mean=0.2860, std=0.3530)"
        )
    return float(value)


class RawPixelClassifier(nn.Module):
    """Serves a trained model on raw pixel values: ``model((x / 255 - mean) / std)``.

    ``mean`` and ``std`` are stored as buffers, so they travel with the ``state_dict`` and with
    exported graphs, and a served model cannot be paired with the wrong statistics.

    The expected input shape is ``(N, in_channels, image_size, image_size)`` read from the
    wrapped model's ``in_channels`` / ``image_size`` attributes (all of this package's models
    have them), defaulting to Fashion-MNIST's ``(N, 1, 28, 28)``.

    Args:
        model: The trained classifier, which expects normalised inputs.
        mean: Per-pixel mean of the training images on the 0-1 scale.
        std: Per-pixel standard deviation of the training images on the 0-1 scale, > 0.

    Raises:
        TypeError: If ``model`` is not an ``nn.Module`` or a statistic is not a number.
        ValueError: If a statistic is not finite or ``std <= 0``.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, model: nn.Module, *, mean: float, std: float) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"RawPixelClassifier wraps a torch.nn.Module, got {type(model).__name__}; "
                "build the model and load its weights first"
            )
        self.model = model
        self.register_buffer("mean", torch.tensor(_check_stat("mean", mean, positive=False)))
        self.register_buffer("std", torch.tensor(_check_stat("std", std, positive=True)))
        in_channels = int(getattr(model, "in_channels", 1))
        image_size = int(getattr(model, "image_size", 28))
        self.input_shape: tuple[int, int, int] = (in_channels, image_size, image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps raw float pixels in [0, 255], shape (N, C, H, W), to logits (N, num_classes).

        Raises:
            TypeError: If ``x`` is not a floating-point tensor.
            ValueError: If ``x`` does not have shape (N, *input_shape).
        """
        if not x.is_floating_point():
            raise TypeError(
                f"RawPixelClassifier expects float pixel values in [0, 255], got dtype {x.dtype}; "
                "convert with x.float() (do not divide by 255 first: this wrapper does it)"
            )
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            c, h, w = self.input_shape
            raise ValueError(
                f"RawPixelClassifier expects a batch shaped (N, {c}, {h}, {w}), got "
                f"{tuple(x.shape)}; add the batch/channel dims with x.reshape(-1, {c}, {h}, {w})"
            )
        return self.model((x / 255 - self.mean) / self.std)
