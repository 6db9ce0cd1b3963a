"""Whole-batch data augmentation with tensor ops: flip, crop by padding, random erasing."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

# Candidate rectangles drawn per sample for erasing; like torchvision's RandomErasing, a sample
# whose candidates all fall outside the image is left unerased.
_ERASE_TRIES = 10


class BatchAugment:
    """Random flip, translation and erasing applied to a whole batch at once.

    It is applied after normalisation, so `erase_value=0.0` fills with the dataset mean and the
    crop's zero padding is the mean too. Every random number comes from the generator passed to
    `__call__`, so the same generator state gives the same batch.

    Args:
        flip: flip each sample horizontally with probability 0.5.
        alternate_flip: with `flip`, airbench's alternating flip: the loader gives each
            image a random flip state in the first epoch and the opposite of its previous
            state in every later one, so every image is seen flipped in half of the epochs
            and both views come back-to-back (random flips repeat a view about half the
            time). The loader passes that state as `flip_mask`; called without one, the
            flip is random.
        crop_padding: pad by this many pixels on every side and crop back to the original
            size at a random offset, i.e. a random translation of up to +-padding pixels.
        erase_prob: probability that a sample gets one erased rectangle.
        erase_scale: (min, max) area of the rectangle as a fraction of the image, in (0, 1].
        erase_ratio: (min, max) aspect ratio (height / width) of the rectangle, drawn
            log-uniformly.
        erase_value: the fill value of erased pixels (normalised units).
    """

    def __init__(
        self,
        *,
        flip: bool = False,
        alternate_flip: bool = False,
        crop_padding: int = 0,
        erase_prob: float = 0.0,
        erase_scale: tuple[float, float] = (0.02, 0.25),
        erase_ratio: tuple[float, float] = (0.3, 3.3),
        erase_value: float = 0.0,
    ) -> None:
        if not isinstance(flip, bool):
            raise TypeError(f"flip must be true or false, got {flip!r}")
        if not isinstance(alternate_flip, bool):
            raise TypeError(f"alternate_flip must be true or false, got {alternate_flip!r}")
        if alternate_flip and not flip:
            raise ValueError(
                "alternate_flip=true needs flip=true: it chooses which epochs flip an image, "
                "so without flipping it does nothing; set augmentation.flip=true or "
                "augmentation.alternate_flip=false"
            )
        if isinstance(crop_padding, bool) or not isinstance(crop_padding, int):
            raise TypeError(f"crop_padding must be an int >= 0, got {crop_padding!r}")
        if crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0 (0 disables the crop), got {crop_padding}")
        self.flip = flip
        self.alternate_flip = alternate_flip
        self.crop_padding = crop_padding
        self.erase_prob = _number("erase_prob", erase_prob, 0.0, 1.0)
        self.erase_scale = _pair("erase_scale", erase_scale, 1.0)
        self.erase_ratio = _pair("erase_ratio", erase_ratio, math.inf)
        self.erase_value = _number("erase_value", erase_value, -math.inf, math.inf)

    @property
    def is_identity(self) -> bool:
        """True when no augmentation is enabled, so callers can skip the call entirely."""
        return not self.flip and self.crop_padding == 0 and self.erase_prob == 0.0

    def __repr__(self) -> str:
        return (
            f"BatchAugment(flip={self.flip}, alternate_flip={self.alternate_flip}, "
            f"crop_padding={self.crop_padding}, "
            f"erase_prob={self.erase_prob}, erase_scale={self.erase_scale}, "
            f"erase_ratio={self.erase_ratio}, erase_value={self.erase_value})"
        )

    def __call__(
        self, x: torch.Tensor, generator: torch.Generator, flip_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Augment a float batch.

        Args:
            x: float tensor (B, C, H, W), contiguous or channels_last.
            generator: source of all randomness; random tensors are drawn on its device.
            flip_mask: bool (B,), which samples to flip, in place of random flips (the
                loader's alternating flip); ignored without `flip`.

        Returns:
            A tensor with the shape, dtype, device and memory layout of `x`.
        """
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"BatchAugment expects a float batch (B, C, H, W), got {got}")
        if self.is_identity or x.shape[0] == 0:
            return x
        out = x
        if self.flip:
            out = self._flip(out, generator, flip_mask)
        if self.crop_padding:
            out = self._crop(out, generator)
        if self.erase_prob > 0.0:
            out = self._erase(out, generator)
        if out.stride() != x.stride():
            # empty_like keeps x's strides, so channels_last in gives channels_last out.
            out = torch.empty_like(x).copy_(out)
        return out

    def _flip(
        self, x: torch.Tensor, generator: torch.Generator, flip_mask: torch.Tensor | None
    ) -> torch.Tensor:
        if flip_mask is None:
            flip = _rand((x.shape[0],), generator, x.device) < 0.5
        elif flip_mask.shape != (x.shape[0],) or flip_mask.dtype != torch.bool:
            raise ValueError(
                f"flip_mask must be a bool tensor of shape ({x.shape[0]},), one per sample, "
                f"got {flip_mask.dtype} {tuple(flip_mask.shape)}"
            )
        else:
            flip = flip_mask.to(x.device)
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)

    def _crop(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.crop_padding
        padded_w = w + 2 * p
        padded = F.pad(x, (p, p, p, p)).reshape(b, c, -1)  # (B, C, (H+2p)(W+2p)), zeros = mean
        offsets = _randint(2 * p + 1, (2, b), generator, x.device)  # (row, col) per sample
        # Flat index of each output pixel in the padded image: one gather, no per-sample loop.
        rows = torch.arange(h, device=x.device).view(h, 1) * padded_w
        base = (rows + torch.arange(w, device=x.device)).view(1, h * w)
        index = base + (offsets[0] * padded_w + offsets[1]).view(b, 1)  # (B, H*W)
        return padded.gather(2, index.unsqueeze(1).expand(b, c, h * w)).view(b, c, h, w)

    def _erase(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        # One draw per batch, per sample: [apply, top, left, T areas, T log-ratios] uniforms.
        u = _rand((b, 3 + 2 * _ERASE_TRIES), generator, x.device)
        rect_h, rect_w, fits = self._erase_sizes(u[:, 3:], h, w)
        apply = ((u[:, 0] < self.erase_prob) & fits).view(b, 1, 1)
        # Offsets are uniform over the positions where the rectangle fits (exact small ints).
        top = (u[:, 1] * (h - rect_h + 1)).floor().view(b, 1, 1)
        left = (u[:, 2] * (w - rect_w + 1)).floor().view(b, 1, 1)
        r = torch.arange(h, device=x.device, dtype=u.dtype).view(1, h, 1)
        c = torch.arange(w, device=x.device, dtype=u.dtype).view(1, 1, w)
        # Row and column bands are tiny; only their broadcast AND is (B, H, W).
        in_rows = (r >= top) & (r < top + rect_h.view(b, 1, 1)) & apply
        in_cols = (c >= left) & (c < left + rect_w.view(b, 1, 1))
        return x.masked_fill((in_rows & in_cols).unsqueeze(1), self.erase_value)

    def _erase_sizes(
        self, u: torch.Tensor, h: int, w: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Rectangle (height, width) per sample from (B, 2T) uniforms, and whether one fits.
        lo, hi = self.erase_scale
        area = (lo + (hi - lo) * u[:, :_ERASE_TRIES]) * (h * w)  # (B, T) candidates
        log_lo, log_hi = math.log(self.erase_ratio[0]), math.log(self.erase_ratio[1])
        ratio = torch.exp(log_lo + (log_hi - log_lo) * u[:, _ERASE_TRIES:])
        rect_h = torch.sqrt(area * ratio).round()
        rect_w = torch.sqrt(area / ratio).round()
        fits = (rect_h >= 1) & (rect_h <= h) & (rect_w >= 1) & (rect_w <= w)
        first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # first candidate that fits
        # Samples with no fitting candidate are masked out by the caller through `fits`.
        return rect_h.gather(1, first).squeeze(1), rect_w.gather(1, first).squeeze(1), fits.any(1)


def _rand(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _randint(
    high: int, shape: tuple[int, ...], generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    return torch.randint(high, shape, generator=generator, device=generator.device).to(device)


def _number(name: str, value: object, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not (lo <= value <= hi) or math.isnan(value):
        raise ValueError(f"{name} must be in [{lo}, {hi}] and finite, got {value}")
    if math.isinf(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def _pair(name: str, value: object, hi: float) -> tuple[float, float]:
    # YAML lists arrive as sequences (OmegaConf ListConfig), so accept any 2-item sequence.
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2:
        raise TypeError(f"{name} must be a (min, max) pair, got {value!r}")
    lo_v = _number(f"{name}[0]", value[0], 0.0, hi)
    hi_v = _number(f"{name}[1]", value[1], 0.0, hi)
    if not 0.0 < lo_v <= hi_v:
        raise ValueError(f"{name} must satisfy 0 < min <= max <= {hi}, got ({lo_v}, {hi_v})")
    return lo_v, hi_v
