"""The in-memory batch loader the trainer iterates, and dataset statistics.

The whole split lives on the device as uint8; a batch is an index slice of a seeded
permutation, converted to float and normalised in two fused in-place ops, then augmented as a
whole batch. No DataLoader, no worker processes, no per-sample Python.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import numpy as np
import torch

from data.augment import BatchAugment

log = logging.getLogger(__name__)

# Images per chunk in channel_stats: bounds the temporaries bincount makes to one chunk.
_STATS_CHUNK = 8192


class TensorBatchLoader:
    """Batches of normalised images from uint8 tensors held once on `device`.

    Each iteration is one epoch. With `shuffle`, every epoch draws a new permutation from a
    generator seeded once at construction, so a run is reproducible end to end; augmentation
    draws from a second generator derived from the same seed, so turning augmentation on or off
    does not change the batch order. Without `shuffle`, batches follow the stored order.
    Validation loaders are built with `augment=None`: evaluation never sees augmentation.

    Args:
        images: uint8 (N, H, W) or (N, C, H, W).
        labels: integer (N,) class labels.
        batch_size: images per batch (the last batch may be smaller unless `drop_last`).
        mean: mean pixel value in [0, 1] units, subtracted after scaling by 1/255.
        std: standard deviation in [0, 1] units, > 0.
        shuffle: draw a new permutation each epoch; otherwise keep the stored order.
        seed: seed (>= 0) of the permutation and augmentation generators.
        augment: whole-batch augmentation applied after normalisation, or None. With its
            `alternate_flip`, the loader decides the flips: a random state per image, drawn
            once, in even epochs (counted by `epochs`, the passes started) and its opposite
            in odd ones.
        device: where the images are stored and batches are produced.
        channels_last: return batches in channels_last memory format.
        drop_last: drop the final incomplete batch.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        mean: float,
        std: float,
        shuffle: bool,
        seed: int = 0,
        augment: BatchAugment | None = None,
        device: torch.device | str = "cpu",
        channels_last: bool = True,
        drop_last: bool = False,
    ) -> None:
        images, labels = _check_arrays(images, labels)
        _check_settings(batch_size, mean, std, seed, len(labels), drop_last)
        if augment is not None and not isinstance(augment, BatchAugment):
            raise TypeError(f"augment must be a BatchAugment or None, got {type(augment).__name__}")
        self.device = torch.device(device)
        self._images = images.to(self.device).contiguous()  # uint8 (N, C, H, W), stored once
        self._labels = labels.to(self.device, torch.int64)
        self._batch_size = batch_size
        # (x / 255 - mean) / std == (x - 255 mean) / (255 std): two in-place ops on the batch.
        self._shift, self._scale = 255.0 * mean, 255.0 * std
        self.shuffle, self.drop_last, self.channels_last = shuffle, drop_last, channels_last
        self.augment = None if augment is None or augment.is_identity else augment
        perm_seed, aug_seed = np.random.SeedSequence(seed).generate_state(2, dtype=np.uint64)
        self._perm_gen = torch.Generator(device=self.device).manual_seed(int(perm_seed))
        self._aug_gen = torch.Generator(device=self.device).manual_seed(int(aug_seed))
        # Alternating flip: each image's flip state in even epochs (odd ones take the
        # opposite), drawn once; epochs counts the passes started so far.
        self._flip_even: torch.Tensor | None = None
        if self.augment is not None and self.augment.alternate_flip:
            self._flip_even = (
                torch.rand(self.num_samples, generator=self._aug_gen, device=self.device) < 0.5
            )
        self.epochs = 0

    @property
    def num_samples(self) -> int:
        """Number of stored images."""
        return int(self._labels.shape[0])

    @property
    def batch_size(self) -> int:
        """Images per batch."""
        return self._batch_size

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self._batch_size
        return math.ceil(self.num_samples / self._batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        odd_epoch = self.epochs % 2 == 1
        self.epochs += 1
        order = None
        if self.shuffle:
            order = torch.randperm(
                self.num_samples, generator=self._perm_gen, device=self._perm_gen.device
            )
        for i in range(len(self)):
            start = i * self._batch_size
            stop = min(start + self._batch_size, self.num_samples)
            if order is None:
                x_u8, y = self._images[start:stop], self._labels[start:stop]
                flips = None if self._flip_even is None else self._flip_even[start:stop]
            else:
                idx = order[start:stop]
                x_u8, y = self._images.index_select(0, idx), self._labels.index_select(0, idx)
                flips = None if self._flip_even is None else self._flip_even[idx]
            if flips is not None and odd_epoch:
                flips = ~flips
            yield self._prepare(x_u8, flips), y

    def _prepare(self, x_u8: torch.Tensor, flips: torch.Tensor | None = None) -> torch.Tensor:
        x = x_u8.float().sub_(self._shift).div_(self._scale)  # float32 (B, C, H, W)
        if self.augment is not None:
            x = self.augment(x, self._aug_gen, flips)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def channel_stats(images: torch.Tensor) -> tuple[float, float]:
    """Mean and (population) standard deviation of uint8 images scaled to [0, 1].

    Exact: pixel values are histogrammed in chunks, and the moments are computed from the
    256-bin histogram in float64, so no float copy of the whole set is made.

    Args:
        images: uint8 tensor of any shape with at least one element, e.g. (N, 1, 28, 28).

    Returns:
        (mean, std) as Python floats in [0, 1] units.
    """
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        got = images.dtype if isinstance(images, torch.Tensor) else type(images).__name__
        raise TypeError(f"channel_stats expects a uint8 tensor, got {got}")
    if images.numel() == 0:
        raise ValueError("channel_stats needs at least one pixel, got an empty tensor")
    flat = images.reshape(images.shape[0], -1) if images.dim() > 1 else images.view(1, -1)
    hist = torch.zeros(256, dtype=torch.int64, device=images.device)
    for chunk in flat.split(_STATS_CHUNK):
        hist += torch.bincount(chunk.reshape(-1), minlength=256)
    hist64 = hist.to("cpu", torch.float64)
    values = torch.arange(256, dtype=torch.float64) / 255.0
    n = hist64.sum()
    mean = (hist64 * values).sum() / n
    var = (hist64 * (values - mean) ** 2).sum() / n
    return float(mean), float(var.sqrt())


def _check_arrays(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        got = images.dtype if isinstance(images, torch.Tensor) else type(images).__name__
        raise TypeError(f"images must be a uint8 tensor (raw pixels), got {got}")
    if images.dim() == 3:
        images = images.unsqueeze(1)  # (N, H, W) -> (N, 1, H, W)
    if images.dim() != 4:
        raise ValueError(f"images must be (N, H, W) or (N, C, H, W), got {tuple(images.shape)}")
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.is_floating_point():
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise TypeError(f"labels must be a 1-D integer tensor, got {shape}")
    if len(labels) != len(images):
        raise ValueError(f"got {len(images)} images but {len(labels)} labels; expected equal")
    if len(labels) == 0:
        raise ValueError("the loader needs at least one sample, got 0")
    return images, labels


def _check_settings(
    batch_size: int, mean: float, std: float, seed: int, n: int, drop_last: bool
) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if drop_last and batch_size > n:
        raise ValueError(
            f"batch_size={batch_size} > {n} samples with drop_last=True yields no batches; "
            "lower batch_size or set drop_last=False"
        )
    if not math.isfinite(mean):
        raise ValueError(f"mean must be finite, got {mean}")
    if not (math.isfinite(std) and std > 0):
        raise ValueError(f"std must be finite and > 0, got {std}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
