"""Whole-batch augmentation: validation, layout preservation, determinism, each transform."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from data.augment import BatchAugment


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(b: int = 64, c: int = 1, size: int = 12, seed: int = 0) -> torch.Tensor:
    # Strictly positive, distinct values: zeros can only come from padding or erasing.
    return torch.rand(b, c, size, size, generator=_gen(seed)) + 1.0


ALL_ON: dict[str, Any] = {"flip": True, "crop_padding": 2, "erase_prob": 0.5}


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"flip": 1}, TypeError, "flip"),
        ({"flip": True, "alternate_flip": "yes"}, TypeError, "alternate_flip"),
        ({"alternate_flip": True}, ValueError, "alternate_flip=true needs flip=true"),
        ({"crop_padding": -1}, ValueError, "crop_padding"),
        ({"crop_padding": 1.5}, TypeError, "crop_padding"),
        ({"erase_prob": 1.5}, ValueError, "erase_prob"),
        ({"erase_prob": float("nan")}, ValueError, "erase_prob"),
        ({"erase_prob": "0.5"}, TypeError, "erase_prob"),
        ({"erase_scale": (0.3, 0.2)}, ValueError, "erase_scale"),
        ({"erase_scale": (0.0, 0.2)}, ValueError, "erase_scale"),
        ({"erase_scale": (0.1, 1.5)}, ValueError, "erase_scale"),
        ({"erase_scale": (0.1,)}, TypeError, "erase_scale"),
        ({"erase_ratio": (2.0, 1.0)}, ValueError, "erase_ratio"),
        ({"erase_ratio": "ab"}, TypeError, "erase_ratio"),
        ({"erase_value": float("inf")}, ValueError, "erase_value"),
    ],
)
def test_invalid_arguments_name_the_argument(
    kwargs: dict[str, Any], error: type[Exception], needle: str
) -> None:
    with pytest.raises(error, match=needle):
        BatchAugment(**kwargs)


def test_yaml_lists_are_accepted() -> None:
    aug = BatchAugment(erase_prob=0.5, erase_scale=[0.1, 0.2], erase_ratio=[1, 2])  # type: ignore[arg-type]
    assert aug.erase_scale == (0.1, 0.2) and aug.erase_ratio == (1.0, 2.0)


@pytest.mark.parametrize(
    ("kwargs", "identity"),
    [
        ({}, True),
        ({"flip": True}, False),
        ({"crop_padding": 1}, False),
        ({"erase_prob": 0.1}, False),
    ],
)
def test_is_identity(kwargs: dict[str, Any], identity: bool) -> None:
    aug = BatchAugment(**kwargs)
    assert aug.is_identity is identity
    if identity:
        x = _batch()
        assert torch.equal(aug(x, _gen()), x)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(
    "kwargs", [{"flip": True}, {"crop_padding": 3}, {"erase_prob": 1.0}, ALL_ON]
)
def test_shape_dtype_and_memory_format_preserved(
    kwargs: dict[str, Any], channels_last: bool
) -> None:
    x = _batch(b=8, c=3)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    before = x.clone()
    out = BatchAugment(**kwargs)(x, _gen())
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert out.stride() == x.stride()
    assert torch.equal(x, before), "the input must not be modified in place"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_float_dtypes_supported(dtype: torch.dtype) -> None:
    out = BatchAugment(**ALL_ON)(_batch(b=4).to(dtype), _gen())
    assert out.dtype == dtype


def test_same_seed_same_batch_other_seed_differs() -> None:
    aug, x = BatchAugment(**ALL_ON), _batch()
    assert torch.equal(aug(x, _gen(3)), aug(x, _gen(3)))
    assert not torch.equal(aug(x, _gen(3)), aug(x, _gen(4)))


def test_flip_flips_some_samples_and_not_others() -> None:
    x = _batch()
    out = BatchAugment(flip=True)(x, _gen())
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same ^ flipped).all()), "every sample is either untouched or mirrored"
    assert 0 < int(flipped.sum()) < len(x)


def _translation(src: torch.Tensor, out: torch.Tensor, p: int) -> tuple[int, int] | None:
    size = src.shape[-1]
    padded = F.pad(src, (p, p, p, p))
    for dy in range(2 * p + 1):
        for dx in range(2 * p + 1):
            if torch.equal(padded[..., dy : dy + size, dx : dx + size], out):
                return dy - p, dx - p
    return None


def test_crop_is_a_translation_of_at_most_padding() -> None:
    x, p = _batch(b=32, c=2), 2
    out = BatchAugment(crop_padding=p)(x, _gen())
    shifts = [_translation(x[i], out[i], p) for i in range(len(x))]
    assert all(s is not None for s in shifts), "each sample is the image shifted, zero-filled"
    assert len(set(shifts)) > 5, "offsets vary across the batch"


def _erased(out: torch.Tensor, value: float) -> torch.Tensor:
    return (out == value).all(1)  # (B, H, W): erased in every channel


def test_erasing_is_one_rectangle_with_area_in_range() -> None:
    lo, hi, size = 0.05, 0.3, 28
    x = _batch(b=200, c=2, size=size)
    out = BatchAugment(erase_prob=1.0, erase_scale=(lo, hi), erase_value=-7.0)(x, _gen())
    mask = _erased(out, -7.0)
    assert bool(((out == -7.0) == mask.unsqueeze(1)).all()), "all channels erased together"
    for m in mask:
        rows, cols = m.any(1).nonzero(), m.any(0).nonzero()
        height, width = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert int(m.sum()) == height * width, "the erased pixels form one full rectangle"
    fraction = mask.flatten(1).double().mean(1)
    # Rounding the sides to whole pixels moves the area slightly outside [lo, hi].
    assert float(fraction.min()) >= lo - 0.01 and float(fraction.max()) <= hi + 0.025
    assert float(fraction.max() - fraction.min()) > (hi - lo) / 2, "areas are spread"


def test_erase_probability_is_respected() -> None:
    out = BatchAugment(erase_prob=0.5, erase_value=-7.0)(_batch(b=1000, size=16), _gen())
    share = _erased(out, -7.0).flatten(1).any(1).double().mean()
    assert 0.42 < float(share) < 0.58


def test_rectangle_that_never_fits_erases_nothing() -> None:
    # Area of the whole image with aspect ratio 4: always taller than the image.
    aug = BatchAugment(erase_prob=1.0, erase_scale=(1.0, 1.0), erase_ratio=(4.0, 4.0))
    x = _batch(b=16)
    assert torch.equal(aug(x, _gen()), x)


def test_erase_value_zero_keeps_mean_semantics() -> None:
    out = BatchAugment(erase_prob=1.0)(_batch(b=16), _gen())
    assert bool((out == 0.0).flatten(1).any(1).all())


@pytest.mark.parametrize("bad", [torch.zeros(2, 3, 4), torch.zeros(2, 1, 4, 4, dtype=torch.uint8)])
def test_rejects_non_batches(bad: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="float batch"):
        BatchAugment(flip=True)(bad, _gen())


def test_empty_batch_passes_through() -> None:
    x = torch.zeros(0, 1, 8, 8)
    assert BatchAugment(**ALL_ON)(x, _gen()).shape == x.shape


def test_flip_mask_chooses_exactly_the_flipped_samples() -> None:
    x = _batch(8)
    mask = torch.tensor([True, False, False, True, True, False, True, False])
    g = _gen(5)
    out = BatchAugment(flip=True, alternate_flip=True)(x, g, mask)
    assert torch.equal(out[mask], x[mask].flip(-1))
    assert torch.equal(out[~mask], x[~mask])
    # The mask replaces the flip's draw: the generator is left untouched for the next transform.
    assert torch.equal(g.get_state(), _gen(5).get_state())


@pytest.mark.parametrize(
    "mask", [torch.ones(7, dtype=torch.bool), torch.ones(8, dtype=torch.int64)], ids=str
)
def test_flip_mask_of_the_wrong_shape_or_dtype_is_refused(mask: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"flip_mask must be a bool tensor of shape \(8,\)"):
        BatchAugment(flip=True)(_batch(8), _gen(), mask)
