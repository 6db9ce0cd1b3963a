"""Small synthetic image sets shaped like Fashion-MNIST, for tests and demos."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Templates are smooth blobs: random values on a coarse grid, upsampled bilinearly.
_TEMPLATE_GRID = 7
_NOISE_STD = 40.0


def make_synthetic(
    num_samples: int, *, seed: int, num_classes: int = 10, image_size: int = 28
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images with a learnable class signal.

    Each class has a fixed random template (generated from `seed`); an image is its class
    template plus Gaussian pixel noise and a random brightness shift, clipped to [0, 255].
    A small CNN learns it well above chance in one epoch on a few hundred images, and a
    nearest-template classifier is nearly perfect.

    Args:
        num_samples: number of images, >= 1.
        seed: seed of templates, labels and noise; the same arguments give identical output.
        num_classes: number of classes, >= 2. Classes are balanced (counts differ by at most 1)
            and shuffled.
        image_size: height and width, >= 1.

    Returns:
        images uint8 (num_samples, image_size, image_size) and labels int64 (num_samples,).
    """
    for name, value, low in (
        ("num_samples", num_samples, 1),
        ("num_classes", num_classes, 2),
        ("image_size", image_size, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    generator = torch.Generator().manual_seed(seed)
    templates = _class_templates(num_classes, image_size, generator)
    labels = (torch.arange(num_samples) % num_classes)[
        torch.randperm(num_samples, generator=generator)
    ]
    noise = torch.randn(num_samples, image_size, image_size, generator=generator) * _NOISE_STD
    brightness = (torch.rand(num_samples, 1, 1, generator=generator) - 0.5) * 40.0
    images = (templates[labels] + noise + brightness).round().clamp_(0, 255)
    return images.to(torch.uint8), labels


def _class_templates(num_classes: int, image_size: int, generator: torch.Generator) -> torch.Tensor:
    """Float templates (num_classes, image_size, image_size) with values in [0, 220]."""
    coarse = torch.rand(num_classes, 1, _TEMPLATE_GRID, _TEMPLATE_GRID, generator=generator)
    smooth = F.interpolate(
        coarse, size=(image_size, image_size), mode="bilinear", align_corners=False
    )
    return smooth[:, 0] * 220.0
