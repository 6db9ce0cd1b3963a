"""A map-style Dataset for per-sample transforms with a torch DataLoader.

The trainer does not use it (it iterates `TensorBatchLoader`); it is for users who want
torchvision transforms, and for benchmarking the in-memory loader against that pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from data.fashion_mnist import CLASS_NAMES


class FashionMNISTDataset(Dataset[tuple[Any, Any]]):
    """Fashion-MNIST images and labels held in memory, one sample per index.

    Without `transform`, a sample's image is the uint8 tensor (1, H, W). With `transform`,
    the image is passed to it as a PIL "L" image, so torchvision transforms such as
    `ToTensor()` and `Normalize(...)` work unchanged. Labels are Python ints, passed through
    `target_transform` when given.

    Args:
        images: uint8 (N, H, W) or (N, 1, H, W).
        labels: integer (N,) labels.
        transform: called on each PIL image, or None.
        target_transform: called on each int label, or None.
    """

    classes: tuple[str, ...] = CLASS_NAMES

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
    ) -> None:
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
            got = images.dtype if isinstance(images, torch.Tensor) else type(images).__name__
            raise TypeError(f"images must be a uint8 tensor, got {got}")
        if images.dim() == 3:
            images = images.unsqueeze(1)
        if images.dim() != 4 or images.shape[1] != 1:
            raise ValueError(f"images must be (N, H, W) or (N, 1, H, W), got {tuple(images.shape)}")
        if not isinstance(labels, torch.Tensor) or labels.shape != (images.shape[0],):
            shape = (
                tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            )
            raise ValueError(f"labels must be a tensor of shape ({images.shape[0]},), got {shape}")
        # PIL needs host memory; keep CPU copies once rather than per sample.
        self.images = images.cpu()
        self.labels = labels.cpu().long()
        self.transform = transform
        self.target_transform = target_transform

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image: Any = self.images[index]
        label: Any = int(self.labels[index])
        if self.transform is not None:
            image = self.transform(Image.fromarray(image[0].numpy()))
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label
